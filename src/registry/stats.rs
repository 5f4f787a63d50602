//! What the stats API and the metrics report, kept by the registry: who plays
//! with which protocol, the current publisher's bytes, bitrate and codecs,
//! server-wide totals, and the snapshots of them handed out.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Stream;
use crate::media::codec::{CodecTracker, Codecs};
use crate::stream_key::StreamKey;

/// How a player is served; reported by the stats API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlayerProtocol {
    Rtmp,
    HttpFlv,
    WsFlv,
    /// An HLS session (playlist and segment requests; see `crate::hls`).
    Hls,
}

impl PlayerProtocol {
    pub const ALL: [PlayerProtocol; 4] = [
        PlayerProtocol::Rtmp,
        PlayerProtocol::HttpFlv,
        PlayerProtocol::WsFlv,
        PlayerProtocol::Hls,
    ];

    /// How many protocols there are: the size of per-protocol counters.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in logs, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PlayerProtocol::Rtmp => "rtmp",
            PlayerProtocol::HttpFlv => "http-flv",
            PlayerProtocol::WsFlv => "ws-flv",
            PlayerProtocol::Hls => "hls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PlayerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is subscribing, for the stats. `bytes_out` is the counter the player's writer
/// thread adds to after every write; the registry only reads it.
#[derive(Debug, Clone)]
pub struct PlayerInfo {
    pub peer: SocketAddr,
    pub protocol: PlayerProtocol,
    pub bytes_out: Arc<AtomicU64>,
}

impl PlayerInfo {
    /// A player with a fresh bytes-out counter.
    pub fn new(peer: SocketAddr, protocol: PlayerProtocol) -> PlayerInfo {
        PlayerInfo {
            peer,
            protocol,
            bytes_out: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// How many players the server has now, every stream together: what the adaptive
/// merge window grows with (`crate::player::MergeWindow`). Each player's
/// subscription holds a [`Seat`] in it; lossless subscribers (recorders) are no
/// players and hold none.
#[derive(Debug, Clone, Default)]
pub struct Audience(Arc<AtomicUsize>);

impl Audience {
    /// Players now.
    pub fn players(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// A place in the audience, given up when dropped.
    pub fn join(&self) -> Seat {
        self.0.fetch_add(1, Ordering::Relaxed);
        Seat(self.0.clone())
    }
}

/// One player's place in the [`Audience`].
#[derive(Debug)]
pub struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the current publisher has sent; reset when a publisher takes the key.
pub(super) struct Ingress {
    pub since: Instant,
    pub bytes: u64,
    pub rate: RateMeter,
    pub codecs: CodecTracker,
}

impl Ingress {
    pub fn new(now: Instant) -> Ingress {
        Ingress {
            since: now,
            bytes: 0,
            rate: RateMeter::new(now),
            codecs: CodecTracker::new(),
        }
    }
}

/// Server-wide event counters, only ever incremented.
#[derive(Default)]
pub(super) struct Totals {
    pub publishes: AtomicU64,
    pub publishes_refused: AtomicU64,
    pub plays: [AtomicU64; PlayerProtocol::COUNT],
    pub dropped_frames: AtomicU64,
    pub bytes_in: AtomicU64,
}

impl Totals {
    pub fn add_play(&self, protocol: PlayerProtocol) {
        self.plays[protocol.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RegistryTotals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RegistryTotals {
            publishes: load(&self.publishes),
            publishes_refused: load(&self.publishes_refused),
            plays: std::array::from_fn(|i| load(&self.plays[i])),
            dropped_frames: load(&self.dropped_frames),
            bytes_in: load(&self.bytes_in),
        }
    }
}

/// A snapshot of the registry's server-wide counters (since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryTotals {
    /// Publishers accepted.
    pub publishes: u64,
    /// Publishers refused because the key was taken.
    pub publishes_refused: u64,
    /// Players subscribed, by protocol (index with [`RegistryTotals::plays`]).
    plays: [u64; PlayerProtocol::COUNT],
    /// Frames players skipped because they fell behind.
    pub dropped_frames: u64,
    /// Payload bytes of every frame published.
    pub bytes_in: u64,
}

impl RegistryTotals {
    pub fn plays(&self, protocol: PlayerProtocol) -> u64 {
        self.plays[protocol.index()]
    }
}

/// One stream, as the stats API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    pub key: StreamKey,
    pub publisher: Option<PublisherStats>,
    pub codecs: Codecs,
    pub players: Vec<PlayerStats>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublisherStats {
    pub peer: SocketAddr,
    /// Since the publisher took the key.
    pub uptime: Duration,
    /// Payload bytes of the frames it sent (metadata, audio, video).
    pub bytes_in: u64,
    /// Over the last few seconds, in bits per second.
    pub bitrate: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayerStats {
    pub peer: SocketAddr,
    pub protocol: PlayerProtocol,
    pub connected: Duration,
    pub dropped_frames: u64,
    pub bytes_out: u64,
}

/// Per-stream numbers for logs and, later, the stats API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub key: StreamKey,
    pub publisher: Option<SocketAddr>,
    pub players: usize,
    pub cached_frames: usize,
}

impl Stream {
    pub(super) fn info(&self) -> StreamInfo {
        let st = self.state.lock();
        StreamInfo {
            key: self.key.clone(),
            publisher: st.publisher.map(|(_, peer)| peer),
            players: st.players.iter().filter(|p| p.lossless.is_none()).count() + st.viewers.len(),
            cached_frames: st.cache.cached_frames(),
        }
    }

    pub(super) fn stats(&self, now: Instant) -> StreamStats {
        let st = self.state.lock();
        let publisher = match (st.publisher, &st.ingress) {
            (Some((_, peer)), Some(ingress)) => Some(PublisherStats {
                peer,
                uptime: now.saturating_duration_since(ingress.since),
                bytes_in: ingress.bytes,
                bitrate: ingress.rate.bits_per_second(now),
            }),
            _ => None,
        };
        StreamStats {
            key: self.key.clone(),
            publisher,
            codecs: st
                .ingress
                .as_ref()
                .map(|i| i.codecs.codecs())
                .unwrap_or_default(),
            players: st
                .players
                .iter()
                .filter(|p| p.lossless.is_none())
                .map(|p| PlayerStats {
                    peer: p.info.peer,
                    protocol: p.info.protocol,
                    connected: now.saturating_duration_since(p.connected),
                    dropped_frames: p.dropped,
                    bytes_out: p.info.bytes_out.load(Ordering::Relaxed),
                })
                .chain(st.viewers.iter().map(|v| PlayerStats {
                    peer: v.info.peer,
                    protocol: v.info.protocol,
                    connected: now.saturating_duration_since(v.connected),
                    dropped_frames: 0,
                    bytes_out: v.info.bytes_out.load(Ordering::Relaxed),
                }))
                .collect(),
        }
    }
}

/// Ingress bitrate over the last few whole seconds, from per-second byte buckets:
/// steady enough to read, recent enough to show an encoder dropping out.
#[derive(Debug, Clone)]
pub(super) struct RateMeter {
    start: Instant,
    buckets: [u64; RATE_BUCKETS],
    /// The second (since `start`) the newest bucket holds.
    current: u64,
}

/// Completed seconds averaged over, plus the one filling up.
const RATE_WINDOW_SECS: u64 = 4;
const RATE_BUCKETS: usize = RATE_WINDOW_SECS as usize + 1;

impl RateMeter {
    fn new(now: Instant) -> RateMeter {
        RateMeter {
            start: now,
            buckets: [0; RATE_BUCKETS],
            current: 0,
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs()
    }

    pub fn record(&mut self, now: Instant, bytes: u64) {
        let sec = self.second(now);
        // Clear the buckets of the seconds that passed without data (at most all).
        let passed = sec.saturating_sub(self.current).min(RATE_BUCKETS as u64);
        for s in 1..=passed {
            self.buckets[((self.current + s) % RATE_BUCKETS as u64) as usize] = 0;
        }
        self.current = self.current.max(sec);
        self.buckets[(sec % RATE_BUCKETS as u64) as usize] += bytes;
    }

    pub fn bits_per_second(&self, now: Instant) -> u64 {
        let sec = self.second(now);
        if sec == 0 {
            // Not a whole second yet: what arrived so far, per second.
            let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
            return (self.buckets[0] as f64 * 8.0 / elapsed.max(1.0)) as u64;
        }
        let from = sec.saturating_sub(RATE_WINDOW_SECS);
        let bytes: u64 = (from..sec)
            // Seconds after the newest bucket had no data; older ones are overwritten.
            .filter(|&s| s <= self.current && s + (RATE_BUCKETS as u64) > self.current)
            .map(|s| self.buckets[(s % RATE_BUCKETS as u64) as usize])
            .sum();
        bytes * 8 / (sec - from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_averages_recent_whole_seconds() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = RateMeter::new(t0);
        m.record(at(100), 1000);
        assert_eq!(m.bits_per_second(at(500)), 8000, "first partial second");
        // 1000 bytes every 100 ms = 80 kbit/s.
        for ms in (200..6000).step_by(100) {
            m.record(at(ms), 1000);
        }
        assert_eq!(m.bits_per_second(at(6000)), 80_000);
        // The encoder stops: the rate falls to zero within the window.
        assert_eq!(m.bits_per_second(at(8000)), 40_000);
        assert_eq!(m.bits_per_second(at(11_000)), 0);
        // And recovers.
        m.record(at(20_000), 4000);
        assert_eq!(m.bits_per_second(at(21_000)), 8000);
    }
}
