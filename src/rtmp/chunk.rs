//! RTMP chunk stream codec (RTMP 1.0 spec, section 5.3), free of I/O.
//!
//! [`ChunkDecoder`] turns untrusted bytes into whole messages incrementally,
//! reassembling interleaved chunk streams under explicit memory limits;
//! [`ChunkEncoder`] splits outgoing messages into chunks with the most compact
//! headers that every common reader interprets the same way.

use std::collections::HashMap;
use std::fmt;

use byteorder::{BigEndian, ByteOrder, LittleEndian};

pub const DEFAULT_CHUNK_SIZE: u32 = 128;
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// The message length field is 3 bytes wide.
pub const MAX_MESSAGE_LEN: u32 = 0xFF_FFFF;

const MIN_CSID: u32 = 2;
const MAX_CSID: u32 = 65599;
/// A 3-byte timestamp field holding this value means "see the 4-byte extension".
const EXTENDED_TS: u32 = 0xFF_FFFF;
/// Basic header (3) + fmt 0 message header (11) + extended timestamp (4).
pub const MAX_HEADER_LEN: usize = 18;
/// Cap on up-front reservation, so a header claiming a big message cannot make
/// us allocate memory the peer never fills.
const MAX_RESERVE: usize = 64 * 1024;

/// One complete message as carried by the chunk stream layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

/// Resource limits applied to a peer's chunk stream before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Longest message accepted; values above [`MAX_MESSAGE_LEN`] act like it.
    pub max_message_len: u32,
    /// Most distinct chunk stream ids a peer may use over the connection.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 8 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A header announced a message longer than the configured limit.
    MessageTooLong { csid: u32, len: u32, limit: u32 },
    /// A fmt 1/2/3 header on a chunk stream that never had a fmt 0 header.
    NoPreviousHeader { csid: u32, fmt: u8 },
    /// The peer used more distinct chunk stream ids than allowed.
    TooManyChunkStreams { limit: usize },
    /// Unfinished messages across all chunk streams would exceed twice the
    /// message length limit.
    TooMuchUnfinished { csid: u32, bytes: u64, limit: u64 },
    /// Set Chunk Size value outside 1..=0x7FFFFFFF.
    InvalidChunkSize(u32),
    /// Encoder: chunk stream id outside 2..=65599.
    InvalidCsid(u32),
    /// Encoder: payload does not fit the 3-byte length field.
    PayloadTooLong { len: usize },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::MessageTooLong { csid, len, limit } => write!(
                f,
                "chunk stream {csid}: message length {len} exceeds limit {limit}"
            ),
            ChunkError::NoPreviousHeader { csid, fmt } => write!(
                f,
                "chunk stream {csid}: fmt {fmt} header with no previous fmt 0 header on this chunk stream"
            ),
            ChunkError::TooManyChunkStreams { limit } => {
                write!(f, "too many chunk streams (limit {limit})")
            }
            ChunkError::TooMuchUnfinished { csid, bytes, limit } => write!(
                f,
                "chunk stream {csid}: unfinished messages would total {bytes} bytes (limit {limit})"
            ),
            ChunkError::InvalidChunkSize(size) => write!(
                f,
                "invalid chunk size {size} (must be 1..={MAX_CHUNK_SIZE})"
            ),
            ChunkError::InvalidCsid(csid) => write!(
                f,
                "invalid chunk stream id {csid} (must be {MIN_CSID}..={MAX_CSID})"
            ),
            ChunkError::PayloadTooLong { len } => write!(
                f,
                "message payload of {len} bytes exceeds the RTMP limit of {MAX_MESSAGE_LEN}"
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

fn check_chunk_size(size: u32) -> Result<(), ChunkError> {
    if size == 0 || size > MAX_CHUNK_SIZE {
        Err(ChunkError::InvalidChunkSize(size))
    } else {
        Ok(())
    }
}

/// Header state and reassembly buffer of one incoming chunk stream.
#[derive(Debug, Default)]
struct InStream {
    /// Timestamp of the most recent message started on this chunk stream.
    timestamp: u32,
    /// Added for fmt 3 headers that start a new message.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header used the 4-byte extended timestamp, and its value.
    extended: Option<u32>,
    /// A message is being reassembled (so fmt 3 means continuation).
    in_progress: bool,
    payload: Vec<u8>,
}

/// The chunk whose payload is currently being read.
#[derive(Debug, Clone, Copy)]
struct CurrentChunk {
    csid: u32,
    remaining: usize,
}

/// Incremental, memory-bounded chunk stream reader.
///
/// Call [`push`](Self::push) with whatever the socket produced, then
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. Parsing
/// stops after each complete message so that a Set Chunk Size or Abort
/// message can be applied before the chunks after it are read. Once drained,
/// at most one partial chunk header ([`MAX_HEADER_LEN`] bytes) stays buffered,
/// whatever the chunk size. Any error is a protocol violation: the connection
/// should be closed, and the decoder keeps returning that error.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    /// Unparsed bytes are `buf[pos..]`; a read offset avoids shifting per chunk.
    buf: Vec<u8>,
    pos: usize,
    streams: HashMap<u32, InStream>,
    current: Option<CurrentChunk>,
    bytes_received: u64,
    discarded: u64,
    failed: Option<ChunkError>,
}

/// Outcome of trying to parse one chunk header.
enum HeaderStep {
    NeedMore,
    Parsed,
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            buf: Vec::new(),
            pos: 0,
            streams: HashMap::new(),
            current: None,
            bytes_received: 0,
            discarded: 0,
            failed: None,
        }
    }

    /// Bytes of unfinished messages a peer may have announced at once: room for one
    /// maximal message interleaved with another (video with audio).
    fn unfinished_limit(&self) -> u64 {
        2 * u64::from(self.limits.max_message_len.min(MAX_MESSAGE_LEN))
    }

    /// Applies the peer's Set Chunk Size to the chunks that follow.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        check_chunk_size(size)?;
        self.chunk_size = size;
        Ok(())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Discards the partially received message on `csid` (Abort Message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            // Any bytes of a chunk already under way are dropped as they arrive,
            // because the stream is no longer in progress.
            s.in_progress = false;
            s.payload = Vec::new();
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes_received = self.bytes_received.wrapping_add(bytes.len() as u64);
        // Compact only when the consumed prefix is at least as large as what is
        // left, so a caller pushing without draining still costs amortized O(1).
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Total bytes pushed so far, for the acknowledgement window.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Unparsed bytes held internally; at most [`MAX_HEADER_LEN`] after a drain.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Partial messages dropped because a new fmt 0/1/2 header replaced them.
    pub fn discarded_partial_messages(&self) -> u64 {
        self.discarded
    }

    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.advance();
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn advance(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(cur) = self.current else {
                match self.read_header()? {
                    HeaderStep::NeedMore => return Ok(None),
                    HeaderStep::Parsed => continue,
                }
            };
            let n = cur.remaining.min(self.buf.len() - self.pos);
            if n > 0 {
                if let Some(s) = self.streams.get_mut(&cur.csid) {
                    if s.in_progress {
                        append_growing(&mut s.payload, &self.buf[self.pos..self.pos + n], s.length);
                    }
                }
                self.pos += n;
            }
            let remaining = cur.remaining - n;
            if remaining > 0 {
                self.current = Some(CurrentChunk { remaining, ..cur });
                return Ok(None);
            }
            self.current = None;
            if let Some(msg) = self.finish(cur.csid) {
                return Ok(Some(msg));
            }
        }
    }

    fn finish(&mut self, csid: u32) -> Option<RawMessage> {
        let s = self.streams.get_mut(&csid)?;
        if !s.in_progress || s.payload.len() != s.length as usize {
            return None;
        }
        s.in_progress = false;
        Some(RawMessage {
            csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
            payload: std::mem::take(&mut s.payload),
        })
    }

    /// Parses one chunk header if it is complete, updating the chunk stream's
    /// state and setting up `current` for its payload.
    fn read_header(&mut self) -> Result<HeaderStep, ChunkError> {
        let data = &self.buf[self.pos..];
        let Some(&b0) = data.first() else {
            return Ok(HeaderStep::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, basic_len) = match b0 & 0x3f {
            0 => match data.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(HeaderStep::NeedMore),
            },
            1 => match (data.get(1), data.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + u32::from(b2) * 256, 3),
                _ => return Ok(HeaderStep::NeedMore),
            },
            c => (u32::from(c), 1),
        };
        let known = self.streams.get(&csid);
        if fmt != 0 && known.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        let header_len = basic_len + [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = data.get(basic_len..header_len) else {
            return Ok(HeaderStep::NeedMore);
        };
        let after = &data[header_len..];

        let mut length = None;
        let mut type_id = None;
        let mut stream_id = None;
        let mut ts_field = None;
        if fmt <= 2 {
            ts_field = Some(BigEndian::read_u24(mh));
        }
        if fmt <= 1 {
            let len = BigEndian::read_u24(&mh[3..]);
            let limit = self.limits.max_message_len.min(MAX_MESSAGE_LEN);
            if len > limit {
                return Err(ChunkError::MessageTooLong { csid, len, limit });
            }
            length = Some(len);
            type_id = Some(mh[6]);
        }
        if fmt == 0 {
            stream_id = Some(LittleEndian::read_u32(&mh[7..]));
        }

        let continuation = fmt == 3 && known.is_some_and(|s| s.in_progress);
        let prev_extended = known.and_then(|s| s.extended);
        let has_extended = match ts_field {
            Some(field) => field == EXTENDED_TS,
            None => prev_extended.is_some(),
        };
        // Some(value) if this header carries a 4-byte timestamp.
        let (extended, ext_len) = if !has_extended {
            (None, 0)
        } else if continuation {
            // Writers disagree on repeating the 4 bytes here; take them only if
            // they match the message header's value (as SRS does).
            let want = prev_extended.unwrap_or(0).to_be_bytes();
            let avail = after.len().min(4);
            if after[..avail] != want[..avail] {
                (prev_extended, 0)
            } else if avail < 4 {
                return Ok(HeaderStep::NeedMore);
            } else {
                (prev_extended, 4)
            }
        } else {
            match after.get(..4) {
                Some(b) => (Some(BigEndian::read_u32(b)), 4),
                None => return Ok(HeaderStep::NeedMore),
            }
        };

        if known.is_none() && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                limit: self.limits.max_chunk_streams,
            });
        }
        if !continuation {
            // Each message is capped, but so is their sum: otherwise a peer could
            // hold max_chunk_streams unfinished messages of the maximum length.
            let new_len = length.or(known.map(|s| s.length)).unwrap_or(0);
            let unfinished: u64 = self
                .streams
                .iter()
                .filter(|(id, s)| **id != csid && s.in_progress)
                .map(|(_, s)| u64::from(s.length))
                .sum::<u64>()
                + u64::from(new_len);
            let limit = self.unfinished_limit();
            if unfinished > limit {
                return Err(ChunkError::TooMuchUnfinished {
                    csid,
                    bytes: unfinished,
                    limit,
                });
            }
        }
        self.pos += header_len + ext_len;
        let chunk_size = self.chunk_size as usize;
        let s = self.streams.entry(csid).or_default();

        if continuation {
            let left = s.length as usize - s.payload.len();
            self.current = Some(CurrentChunk {
                csid,
                remaining: left.min(chunk_size),
            });
            return Ok(HeaderStep::Parsed);
        }
        if fmt != 3 && s.in_progress {
            self.discarded += 1;
        }
        // The 3-byte field, or its extension, is the timestamp for fmt 0 and
        // the delta otherwise; fmt 3 reuses the previous delta unless it
        // carries its own extended value.
        let field = extended.or(ts_field);
        match fmt {
            0 => {
                let ts = field.unwrap_or(0);
                s.timestamp = ts;
                s.delta = ts;
            }
            _ => {
                if let Some(d) = field {
                    s.delta = d;
                }
                s.timestamp = s.timestamp.wrapping_add(s.delta);
            }
        }
        s.extended = extended;
        if let Some(len) = length {
            s.length = len;
        }
        if let Some(t) = type_id {
            s.type_id = t;
        }
        if let Some(id) = stream_id {
            s.stream_id = id;
        }
        s.in_progress = true;
        let len = s.length as usize;
        s.payload = Vec::with_capacity(len.min(chunk_size).min(MAX_RESERVE));
        self.current = Some(CurrentChunk {
            csid,
            remaining: len.min(chunk_size),
        });
        Ok(HeaderStep::Parsed)
    }
}

/// Appends without letting capacity run past the message length or far ahead
/// of the bytes actually received.
fn append_growing(payload: &mut Vec<u8>, bytes: &[u8], length: u32) {
    let needed = payload.len() + bytes.len();
    if needed > payload.capacity() {
        let target = needed
            .max(payload.capacity().saturating_mul(2))
            .min(length as usize)
            .max(needed);
        payload.reserve_exact(target - payload.len());
    }
    payload.extend_from_slice(bytes);
}

/// Header fields last written on one outgoing chunk stream.
#[derive(Debug, Clone, Copy)]
struct OutStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Format of the last header that set the delta (fmt 3 keeps it).
    delta_fmt: u8,
}

/// Splits outgoing messages into chunks, compressing headers per chunk stream.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: HashMap<u32, OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    /// Changes the size of chunks produced from now on; the caller must have
    /// sent the matching Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        check_chunk_size(size)?;
        self.chunk_size = size;
        Ok(())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// [`encode`](Self::encode) for a message already in one piece.
    pub fn encode_message(&mut self, m: &RawMessage, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        self.encode(m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload, out)
    }

    /// Appends all chunks of one message to `out`. On error nothing is written.
    pub fn encode(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        out.reserve(payload.len() + payload.len().div_ceil(self.chunk_size as usize) * 5 + 18);
        let extended =
            self.encode_header(csid, timestamp, type_id, stream_id, payload.len(), out)?;
        write_body(csid, self.chunk_size, extended, payload, out);
        Ok(())
    }

    /// Appends only the first chunk's header of a `length`-byte message; the body
    /// must follow at once, as [`body_slices`] lays it out when this returns `None`
    /// (no extended timestamp). `Some(field)` means every continuation chunk must
    /// repeat that extended timestamp, so a shared body does not fit: the caller
    /// writes the body with [`write_body`]. On error nothing is written.
    pub fn encode_header(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        length: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<u32>, ChunkError> {
        if !(MIN_CSID..=MAX_CSID).contains(&csid) {
            return Err(ChunkError::InvalidCsid(csid));
        }
        if length > MAX_MESSAGE_LEN as usize {
            return Err(ChunkError::PayloadTooLong { len: length });
        }
        let length = length as u32;
        let prev = self.streams.get(&csid).copied();
        let (fmt, field) = match prev {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.type_id != type_id || p.length != length {
                    (1, delta)
                } else if delta == p.delta && (p.delta_fmt == 1 || p.delta_fmt == 2) {
                    // Never right after fmt 0: readers disagree on what delta
                    // a fmt 3 header implies there.
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, timestamp),
        };
        let delta_fmt = match (fmt, prev) {
            (3, Some(p)) => p.delta_fmt,
            _ => fmt,
        };
        self.streams.insert(
            csid,
            OutStream {
                timestamp,
                delta: field,
                length,
                type_id,
                stream_id,
                delta_fmt,
            },
        );

        write_basic_header(out, fmt, csid);
        let ts3 = field.min(EXTENDED_TS);
        if fmt <= 2 {
            out.extend_from_slice(&ts3.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.push(type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&stream_id.to_le_bytes());
        }
        if field >= EXTENDED_TS {
            out.extend_from_slice(&field.to_be_bytes());
            return Ok(Some(field));
        }
        Ok(None)
    }
}

/// A message body as it follows its first chunk header, as slices to write in
/// order: the payload cut at `chunk_size`, each piece after the first behind the
/// fmt 3 header of its chunk stream (see [`fmt3_header`]). Nothing is copied, and
/// nothing depends on the timestamp or stream id, so every player writes the same
/// frame from the same memory, whatever header each puts in front.
pub fn body_slices<'a>(
    payload: &'a [u8],
    chunk_size: u32,
    fmt3_header: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    payload
        .chunks(chunk_size.max(1) as usize)
        .enumerate()
        .flat_map(move |(i, piece)| (i > 0).then_some(fmt3_header).into_iter().chain([piece]))
}

/// The one-byte fmt 3 basic header of chunk streams 2 to 63, which cover every
/// chunk stream we send on; None for others (their headers are longer).
pub fn fmt3_header(csid: u32) -> Option<&'static [u8]> {
    static HEADERS: [u8; 64] = {
        let mut h = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            h[i] = 0xC0 | i as u8;
            i += 1;
        }
        h
    };
    let i = usize::try_from(csid).ok().filter(|i| (2..64).contains(i))?;
    HEADERS.get(i..i + 1)
}

/// Appends a message body after its first header (see [`body_slices`]); with an
/// extended timestamp, every continuation chunk repeats it, as ffmpeg, librtmp and
/// Flash do.
pub fn write_body(
    csid: u32,
    chunk_size: u32,
    extended: Option<u32>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    for (i, piece) in payload.chunks(chunk_size as usize).enumerate() {
        if i > 0 {
            write_basic_header(out, 3, csid);
            if let Some(field) = extended {
                out.extend_from_slice(&field.to_be_bytes());
            }
        }
        out.extend_from_slice(piece);
    }
}

fn write_basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        2..=63 => out.push(f | csid as u8),
        64..=319 => out.extend_from_slice(&[f, (csid - 64) as u8]),
        _ => {
            let v = csid - 64;
            out.extend_from_slice(&[f | 1, v as u8, (v >> 8) as u8]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rng::Rng;

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: payload.to_vec(),
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        dec.push(bytes);
        let mut v = Vec::new();
        while let Some(m) = dec.next_message()? {
            v.push(m);
        }
        Ok(v)
    }

    fn decode(bytes: &[u8]) -> Vec<RawMessage> {
        decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), bytes).unwrap()
    }

    fn encode_one(enc: &mut ChunkEncoder, m: &RawMessage) -> Vec<u8> {
        let mut out = Vec::new();
        enc.encode_message(m, &mut out).unwrap();
        out
    }

    #[test]
    fn basic_header_forms() {
        let cases: &[(u32, &[u8])] = &[
            (2, &[0x02]),
            (63, &[0x3f]),
            (64, &[0x00, 0x00]),
            (319, &[0x00, 0xff]),
            (320, &[0x01, 0x00, 0x01]),
            (65599, &[0x01, 0xff, 0xff]),
        ];
        for &(csid, basic) in cases {
            let mut bytes = basic.to_vec();
            // fmt 0: ts 0x010203, len 2, type 20, stream id 1 (little endian).
            bytes.extend_from_slice(&[1, 2, 3, 0, 0, 2, 20, 1, 0, 0, 0, 0xaa, 0xbb]);
            let mut enc = ChunkEncoder::new();
            let m = msg(csid, 0x010203, 20, 1, &[0xaa, 0xbb]);
            assert_eq!(encode_one(&mut enc, &m), bytes, "csid {csid}");
            assert_eq!(decode(&bytes), vec![m], "csid {csid}");
        }
        let mut enc = ChunkEncoder::new();
        for bad in [0, 1, 65600] {
            let mut out = Vec::new();
            assert_eq!(
                enc.encode(bad, 0, 1, 0, b"x", &mut out),
                Err(ChunkError::InvalidCsid(bad))
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn each_fmt_by_hand() {
        let bytes = [
            // fmt 0, csid 4: ts 100, len 3, type 8, stream 1.
            0x04, 0, 0, 100, 0, 0, 3, 8, 1, 0, 0, 0, b'a', b'b', b'c',
            // fmt 1: delta 10, len 2, type 9.
            0x44, 0, 0, 10, 0, 0, 2, 9, b'd', b'e', // fmt 2: delta 5.
            0x84, 0, 0, 5, b'f', b'g', // fmt 3: new message, reuses delta 5.
            0xc4, b'h', b'i',
        ];
        assert_eq!(
            decode(&bytes),
            vec![
                msg(4, 100, 8, 1, b"abc"),
                msg(4, 110, 9, 1, b"de"),
                msg(4, 115, 9, 1, b"fg"),
                msg(4, 120, 9, 1, b"hi"),
            ]
        );
    }

    #[test]
    fn fmt3_after_fmt0_adds_the_fmt0_timestamp() {
        let bytes = [0x05, 0, 0, 7, 0, 0, 1, 8, 0, 0, 0, 0, 1, 0xc5, 2];
        let got = decode(&bytes);
        assert_eq!(got[1].timestamp, 14);
    }

    /// RTMP 1.0 section 5.3.2.1, example 1: audio with fmt 0, 2, 3, 3.
    #[test]
    fn spec_example_audio() {
        let payload = [0x5a; 32];
        let mut expected = vec![0x03, 0, 0x03, 0xe8, 0, 0, 32, 8, 0x39, 0x30, 0, 0];
        expected.extend_from_slice(&payload);
        expected.extend_from_slice(&[0x83, 0, 0, 20]);
        expected.extend_from_slice(&payload);
        expected.push(0xc3);
        expected.extend_from_slice(&payload);
        expected.push(0xc3);
        expected.extend_from_slice(&payload);

        let msgs: Vec<_> = (0..4)
            .map(|i| msg(3, 1000 + 20 * i, 8, 12345, &payload))
            .collect();
        let mut enc = ChunkEncoder::new();
        let mut out = Vec::new();
        for m in &msgs {
            out.extend(encode_one(&mut enc, m));
        }
        assert_eq!(out, expected);
        assert_eq!(decode(&expected), msgs);
    }

    /// RTMP 1.0 section 5.3.2.2, example 2: a 307-byte message in three chunks.
    #[test]
    fn spec_example_split_message() {
        let payload: Vec<u8> = (0..307u32).map(|i| i as u8).collect();
        let mut expected = vec![0x04, 0, 0x03, 0xe8, 0, 0x01, 0x33, 9, 0x3a, 0x30, 0, 0];
        expected.extend_from_slice(&payload[..128]);
        expected.push(0xc4);
        expected.extend_from_slice(&payload[128..256]);
        expected.push(0xc4);
        expected.extend_from_slice(&payload[256..]);

        let m = msg(4, 1000, 9, 12346, &payload);
        assert_eq!(encode_one(&mut ChunkEncoder::new(), &m), expected);
        assert_eq!(decode(&expected), vec![m]);
    }

    #[test]
    fn extended_timestamp_fmt0_single_chunk() {
        let bytes = [
            0x03, 0xff, 0xff, 0xff, 0, 0, 2, 8, 1, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2,
        ];
        assert_eq!(decode(&bytes), vec![msg(3, 0x1234_5678, 8, 1, &[1, 2])]);
        let mut enc = ChunkEncoder::new();
        assert_eq!(
            encode_one(&mut enc, &msg(3, 0x1234_5678, 8, 1, &[1, 2])),
            bytes
        );
        // Exactly 0xFFFFFF must also use the extension.
        let out = encode_one(&mut ChunkEncoder::new(), &msg(3, 0xff_ffff, 8, 1, &[]));
        assert_eq!(
            out,
            [0x03, 0xff, 0xff, 0xff, 0, 0, 0, 8, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff]
        );
    }

    fn extended_split(repeat: bool) -> Vec<u8> {
        // 200-byte message at ts 0x01000000, chunk size 128.
        let mut b = vec![0x06, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0, 1, 0, 0, 0];
        b.extend([7u8; 128]);
        b.push(0xc6);
        if repeat {
            b.extend_from_slice(&[1, 0, 0, 0]);
        }
        b.extend([7u8; 72]);
        b
    }

    #[test]
    fn extended_timestamp_on_continuation_with_and_without_repeat() {
        let expected = vec![msg(6, 0x0100_0000, 9, 1, &[7; 200])];
        let with = extended_split(true);
        let without = extended_split(false);
        assert_eq!(decode(&with), expected);
        assert_eq!(decode(&without), expected);
        for bytes in [&with, &without] {
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            let mut got = Vec::new();
            for b in bytes.iter() {
                got.extend(decode_all(&mut dec, &[*b]).unwrap());
            }
            assert_eq!(got, expected);
        }
        // Our encoder repeats the 4 bytes.
        assert_eq!(encode_one(&mut ChunkEncoder::new(), &expected[0]), with);
    }

    #[test]
    fn fmt3_new_message_after_extended_header_reads_its_delta() {
        let mut b = vec![
            0x07, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0x01, 0, 0, 0, 0xaa,
        ];
        // fmt 2 with extended delta 0x02000000.
        b.extend_from_slice(&[0x87, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0xbb]);
        // fmt 3 new message: the 4 bytes are always there.
        b.extend_from_slice(&[0xc7, 2, 0, 0, 0, 0xcc]);
        assert_eq!(
            decode(&b),
            vec![
                msg(7, 0x0100_0000, 8, 1, &[0xaa]),
                msg(7, 0x0300_0000, 8, 1, &[0xbb]),
                msg(7, 0x0500_0000, 8, 1, &[0xcc]),
            ]
        );
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a: Vec<u8> = vec![0xa1; 200];
        let b: Vec<u8> = vec![0xb2; 150];
        let mut bytes = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        bytes.extend_from_slice(&a[..128]);
        bytes.extend_from_slice(&[0x06, 0, 0, 2, 0, 0, 150, 9, 1, 0, 0, 0]);
        bytes.extend_from_slice(&b[..128]);
        bytes.push(0xc4);
        bytes.extend_from_slice(&a[128..]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&b[128..]);
        assert_eq!(
            decode(&bytes),
            vec![msg(4, 1, 8, 1, &a), msg(6, 2, 9, 1, &b)]
        );
    }

    fn sample_messages(rng: &mut Rng, count: usize) -> Vec<RawMessage> {
        let mut ts = [0u32; 4];
        (0..count)
            .map(|_| {
                let i = rng.below(4);
                let csid = [2, 3, 100, 40000][i];
                ts[i] = match rng.below(6) {
                    0 => ts[i].wrapping_add(0x0100_0000),
                    1 if ts[i] > 10 => ts[i] - 10,
                    2 => ts[i],
                    _ => ts[i] + rng.below(50) as u32,
                };
                let len = match rng.below(5) {
                    0 => 0,
                    1 => 300,
                    _ => rng.below(700),
                };
                let payload = rng.bytes(len);
                let stream_id = rng.below(2) as u32;
                msg(csid, ts[i], 8 + rng.below(2) as u8, stream_id, &payload)
            })
            .collect()
    }

    fn round_trip(chunk_size: u32, seed: u64) {
        let mut rng = Rng::new(seed);
        let msgs = sample_messages(&mut rng, 60);
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size).unwrap();
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(encode_one(&mut enc, m));
        }
        // One byte at a time.
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(chunk_size).unwrap();
        let mut got = Vec::new();
        for b in &wire {
            got.extend(decode_all(&mut dec, &[*b]).unwrap());
            assert!(dec.buffered_len() <= MAX_HEADER_LEN);
        }
        assert_eq!(got, msgs);
        assert_eq!(dec.bytes_received(), wire.len() as u64);
        // Random splits.
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(chunk_size).unwrap();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(900)).min(rest.len());
            got.extend(decode_all(&mut dec, &rest[..n]).unwrap());
            assert!(dec.buffered_len() <= MAX_HEADER_LEN);
            rest = &rest[n..];
        }
        assert_eq!(got, msgs);
        assert_eq!(dec.discarded_partial_messages(), 0);
    }

    #[test]
    fn round_trips() {
        for seed in 1..20 {
            round_trip(DEFAULT_CHUNK_SIZE, seed);
            round_trip(1, seed);
            round_trip(65536, seed);
            round_trip(MAX_CHUNK_SIZE, seed);
        }
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let mut enc = ChunkEncoder::new();
        let mut wire = Vec::new();
        let big = vec![3u8; 1000];
        wire.extend(encode_one(&mut enc, &msg(3, 0, 8, 1, &big)));
        let mut set = Vec::new();
        enc.encode(2, 0, 1, 0, &4096u32.to_be_bytes(), &mut set)
            .unwrap();
        wire.extend(set);
        enc.set_chunk_size(4096).unwrap();
        wire.extend(encode_one(&mut enc, &msg(3, 40, 8, 1, &big)));

        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.push(&wire);
        let mut got = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            if m.type_id == 1 {
                dec.set_chunk_size(BigEndian::read_u32(&m.payload)).unwrap();
            }
            got.push(m);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], msg(3, 40, 8, 1, &big));
    }

    #[test]
    fn chunk_size_validation() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut enc = ChunkEncoder::new();
        for bad in [0, 0x8000_0000, u32::MAX] {
            assert_eq!(
                dec.set_chunk_size(bad),
                Err(ChunkError::InvalidChunkSize(bad))
            );
            assert_eq!(
                enc.set_chunk_size(bad),
                Err(ChunkError::InvalidChunkSize(bad))
            );
        }
        assert_eq!(dec.chunk_size(), DEFAULT_CHUNK_SIZE);
        assert_eq!(enc.chunk_size(), DEFAULT_CHUNK_SIZE);
        assert_eq!(
            ChunkError::InvalidChunkSize(0).to_string(),
            "invalid chunk size 0 (must be 1..=2147483647)"
        );
        dec.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
        assert_eq!(dec.chunk_size(), MAX_CHUNK_SIZE);
    }

    #[test]
    fn fmt1_without_fmt0_is_an_error() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let err = decode_all(&mut dec, &[0x47, 0, 0, 1, 0, 0, 1, 8, 0]).unwrap_err();
        assert_eq!(err, ChunkError::NoPreviousHeader { csid: 7, fmt: 1 });
        assert_eq!(
            err.to_string(),
            "chunk stream 7: fmt 1 header with no previous fmt 0 header on this chunk stream"
        );
        // The decoder stays failed.
        assert_eq!(dec.next_message(), Err(err));
        for first in [0x87u8, 0xc7] {
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            assert!(decode_all(&mut dec, &[first]).is_err());
        }
    }

    #[test]
    fn over_long_message_is_rejected_from_the_header() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        // 20_000_000 does not fit 24 bits, so use a limit below a legal length.
        let err =
            decode_all(&mut dec, &[0x05, 0, 0, 0, 0xff, 0xff, 0xff, 8, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            ChunkError::MessageTooLong {
                csid: 5,
                len: 0xff_ffff,
                limit: 8 * 1024 * 1024
            }
        );
        assert_eq!(
            err.to_string(),
            "chunk stream 5: message length 16777215 exceeds limit 8388608"
        );
        // Nothing was allocated for the message.
        assert!(dec.streams.is_empty());

        // fmt 1 growing the length past a small limit.
        let limits = ChunkLimits {
            max_message_len: 10,
            max_chunk_streams: 4,
        };
        let mut dec = ChunkDecoder::new(limits);
        let mut b = vec![0x05, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 11, 8]);
        assert_eq!(
            decode_all(&mut dec, &b),
            Err(ChunkError::MessageTooLong {
                csid: 5,
                len: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn too_many_chunk_streams() {
        let limits = ChunkLimits {
            max_message_len: 100,
            max_chunk_streams: 3,
        };
        let mut dec = ChunkDecoder::new(limits);
        let mut b = Vec::new();
        for csid in 3..6u8 {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]);
        }
        assert_eq!(decode_all(&mut dec, &b).unwrap().len(), 3);
        let err = decode_all(&mut dec, &[6, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err, ChunkError::TooManyChunkStreams { limit: 3 });
        assert_eq!(err.to_string(), "too many chunk streams (limit 3)");
        assert_eq!(ChunkLimits::default().max_chunk_streams, 64);
    }

    #[test]
    fn unfinished_messages_are_capped_in_total() {
        let limits = ChunkLimits {
            max_message_len: 1000,
            max_chunk_streams: 64,
        };
        let mut dec = ChunkDecoder::new(limits);
        dec.set_chunk_size(10).unwrap();
        let mut b = Vec::new();
        // Three chunk streams each start a 900-byte message and send one chunk.
        for csid in [4u8, 5, 6] {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0x84, 8, 1, 0, 0, 0]);
            b.extend_from_slice(&[0u8; 10]);
        }
        dec.push(&b);
        assert_eq!(
            dec.next_message(),
            Err(ChunkError::TooMuchUnfinished {
                csid: 6,
                bytes: 2700,
                limit: 2000
            })
        );
        assert_eq!(
            ChunkError::TooMuchUnfinished {
                csid: 6,
                bytes: 2700,
                limit: 2000
            }
            .to_string(),
            "chunk stream 6: unfinished messages would total 2700 bytes (limit 2000)"
        );
    }

    #[test]
    fn abort_discards_partial_message() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut b = vec![0x04, 0, 0, 0, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&[1; 128]);
        assert!(decode_all(&mut dec, &b).unwrap().is_empty());
        dec.abort(4);
        // A fmt 3 chunk now starts a fresh 200-byte message.
        let mut b = vec![0xc4];
        b.extend_from_slice(&[2; 128]);
        b.push(0xc4);
        b.extend_from_slice(&[2; 72]);
        assert_eq!(
            decode_all(&mut dec, &b).unwrap(),
            vec![msg(4, 0, 8, 1, &[2; 200])]
        );

        // Abort in the middle of a chunk: the rest of that chunk is dropped.
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut b = vec![0x04, 0, 0, 0, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&[1; 50]);
        assert!(decode_all(&mut dec, &b).unwrap().is_empty());
        dec.abort(4);
        let mut b = vec![1; 78];
        b.extend_from_slice(&[0x04, 0, 0, 9, 0, 0, 1, 8, 1, 0, 0, 0, 5]);
        assert_eq!(
            decode_all(&mut dec, &b).unwrap(),
            vec![msg(4, 9, 8, 1, &[5])]
        );
        assert_eq!(dec.discarded_partial_messages(), 0);
        dec.abort(99);
    }

    #[test]
    fn new_header_mid_message_discards_and_counts() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut b = vec![0x04, 0, 0, 0, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&[1; 128]);
        b.extend_from_slice(&[0x84, 0, 0, 5]);
        b.extend_from_slice(&[2; 128]);
        b.push(0xc4);
        b.extend_from_slice(&[2; 72]);
        assert_eq!(
            decode_all(&mut dec, &b).unwrap(),
            vec![msg(4, 5, 8, 1, &[2; 200])]
        );
        assert_eq!(dec.discarded_partial_messages(), 1);
    }

    #[test]
    fn zero_length_messages() {
        let m = msg(3, 5, 4, 0, &[]);
        let mut enc = ChunkEncoder::new();
        let wire = encode_one(&mut enc, &m);
        assert_eq!(wire, [0x03, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(decode(&wire), vec![m]);
    }

    #[test]
    fn encoder_header_choice() {
        let mut enc = ChunkEncoder::new();
        let fmt_of = |enc: &mut ChunkEncoder, ts: u32, t: u8, sid: u32, len: usize| {
            encode_one(enc, &msg(3, ts, t, sid, &vec![0; len]))[0] >> 6
        };
        assert_eq!(fmt_of(&mut enc, 100, 8, 1, 10), 0);
        assert_eq!(
            fmt_of(&mut enc, 100, 8, 1, 10),
            2,
            "no fmt 3 right after fmt 0"
        );
        assert_eq!(fmt_of(&mut enc, 100, 8, 1, 10), 3);
        assert_eq!(fmt_of(&mut enc, 120, 8, 1, 10), 2);
        assert_eq!(fmt_of(&mut enc, 140, 8, 1, 10), 3);
        assert_eq!(fmt_of(&mut enc, 160, 8, 1, 11), 1);
        assert_eq!(fmt_of(&mut enc, 180, 8, 1, 11), 3);
        assert_eq!(fmt_of(&mut enc, 200, 9, 1, 11), 1);
        assert_eq!(fmt_of(&mut enc, 150, 9, 1, 11), 0, "timestamp went back");
        assert_eq!(fmt_of(&mut enc, 150, 9, 2, 11), 0, "stream id changed");
    }

    #[test]
    fn encoder_rejects_over_long_payload() {
        let mut enc = ChunkEncoder::new();
        let mut out = vec![9];
        let big = vec![0u8; MAX_MESSAGE_LEN as usize + 1];
        assert_eq!(
            enc.encode(3, 0, 9, 1, &big, &mut out),
            Err(ChunkError::PayloadTooLong { len: big.len() })
        );
        assert_eq!(out, [9]);
    }

    #[test]
    fn header_plus_shared_body_is_the_whole_message() {
        for chunk_size in [1u32, 128, 4096] {
            for len in [0usize, 1, 127, 128, 129, 4096, 10_000] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut whole = ChunkEncoder::new();
                let mut split = ChunkEncoder::new();
                whole.set_chunk_size(chunk_size).unwrap();
                split.set_chunk_size(chunk_size).unwrap();
                let body: Vec<u8> = body_slices(&payload, chunk_size, fmt3_header(6).unwrap())
                    .flatten()
                    .copied()
                    .collect();
                for ts in [0u32, 40, 80, 500] {
                    let mut expected = Vec::new();
                    whole.encode(6, ts, 9, 1, &payload, &mut expected).unwrap();
                    let mut got = Vec::new();
                    let ext = split.encode_header(6, ts, 9, 1, len, &mut got).unwrap();
                    assert_eq!(ext, None);
                    got.extend_from_slice(&body);
                    assert_eq!(
                        got, expected,
                        "chunk size {chunk_size}, {len} bytes, ts {ts}"
                    );
                }
            }
        }
    }

    #[test]
    fn fmt3_headers_exist_for_one_byte_chunk_stream_ids_only() {
        assert_eq!(fmt3_header(2), Some(&[0xC2][..]));
        assert_eq!(fmt3_header(63), Some(&[0xFF][..]));
        for csid in [0, 1, 64, 65599, u32::MAX] {
            assert_eq!(fmt3_header(csid), None, "csid {csid}");
        }
    }

    #[test]
    fn extended_timestamps_are_repeated_on_every_chunk() {
        let mut enc = ChunkEncoder::new();
        let payload = vec![5u8; 300];
        let mut out = Vec::new();
        let ext = enc
            .encode_header(4, 0x0100_0000, 8, 1, payload.len(), &mut out)
            .unwrap();
        assert_eq!(ext, Some(0x0100_0000));
        write_body(4, 128, ext, &payload, &mut out);
        // Header 12 + 4; two continuations of 1 + 4 each.
        assert_eq!(out.len(), 16 + 300 + 2 * 5);
        let m = msg(4, 0x0100_0000, 8, 1, &payload);
        assert_eq!(decode(&out), vec![m]);
    }
    #[test]
    fn garbage_never_panics() {
        for seed in 1..20_000u64 {
            let mut rng = Rng::new(seed);
            let mut dec = ChunkDecoder::new(ChunkLimits {
                max_message_len: 4096,
                max_chunk_streams: 8,
            });
            if seed % 3 == 0 {
                let _ = dec.set_chunk_size(1 + rng.below(300) as u32);
            }
            let bytes = rng.bytes(20);
            // Bias some seeds towards a valid first header so later paths run.
            let mut bytes = bytes;
            if seed % 2 == 0 {
                bytes[0] &= 0x3f;
            }
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(8)).min(rest.len());
                dec.push(&rest[..n]);
                rest = &rest[n..];
                for _ in 0..50 {
                    match dec.next_message() {
                        Ok(Some(_)) => continue,
                        _ => break,
                    }
                }
                if seed % 5 == 0 {
                    dec.abort(rng.below(70) as u32);
                }
            }
        }
    }

    #[test]
    fn buffer_stays_bounded_with_huge_chunk_size() {
        let len = 5 * 1024 * 1024 + 123;
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
        let mut wire = Vec::new();
        enc.encode(5, 0, 9, 1, &payload, &mut wire).unwrap();
        enc.encode(5, 33, 9, 1, &payload[..100], &mut wire).unwrap();

        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
        let mut got = Vec::new();
        for piece in wire.chunks(64 * 1024) {
            dec.push(piece);
            assert!(dec.buffered_len() <= MAX_HEADER_LEN + piece.len());
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
            assert!(dec.buffered_len() <= MAX_HEADER_LEN);
            assert!(dec.buf.capacity() <= 2 * (MAX_HEADER_LEN + 64 * 1024));
            if let Some(s) = dec.streams.get(&5) {
                // Capacity follows received bytes, not the claimed length.
                assert!(s.payload.capacity() <= (2 * s.payload.len()).max(MAX_RESERVE));
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, payload);
        assert_eq!(got[1].timestamp, 33);
    }
}
