//! The live streams of the server, keyed by app and stream name. A publisher owns a
//! key while it is connected; players subscribe to a key whether or not anyone is
//! publishing on it yet. Frames fan out to players through per-player queues whose
//! length the publisher checks before sending: a player that falls behind skips to
//! the next keyframe instead of making the publisher wait or memory grow.
//!
//! Lock order: the registry map, then a stream's state. Fan-out holds only the
//! stream's lock, so streams never wait on each other.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use log::{info, warn};
use parking_lot::Mutex;

use crate::media::frame::{Frame, FrameKind};
use crate::media::gop::{GopCache, GopLimits};

/// Longest app or stream name accepted by default; names become file names once
/// recording exists.
pub const MAX_NAME_LEN: usize = 256;

/// app + stream name, without the query string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub app: String,
    pub name: String,
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name {:?} refused: {}", self.name, self.reason)
    }
}

impl std::error::Error for BadName {}

/// Splits `name?query` and returns both halves; the query is kept for later use
/// (authentication tokens) but never becomes part of the key.
pub fn split_query(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

fn check_name(name: &str, max_len: usize) -> Result<(), BadName> {
    let refuse = |reason| {
        Err(BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty");
    }
    if name.len() > max_len {
        return refuse("too long");
    }
    if name.contains('/') || name.contains('\\') {
        return refuse("contains a slash");
    }
    if name == "." || name.contains("..") {
        return refuse("contains '..'");
    }
    if name.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    Ok(())
}

impl StreamKey {
    /// Validates both parts; query strings must already be stripped.
    pub fn new(app: &str, name: &str) -> Result<StreamKey, BadName> {
        StreamKey::with_max_len(app, name, MAX_NAME_LEN)
    }

    pub fn with_max_len(app: &str, name: &str, max_len: usize) -> Result<StreamKey, BadName> {
        check_name(app, max_len)?;
        check_name(name, max_len)?;
        Ok(StreamKey {
            app: app.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// What a player's writer receives, in order.
#[derive(Debug, Clone)]
pub enum PlayerItem {
    Frame(Arc<Frame>),
    /// A publisher started on the key (not sent for one already live at subscribe).
    PublishStart,
    /// The publisher left; the player stays subscribed for the next one.
    PublishStop,
}

#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    pub gop: GopLimits,
    /// Frames a player may have waiting before it starts skipping.
    pub player_queue_frames: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    AlreadyPublishing { key: StreamKey, by: SocketAddr },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::AlreadyPublishing { key, by } => {
                write!(f, "stream {key} is already being published by {by}")
            }
        }
    }
}

impl std::error::Error for PublishError {}

struct PlayerSlot {
    id: u64,
    peer: SocketAddr,
    tx: Sender<PlayerItem>,
    /// Behind: frames are dropped until the next place a decoder can start.
    skipping: bool,
    dropped: u64,
}

struct StreamState {
    publisher: Option<(u64, SocketAddr)>,
    cache: GopCache,
    players: Vec<PlayerSlot>,
}

struct Stream {
    key: StreamKey,
    state: Mutex<StreamState>,
}

pub struct Registry {
    config: RegistryConfig,
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    next_id: AtomicU64,
}

/// Per-stream numbers for logs and, later, the stats API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub key: StreamKey,
    pub publisher: Option<SocketAddr>,
    pub players: usize,
    pub cached_frames: usize,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Arc<Registry> {
        Arc::new(Registry {
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The entry for `key`, created empty if needed. Called with the map locked.
    fn entry(&self, streams: &mut HashMap<StreamKey, Arc<Stream>>, key: &StreamKey) -> Arc<Stream> {
        streams
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Stream {
                    key: key.clone(),
                    state: Mutex::new(StreamState {
                        publisher: None,
                        cache: GopCache::new(self.config.gop),
                        players: Vec::new(),
                    }),
                })
            })
            .clone()
    }

    /// Claims the key for a publisher. Players already waiting are told it started.
    pub fn publish(
        self: &Arc<Self>,
        key: &StreamKey,
        peer: SocketAddr,
    ) -> Result<Publisher, PublishError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut streams = self.streams.lock();
        let stream = self.entry(&mut streams, key);
        let mut state = stream.state.lock();
        if let Some((_, by)) = state.publisher {
            return Err(PublishError::AlreadyPublishing {
                key: key.clone(),
                by,
            });
        }
        state.publisher = Some((id, peer));
        state.cache.clear();
        state.players.retain_mut(|p| {
            p.skipping = false;
            p.tx.send(PlayerItem::PublishStart).is_ok()
        });
        drop(state);
        drop(streams);
        Ok(Publisher {
            registry: self.clone(),
            stream,
            id,
        })
    }

    /// Subscribes a player. If the stream is live, its queue starts with the
    /// fast-start burst; otherwise it waits for `PublishStart`.
    pub fn play(self: &Arc<Self>, key: &StreamKey, peer: SocketAddr) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded();
        let stream = self.entry(&mut self.streams.lock(), key);
        let mut state = stream.state.lock();
        if state.publisher.is_some() {
            for frame in state.cache.burst() {
                // The receiver is in our hands: this cannot fail.
                let _ = tx.send(PlayerItem::Frame(frame));
            }
        }
        state.players.push(PlayerSlot {
            id,
            peer,
            tx,
            skipping: false,
            dropped: 0,
        });
        drop(state);
        Subscription {
            registry: self.clone(),
            stream,
            id,
            rx,
        }
    }

    /// Drops the map entry once nobody publishes or plays on it.
    fn release(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock();
        let state = stream.state.lock();
        if state.publisher.is_none() && state.players.is_empty() {
            if let Some(current) = streams.get(&stream.key) {
                if Arc::ptr_eq(current, stream) {
                    streams.remove(&stream.key);
                }
            }
        }
    }

    pub fn streams(&self) -> Vec<StreamInfo> {
        let streams: Vec<_> = self.streams.lock().values().cloned().collect();
        streams.iter().map(|s| s.info()).collect()
    }

    pub fn stream_info(&self, key: &StreamKey) -> Option<StreamInfo> {
        let stream = self.streams.lock().get(key).cloned()?;
        Some(stream.info())
    }
}

impl Stream {
    fn info(&self) -> StreamInfo {
        let st = self.state.lock();
        StreamInfo {
            key: self.key.clone(),
            publisher: st.publisher.map(|(_, peer)| peer),
            players: st.players.len(),
            cached_frames: st.cache.cached_frames(),
        }
    }
}

/// The right to push frames on a key. Dropping it unpublishes, also on panic.
pub struct Publisher {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    id: u64,
}

impl Publisher {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// Caches the frame for fast start and hands it to every player that keeps up.
    pub fn push(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let cap = self.registry.config.player_queue_frames;
        let mut state = self.stream.state.lock();
        state.cache.push(&frame);
        let audio_only = !state.cache.has_video();
        let resume_here = frame.is_keyframe() || (audio_only && frame.kind == FrameKind::Audio);
        let key = &self.stream.key;
        state.players.retain_mut(|p| {
            if !frame.is_essential() {
                if p.skipping {
                    if !resume_here || p.tx.len() >= cap {
                        p.dropped += 1;
                        return true;
                    }
                    p.skipping = false;
                    info!(
                        "{}: player caught up on {key} after {} dropped frames",
                        p.peer, p.dropped
                    );
                } else if p.tx.len() >= cap {
                    p.skipping = true;
                    p.dropped += 1;
                    warn!(
                        "{}: player fell {cap} frames behind on {key}; skipping to the next keyframe",
                        p.peer
                    );
                    return true;
                }
            }
            p.tx.send(PlayerItem::Frame(frame.clone())).is_ok()
        });
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) == Some(self.id) {
            state.publisher = None;
            state.cache.clear();
            state
                .players
                .retain(|p| p.tx.send(PlayerItem::PublishStop).is_ok());
        }
        drop(state);
        self.registry.release(&self.stream);
    }
}

/// A player's place on a key. Dropping it unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    id: u64,
    rx: Receiver<PlayerItem>,
}

impl Subscription {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// The queue to read; cloned so the writer thread can own it while this guard
    /// stays with the connection.
    pub fn receiver(&self) -> Receiver<PlayerItem> {
        self.rx.clone()
    }

    /// Whether a publisher is on the key right now.
    pub fn is_live(&self) -> bool {
        self.stream.state.lock().publisher.is_some()
    }

    /// Frames skipped so far because this player fell behind.
    pub fn dropped_frames(&self) -> u64 {
        let state = self.stream.state.lock();
        state
            .players
            .iter()
            .find(|p| p.id == self.id)
            .map_or(0, |p| p.dropped)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.state.lock().players.retain(|p| p.id != self.id);
        self.registry.release(&self.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameRole;

    fn registry(queue: usize) -> Arc<Registry> {
        Registry::new(RegistryConfig {
            gop: GopLimits {
                enabled: true,
                max_frames: 1000,
                max_bytes: 1 << 20,
            },
            player_queue_frames: queue,
        })
    }

    fn key(name: &str) -> StreamKey {
        StreamKey::new("live", name).unwrap()
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn video(ts: u32, key: bool) -> Frame {
        Frame::media(
            FrameKind::Video,
            ts,
            vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0],
        )
    }

    fn drain(sub: &Subscription) -> Vec<PlayerItem> {
        sub.rx.try_iter().collect()
    }

    fn frame_timestamps(items: &[PlayerItem]) -> Vec<u32> {
        items
            .iter()
            .filter_map(|i| match i {
                PlayerItem::Frame(f) => Some(f.timestamp),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_are_validated() {
        assert!(StreamKey::new("live", "cam1").is_ok());
        for bad in [
            "",
            "a/b",
            "..",
            "a..b",
            "x\0y",
            "tab\there",
            &"n".repeat(300),
        ] {
            assert!(
                StreamKey::new("live", bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert!(StreamKey::new("", "x").is_err());
    }

    #[test]
    fn query_is_split_off() {
        assert_eq!(split_query("key?token=1&x=2"), ("key", Some("token=1&x=2")));
        assert_eq!(split_query("key"), ("key", None));
    }

    #[test]
    fn second_publisher_is_refused_and_first_unaffected() {
        let reg = registry(100);
        let first = reg.publish(&key("a"), peer(1)).unwrap();
        let err = reg.publish(&key("a"), peer(2)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "stream live/a is already being published by 127.0.0.1:1"
        );
        let sub = reg.play(&key("a"), peer(3));
        first.push(video(0, true));
        assert_eq!(frame_timestamps(&drain(&sub)), [0]);
    }

    #[test]
    fn player_before_publisher_waits_then_gets_everything() {
        let reg = registry(100);
        let sub = reg.play(&key("a"), peer(3));
        assert!(drain(&sub).is_empty());
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        publisher.push(video(0, true));
        publisher.push(video(40, false));
        drop(publisher);
        let items = drain(&sub);
        assert!(matches!(items.first(), Some(PlayerItem::PublishStart)));
        assert_eq!(frame_timestamps(&items), [0, 40]);
        assert!(matches!(items.last(), Some(PlayerItem::PublishStop)));
    }

    #[test]
    fn late_joiner_gets_the_gop_burst() {
        let reg = registry(100);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        publisher.push(Frame::media(FrameKind::Video, 0, vec![0x17, 0, 1]));
        for ts in [0, 40, 80] {
            publisher.push(video(ts, ts == 40));
        }
        let sub = reg.play(&key("a"), peer(2));
        let items = drain(&sub);
        assert_eq!(frame_timestamps(&items), [40, 40, 80]);
        match &items[0] {
            PlayerItem::Frame(f) => assert_eq!(f.role, FrameRole::SequenceHeader),
            other => panic!("expected the sequence header first, got {other:?}"),
        }
    }

    #[test]
    fn slow_player_skips_to_next_keyframe_without_blocking() {
        let reg = registry(3);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let slow = reg.play(&key("a"), peer(2));
        let fast = reg.play(&key("a"), peer(3));
        let mut fast_seen = Vec::new();
        for ts in 0..10u32 {
            publisher.push(video(ts, ts == 0 || ts == 6));
            fast_seen.extend(frame_timestamps(&drain(&fast)));
        }
        assert_eq!(
            fast_seen,
            (0..10).collect::<Vec<_>>(),
            "the fast player misses nothing"
        );
        // The slow one got 3 frames, skipped 3..=5, then its queue was still full at 6.
        assert_eq!(frame_timestamps(&drain(&slow)), [0, 1, 2]);
        assert_eq!(slow.dropped_frames(), 7);
        publisher.push(video(10, false));
        assert!(drain(&slow).is_empty(), "still waiting for a keyframe");
        publisher.push(video(11, true));
        assert_eq!(frame_timestamps(&drain(&slow)), [11]);
    }

    #[test]
    fn sequence_headers_are_never_skipped() {
        let reg = registry(1);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let sub = reg.play(&key("a"), peer(2));
        publisher.push(video(0, true));
        publisher.push(video(1, false));
        publisher.push(Frame::media(FrameKind::Audio, 2, vec![0xaf, 0, 0x12, 0x10]));
        assert_eq!(frame_timestamps(&drain(&sub)), [0, 2]);
    }

    #[test]
    fn entries_disappear_when_unused() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let sub = reg.play(&key("a"), peer(2));
        assert_eq!(reg.streams().len(), 1);
        drop(publisher);
        let info = reg.stream_info(&key("a")).unwrap();
        assert_eq!((info.publisher, info.players), (None, 1));
        drop(sub);
        assert!(reg.streams().is_empty());
    }

    #[test]
    fn republish_reaches_waiting_players() {
        let reg = registry(10);
        let sub = reg.play(&key("a"), peer(2));
        drop(reg.publish(&key("a"), peer(1)).unwrap());
        let second = reg.publish(&key("a"), peer(3)).unwrap();
        second.push(video(0, true));
        let items = drain(&sub);
        let kinds: Vec<_> = items
            .iter()
            .map(|i| match i {
                PlayerItem::PublishStart => "start",
                PlayerItem::PublishStop => "stop",
                PlayerItem::Frame(_) => "frame",
            })
            .collect();
        assert_eq!(kinds, ["start", "stop", "start", "frame"]);
    }

    #[test]
    fn disconnected_players_are_pruned() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let sub = reg.play(&key("a"), peer(2));
        // Simulate the writer thread going away while the guard lingers.
        let Subscription { rx, .. } = &sub;
        drop(rx.clone());
        publisher.push(video(0, true));
        assert_eq!(reg.stream_info(&key("a")).unwrap().players, 1);
    }
}
