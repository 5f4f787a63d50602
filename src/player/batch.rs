//! One write's worth of bytes for one connection, laid out so that the frames the
//! publisher, the GOP cache and every player share are never copied: the bytes a
//! framing makes for this connection alone (headers, trailers, replies) go into an
//! own buffer, and a frame's payload is referred to, behind an `Arc`, and written
//! from where it lies. [`Batch::write`] hands the transport the pieces in order in
//! one vectored write.
//!
//! A batch has three regions: `pre` (bytes outside the body and before it: an HTTP
//! response head, WebSocket control frames, then the header of the envelope around
//! the body, which a framing adds when the batch is sealed and the body's length is
//! known), the body (own bytes and shared payloads, in order), and `post` (the
//! envelope's trailer, a stream's ending).

use std::io;
use std::sync::Arc;

use crate::media::frame::Frame;
use crate::net::Transport;
use crate::rtmp::chunk;

/// Stop gathering queued frames once this much is ready to write, so one slow
/// write does not hold a huge backlog; what is left waits in the player's queue,
/// where the registry sees it and skips ahead if the player falls behind.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Pieces gathered per write: a merge window's worth of frames, two pieces each.
/// A joining player's burst goes out in several such writes, back to back.
const WRITE_BATCH_PARTS: usize = 64;
/// Room for a round's headers and replies. Sized up front, like `parts`: freeing
/// the smaller buffers a growing vector leaves behind fills this thread's malloc
/// cache with chunks no other thread reuses.
const OWN_BYTES: usize = 2 * 1024;
/// Capacity beyond this is given back after a write (a private body, say).
const KEPT_BYTES: usize = 16 * 1024;

/// A piece of the body.
#[derive(Debug)]
enum Part {
    /// `own` up to this offset, from where the previous own part ended.
    Own(usize),
    /// A frame's payload, written from the frame's own memory: whole, or cut at a
    /// chunk size with a static header between the pieces (RTMP's fmt 3 headers,
    /// [`chunk::body_slices`]).
    Shared {
        frame: Arc<Frame>,
        chunk: u32,
        between: &'static [u8],
    },
}

/// Where a batch goes: every piece, in order.
pub trait WritePieces {
    fn write_pieces(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()>;
}

impl<T: Transport + ?Sized> WritePieces for T {
    fn write_pieces(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()> {
        self.write_all(parts)
    }
}

#[derive(Debug)]
pub struct Batch {
    pre: Vec<u8>,
    /// Body bytes made for this connection only.
    own: Vec<u8>,
    /// How far `own` is covered by `parts`.
    own_done: usize,
    parts: Vec<Part>,
    /// Body bytes in `Shared` parts (payloads and the headers between their pieces).
    shared_len: usize,
    post: Vec<u8>,
    /// Media frames are among what waits to be written.
    has_media: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            pre: Vec::new(),
            own: Vec::with_capacity(OWN_BYTES),
            own_done: 0,
            parts: Vec::with_capacity(WRITE_BATCH_PARTS),
            shared_len: 0,
            post: Vec::new(),
            has_media: false,
        }
    }

    /// Bytes before the body, outside its envelope.
    pub fn pre(&mut self) -> &mut Vec<u8> {
        &mut self.pre
    }

    /// Bytes after the body.
    pub fn post(&mut self) -> &mut Vec<u8> {
        &mut self.post
    }

    /// The body's own bytes, to append to.
    pub fn own(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// Appends a shared payload to the body: whole when `chunk` is at least its
    /// length, else cut into `chunk`-byte pieces with `between` before each piece
    /// after the first.
    pub fn shared(&mut self, frame: Arc<Frame>, chunk: u32, between: &'static [u8]) {
        let len = frame.payload.len();
        let continuations = len.saturating_sub(1) / chunk.max(1) as usize;
        self.shared_len += len + continuations * between.len();
        if self.own.len() > self.own_done {
            self.parts.push(Part::Own(self.own.len()));
            self.own_done = self.own.len();
        }
        self.parts.push(Part::Shared {
            frame,
            chunk,
            between,
        });
    }

    /// Notes that a media frame is among the body's bytes.
    pub fn mark_media(&mut self) {
        self.has_media = true;
    }

    pub fn has_media(&self) -> bool {
        self.has_media
    }

    /// Bytes in the body.
    pub fn body_len(&self) -> usize {
        self.own.len() + self.shared_len
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.pre.len() + self.body_len() + self.post.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body holds a write's worth: gathering stops here.
    pub fn is_full(&self) -> bool {
        // A frame adds up to two parts.
        self.body_len() >= WRITE_BATCH_BYTES || self.parts.len() + 2 > WRITE_BATCH_PARTS
    }

    /// Forgets the body (a connection that ends without it); `pre` and `post` stay.
    pub fn discard_body(&mut self) {
        self.own.clear();
        self.own_done = 0;
        self.parts.clear();
        self.shared_len = 0;
        self.has_media = false;
    }

    /// The pieces to write, in order.
    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let mut from = 0;
        let own = &self.own;
        let body =
            self.parts.iter().flat_map(move |part| {
                let (own_part, shared) = match part {
                    Part::Own(end) => {
                        let slice = &own[from..*end];
                        from = *end;
                        (Some(slice), None)
                    }
                    Part::Shared {
                        frame,
                        chunk,
                        between,
                    } => (None, Some((&frame.payload[..], *chunk, *between))),
                };
                own_part.into_iter().chain(shared.into_iter().flat_map(
                    |(payload, size, between)| chunk::body_slices(payload, size, between),
                ))
            });
        std::iter::once(&self.pre[..])
            .chain(body)
            .chain([&own[self.own_done..], &self.post[..]])
    }

    /// Sends everything, in order, in as few system calls as `out` allows (a
    /// connection's transport, or a recording's file), and empties the batch
    /// (also when the write fails: the connection or the recording is over
    /// then). Returns the bytes written.
    pub fn write<W: WritePieces + ?Sized>(&mut self, out: &mut W) -> io::Result<usize> {
        let len = self.len();
        if len == 0 {
            return Ok(0);
        }
        let result = out.write_pieces(&mut self.slices());
        self.clear();
        result.map(|()| len)
    }

    fn clear(&mut self) {
        self.discard_body();
        self.pre.clear();
        self.post.clear();
        if self.own.capacity() > KEPT_BYTES {
            self.own = Vec::with_capacity(OWN_BYTES);
        }
        if self.pre.capacity() > KEPT_BYTES {
            self.pre = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameKind;
    use crate::net::transport::testing::Recorder;

    #[test]
    fn regions_go_out_in_order_and_payloads_are_not_copied() {
        let frame = Arc::new(Frame::media(FrameKind::Video, 0, (0..10).collect()));
        let mut b = Batch::new();
        b.pre().extend_from_slice(b"PRE");
        b.own().extend_from_slice(b"h1");
        b.shared(frame.clone(), 4, b"|");
        b.own().extend_from_slice(b"t1h2");
        b.shared(frame.clone(), u32::MAX, b"");
        b.own().extend_from_slice(b"t2");
        b.post().extend_from_slice(b"POST");
        assert_eq!(b.body_len(), 2 + 10 + 2 + 4 + 10 + 2);
        assert_eq!(b.len(), 3 + b.body_len() + 4);
        let mut wire = Recorder::default();
        assert_eq!(b.write(&mut wire).unwrap(), 3 + 30 + 4);
        let pieces: Vec<&[u8]> = wire.pieces.iter().map(Vec::as_slice).collect();
        let payload = &frame.payload[..];
        assert_eq!(
            pieces,
            [
                &b"PRE"[..],
                b"h1",
                &payload[..4],
                b"|",
                &payload[4..8],
                b"|",
                &payload[8..],
                b"t1h2",
                payload,
                b"t2",
                b"POST"
            ]
        );
        assert!(b.is_empty(), "a write empties the batch");
    }

    #[test]
    fn a_batch_is_full_at_a_writes_worth_of_bytes_or_pieces() {
        let mut b = Batch::new();
        let small = Arc::new(Frame::media(FrameKind::Audio, 0, vec![1; 10]));
        while !b.is_full() {
            b.own().push(0);
            b.shared(small.clone(), u32::MAX, b"");
        }
        assert_eq!(b.parts.len(), WRITE_BATCH_PARTS);
        b.discard_body();
        b.shared(
            Arc::new(Frame::media(
                FrameKind::Video,
                0,
                vec![0; WRITE_BATCH_BYTES],
            )),
            u32::MAX,
            b"",
        );
        assert!(b.is_full());
    }
}
