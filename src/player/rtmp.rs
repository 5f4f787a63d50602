//! RTMP framing: messages and frames as chunks, with one encoder per connection
//! so header compression and the chunk size stay consistent between a session's
//! replies and the frames it plays. A frame's payload is never copied: a player
//! adds only its own first-chunk header (and the one-byte fmt 3 headers between
//! chunks, which are static), and the kernel reads the payload from the frame that
//! the publisher, the GOP cache and every player share.

use std::net::SocketAddr;
use std::sync::Arc;

use log::warn;

use super::{Batch, Feed};
use crate::media::frame::Frame;
use crate::registry::PlayerItem;
use crate::rtmp::chunk::{self, ChunkEncoder, RawMessage};
use crate::rtmp::message::{self as msg, UserControl};

#[derive(Debug)]
pub struct RtmpFraming {
    /// Whom the bytes are for, for log lines.
    peer: SocketAddr,
    encoder: ChunkEncoder,
}

impl RtmpFraming {
    pub fn new(peer: SocketAddr) -> RtmpFraming {
        RtmpFraming {
            peer,
            encoder: ChunkEncoder::new(),
        }
    }

    /// Sends with chunks of `size` from now on without announcing it: for a
    /// connection whose chunk size another encoder announced (a relay's client
    /// session, before the connection became a sink). The two must then use
    /// different chunk streams.
    pub fn assume_chunk_size(&mut self, size: u32) {
        if let Err(e) = self.encoder.set_chunk_size(size) {
            warn!("{}: not switching to chunk size {size}: {e}", self.peer);
        }
    }

    /// Queues messages (a session's replies), in order.
    pub fn messages(&mut self, batch: &mut Batch, messages: Vec<RawMessage>) {
        for m in &messages {
            self.message(batch, m);
        }
    }

    /// Queues one message; a Set Chunk Size of ours applies to what follows it.
    pub fn message(&mut self, batch: &mut Batch, m: &RawMessage) {
        if let Err(e) = self.encoder.encode_message(m, batch.own()) {
            // Only an oversized payload can fail, and inbound limits prevent those.
            warn!(
                "{}: dropping outgoing message type {}: {e}",
                self.peer, m.type_id
            );
        }
        if m.type_id == msg::SET_CHUNK_SIZE && m.stream_id == 0 {
            if let Ok(size) = msg::read_u32("set chunk size", &m.payload) {
                if let Err(e) = self.encoder.set_chunk_size(size) {
                    warn!("{}: not switching to chunk size {size}: {e}", self.peer);
                }
            }
        }
    }

    /// Queues a frame on `stream_id` at `ts`: its own header, then the shared body.
    pub fn frame(&mut self, batch: &mut Batch, frame: Arc<Frame>, ts: u32, stream_id: u32) {
        let csid = msg::frame_csid(frame.kind);
        let type_id = msg::frame_type_id(frame.kind);
        let chunk_size = self.encoder.chunk_size();
        let len = frame.payload.len();
        let header = self
            .encoder
            .encode_header(csid, ts, type_id, stream_id, len, batch.own());
        match (header, chunk::fmt3_header(csid)) {
            (Ok(None), Some(fmt3)) => batch.shared(frame, chunk_size, fmt3),
            (Ok(extended), _) => {
                // An extended timestamp, repeated in every chunk: this player's
                // body is its own.
                chunk::write_body(csid, chunk_size, extended, &frame.payload, batch.own());
            }
            (Err(e), _) => warn!("{}: dropping outgoing frame type {type_id}: {e}", self.peer),
        }
        batch.mark_media();
    }

    /// What a played stream's queue item becomes for an RTMP player: a frame the
    /// filter lets through, or the notifications of a publisher starting
    /// (StreamBegin, `NetStream.Play.PublishNotify`) and stopping (StreamEOF,
    /// `NetStream.Play.UnpublishNotify`), as nginx-rtmp sends them.
    pub fn play_item(&mut self, batch: &mut Batch, feed: &mut Feed, item: PlayerItem) {
        let stream_id = feed.id;
        match item {
            PlayerItem::Frame(frame) => {
                if let Some(ts) = feed.filter.admit(&frame) {
                    self.frame(batch, frame, ts, stream_id);
                }
            }
            PlayerItem::PublishStart => {
                feed.filter.new_epoch();
                self.message(
                    batch,
                    &msg::user_control(UserControl::StreamBegin(stream_id)),
                );
                self.message(
                    batch,
                    &msg::on_status(
                        stream_id,
                        "status",
                        "NetStream.Play.PublishNotify",
                        "A publisher started on this stream.",
                    ),
                );
            }
            PlayerItem::PublishStop => self.stream_end(batch, stream_id, "The publisher stopped."),
            // Players skip ahead instead; a lossless subscriber that plays over
            // RTMP would end its stream here.
            PlayerItem::Dropped(why) => self.stream_end(batch, stream_id, &why.to_string()),
        }
    }

    fn stream_end(&mut self, batch: &mut Batch, stream_id: u32, description: &str) {
        self.message(batch, &msg::user_control(UserControl::StreamEof(stream_id)));
        self.message(
            batch,
            &msg::on_status(
                stream_id,
                "status",
                "NetStream.Play.UnpublishNotify",
                description,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameKind;
    use crate::net::transport::testing::pair;
    use crate::net::Transport;
    use crate::rng::Rng;
    use crate::rtmp::chunk::{ChunkDecoder, ChunkLimits};
    use std::io::{self, Read};
    use std::thread;
    use std::time::Duration;

    /// Decodes everything in `bytes` as the peer would, following our chunk size.
    fn decode(bytes: &[u8]) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            if m.type_id == msg::SET_CHUNK_SIZE {
                let s = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                dec.set_chunk_size(s).unwrap();
            }
            out.push(m);
        }
        out
    }

    /// Replies, frames (with extended and wrapping timestamps, two stream ids) and
    /// chunk size changes, written at random points over a real socket in both
    /// socket modes, must decode to exactly what was queued, in order.
    #[test]
    fn random_writes_decode_to_what_was_queued() {
        for seed in 1..9u64 {
            let mut rng = Rng::new(seed);
            let (mut server, mut client) = pair(Duration::from_secs(5));
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
            if seed % 2 == 0 {
                // A look for input leaves the socket non-blocking for the writes.
                let err = server.try_read(&mut [0u8; 1]).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            }
            let mut framing = RtmpFraming::new(server.peer());
            let mut batch = Batch::new();
            let mut expected: Vec<RawMessage> = Vec::new();
            let mut ts = [0u32; 3];
            for _ in 0..200 {
                match rng.below(10) {
                    0 => {
                        let size = [1u32, 7, 128, 4096, 60000][rng.below(5)];
                        let m = msg::set_chunk_size(size);
                        expected.push(m.clone());
                        framing.message(&mut batch, &m);
                    }
                    1 => {
                        let m = msg::on_status(1, "status", "X", "y");
                        expected.push(m.clone());
                        framing.message(&mut batch, &m);
                    }
                    2 => {
                        batch.write(&mut server).unwrap();
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
                        framing.frame(&mut batch, f, ts[k], sid);
                    }
                }
            }
            batch.write(&mut server).unwrap();
            server.shutdown_write().unwrap();
            let out = decode(&reader.join().unwrap());
            assert_eq!(out.len(), expected.len(), "seed {seed}");
            for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
                assert_eq!(a, b, "seed {seed} message {i}");
            }
        }
    }
}
