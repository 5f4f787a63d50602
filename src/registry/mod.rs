//! The live streams of the server, keyed by app and stream name. A publisher owns a
//! key while it is connected; players subscribe to a key whether or not anyone is
//! publishing on it yet. Frames fan out to players through per-player queues whose
//! length the publisher checks before sending: a player that falls behind skips to
//! the next keyframe instead of making the publisher wait or memory grow. A
//! lossless subscriber (a recorder, a relay) gets every frame instead, up to a bound
//! on its backlog, past which it is dropped and told why (`fanout::Bound`).
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
mod tap;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, TryRecvError};
use log::debug;
use parking_lot::Mutex;

use crate::media::codec::Codecs;
use crate::media::frame::Frame;
use crate::media::gop::{GopCache, GopLimits};
use crate::stream_key::StreamKey;
use fanout::{Clock, Lossless, PlayerSlot, Queued};
use stats::{Ingress, Seat, Totals};

pub use doorbell::{wait_for, Doorbell};
pub use fanout::{Bound, Overflow, PlayerItem, FRAME_OVERHEAD};
pub use stats::{
    Audience, PlayerInfo, PlayerProtocol, PlayerStats, PublisherStats, RegistryTotals, StreamInfo,
    StreamStats,
};
use tap::ViewerSlot;
pub use tap::{FrameTap, PublishTap, Viewer};

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
    viewers: Vec<ViewerSlot>,
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
    /// Players subscribed now, every stream together.
    audience: Audience,
    /// Set by `close`: no more publishing; every subscription ends at once.
    closed: AtomicBool,
    clock: Clock,
    tap: OnceLock<Arc<dyn PublishTap>>,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Arc<Registry> {
        Arc::new(Registry {
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            totals: Totals::default(),
            audience: Audience::default(),
            closed: AtomicBool::new(false),
            clock: Clock(Instant::now()),
            tap: OnceLock::new(),
        })
    }

    /// Sets what taps every publish from now on (once; later calls are ignored).
    pub fn set_tap(&self, tap: Arc<dyn PublishTap>) {
        let _ = self.tap.set(tap);
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
        let now = self.clock.now();
        for stream in streams.values() {
            let mut state = stream.state.lock();
            state.publisher = None;
            state.ingress = None;
            state.cache.clear();
            state
                .players
                .retain(|p| p.send(PlayerItem::PublishStop, now));
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
                        viewers: Vec::new(),
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
        let now = self.clock.now();
        state.players.retain_mut(|p| {
            p.skipping = false;
            p.joining = false;
            p.send(PlayerItem::PublishStart, now)
        });
        drop(state);
        drop(streams);
        let tap = self.tap.get().and_then(|t| t.start(key)).map(Mutex::new);
        Ok(Publisher {
            registry: self.clone(),
            stream,
            id,
            tap,
            wake: Mutex::new(Vec::new()),
        })
    }

    /// Adds a viewer: a player that is served without a queue (HLS), listed in
    /// the stats and counted in the plays.
    pub fn watch(self: &Arc<Self>, key: &StreamKey, player: PlayerInfo) -> Viewer {
        let stream = self.entry(&mut self.streams.lock(), key);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.totals.add_play(player.protocol);
        stream.state.lock().viewers.push(ViewerSlot {
            id,
            info: player,
            connected: Instant::now(),
        });
        Viewer {
            registry: self.clone(),
            stream,
            id,
        }
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
        let slot = self.subscribe(key, &mut state, player, None);
        drop(state);
        Subscription::new(self, stream, slot)
    }

    /// Subscribes something that must not lose a frame (a recorder, a relay): it
    /// gets every frame, never skips, until its backlog passes `bound` (bytes
    /// waiting, and how long the oldest has waited); then it is dropped: one error
    /// line names it by `label`, its queue ends with [`PlayerItem::Dropped`] saying
    /// why, and [`Subscription::next`] returns that reason. It is not a player:
    /// the stats and the play counts leave it out. Read it with
    /// [`Subscription::next`] or [`Subscription::try_next`], which keep the count
    /// of what waits ([`Subscription::backlog`]).
    pub fn subscribe_lossless(
        self: &Arc<Self>,
        key: &StreamKey,
        peer: SocketAddr,
        label: String,
        bound: impl Into<Bound>,
    ) -> Subscription {
        let stream = self.entry(&mut self.streams.lock(), key);
        let mut state = stream.state.lock();
        let lossless = Arc::new(Lossless::new(label, bound.into()));
        let info = PlayerInfo::new(peer, PlayerProtocol::Rtmp);
        let slot = self.subscribe(key, &mut state, info, Some(lossless));
        drop(state);
        Subscription::new(self, stream, slot)
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
        let slot = self.subscribe(key, &mut state, player, None);
        drop(state);
        Some(Subscription::new(self, stream, slot))
    }

    /// Adds the subscriber's slot (with the burst queued if live); the stream is
    /// locked. The burst is part of a lossless subscriber's backlog (its bound
    /// should hold a GOP, or the subscriber is dropped at its first frame).
    fn subscribe(
        &self,
        key: &StreamKey,
        state: &mut StreamState,
        player: PlayerInfo,
        lossless: Option<Arc<Lossless>>,
    ) -> NewSlot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let doorbell = Arc::new(Doorbell::new());
        let (tx, rx) = unbounded();
        let now = self.clock.now();
        let mut slot = PlayerSlot {
            id,
            info: player,
            connected: Instant::now(),
            tx,
            doorbell: doorbell.clone(),
            skipping: false,
            joining: false,
            dropped: 0,
            lossless: lossless.clone(),
            empty_at: now,
        };
        let mut alive = true;
        if state.publisher.is_some() {
            let burst = state.cache.burst();
            slot.joining = state.cache.has_video() && !burst.iter().any(|f| f.is_keyframe());
            let dropped = &self.totals.dropped_frames;
            let cap = usize::MAX;
            let mut wake = Vec::new();
            for frame in burst {
                alive = alive && slot.offer(&frame, false, cap, key, dropped, now, &mut wake);
            }
            // Nobody waits on a subscription being made; should someone (a
            // subscription read elsewhere), it is woken.
            doorbell::wake_all(&mut wake);
        }
        if self.closed.load(Ordering::SeqCst) {
            slot.send(PlayerItem::PublishStop, now);
        }
        let seat = match lossless {
            None => {
                self.totals.add_play(slot.info.protocol);
                Some(self.audience.join())
            }
            Some(_) => None,
        };
        if alive {
            state.players.push(slot);
        } else {
            debug!("{}: dropped while joining {key}", slot.info.peer);
        }
        NewSlot {
            id,
            rx,
            doorbell,
            lossless,
            seat,
        }
    }

    /// Drops the map entry once nobody publishes or plays on it.
    fn release(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock();
        let state = stream.state.lock();
        if state.publisher.is_none() && state.players.is_empty() && state.viewers.is_empty() {
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

    /// The players subscribed now, every stream together (lossless subscribers
    /// are not players).
    pub fn audience(&self) -> Audience {
        self.audience.clone()
    }
}

/// The right to push frames on a key. Dropping it unpublishes, also on panic.
pub struct Publisher {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    id: u64,
    /// Behind a lock only so `push` can take `&self`; only this publisher's
    /// thread ever takes it.
    tap: Option<Mutex<Box<dyn FrameTap>>>,
    /// The subscribers' threads a push wakes once it has released the stream;
    /// kept to reuse its room (only the publisher's thread takes it).
    wake: Mutex<Vec<Thread>>,
}

impl Publisher {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// A handle on this publish for other threads (relays): it subscribes only
    /// while this publisher holds the key, never to the next one's stream.
    pub fn session(&self) -> PublishSession {
        PublishSession {
            registry: self.registry.clone(),
            stream: self.stream.clone(),
            id: self.id,
        }
    }

    /// Caches the frame for fast start and hands it to every player that keeps up,
    /// then wakes those parked for it, after releasing the stream's lock: a thread
    /// unparked may preempt the publisher, which should not hold the lock then.
    pub fn push(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let registry = &self.registry;
        let cap = registry.config.player_queue_frames;
        let totals = &registry.totals;
        let len = frame.payload.len() as u64;
        totals.bytes_in.fetch_add(len, Ordering::Relaxed);
        let now = Instant::now();
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) != Some(self.id) {
            // The registry was closed under us: the players have had their ending.
            return;
        }
        if let Some(ingress) = &mut state.ingress {
            ingress.bytes += len;
            ingress.rate.record(now, len);
            ingress.codecs.observe(&frame);
        }
        state.cache.push(&frame);
        let resume_here = fanout::is_resume_point(&frame, state.cache.has_video());
        let key = &self.stream.key;
        let dropped = &totals.dropped_frames;
        let now = registry.clock.at(now);
        let mut wake = self.wake.lock();
        state
            .players
            .retain_mut(|p| p.offer(&frame, resume_here, cap, key, dropped, now, &mut wake));
        drop(state);
        doorbell::wake_all(&mut wake);
        drop(wake);
        if let Some(tap) = &self.tap {
            tap.lock().frame(&frame);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) == Some(self.id) {
            state.publisher = None;
            state.ingress = None;
            state.cache.clear();
            let now = self.registry.clock.now();
            state
                .players
                .retain(|p| p.send(PlayerItem::PublishStop, now));
        }
        drop(state);
        if let Some(tap) = &self.tap {
            tap.lock().end();
        }
        self.registry.release(&self.stream);
    }
}

/// What `subscribe` made, for the [`Subscription`] to hold.
/// One publisher's time on a key, as other threads see it; see
/// [`Publisher::session`].
#[derive(Clone)]
pub struct PublishSession {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    id: u64,
}

impl PublishSession {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// Whether the publisher still holds the key.
    pub fn is_on(&self) -> bool {
        self.stream.state.lock().publisher.map(|(id, _)| id) == Some(self.id)
    }

    /// [`Registry::subscribe_lossless`] while this publisher still holds the
    /// key; `None` once it has gone.
    pub fn subscribe_lossless(
        &self,
        peer: SocketAddr,
        label: String,
        bound: impl Into<Bound>,
    ) -> Option<Subscription> {
        let mut state = self.stream.state.lock();
        if state.publisher.map(|(id, _)| id) != Some(self.id) {
            return None;
        }
        let lossless = Arc::new(Lossless::new(label, bound.into()));
        let info = PlayerInfo::new(peer, PlayerProtocol::Rtmp);
        let slot = self
            .registry
            .subscribe(&self.stream.key, &mut state, info, Some(lossless));
        drop(state);
        Some(Subscription::new(&self.registry, self.stream.clone(), slot))
    }
}

struct NewSlot {
    id: u64,
    rx: Receiver<Queued>,
    doorbell: Arc<Doorbell>,
    lossless: Option<Arc<Lossless>>,
    seat: Option<Seat>,
}

/// A subscriber's place on a key: its queue, read by one thread. Dropping it
/// unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    id: u64,
    rx: Receiver<Queued>,
    doorbell: Arc<Doorbell>,
    /// The bound of a lossless subscription, which taking an item shrinks.
    lossless: Option<Arc<Lossless>>,
    /// A player's place in the server's audience; none for a lossless subscriber.
    _seat: Option<Seat>,
}

/// How far a lossless subscriber is behind, for its owner to report.
#[derive(Debug, Clone)]
pub struct Backlog(Arc<Lossless>);

impl Backlog {
    /// Bytes waiting in its queue now (payloads plus [`FRAME_OVERHEAD`] a frame).
    pub fn bytes(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// The most that ever waited.
    pub fn peak(&self) -> u64 {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Its bound in bytes.
    pub fn limit(&self) -> u64 {
        self.0.bound.max_bytes
    }

    /// Why it was dropped, once it was.
    pub fn dropped(&self) -> Option<String> {
        self.0.dropped.lock().as_ref().map(|why| why.to_string())
    }
}

/// What [`Subscription::next`] found.
#[derive(Debug)]
pub enum Next {
    Item(PlayerItem),
    /// Nothing before the deadline.
    Idle,
    /// The subscription ended: a lossless subscriber dropped for falling behind
    /// (the reason), or the registry gone (`None`).
    Ended(Option<String>),
}

impl Subscription {
    fn new(registry: &Arc<Registry>, stream: Arc<Stream>, slot: NewSlot) -> Subscription {
        Subscription {
            registry: registry.clone(),
            stream,
            id: slot.id,
            rx: slot.rx,
            doorbell: slot.doorbell,
            lossless: slot.lossless,
            _seat: slot.seat,
        }
    }

    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// How far a lossless subscription is behind; `None` for a player.
    pub fn backlog(&self) -> Option<Backlog> {
        self.lossless.clone().map(Backlog)
    }

    /// The next item queued, if there is one; never waits. To wait for one, park
    /// on the [`Subscription::doorbell`] ([`wait_for`], as the player engine does
    /// for several at once) or use [`Subscription::next`].
    pub fn try_next(&self) -> Option<PlayerItem> {
        self.take().ok()
    }

    /// The next item queued, waiting until `deadline` at most (parked on the
    /// doorbell, on whichever thread reads the subscription).
    pub fn next(&self, deadline: Instant) -> Next {
        let bell = std::iter::once(self.doorbell());
        let found = wait_for(bell, deadline, || match self.take() {
            Ok(item) => Some(Some(item)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        });
        match found {
            Some(Some(PlayerItem::Dropped(why))) => Next::Ended(Some(why.to_string())),
            Some(Some(item)) => Next::Item(item),
            None => Next::Idle,
            Some(None) => Next::Ended(self.backlog().and_then(|b| b.dropped())),
        }
    }

    /// Takes the next item off the queue, counting it off a lossless bound.
    fn take(&self) -> Result<PlayerItem, TryRecvError> {
        let Queued {
            item, queued_at, ..
        } = self.rx.try_recv()?;
        if let Some(lossless) = &self.lossless {
            lossless.took(&item, queued_at);
        }
        Ok(item)
    }

    /// Rung after each item the registry queues; see [`Doorbell`].
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Whether the registry has been closed (the server is stopping): a
    /// `PublishStop` is then the server's, not the publisher's.
    pub fn is_closed(&self) -> bool {
        self.registry.closed.load(Ordering::SeqCst)
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

    use crate::media::frame::testing::video;

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
            (sub.next(deadline), started.elapsed())
        });
        subscribed.recv().unwrap();
        publisher.push(video(0, true));
        let (item, took) = player.join().unwrap();
        assert!(matches!(item, Next::Item(PlayerItem::Frame(_))));
        // A lost wake-up would show as the whole 30 s park.
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
    }

    /// Takes everything queued, as the subscriber would.
    fn drain(sub: &Subscription) -> Vec<PlayerItem> {
        std::iter::from_fn(|| sub.try_next()).collect()
    }

    fn lossless(reg: &Arc<Registry>, name: &str, bound: impl Into<Bound>) -> Subscription {
        reg.subscribe_lossless(&key(name), peer(9), "test".into(), bound)
    }

    const ROOMY: Bound = Bound {
        max_bytes: 1 << 20,
        max_lag: Some(Duration::from_secs(60)),
    };

    /// What a `video()` frame weighs against a bound.
    const VIDEO_COST: u64 = 5 + FRAME_OVERHEAD;

    #[test]
    fn a_lossless_subscriber_gets_every_frame_where_a_player_skips() {
        let reg = registry(3);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let player = reg.play(&key("a"), peer(2));
        let recorder = lossless(&reg, "a", ROOMY);
        for ts in 0..10u32 {
            publisher.push(video(ts, ts == 0 || ts == 6));
        }
        // The player skipped from 3 on (its queue still full at the keyframe 6).
        assert_eq!(frame_timestamps(&drain(&player)), [0, 1, 2]);
        assert_eq!(
            frame_timestamps(&drain(&recorder)),
            (0..10).collect::<Vec<_>>()
        );
        let backlog = recorder.backlog().unwrap();
        assert_eq!((backlog.bytes(), backlog.peak()), (0, 10 * VIDEO_COST));
        // It is not a player: not in the stats, not a play.
        assert_eq!(reg.stream_info(&key("a")).unwrap().players, 1);
        assert_eq!(reg.stream_stats_for(&key("a")).unwrap().players.len(), 1);
        assert_eq!(reg.totals().plays(PlayerProtocol::Rtmp), 1);
    }

    #[test]
    fn a_lossless_subscriber_past_its_byte_bound_is_dropped_and_told_why() {
        let reg = registry(100);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let recorder = lossless(&reg, "a", 3 * VIDEO_COST);
        let player = reg.play(&key("a"), peer(2));
        for ts in 0..2u32 {
            publisher.push(video(ts, ts == 0));
        }
        // Taken off, they make room again: two more fit, then a third, not a fourth.
        assert_eq!(frame_timestamps(&drain(&recorder)), [0, 1]);
        for ts in 2..6u32 {
            publisher.push(video(ts, false));
        }
        let items = drain(&recorder);
        assert_eq!(frame_timestamps(&items), [2, 3, 4]);
        let Some(PlayerItem::Dropped(why)) = items.last() else {
            panic!("no reason at the end: {items:?}");
        };
        assert_eq!(
            (why.queued_bytes, why.frames, why.bound),
            (4 * VIDEO_COST, 3, Bound::from(3 * VIDEO_COST))
        );
        assert_eq!(
            why.to_string(),
            "it fell more than 207 bytes behind the stream (3 frames waiting)"
        );
        assert_eq!(items.len(), 4, "nothing after the reason: {items:?}");
        let backlog = recorder.backlog().unwrap();
        assert_eq!(backlog.dropped(), Some(why.to_string()));
        assert_eq!((backlog.bytes(), backlog.peak()), (0, 3 * VIDEO_COST));
        match recorder.next(Instant::now()) {
            Next::Ended(Some(reason)) => assert_eq!(reason, why.to_string()),
            other => panic!("{other:?}"),
        }
        // The publisher and the player carry on.
        publisher.push(video(6, false));
        assert_eq!(frame_timestamps(&drain(&player)).len(), 7);
    }

    #[test]
    fn a_frame_alone_in_a_lossless_queue_always_goes() {
        let reg = registry(100);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let recorder = lossless(&reg, "a", 10);
        publisher.push(video(0, true));
        assert!(matches!(
            recorder.next(Instant::now()),
            Next::Item(PlayerItem::Frame(_))
        ));
        publisher.push(video(40, false));
        publisher.push(video(80, false));
        let items = drain(&recorder);
        assert_eq!(frame_timestamps(&items), [40]);
        assert!(matches!(items.last(), Some(PlayerItem::Dropped(_))));
    }

    #[test]
    fn a_lossless_subscriber_hears_the_publisher_stop() {
        let reg = registry(3);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let recorder = lossless(&reg, "a", ROOMY);
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
    fn a_lossless_subscriber_that_stops_taking_is_dropped_past_its_lag_bound() {
        let lag = Duration::from_millis(100);
        let bound = Bound {
            max_lag: Some(lag),
            ..ROOMY
        };
        let reg = registry(100);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let keeps_up = lossless(&reg, "a", bound);
        let stalls = lossless(&reg, "a", bound);
        publisher.push(video(0, true));
        assert_eq!(frame_timestamps(&drain(&keeps_up)), [0]);
        // A quiet stream: the queue of the one that keeps up is empty, so the wait
        // is no lag; the other's frame has waited all along.
        std::thread::sleep(lag * 2);
        publisher.push(video(40, false));
        assert_eq!(frame_timestamps(&drain(&keeps_up)), [40]);
        let items = drain(&stalls);
        assert_eq!(frame_timestamps(&items), [0]);
        match items.last() {
            Some(PlayerItem::Dropped(why)) => {
                assert!(why.lag >= lag * 2, "{why:?}");
                let text = why.to_string();
                assert!(
                    text.starts_with("it fell more than 0.1 s behind the stream (1 frames"),
                    "{text}"
                );
            }
            other => panic!("expected a drop, got {other:?}"),
        }
        // It took a frame long ago and its queue has been empty since: a new
        // frame, and one right behind it, have waited no time at all.
        std::thread::sleep(lag * 2);
        publisher.push(video(80, false));
        publisher.push(video(120, false));
        assert_eq!(frame_timestamps(&drain(&keeps_up)), [80, 120]);
    }

    #[test]
    fn a_subscription_read_on_another_thread_wakes_that_thread() {
        let reg = registry(10);
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        // Made here (as a publisher's thread starts a recorder), read there: the
        // ring must wake the reader, not this thread.
        let sub = lossless(&reg, "a", ROOMY);
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let reader = std::thread::spawn(move || {
            ready_tx.send(()).unwrap();
            let started = Instant::now();
            // A park far longer than the test: only a ring ends it early.
            let item = sub.next(started + Duration::from_secs(30));
            (item, started.elapsed())
        });
        ready.recv().unwrap();
        publisher.push(video(0, true));
        let (item, took) = reader.join().unwrap();
        assert!(matches!(item, Next::Item(PlayerItem::Frame(_))));
        // A ring that woke the wrong thread would show as the whole 30 s park.
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
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
    fn the_audience_counts_players_of_every_stream_while_they_are_subscribed() {
        let reg = registry(10);
        let audience = reg.audience();
        let publisher = reg.publish(&key("a"), peer(1)).unwrap();
        let a = reg.play(&key("a"), peer(2));
        let waiting = reg.play(&key("b"), peer(3));
        let http = reg.play_if_live(&key("a"), PlayerInfo::new(peer(4), PlayerProtocol::HttpFlv));
        assert!(reg
            .play_if_live(&key("c"), PlayerInfo::new(peer(5), PlayerProtocol::WsFlv))
            .is_none());
        // A recorder is no player.
        let recorder = lossless(&reg, "a", ROOMY);
        assert_eq!(audience.players(), 3);
        drop((a, http));
        assert_eq!(audience.players(), 1);
        drop((waiting, recorder, publisher));
        assert_eq!(audience.players(), 0);
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
    fn a_publish_session_never_subscribes_to_the_next_publisher() {
        let reg = registry(10);
        let first = reg.publish(&key("a"), peer(1)).unwrap();
        let session = first.session();
        assert!(session.is_on());
        let relay = session.subscribe_lossless(peer(3), "push".into(), 1 << 20);
        assert!(relay.is_some());
        drop(first);
        let _second = reg.publish(&key("a"), peer(2)).unwrap();
        assert!(!session.is_on());
        assert!(session
            .subscribe_lossless(peer(3), "push".into(), 1 << 20)
            .is_none());
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
                PlayerItem::Dropped(_) => "dropped",
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
