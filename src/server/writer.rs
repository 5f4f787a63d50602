//! What one RTMP connection sends: the session's replies and, for players, the
//! frames of the streams it plays, chunked with one encoder so header compression
//! and the chunk size stay consistent. Nothing is written until `write`, which
//! sends everything gathered in one vectored write. A frame's payload is never
//! copied: a player adds only its own first-chunk header (and the one-byte fmt 3
//! headers between chunks, which are static), and the kernel reads the payload
//! from the frame that the publisher, the GOP cache and every player share.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;
use log::warn;

use crate::media::frame::Frame;
use crate::media::player::PlayerFilter;
use crate::net::Transport;
use crate::registry::{self, PlayerItem, Queued, Subscription};
use crate::rtmp::chunk::{self, ChunkEncoder, RawMessage};
use crate::rtmp::message::{self as msg, UserControl};

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
const KEPT_OWN_BYTES: usize = 16 * 1024;

/// One played stream.
struct Playback {
    stream_id: u32,
    subscription: Subscription,
    /// Pause, track switches, resync and timestamps: shared with the HTTP writers.
    filter: PlayerFilter,
}

/// A piece of the next write.
enum Part {
    /// `own` up to this offset, from where the previous own part ended.
    Own(usize),
    /// A frame's payload, cut at this chunk size with this fmt 3 header between
    /// pieces ([`chunk::body_slices`]): written from the frame's own memory.
    Shared(Arc<Frame>, u32, &'static [u8]),
}

/// What ended a wait for frames.
pub(crate) enum Waited {
    /// Something was queued (and has been taken).
    Item,
    /// Nothing within the timeout.
    Timeout,
}

pub(crate) struct Writer {
    /// The client's address, for log lines.
    peer: SocketAddr,
    encoder: ChunkEncoder,
    /// Bytes made for this connection only: headers, replies, private bodies.
    own: Vec<u8>,
    /// How far `own` is covered by `parts`.
    own_done: usize,
    parts: Vec<Part>,
    /// Bytes in `parts` and the uncovered tail of `own`.
    pending: usize,
    /// One per stream id being played; almost always zero or one.
    playbacks: Vec<Playback>,
    /// Media frames are among what waits to be written.
    has_media: bool,
}

impl Writer {
    pub fn new(peer: SocketAddr) -> Writer {
        Writer {
            peer,
            encoder: ChunkEncoder::new(),
            own: Vec::with_capacity(OWN_BYTES),
            own_done: 0,
            parts: Vec::with_capacity(WRITE_BATCH_PARTS),
            pending: 0,
            playbacks: Vec::new(),
            has_media: false,
        }
    }

    pub fn is_playing(&self) -> bool {
        !self.playbacks.is_empty()
    }

    /// Whether media frames wait to be written.
    pub fn has_media(&self) -> bool {
        self.has_media
    }

    /// Starts sending the subscription's frames on `stream_id`, replacing what
    /// played there.
    pub fn play(&mut self, stream_id: u32, subscription: Subscription) {
        self.stop(stream_id);
        self.playbacks.push(Playback {
            stream_id,
            subscription,
            filter: PlayerFilter::new(),
        });
    }

    /// Stops playing on `stream_id`; returns the subscription it held.
    pub fn stop(&mut self, stream_id: u32) -> Option<Subscription> {
        let i = self
            .playbacks
            .iter()
            .position(|p| p.stream_id == stream_id)?;
        Some(self.playbacks.remove(i).subscription)
    }

    /// Ends every playback (the connection is closing).
    pub fn stop_all(&mut self) {
        self.playbacks.clear();
    }

    /// The filter of the stream played on `stream_id`, to pause or switch tracks.
    pub fn filter(&mut self, stream_id: u32) -> Option<&mut PlayerFilter> {
        self.playbacks
            .iter_mut()
            .find(|p| p.stream_id == stream_id)
            .map(|p| &mut p.filter)
    }

    /// Blocks until a played stream has something queued, or `timeout` passes.
    /// Sleeps on the subscriptions' doorbells rather than in the queues (see
    /// `registry::Doorbell`).
    pub fn wait(&mut self, timeout: Duration) -> Waited {
        let bells = self.playbacks.iter().map(|p| p.subscription.doorbell());
        match registry::wait_for(bells, Instant::now() + timeout, || self.next_queued()) {
            Some((i, item)) => {
                self.item(i, item);
                Waited::Item
            }
            None => Waited::Timeout,
        }
    }

    /// The first item waiting in any played stream's queue.
    fn next_queued(&self) -> Option<(usize, PlayerItem)> {
        self.playbacks.iter().enumerate().find_map(|(i, p)| {
            let Queued { item, .. } = p.subscription.queue().try_recv().ok()?;
            Some((i, item))
        })
    }

    /// Takes what the played streams have queued, up to one write's worth.
    /// Returns whether more is waiting.
    pub fn gather(&mut self) -> bool {
        for i in 0..self.playbacks.len() {
            loop {
                // A frame adds two parts: stop while both still fit.
                if self.pending >= WRITE_BATCH_BYTES || self.parts.len() + 2 > WRITE_BATCH_PARTS {
                    return true;
                }
                match self.playbacks[i].subscription.queue().try_recv() {
                    Ok(Queued { item, .. }) => self.item(i, item),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        false
    }

    /// Queues session replies, in order.
    pub fn messages(&mut self, messages: Vec<RawMessage>) {
        for m in &messages {
            self.message(m);
        }
    }

    pub fn message(&mut self, m: &RawMessage) {
        self.encode(m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload);
        if m.type_id == msg::SET_CHUNK_SIZE && m.stream_id == 0 {
            // From now on our chunks are this size: the peer applies it to what follows.
            if let Ok(size) = msg::read_u32("set chunk size", &m.payload) {
                if let Err(e) = self.encoder.set_chunk_size(size) {
                    warn!("{}: not switching to chunk size {size}: {e}", self.peer);
                }
            }
        }
    }

    fn encode(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let before = self.own.len();
        match self
            .encoder
            .encode(csid, ts, type_id, stream_id, payload, &mut self.own)
        {
            Ok(()) => self.pending += self.own.len() - before,
            // Only an oversized payload can fail, and inbound limits prevent those.
            Err(e) => warn!(
                "{}: dropping outgoing message type {type_id}: {e}",
                self.peer
            ),
        }
    }

    /// A frame for the player: its own header, then the shared body.
    fn frame(&mut self, frame: Arc<Frame>, ts: u32, stream_id: u32) {
        let csid = msg::frame_csid(frame.kind);
        let type_id = msg::frame_type_id(frame.kind);
        let chunk_size = self.encoder.chunk_size();
        let before = self.own.len();
        let header = self.encoder.encode_header(
            csid,
            ts,
            type_id,
            stream_id,
            frame.payload.len(),
            &mut self.own,
        );
        match (header, chunk::fmt3_header(csid)) {
            (Ok(None), Some(fmt3)) => {
                let len = frame.payload.len();
                let continuations = len.saturating_sub(1) / chunk_size as usize;
                self.pending += self.own.len() - before + len + continuations * fmt3.len();
                self.parts.push(Part::Own(self.own.len()));
                self.own_done = self.own.len();
                self.parts.push(Part::Shared(frame, chunk_size, fmt3));
            }
            (Ok(extended), _) => {
                // An extended timestamp, repeated in every chunk: this player's
                // body is its own.
                chunk::write_body(csid, chunk_size, extended, &frame.payload, &mut self.own);
                self.pending += self.own.len() - before;
            }
            (Err(e), _) => warn!("{}: dropping outgoing frame type {type_id}: {e}", self.peer),
        }
        self.has_media = true;
    }

    fn item(&mut self, playback: usize, item: PlayerItem) {
        let p = &mut self.playbacks[playback];
        let stream_id = p.stream_id;
        match item {
            PlayerItem::Frame(frame) => {
                if let Some(ts) = p.filter.admit(&frame) {
                    self.frame(frame, ts, stream_id);
                }
            }
            PlayerItem::PublishStart => {
                p.filter.new_epoch();
                self.message(&msg::user_control(UserControl::StreamBegin(stream_id)));
                self.message(&msg::on_status(
                    stream_id,
                    "status",
                    "NetStream.Play.PublishNotify",
                    "A publisher started on this stream.",
                ));
            }
            PlayerItem::PublishStop => {
                self.message(&msg::user_control(UserControl::StreamEof(stream_id)));
                self.message(&msg::on_status(
                    stream_id,
                    "status",
                    "NetStream.Play.UnpublishNotify",
                    "The publisher stopped.",
                ));
            }
        }
    }

    /// Sends everything gathered, in order, in as few syscalls as the kernel
    /// allows; fails with `TimedOut` once the peer has taken no byte for the
    /// transport's stall limit. Returns the bytes written.
    pub fn write(&mut self, transport: &mut dyn Transport) -> io::Result<usize> {
        if self.pending == 0 {
            return Ok(0);
        }
        let mut from = 0;
        let own = &self.own;
        let mut slices = self
            .parts
            .iter()
            .flat_map(move |part| {
                let (own_part, shared) = match part {
                    Part::Own(end) => {
                        let slice = &own[from..*end];
                        from = *end;
                        (Some(slice), None)
                    }
                    Part::Shared(frame, chunk_size, fmt3) => {
                        (None, Some((&frame.payload[..], *chunk_size, *fmt3)))
                    }
                };
                own_part.into_iter().chain(
                    shared
                        .into_iter()
                        .flat_map(|(payload, size, fmt3)| chunk::body_slices(payload, size, fmt3)),
                )
            })
            .chain(std::iter::once(&own[self.own_done..]));
        let result = transport.write_all(&mut slices);
        drop(slices);
        let written = self.pending;
        self.clear();
        result.map(|()| written)
    }

    fn clear(&mut self) {
        self.own.clear();
        self.parts.clear();
        self.own_done = 0;
        self.pending = 0;
        self.has_media = false;
        if self.own.capacity() > KEPT_OWN_BYTES {
            self.own = Vec::with_capacity(OWN_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameKind;
    use crate::net::TcpTransport;
    use crate::rng::Rng;
    use crate::rtmp::chunk::{ChunkDecoder, ChunkLimits};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// Replies, frames (with extended and wrapping timestamps, two stream ids) and
    /// chunk size changes, written at random points over a real socket in both
    /// socket modes, must decode to exactly what was queued, in order.
    #[test]
    fn random_writes_decode_to_what_was_queued() {
        for seed in 1..9u64 {
            let mut rng = Rng::new(seed);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, peer) = listener.accept().unwrap();
            let mut server =
                TcpTransport::new(Arc::new(server), peer, Duration::from_secs(5)).unwrap();
            let reader = thread::spawn(move || {
                let mut got = Vec::new();
                let mut b = [0u8; 8192];
                loop {
                    let n = client.read(&mut b).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&b[..n]);
                    if seed % 4 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    }
                }
                got
            });
            let mut w = Writer::new(peer);
            let mut expected: Vec<RawMessage> = Vec::new();
            let mut ts = [0u32; 3];
            if seed % 2 == 0 {
                // A look for input leaves the socket non-blocking for the writes.
                let err = server.try_read(&mut [0u8; 1]).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            }
            for _ in 0..200 {
                match rng.below(10) {
                    0 => {
                        let size = [1u32, 7, 128, 4096, 60000][rng.below(5)];
                        let m = msg::set_chunk_size(size);
                        expected.push(m.clone());
                        w.message(&m);
                    }
                    1 => {
                        let m = msg::on_status(1, "status", "X", "y");
                        expected.push(m.clone());
                        w.message(&m);
                    }
                    2 => {
                        w.write(&mut server).unwrap();
                    }
                    _ => {
                        let k = rng.below(3);
                        let kind = [FrameKind::Audio, FrameKind::Video, FrameKind::Data][k];
                        let len = [0usize, 1, 5, 127, 128, 129, 4096, 5000, 70000][rng.below(9)];
                        let base = rng.next_u64();
                        let payload: Vec<u8> = (0..len)
                            .map(|i| (base >> (i % 57)) as u8 ^ i as u8)
                            .collect();
                        ts[k] = match rng.below(6) {
                            0 => ts[k].wrapping_add(0x0100_0000),
                            1 => ts[k].saturating_sub(5),
                            2 => 0xFFFF_FFF0u32.wrapping_add(rng.below(40) as u32),
                            _ => ts[k].wrapping_add(rng.below(50) as u32),
                        };
                        let sid = 1 + rng.below(2) as u32;
                        let f = Arc::new(Frame::media(kind, ts[k], payload.clone()));
                        expected.push(RawMessage {
                            csid: msg::frame_csid(kind),
                            timestamp: ts[k],
                            type_id: msg::frame_type_id(kind),
                            stream_id: sid,
                            payload,
                        });
                        w.frame(f, ts[k], sid);
                    }
                }
            }
            w.write(&mut server).unwrap();
            server.shutdown_write().unwrap();
            let got = reader.join().unwrap();
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            dec.push(&got);
            let mut out = Vec::new();
            while let Some(m) = dec.next_message().unwrap() {
                if m.type_id == msg::SET_CHUNK_SIZE {
                    let s = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                    dec.set_chunk_size(s).unwrap();
                }
                out.push(m);
            }
            assert_eq!(out.len(), expected.len(), "seed {seed}");
            for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
                assert_eq!(a, b, "seed {seed} message {i}");
            }
        }
    }
}
