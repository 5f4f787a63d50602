//! The live streams of the server, keyed by app and stream name. A publisher owns a
//! key while it is connected; players subscribe to a key whether or not anyone is
//! publishing on it yet. Frames fan out to players through per-player queues whose
//! length the publisher checks before sending: a player that falls behind skips to
//! the next keyframe instead of making the publisher wait or memory grow.
//!
//! Lock order: the registry map, then a stream's state. Fan-out holds only the
//! stream's lock, so streams never wait on each other.
//!
//! The registry also keeps what the stats API and the metrics report: per stream the
//! publisher's address, start time, bytes and bitrate in and the codecs seen; per
//! player its protocol, address, connect time, dropped frames and a bytes-out counter
//! its connection updates; and server-wide totals of publishes, plays and drops.
//!
//! Here: the map, publish and subscribe, and the guards that undo them. How a
//! player waits is `doorbell`; what its queue holds and when a frame is skipped,
//! `fanout`; what is counted and reported, `stats`.

mod doorbell;
mod fanout;
mod stats;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver};
use parking_lot::Mutex;

use crate::media::codec::Codecs;
use crate::media::frame::Frame;
use crate::media::gop::{GopCache, GopLimits};
use crate::stream_key::StreamKey;
use fanout::{Lossless, PlayerSlot};
use stats::{Ingress, Totals};

pub use doorbell::{wait_for, Doorbell};
pub use fanout::{PlayerItem, Queued};
pub use stats::{
    PlayerInfo, PlayerProtocol, PlayerStats, PublisherStats, RegistryTotals, StreamInfo,
    StreamStats,
};

#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    pub gop: GopLimits,
    /// Frames a player may have waiting before it starts skipping.
    pub player_queue_frames: usize,
}

/// Why a publish was refused. `Display` is what the publisher is told: never who
/// holds the key (that is for the operator's log, from `by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    AlreadyPublishing {
        key: StreamKey,
        by: SocketAddr,
    },
    /// The server is stopping ([`Registry::close`]).
    Closed,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::AlreadyPublishing { key, .. } => {
                write!(f, "stream {key} is already being published")
            }
            PublishError::Closed => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for PublishError {}

struct StreamState {
    publisher: Option<(u64, SocketAddr)>,
    ingress: Option<Ingress>,
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
    totals: Totals,
    /// Set by `close`: no more publishing; every subscription ends at once.
    closed: AtomicBool,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Arc<Registry> {
        Arc::new(Registry {
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            totals: Totals::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// Ends every stream the way a publisher's stop ends it, for the server's
    /// graceful stop: each player, live or still waiting, gets `PublishStop`;
    /// publishers lose their keys (what they push from now on goes nowhere, and
    /// `publish` is refused); a player that subscribes later gets `PublishStop`
    /// at once.
    pub fn close(&self) {
        let streams = self.streams.lock();
        // Set under the map lock and before any stream is visited, so a subscriber
        // either is among the players below or sees the flag (`subscribe`).
        self.closed.store(true, Ordering::SeqCst);
        for stream in streams.values() {
            let mut state = stream.state.lock();
            state.publisher = None;
            state.ingress = None;
            state.cache.clear();
            state.players.retain(|p| p.send(PlayerItem::PublishStop));
        }
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
                        ingress: None,
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
        if self.closed.load(Ordering::SeqCst) {
            return Err(PublishError::Closed);
        }
        let stream = self.entry(&mut streams, key);
        let mut state = stream.state.lock();
        if let Some((_, by)) = state.publisher {
            self.totals
                .publishes_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::AlreadyPublishing {
                key: key.clone(),
                by,
            });
        }
        self.totals.publishes.fetch_add(1, Ordering::Relaxed);
        state.publisher = Some((id, peer));
        state.ingress = Some(Ingress::new(Instant::now()));
        state.cache.clear();
        state.players.retain_mut(|p| {
            p.skipping = false;
            p.joining = false;
            p.send(PlayerItem::PublishStart)
        });
        drop(state);
        drop(streams);
        Ok(Publisher {
            registry: self.clone(),
            stream,
            id,
        })
    }

    /// Subscribes an RTMP player with its own bytes-out counter; see [`Registry::play_as`].
    pub fn play(self: &Arc<Self>, key: &StreamKey, peer: SocketAddr) -> Subscription {
        self.play_as(key, PlayerInfo::new(peer, PlayerProtocol::Rtmp))
    }

    /// Subscribes a player. If the stream is live, its queue starts with the
    /// fast-start burst; otherwise it waits for `PublishStart`.
    pub fn play_as(self: &Arc<Self>, key: &StreamKey, player: PlayerInfo) -> Subscription {
        let stream = self.entry(&mut self.streams.lock(), key);
        let mut state = stream.state.lock();
        self.subscribe(&stream, &mut state, player, None)
    }

    /// Subscribes something that must not lose a frame (a recorder): it gets
    /// every frame, never skips, until more than `max_bytes` of them wait in its
    /// queue; then it is dropped (one error line names it by `label`) and
    /// [`Subscription::next`] says why. It is not a player: the stats and the
    /// play counts leave it out. Read it with [`Subscription::next`], which keeps
    /// the count of what waits ([`Subscription::backlog`]).
    pub fn subscribe_lossless(
        self: &Arc<Self>,
        key: &StreamKey,
        peer: SocketAddr,
        label: String,
        max_bytes: u64,
    ) -> Subscription {
        let stream = self.entry(&mut self.streams.lock(), key);
        let mut state = stream.state.lock();
        let bound = Arc::new(Lossless::new(label, max_bytes));
        let info = PlayerInfo::new(peer, PlayerProtocol::Rtmp);
        self.subscribe(&stream, &mut state, info, Some(bound))
    }

    /// Subscribes only if a publisher is live on the key right now, checked under
    /// the same lock so there is no window between the check and the burst. For
    /// players (HTTP) that would rather be told "not found" than wait.
    pub fn play_if_live(
        self: &Arc<Self>,
        key: &StreamKey,
        player: PlayerInfo,
    ) -> Option<Subscription> {
        let stream = self.streams.lock().get(key).cloned()?;
        let mut state = stream.state.lock();
        // Nobody publishing: no subscription (and no entry was created for it).
        state.publisher?;
        Some(self.subscribe(&stream, &mut state, player, None))
    }

    /// Adds the player's slot (with the burst queued if live); `state` is the
    /// locked state of `stream`.
    fn subscribe(
        self: &Arc<Self>,
        stream: &Arc<Stream>,
        state: &mut StreamState,
        player: PlayerInfo,
        lossless: Option<Arc<Lossless>>,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let doorbell = Arc::new(Doorbell::new());
        let (tx, rx) = unbounded();
        let mut joining = false;
        if state.publisher.is_some() {
            let burst = state.cache.burst();
            joining = state.cache.has_video() && !burst.iter().any(|f| f.is_keyframe());
            for frame in burst {
                if let Some(bound) = &lossless {
                    bound.add(Lossless::cost(&frame));
                }
                // The receiver is in our hands: this cannot fail.
                let _ = tx.send(Queued::new(PlayerItem::Frame(frame)));
            }
        }
        if self.closed.load(Ordering::SeqCst) {
            let _ = tx.send(Queued::new(PlayerItem::PublishStop));
        }
        if lossless.is_none() {
            self.totals.add_play(player.protocol);
        }
        state.players.push(PlayerSlot {
            id,
            info: player,
            connected: Instant::now(),
            tx,
            doorbell: doorbell.clone(),
            skipping: false,
            joining,
            dropped: 0,
            lossless: lossless.clone(),
        });
        Subscription {
            registry: self.clone(),
            stream: stream.clone(),
            id,
            rx,
            doorbell,
            lossless,
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

    /// Every stream with a publisher or a waiting player, sorted by key.
    pub fn stream_stats(&self) -> Vec<StreamStats> {
        let streams: Vec<_> = self.streams.lock().values().cloned().collect();
        let now = Instant::now();
        let mut stats: Vec<_> = streams.iter().map(|s| s.stats(now)).collect();
        stats.sort_by(|a, b| (&a.key.app, &a.key.name).cmp(&(&b.key.app, &b.key.name)));
        stats
    }

    pub fn stream_stats_for(&self, key: &StreamKey) -> Option<StreamStats> {
        let stream = self.streams.lock().get(key).cloned()?;
        Some(stream.stats(Instant::now()))
    }

    pub fn totals(&self) -> RegistryTotals {
        self.totals.snapshot()
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
        let totals = &self.registry.totals;
        let len = frame.payload.len() as u64;
        totals.bytes_in.fetch_add(len, Ordering::Relaxed);
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) != Some(self.id) {
            // The registry was closed under us: the players have had their ending.
            return;
        }
        if let Some(ingress) = &mut state.ingress {
            ingress.bytes += len;
            ingress.rate.record(Instant::now(), len);
            ingress.codecs.observe(&frame);
        }
        state.cache.push(&frame);
        let resume_here = fanout::is_resume_point(&frame, state.cache.has_video());
        let key = &self.stream.key;
        state
            .players
            .retain_mut(|p| p.offer(&frame, resume_here, cap, key, &totals.dropped_frames));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) == Some(self.id) {
            state.publisher = None;
            state.ingress = None;
            state.cache.clear();
            state.players.retain(|p| p.send(PlayerItem::PublishStop));
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
    rx: Receiver<Queued>,
    doorbell: Arc<Doorbell>,
    /// The bound of a lossless subscription.
    lossless: Option<Arc<Lossless>>,
}

/// How far a lossless subscriber is behind, for its owner to report.
#[derive(Debug, Clone)]
pub struct Backlog(Arc<Lossless>);

impl Backlog {
    /// Bytes waiting in its queue now (payloads plus a small charge per frame).
    pub fn bytes(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// The most that ever waited.
    pub fn peak(&self) -> u64 {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Its bound.
    pub fn limit(&self) -> u64 {
        self.0.max_bytes
    }

    /// Why it was dropped, once it was.
    pub fn dropped(&self) -> Option<String> {
        self.0.dropped.lock().clone()
    }
}

/// What [`Subscription::next`] found.
#[derive(Debug)]
pub enum Next {
    Item(PlayerItem),
    /// Nothing before the deadline.
    Idle,
    /// The subscription ended: a lossless subscriber dropped for falling
    /// behind (the reason), or the registry gone (`None`).
    Ended(Option<String>),
}

impl Subscription {
    /// How far a lossless subscription is behind; `None` for a player.
    pub fn backlog(&self) -> Option<Backlog> {
        self.lossless.clone().map(Backlog)
    }

    /// The next item of the queue, waiting until `deadline` at most. A lossless
    /// subscriber reads its queue this way, so the bound knows what was taken.
    pub fn next(&self, deadline: Instant) -> Next {
        match self.rx.recv_deadline(deadline) {
            Ok(Queued { item, .. }) => {
                if let (Some(bound), PlayerItem::Frame(frame)) = (&self.lossless, &item) {
                    bound
                        .queued
                        .fetch_sub(Lossless::cost(frame), Ordering::AcqRel);
                }
                Next::Item(item)
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Next::Idle,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Next::Ended(
                self.lossless
                    .as_ref()
                    .and_then(|b| b.dropped.lock().clone()),
            ),
        }
    }

    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// The queue to read; cloned so an HTTP player's writing thread can own it while
    /// this guard stays with the connection.
    pub fn receiver(&self) -> Receiver<Queued> {
        self.rx.clone()
    }

    /// The queue to read, for a connection that keeps this guard where it reads.
    pub fn queue(&self) -> &Receiver<Queued> {
        &self.rx
    }

    /// Rung after each item the registry queues; see [`Doorbell`].
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Whether a publisher is on the key right now.
    pub fn is_live(&self) -> bool {
        self.stream.state.lock().publisher.is_some()
    }

    /// What is known of the stream's codecs now (empty while nobody publishes).
    pub fn codecs(&self) -> Codecs {
        let state = self.stream.state.lock();
        state
            .ingress
            .as_ref()
            .map(|i| i.codecs.codecs())
            .unwrap_or_default()
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
    use crate::media::frame::{FrameKind, FrameRole};
    use std::time::Duration;

    #[test]
    fn stats_report_publisher_players_and_codecs() {
        let reg = registry(1);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let http = PlayerInfo::new(peer(2), PlayerProtocol::HttpFlv);
        http.bytes_out.store(1234, Ordering::Relaxed);
        let _sub = reg.play_if_live(&key("a"), http).expect("live");
        assert!(reg
            .play_if_live(&key("b"), PlayerInfo::new(peer(3), PlayerProtocol::WsFlv))
            .is_none());
        publisher.push(Frame::media(FrameKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]));
        publisher.push(video(0, true));
        publisher.push(video(40, false));
        publisher.push(video(80, false));
        let stats = reg.stream_stats();
        assert_eq!(stats.len(), 1, "no entry for the refused key b");
        let s = &stats[0];
        let p = s.publisher.as_ref().unwrap();
        assert_eq!((p.peer, p.bytes_in), (peer(1), 4 + 3 * 5));
        assert_eq!(s.codecs.audio.as_ref().unwrap().sample_rate, Some(44100));
        assert_eq!(s.players.len(), 1);
        let pl = &s.players[0];
        assert_eq!(
            (pl.peer, pl.protocol, pl.bytes_out, pl.dropped_frames),
            (peer(2), PlayerProtocol::HttpFlv, 1234, 3),
            "the queue of 1 is full after the sequence header: all three frames dropped"
        );
        let totals = reg.totals();
        assert_eq!(totals.publishes, 1);
        assert_eq!(totals.plays(PlayerProtocol::HttpFlv), 1);
        assert_eq!(totals.plays(PlayerProtocol::WsFlv), 0);
        assert_eq!(totals.dropped_frames, 3);
        assert_eq!(totals.bytes_in, 19);
        drop(publisher);
        let s = reg.stream_stats_for(&key("a")).unwrap();
        assert_eq!((s.publisher, s.codecs), (None, Codecs::default()));
    }

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

    #[test]
    fn a_frame_pushed_while_the_player_parks_wakes_it() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let (subscribed_tx, subscribed) = crossbeam_channel::bounded(1);
        let player_reg = reg.clone();
        // A park far longer than the test: only a ring ends it early.
        let player = std::thread::spawn(move || {
            let sub = player_reg.play(&key("a"), peer(2));
            subscribed_tx.send(()).unwrap();
            let started = Instant::now();
            let deadline = started + Duration::from_secs(30);
            let found = wait_for(std::iter::once(sub.doorbell()), deadline, || {
                sub.queue().try_recv().ok()
            });
            (found.map(|q| q.item), started.elapsed())
        });
        subscribed.recv().unwrap();
        publisher.push(video(0, true));
        let (item, took) = player.join().unwrap();
        assert!(matches!(item, Some(PlayerItem::Frame(_))));
        // A lost wake-up would show as the whole 30 s park.
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
    }

    fn drain(sub: &Subscription) -> Vec<PlayerItem> {
        sub.rx.try_iter().map(|q| q.item).collect()
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
    fn second_publisher_is_refused_and_first_unaffected() {
        let reg = registry(100);
        let first = reg.publish(&key("a"), peer(1)).unwrap();
        let err = reg.publish(&key("a"), peer(2)).err().unwrap();
        // What the refused publisher is told names no other client; the holder
        // is there for the operator's log.
        assert_eq!(err.to_string(), "stream live/a is already being published");
        assert!(matches!(err, PublishError::AlreadyPublishing { by, .. } if by == peer(1)));
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
    fn without_a_cached_gop_a_late_joiner_starts_at_the_next_keyframe() {
        let reg = Registry::new(RegistryConfig {
            gop: GopLimits {
                enabled: false,
                max_frames: 1000,
                max_bytes: 1 << 20,
            },
            player_queue_frames: 100,
        });
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        publisher.push(Frame::media(FrameKind::Video, 0, vec![0x17, 0, 1]));
        publisher.push(video(0, true));
        publisher.push(video(40, false));
        let sub = reg.play(&key("a"), peer(2));
        let burst = drain(&sub);
        assert_eq!(frame_timestamps(&burst), [0], "only the sequence header");
        publisher.push(Frame::media(FrameKind::Audio, 50, vec![0xaf, 1, 0x21]));
        publisher.push(video(80, false));
        assert!(drain(&sub).is_empty(), "nothing a decoder could start on");
        publisher.push(video(120, true));
        publisher.push(Frame::media(FrameKind::Audio, 130, vec![0xaf, 1, 0x21]));
        assert_eq!(frame_timestamps(&drain(&sub)), [120, 130]);
        assert_eq!(sub.dropped_frames(), 0, "waiting to join is not dropping");
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
    fn a_lossless_subscriber_gets_every_frame_up_to_its_bound_then_is_dropped() {
        let reg = registry(3);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let player = reg.play(&key("a"), peer(2));
        // Room for 4 frames of 100 bytes (each weighs 164).
        let recorder = reg.subscribe_lossless(&key("a"), peer(9), "test".into(), 4 * 164);
        assert_eq!(
            reg.stream_info(&key("a")).unwrap().players,
            1,
            "not a player"
        );
        let frame = |ts: u32| Frame::media(FrameKind::Video, ts, vec![0x27; 100]);
        let now = Instant::now;
        for ts in 0..4 {
            publisher.push(frame(ts));
        }
        // More than the player queue holds, none skipped.
        let mut seen = Vec::new();
        for _ in 0..2 {
            match recorder.next(now()) {
                Next::Item(PlayerItem::Frame(f)) => seen.push(f.timestamp),
                other => panic!("{other:?}"),
            }
        }
        // Two taken off: two more fit, the third does not.
        for ts in 4..7 {
            publisher.push(frame(ts));
        }
        while let Next::Item(PlayerItem::Frame(f)) = recorder.next(now()) {
            seen.push(f.timestamp);
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        let backlog = recorder.backlog().unwrap();
        assert_eq!((backlog.bytes(), backlog.peak()), (0, 4 * 164));
        assert!(backlog.dropped().is_some());
        match recorder.next(now()) {
            Next::Ended(Some(why)) => assert!(why.contains("more than 656 bytes behind"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The publisher and the player carry on.
        drain(&player);
        publisher.push(Frame::media(FrameKind::Video, 7, vec![0x17, 1]));
        assert!(frame_timestamps(&drain(&player)).contains(&7));
        let stats = reg.stream_stats_for(&key("a")).unwrap();
        assert_eq!(stats.players.len(), 1);
        assert_eq!(reg.totals().plays(PlayerProtocol::Rtmp), 1);
    }

    #[test]
    fn a_lossless_subscriber_hears_the_publisher_stop() {
        let reg = registry(3);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let recorder = reg.subscribe_lossless(&key("a"), peer(9), "test".into(), 1 << 20);
        publisher.push(video(0, true));
        drop(publisher);
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            recorder.next(deadline),
            Next::Item(PlayerItem::Frame(_))
        ));
        assert!(matches!(
            recorder.next(deadline),
            Next::Item(PlayerItem::PublishStop)
        ));
        assert!(matches!(recorder.next(Instant::now()), Next::Idle));
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
    fn close_ends_live_and_waiting_players_and_refuses_what_comes_after() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let live = reg.play(&key("a"), peer(2));
        let waiting = reg.play(&key("b"), peer(3));
        publisher.push(video(0, true));
        reg.close();
        publisher.push(video(40, false));
        drop(publisher);
        let items = drain(&live);
        assert_eq!(frame_timestamps(&items), [0], "nothing after the close");
        assert!(matches!(items.last(), Some(PlayerItem::PublishStop)));
        assert_eq!(items.len(), 2, "exactly one stop: {items:?}");
        assert!(matches!(drain(&waiting)[..], [PlayerItem::PublishStop]));
        assert_eq!(
            reg.publish(&key("c"), peer(4)).err(),
            Some(PublishError::Closed)
        );
        let late = reg.play(&key("c"), peer(5));
        assert!(matches!(drain(&late)[..], [PlayerItem::PublishStop]));
    }

    #[test]
    fn disconnected_players_are_pruned() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let sub = reg.play(&key("a"), peer(2));
        // Simulate the queue's reader going away while the guard lingers.
        let Subscription { rx, .. } = &sub;
        drop(rx.clone());
        publisher.push(video(0, true));
        assert_eq!(reg.stream_info(&key("a")).unwrap().players, 1);
    }
}
