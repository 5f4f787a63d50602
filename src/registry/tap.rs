//! Taps: what sees every frame of a publish besides its players, and those who
//! watch a stream without a queue. A tap (the HLS segmenter) is started when a
//! publisher takes a key and called on the publisher's own thread with each
//! frame, in order, after the players' fan-out and outside the stream's lock:
//! lossless by construction, with no thread or queue of its own; its work per
//! frame must stay small (the segmenter copies the payload into the part being
//! filled). A viewer is a player served from elsewhere (an HLS session): it has
//! no queue, but the stats list it and it keeps the stream's entry alive.

use std::sync::Arc;
use std::time::Instant;

use super::stats::PlayerInfo;
use super::Stream;
use crate::media::frame::Frame;
use crate::stream_key::StreamKey;

/// Starts a tap for each publish (see the module doc).
pub trait PublishTap: Send + Sync {
    /// A publisher took `key`; `None`: nothing to tap for it.
    fn start(&self, key: &StreamKey) -> Option<Box<dyn FrameTap>>;
}

/// One publish's tap.
pub trait FrameTap: Send {
    fn frame(&mut self, frame: &Arc<Frame>);
    /// The publish ended (the publisher left, or the server is stopping).
    fn end(&mut self);
}

/// A player without a queue, for the stats.
pub(super) struct ViewerSlot {
    pub id: u64,
    pub info: PlayerInfo,
    pub connected: Instant,
}

/// A viewer's place on a key; dropping it removes it.
pub struct Viewer {
    pub(super) registry: Arc<super::Registry>,
    pub(super) stream: Arc<Stream>,
    pub(super) id: u64,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stream.state.lock().viewers.retain(|v| v.id != self.id);
        self.registry.release(&self.stream);
    }
}
