//! What reaches a subscriber, and when: the items of its queue (padded for the
//! allocator's sake) and the policy that keeps a slow subscriber from holding anyone
//! up, applied per frame by the publisher's thread. A player skips to the next
//! keyframe when it falls behind; a lossless subscriber (a recorder, a relay) gets
//! every frame until its backlog passes a bound, then is dropped and told why.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{error, info, warn};
use parking_lot::Mutex;

use super::doorbell::Doorbell;
use super::stats::PlayerInfo;
use crate::media::frame::{Frame, FrameKind};
use crate::stream_key::StreamKey;

/// What a subscriber receives, in order.
#[derive(Debug, Clone)]
pub enum PlayerItem {
    Frame(Arc<Frame>),
    /// A publisher started on the key (not sent for one already live at subscribe).
    PublishStart,
    /// The publisher left (or the server is stopping: see
    /// [`Subscription::is_closed`](super::Subscription::is_closed)); the subscriber
    /// stays subscribed for the next one.
    PublishStop,
    /// The last item of a lossless subscriber that fell too far behind: it has been
    /// unsubscribed, and this says why.
    Dropped(Arc<Overflow>),
}

/// How far a lossless subscriber may fall behind; past either limit it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Bytes queued for it and not yet taken: payloads, plus [`FRAME_OVERHEAD`]
    /// a frame so that even empty frames count. A frame alone in the queue always
    /// goes, however big.
    pub max_bytes: u64,
    /// How long the oldest frame still queued for it may have waited: for a live
    /// stream, the media time it is behind (the relay's "10 s of media").
    /// Measured on the clock rather than on the frames' timestamps, which jump
    /// when an encoder restarts or pauses. `None`: bytes only.
    pub max_lag: Option<Duration>,
}

impl From<u64> for Bound {
    /// A bound in bytes only.
    fn from(max_bytes: u64) -> Bound {
        Bound {
            max_bytes,
            max_lag: None,
        }
    }
}

/// What a frame weighs against a [`Bound`] beyond its payload: its place in the
/// queue.
pub const FRAME_OVERHEAD: u64 = 64;

/// Why a lossless subscriber was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    pub bound: Bound,
    /// Bytes that were waiting for it, the frame that did not fit included.
    pub queued_bytes: u64,
    /// How long the oldest of them had waited.
    pub lag: Duration,
    /// Frames waiting.
    pub frames: usize,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound.max_lag {
            Some(max) if self.queued_bytes <= self.bound.max_bytes => write!(
                f,
                "it fell more than {:.1} s behind the stream ({} frames waiting for {:.1} s)",
                max.as_secs_f64(),
                self.frames,
                self.lag.as_secs_f64()
            ),
            _ => write!(
                f,
                "it fell more than {} bytes behind the stream ({} frames waiting)",
                self.bound.max_bytes, self.frames
            ),
        }
    }
}

/// One entry of a subscriber's queue: an item, padded to 32 bytes for the
/// allocator's sake. A crossbeam queue keeps entries in blocks of 31 that the
/// sending thread (the publisher) allocates and the receiving one (the player)
/// frees. glibc keeps up to 7 freed chunks of up to 1 KiB per size in a cache of
/// the freeing thread, and a player never allocates a block itself, so with bare
/// 16-byte items (752-byte blocks) every player thread ended up holding 7 dead
/// blocks: 5 KB per player, measured. Padded, a block is 1248 bytes, past that
/// cache, and goes straight back to the publisher's arena to be reused.
#[derive(Debug)]
pub(super) struct Queued {
    pub item: PlayerItem,
    /// When it was queued (see [`Clock`]), for a lossless subscriber's lag; 0 for
    /// players, who need no clock.
    pub queued_at: u64,
    _pad: usize,
}

impl Queued {
    fn new(item: PlayerItem, queued_at: u64) -> Queued {
        Queued {
            item,
            queued_at,
            _pad: 0,
        }
    }
}

/// The registry's clock: nanoseconds since it was made, small enough for an atomic.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock(pub Instant);

impl Clock {
    pub fn at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.0).as_nanos() as u64
    }

    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }
}

/// A lossless subscriber's side of the bound (a recorder, a relay): shared between
/// the publisher's side, which adds what it queues, and the subscriber's, which
/// takes off what it reads (`Subscription::try_next` and `next`).
#[derive(Debug)]
pub(super) struct Lossless {
    /// Who it is, for the log: "recording live/cam".
    pub label: String,
    pub bound: Bound,
    /// Bytes queued and not yet taken (see [`Bound::max_bytes`]).
    pub queued: AtomicU64,
    /// The most that ever waited.
    pub peak: AtomicU64,
    /// When the last item the subscriber took had been queued.
    taken_at: AtomicU64,
    /// Why it was dropped, once it was.
    pub dropped: Mutex<Option<Arc<Overflow>>>,
}

impl Lossless {
    pub fn new(label: String, bound: Bound) -> Lossless {
        Lossless {
            label,
            bound,
            queued: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            taken_at: AtomicU64::new(0),
            dropped: Mutex::new(None),
        }
    }

    /// What a frame weighs against the bound.
    pub fn cost(frame: &Frame) -> u64 {
        frame.payload.len() as u64 + FRAME_OVERHEAD
    }

    /// The subscriber took `item`, queued at `queued_at`.
    pub fn took(&self, item: &PlayerItem, queued_at: u64) {
        if let PlayerItem::Frame(frame) = item {
            self.queued
                .fetch_sub(Lossless::cost(frame), Ordering::AcqRel);
        }
        self.taken_at.fetch_max(queued_at, Ordering::Relaxed);
    }

    fn add(&self, cost: u64) {
        let now = self.queued.fetch_add(cost, Ordering::AcqRel) + cost;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

/// A subscriber as the publisher's thread sees it.
pub(super) struct PlayerSlot {
    pub id: u64,
    pub info: PlayerInfo,
    pub connected: Instant,
    pub tx: Sender<Queued>,
    pub doorbell: Arc<Doorbell>,
    /// Behind: frames are dropped until the next place a decoder can start.
    pub skipping: bool,
    /// Joined a live stream whose burst had no keyframe (GOP cache off, or a GOP
    /// too long to cache): waits for the next one. Not counted as dropped frames,
    /// the player never had them.
    pub joining: bool,
    pub dropped: u64,
    /// Set for a subscriber that may not lose frames (a recorder, a relay): the
    /// skip policy does not apply to it, its bound does.
    pub lossless: Option<Arc<Lossless>>,
    /// When the publisher last found a lossless subscriber's queue empty: nothing
    /// queued is older.
    pub empty_at: u64,
}

impl PlayerSlot {
    /// Queues an item stamped `now` and rings; false once the subscriber is gone.
    pub fn send(&self, item: PlayerItem, now: u64) -> bool {
        let sent = self.queue(item, now);
        self.doorbell.ring();
        sent
    }

    /// Queues an item stamped `now` without ringing: the caller rings (see
    /// [`PlayerSlot::offer`]); false once the subscriber is gone.
    fn queue(&self, item: PlayerItem, now: u64) -> bool {
        let stamp = if self.lossless.is_some() { now } else { 0 };
        self.tx.send(Queued::new(item, stamp)).is_ok()
    }

    /// Queues `frame` unless the player is joining or skipping and this is not a
    /// place to resume (see [`is_resume_point`]), or the subscriber is too far
    /// behind: a player then skips to the next resume point (the frame is counted
    /// in `dropped_total`, unless the player never had the stream); a lossless
    /// subscriber is dropped (false). False once the subscriber is gone. A
    /// subscriber given something to take has its bell rung into `wake`: the
    /// caller unparks those threads once it has released the stream.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        frame: &Arc<Frame>,
        resume_here: bool,
        cap: usize,
        key: &StreamKey,
        dropped_total: &AtomicU64,
        now: u64,
        wake: &mut Vec<Thread>,
    ) -> bool {
        if self.joining && !frame.is_essential() && frame.kind != FrameKind::Data {
            if !resume_here {
                return true;
            }
            self.joining = false;
        }
        match self.lossless.clone() {
            None if !self.skip(frame, resume_here, cap, key, dropped_total) => return true,
            None => {}
            Some(lossless) => {
                if let Err(overflow) = self.admit_lossless(frame, &lossless, now) {
                    // The one line for this: its owner, busy or stuck, may learn it late.
                    error!(
                        "{} stopped: {overflow}; {key} and its players go on without it",
                        lossless.label
                    );
                    let overflow = Arc::new(overflow);
                    *lossless.dropped.lock() = Some(overflow.clone());
                    self.queue(PlayerItem::Dropped(overflow), now);
                    self.doorbell.ring_into(wake);
                    return false;
                }
            }
        }
        let sent = self.queue(PlayerItem::Frame(frame.clone()), now);
        self.doorbell.ring_into(wake);
        sent
    }

    /// A player's skipping: whether `frame` goes out.
    fn skip(
        &mut self,
        frame: &Frame,
        resume_here: bool,
        cap: usize,
        key: &StreamKey,
        dropped_total: &AtomicU64,
    ) -> bool {
        if frame.is_essential() {
            return true;
        }
        if self.skipping {
            if !resume_here || self.tx.len() >= cap {
                self.dropped += 1;
                dropped_total.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            self.skipping = false;
            info!(
                "{}: player caught up on {key} after {} dropped frames",
                self.info.peer, self.dropped
            );
        } else if self.tx.len() >= cap {
            self.skipping = true;
            self.dropped += 1;
            dropped_total.fetch_add(1, Ordering::Relaxed);
            warn!(
                "{}: {} player fell {cap} frames behind on {key}; skipping to the next keyframe",
                self.info.peer, self.info.protocol
            );
            return false;
        }
        true
    }

    /// A lossless subscriber's bound: counts `frame` into its backlog, or says why
    /// the backlog is too big for it.
    fn admit_lossless(
        &mut self,
        frame: &Frame,
        lossless: &Lossless,
        now: u64,
    ) -> Result<(), Overflow> {
        let frames = self.tx.len();
        if frames == 0 {
            self.empty_at = now;
        }
        let cost = Lossless::cost(frame);
        let queued = lossless.queued.load(Ordering::Acquire);
        // The oldest frame waiting was queued after both the moment the queue was
        // last seen empty and the last frame the subscriber took.
        let oldest = self.empty_at.max(lossless.taken_at.load(Ordering::Relaxed));
        let lag = Duration::from_nanos(now.saturating_sub(oldest));
        let bound = lossless.bound;
        let too_many = queued > 0 && queued + cost > bound.max_bytes;
        if too_many || bound.max_lag.is_some_and(|max| lag > max) {
            return Err(Overflow {
                bound,
                queued_bytes: queued + cost,
                lag,
                frames,
            });
        }
        lossless.add(cost);
        Ok(())
    }
}

/// Where a player that is skipping or joining may start again: a keyframe, or any
/// audio frame of a stream without video.
pub(super) fn is_resume_point(frame: &Frame, has_video: bool) -> bool {
    frame.is_keyframe() || (!has_video && frame.kind == FrameKind::Audio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_blocks_skip_the_freeing_threads_malloc_cache() {
        // crossbeam's list block: 31 entries with a state word each, and a link.
        let block = 31 * (std::mem::size_of::<Queued>() + 8) + 8;
        // glibc's per-thread cache takes chunks up to 1032 bytes, header included.
        assert!(block + 8 > 1032, "a {block}-byte block fits glibc's tcache");
    }
}
