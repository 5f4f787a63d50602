//! What reaches a player, and when: the items of its queue (padded for the
//! allocator's sake) and the policy that keeps a slow player from holding anyone
//! up, applied per frame by the publisher's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use log::{error, info, warn};
use parking_lot::Mutex;

use super::doorbell::Doorbell;
use super::stats::PlayerInfo;
use crate::media::frame::{Frame, FrameKind};
use crate::stream_key::StreamKey;

/// What a player's writer receives, in order.
#[derive(Debug, Clone)]
pub enum PlayerItem {
    Frame(Arc<Frame>),
    /// A publisher started on the key (not sent for one already live at subscribe).
    PublishStart,
    /// The publisher left; the player stays subscribed for the next one.
    PublishStop,
}

/// One entry of a player's queue: an item, padded to 32 bytes for the allocator's
/// sake. A crossbeam queue keeps entries in blocks of 31 that the sending thread
/// (the publisher) allocates and the receiving one (the player) frees. glibc keeps
/// up to 7 freed chunks of up to 1 KiB per size in a cache of the freeing thread,
/// and a player never allocates a block itself, so with bare 16-byte items
/// (752-byte blocks) every player thread ended up holding 7 dead blocks: 5 KB per
/// player, measured. Padded, a block is 1248 bytes, past that cache, and goes
/// straight back to the publisher's arena to be reused.
#[derive(Debug, Clone)]
pub struct Queued {
    pub item: PlayerItem,
    _pad: [usize; 2],
}

impl Queued {
    pub(super) fn new(item: PlayerItem) -> Queued {
        Queued { item, _pad: [0; 2] }
    }
}

/// A subscribed player as the publisher's thread sees it.
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
    /// Set for a subscriber that may not lose frames (a recorder): the skip
    /// policy does not apply to it, the bound does.
    pub lossless: Option<Arc<Lossless>>,
}

/// The bound of a lossless subscriber (a recorder, later a relay): it gets every
/// frame while fewer than `max_bytes` wait in its queue; past that it is dropped
/// (its queue ends after what it holds) and `dropped` says why. Shared between
/// the publisher's side, which adds what it queues, and the subscriber's, which
/// takes off what it reads ([`super::Subscription::next`]).
#[derive(Debug)]
pub(super) struct Lossless {
    /// Who it is, for the log: "recording live/cam".
    pub label: String,
    pub max_bytes: u64,
    pub queued: AtomicU64,
    /// The most that ever waited.
    pub peak: AtomicU64,
    pub dropped: Mutex<Option<String>>,
}

impl Lossless {
    pub fn new(label: String, max_bytes: u64) -> Lossless {
        Lossless {
            label,
            max_bytes,
            queued: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            dropped: Mutex::new(None),
        }
    }

    /// Counts `cost` more bytes waiting.
    pub fn add(&self, cost: u64) {
        let now = self.queued.fetch_add(cost, Ordering::AcqRel) + cost;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// What a frame weighs against the bound: its payload and its place in the
    /// queue, so that even empty frames count.
    pub fn cost(frame: &Frame) -> u64 {
        frame.payload.len() as u64 + 64
    }
}

impl PlayerSlot {
    /// False once the player is gone.
    pub fn send(&self, item: PlayerItem) -> bool {
        let sent = self.tx.send(Queued::new(item)).is_ok();
        self.doorbell.ring();
        sent
    }

    /// Queues `frame` unless the player is joining or skipping and this is not a
    /// place to resume (see [`is_resume_point`]), or the player's queue already
    /// holds `cap` items: then the frame is dropped (counted in `dropped_total`,
    /// unless the player never had the stream) and the player skips until the next
    /// resume point. Sequence headers and metadata always go through. False once
    /// the player is gone.
    pub fn offer(
        &mut self,
        frame: &Arc<Frame>,
        resume_here: bool,
        cap: usize,
        key: &StreamKey,
        dropped_total: &AtomicU64,
    ) -> bool {
        if let Some(lossless) = &self.lossless {
            return self.offer_lossless(frame, lossless, key);
        }
        if self.joining && !frame.is_essential() && frame.kind != FrameKind::Data {
            if !resume_here {
                return true;
            }
            self.joining = false;
        }
        if !frame.is_essential() {
            if self.skipping {
                if !resume_here || self.tx.len() >= cap {
                    self.dropped += 1;
                    dropped_total.fetch_add(1, Ordering::Relaxed);
                    return true;
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
                return true;
            }
        }
        self.send(PlayerItem::Frame(frame.clone()))
    }
}

impl PlayerSlot {
    /// Queues `frame` for a lossless subscriber, or drops the subscriber (false)
    /// if that would put more than its bound in its queue. A frame alone in the
    /// queue always goes, however big.
    fn offer_lossless(&self, frame: &Arc<Frame>, bound: &Lossless, key: &StreamKey) -> bool {
        let cost = Lossless::cost(frame);
        let queued = bound.queued.load(Ordering::Acquire);
        if queued > 0 && queued + cost > bound.max_bytes {
            let why = format!(
                "it fell more than {} bytes behind the stream ({} frames waiting)",
                bound.max_bytes,
                self.tx.len()
            );
            // The one line for this: its owner, busy or stuck, may learn it late.
            error!(
                "{} stopped: {why}; {key} and its players go on without it",
                bound.label
            );
            *bound.dropped.lock() = Some(why);
            return false;
        }
        bound.add(cost);
        self.send(PlayerItem::Frame(frame.clone()))
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
