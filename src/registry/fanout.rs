//! What reaches a player, and when: the items of its queue (padded for the
//! allocator's sake) and the policy that keeps a slow player from holding anyone
//! up, applied per frame by the publisher's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use log::{info, warn};

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
