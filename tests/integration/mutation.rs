//! Seeded mutation test of the protocol core: recorded client sessions (see
//! tests/fixtures/sessions/README.md) are damaged in a few thousand deterministic ways
//! and replayed, in process and without sockets, through `ServerHandshake` and
//! `ServerSession`, fed in random-sized pieces. Bad input must end in a clean error,
//! never a panic, a hang or unbounded memory. For every case:
//!
//! - nothing panics (each case runs under `catch_unwind`; failures name their seed),
//!   nor overflows a connection thread's stack (the cases run on a thread of that
//!   size, in a child process so that an overflow fails only this test),
//! - the case finishes (a watchdog fails the test if one runs for too long),
//! - feeding the bytes in pieces gives exactly the outcome of feeding them at once,
//! - what comes out is bounded by what went in: events, queued replies, the bytes of
//!   reassembled messages and of decoded AMF values, and a chunk decoder holds at most
//!   one partial header once drained.
//!
//! `RTMPD_MUTATION_SEED=0x...` replays one case (as printed by a failure),
//! `RTMPD_MUTATION_CASES=N` changes the number of cases (default 5000).
//!
//! The unmutated recordings must give the expected events (connect, publish or play,
//! frame counts). At the end are reproducers of bugs found by this test, by hand and
//! by the fuzz targets in tests/fuzz (scripts/fuzz.sh).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::amf::amf0::{self, Amf0Value, AmfLimits};
use rtmpd::media::frame::FrameRole;
use rtmpd::rng::Rng;
use rtmpd::rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_HEADER_LEN};
use rtmpd::rtmp::handshake::HANDSHAKE_SIZE;
use rtmpd::rtmp::message::{self as msg, Command};
use rtmpd::rtmp::session::SessionEvent;

use crate::harness::{self, amf0_weight, replay, Outcome, AMF_EXPANSION_SLACK, HANDSHAKE_LEN};

const FFMPEG_PUBLISH: &[u8] = include_bytes!("../fixtures/sessions/ffmpeg_publish.bin");
const RTMPDUMP_PLAY: &[u8] = include_bytes!("../fixtures/sessions/rtmpdump_play.bin");
const FFMPEG_PLAY: &[u8] = include_bytes!("../fixtures/sessions/ffmpeg_play.bin");

const RECORDINGS: [(&str, &[u8]); 3] = [
    ("ffmpeg_publish", FFMPEG_PUBLISH),
    ("rtmpdump_play", RTMPDUMP_PLAY),
    ("ffmpeg_play", FFMPEG_PLAY),
];

const DEFAULT_CASES: u64 = 5000;
const BASE_SEED: u64 = 0x5EED_0F2A_7D00_0001;
/// A case still running after this long counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Mutated inputs never grow past this, so every case is quick.
const MAX_CASE_LEN: usize = 160 * 1024;

fn case_seed(case: u64) -> u64 {
    BASE_SEED ^ case.wrapping_mul(0xA076_1D64_78BD_642F)
}

// ---------------------------------------------------------------------------------
// Where the chunks of a recording are

/// One chunk of a recording, as a correct reader sees it.
#[derive(Debug, Clone)]
struct ChunkInfo {
    /// Offset of the basic header.
    start: usize,
    basic_len: usize,
    fmt: u8,
    /// Starts a message (rather than continuing one).
    first: bool,
    type_id: u8,
    /// The chunk size in force when this chunk was read.
    chunk_size: usize,
    payload: Range<usize>,
}

/// Walks the chunk stream after the handshake. Stops at the (possibly truncated)
/// end of the recording.
fn walk(rec: &[u8]) -> Vec<ChunkInfo> {
    #[derive(Default)]
    struct In {
        len: usize,
        type_id: u8,
        left: usize,
        extended: bool,
    }
    let u24 = |b: &[u8]| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
    let mut streams: HashMap<u32, In> = HashMap::new();
    let mut chunks = Vec::new();
    let mut chunk_size = 128;
    let mut pos = HANDSHAKE_LEN;
    while pos < rec.len() {
        let b0 = rec[pos];
        let fmt = b0 >> 6;
        let (csid, basic_len) = match b0 & 0x3f {
            0 => match rec.get(pos + 1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => break,
            },
            1 => match rec.get(pos + 1..pos + 3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => break,
            },
            c => (u32::from(c), 1),
        };
        let mh_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = rec.get(pos + basic_len..pos + basic_len + mh_len) else {
            break;
        };
        let s = streams.entry(csid).or_default();
        if fmt <= 1 {
            s.len = u24(&mh[3..]);
            s.type_id = mh[6];
        }
        if fmt <= 2 {
            s.extended = u24(mh) == 0xFF_FFFF;
        }
        let first = fmt != 3 || s.left == 0;
        if first {
            s.left = s.len;
        }
        let header_end = pos + basic_len + mh_len + if s.extended { 4 } else { 0 };
        let n = s.left.min(chunk_size);
        if header_end + n > rec.len() {
            break;
        }
        chunks.push(ChunkInfo {
            start: pos,
            basic_len,
            fmt,
            first,
            type_id: s.type_id,
            chunk_size,
            payload: header_end..header_end + n,
        });
        if first && s.type_id == msg::SET_CHUNK_SIZE && n >= 4 {
            let b = &rec[header_end..header_end + 4];
            chunk_size = (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7FFF_FFFF) as usize;
        }
        s.left -= n;
        pos = header_end + n;
    }
    chunks
}

struct Recording {
    name: &'static str,
    bytes: &'static [u8],
    chunks: Vec<ChunkInfo>,
}

fn recordings() -> Vec<Recording> {
    RECORDINGS
        .iter()
        .map(|&(name, bytes)| Recording {
            name,
            bytes,
            chunks: walk(bytes),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Mutations

const INTERESTING: [u8; 10] = [0x00, 0xFF, 0x7F, 0x80, 0x03, 0xC3, 0x01, 0x02, 0x3F, 0x40];
const HUGE_U32: [u32; 8] = [
    0,
    1,
    0x7F,
    0xFF_FFFF,
    0x7F_FFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
];
const MESSAGE_TYPES: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 19, 20, 22];

/// A random offset, usually past the handshake where the interesting parsing is.
fn position(rng: &mut Rng, len: usize) -> usize {
    if len > HANDSHAKE_LEN && rng.percent(85) {
        rng.between(HANDSHAKE_LEN, len - 1)
    } else {
        rng.below(len.max(1))
    }
}

fn write_be(buf: &mut [u8], at: usize, value: u32, width: usize) {
    let bytes = value.to_be_bytes();
    for (i, b) in bytes[4 - width..].iter().enumerate() {
        if let Some(slot) = buf.get_mut(at + i) {
            *slot = *b;
        }
    }
}

/// A small AMF0 body that stresses the decoder or the command handler.
fn hostile_amf(rng: &mut Rng) -> Vec<u8> {
    let name = |s: &str| {
        let mut v = vec![0x02, 0, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let number = |n: f64| {
        let mut v = vec![0x00];
        v.extend_from_slice(&n.to_bits().to_be_bytes());
        v
    };
    const NAMES: [&str; 13] = [
        "connect",
        "createStream",
        "deleteStream",
        "publish",
        "play",
        "play2",
        "pause",
        "FCUnpublish",
        "closeStream",
        "receiveAudio",
        "@setDataFrame",
        "onMetaData",
        "bogus",
    ];
    let command = *rng.pick(&NAMES);
    let mut body = name(command);
    body.extend(number(*rng.pick(&[
        0.0,
        1.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        4294967296.0,
        1e300,
    ])));
    match rng.below(10) {
        // Deep nesting of objects, ECMA arrays or strict arrays.
        0 => {
            for _ in 0..rng.between(1, 80) {
                const NESTS: [&[u8]; 3] = [
                    &[0x03, 0x00, 0x01, b'a'],
                    &[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a'],
                    &[0x0A, 0, 0, 0, 1],
                ];
                let nest = *rng.pick(&NESTS);
                body.extend_from_slice(nest);
            }
        }
        // Lying lengths and counts.
        1 => {
            body.push(*rng.pick(&[0x02, 0x0C, 0x0F, 0x0A, 0x08, 0x07, 0x0B]));
            body.extend_from_slice(&rng.pick(&HUGE_U32).to_be_bytes());
        }
        // Strict array of many tiny items.
        2 => {
            let n = rng.between(0, 5000);
            body.push(0x0A);
            body.extend_from_slice(&(n as u32).to_be_bytes());
            body.extend(std::iter::repeat_n(0x05, n));
        }
        // AVM+ switch to AMF3 followed by arbitrary AMF3 (and junk).
        3 => {
            body.push(0x11);
            body.push(rng.below(0x13) as u8);
            let n = rng.below(24);
            body.extend(rng.bytes(n));
        }
        // AMF3 references back into an object being built.
        4 => body.extend_from_slice(&[0x05, 0x11, 0x09, 0x05, 0x01, 0x09, 0x00, 0x09, 0x00]),
        // AMF3 string table and back references.
        5 => {
            body.extend_from_slice(&[0x05, 0x11, 0x09, 0x0B, 0x01, 0x06, 0x07, b'a', b'b', b'c']);
            body.extend_from_slice(&[0x06, 0x00, 0x06, 0x00, 0x06, 0x02, 0x09, 0x00]);
        }
        // Stream names and arguments of odd types.
        6 => {
            body.push(0x05);
            body.extend(number(f64::NAN));
            body.extend(name(&"x".repeat(rng.below(200))));
        }
        // A command object that is not an object.
        7 => body.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'p', b'p']),
        // Empty key followed by a value, then a missing end marker.
        8 => body.extend_from_slice(&[0x03, 0x00, 0x00, 0x05, 0x00, 0x00]),
        _ => {
            let n = rng.below(64);
            body.extend(rng.bytes(n));
        }
    }
    body
}

/// One complete message as chunks (fmt 0, then fmt 3 continuations).
fn encode_message(
    csid: u8,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let mut out = vec![csid & 0x3f];
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, part) in payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            out.push(0xC0 | (csid & 0x3f));
        }
        out.extend_from_slice(part);
    }
    out
}

/// A message a client could send but these recordings never do.
fn injected_message(rng: &mut Rng, chunk_size: usize) -> Vec<u8> {
    let huge = rng.pick(&HUGE_U32).to_be_bytes();
    let (csid, type_id, stream_id, payload): (u8, u8, u32, Vec<u8>) = match rng.below(10) {
        0 => (2, msg::SET_CHUNK_SIZE, 0, huge.to_vec()),
        1 => (2, msg::ABORT, 0, huge.to_vec()),
        2 => (2, msg::WINDOW_ACK_SIZE, 0, huge.to_vec()),
        3 => (
            2,
            msg::SET_PEER_BANDWIDTH,
            0,
            vec![huge[0], huge[1], huge[2], huge[3], 9],
        ),
        4 => {
            let mut p = vec![0, rng.below(10) as u8];
            p.extend_from_slice(&huge);
            p.truncate(rng.between(0, p.len()));
            (2, msg::USER_CONTROL, 0, p)
        }
        5 => {
            // Aggregate with sub-messages of honest or lying lengths.
            let mut p = Vec::new();
            for _ in 0..rng.between(0, 6) {
                let len = rng.below(32);
                let claimed = if rng.percent(70) {
                    len as u32
                } else {
                    *rng.pick(&HUGE_U32)
                };
                p.push(*rng.pick(&MESSAGE_TYPES));
                p.extend_from_slice(&claimed.to_be_bytes()[1..]);
                p.extend_from_slice(&rng.bytes(4));
                p.extend_from_slice(&[0, 0, 0]);
                p.extend(rng.bytes(len));
                p.extend_from_slice(&((len + 11) as u32).to_be_bytes());
            }
            p.truncate(rng.between(0, p.len()));
            (4, msg::AGGREGATE, 1, p)
        }
        6 | 7 => (
            3,
            *rng.pick(&[msg::COMMAND_AMF0, msg::COMMAND_AMF3]),
            rng.below(3) as u32,
            hostile_amf(rng),
        ),
        8 => (
            4,
            *rng.pick(&[msg::DATA_AMF0, msg::DATA_AMF3]),
            1,
            hostile_amf(rng),
        ),
        9 if rng.percent(50) => {
            // Aggregates nested inside aggregates.
            let depth = rng.between(2, 1200);
            (4, msg::AGGREGATE, 1, nested_aggregate(depth))
        }
        _ => {
            let n = rng.below(64);
            (
                *rng.pick(&[4u8, 6, 7, 63]),
                *rng.pick(&[8u8, 9]),
                1,
                rng.bytes(n),
            )
        }
    };
    encode_message(csid, type_id, stream_id, &payload, chunk_size)
}

/// Applies one random mutation to `data` (a copy of `rec`, possibly already mutated;
/// chunk positions are those of the original and may be stale, which is fine).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, rec: &Recording, all: &[Recording]) -> String {
    if data.is_empty() {
        data.push(3);
    }
    let len = data.len();
    let chunk = (!rec.chunks.is_empty()).then(|| rec.chunks[rng.below(rec.chunks.len())].clone());
    match rng.below(14) {
        0 => {
            let at = position(rng, len);
            let bit = rng.below(8);
            data[at] ^= 1 << bit;
            format!("flip bit {bit} at {at}")
        }
        1 => {
            let at = position(rng, len);
            let v = *rng.pick(&INTERESTING);
            data[at] = v;
            format!("set byte {at} to {v:#04x}")
        }
        2 => {
            let at = position(rng, len);
            let n = rng.between(1, 64);
            let fill: Vec<u8> = if rng.percent(50) {
                rng.bytes(n)
            } else {
                vec![*rng.pick(&INTERESTING); n]
            };
            data.splice(at..at, fill);
            format!("insert {n} bytes at {at}")
        }
        3 => {
            let at = position(rng, len);
            let n = rng.between(1, 256).min(len - at);
            data.drain(at..at + n);
            format!("delete {n} bytes at {at}")
        }
        4 => {
            let from = position(rng, len);
            let n = rng.between(1, 2048).min(len - from);
            let to = position(rng, len);
            let copy = data[from..from + n].to_vec();
            data.splice(to..to, copy);
            format!("duplicate {n} bytes from {from} at {to}")
        }
        5 => {
            let at = position(rng, len);
            data.truncate(at);
            format!("truncate at {at}")
        }
        6 => {
            // Splice: our prefix, then another recording's tail, usually at chunk
            // boundaries.
            let other = rng.pick(all);
            let cut = match &chunk {
                Some(c) if rng.percent(70) => c.start.min(len),
                _ => position(rng, len),
            };
            let from = match other.chunks.len() {
                n if n > 0 && rng.percent(70) => other.chunks[rng.below(n)].start,
                _ => position(rng, other.bytes.len()),
            };
            data.truncate(cut);
            data.extend_from_slice(&other.bytes[from..]);
            format!("splice {} from {from} at {cut}", other.name)
        }
        7 => {
            // Overwrite a field-sized run with a huge or boundary value.
            let at = position(rng, len);
            let width = rng.between(1, 4);
            let v = *rng.pick(&HUGE_U32);
            write_be(data, at, v, width);
            format!("write {v:#x} as {width} bytes at {at}")
        }
        8 => {
            // Chunk header fields.
            let Some(c) = chunk else {
                return "no chunk".into();
            };
            let mh = c.start + c.basic_len;
            match rng.below(6) {
                0 if c.fmt <= 1 => {
                    let v =
                        *rng.pick(&[0, 1, 0xFF_FFFF, 0x7F_FFFF, 0x80_0000, 0x80_0001, 0x1_0000]);
                    write_be(data, mh + 3, v, 3);
                    format!("message length {v:#x} at chunk {}", c.start)
                }
                1 if c.fmt <= 1 => {
                    let t = *rng.pick(&MESSAGE_TYPES);
                    if let Some(b) = data.get_mut(mh + 6) {
                        *b = t;
                    }
                    format!("message type {t} at chunk {}", c.start)
                }
                2 if c.fmt <= 2 => {
                    let v = *rng.pick(&[0xFF_FFFF, 0xFF_FFFE, 0, 0x80_0000]);
                    write_be(data, mh, v, 3);
                    format!("timestamp {v:#x} at chunk {}", c.start)
                }
                3 => {
                    let f = rng.below(4) as u8;
                    if let Some(b) = data.get_mut(c.start) {
                        *b = (*b & 0x3f) | (f << 6);
                    }
                    format!("fmt {f} at chunk {}", c.start)
                }
                4 => {
                    // Re-encode the chunk stream id in the 1-, 2- or 3-byte form.
                    let basic: Vec<u8> = match rng.below(4) {
                        0 => vec![c.fmt << 6, rng.next_u64() as u8],
                        1 => vec![(c.fmt << 6) | 1, rng.next_u64() as u8, rng.next_u64() as u8],
                        2 => vec![(c.fmt << 6) | 1, 0xFF, 0xFF],
                        _ => vec![(c.fmt << 6) | rng.between(2, 63) as u8],
                    };
                    let end = (c.start + c.basic_len).min(data.len());
                    data.splice(c.start.min(end)..end, basic);
                    format!("chunk stream id at chunk {}", c.start)
                }
                _ if c.fmt == 0 => {
                    write_be(data, mh + 7, *rng.pick(&HUGE_U32), 4);
                    format!("message stream id at chunk {}", c.start)
                }
                _ => "no field".into(),
            }
        }
        9 => {
            // Inside a message body, usually an AMF one: huge lengths and counts,
            // AMF markers.
            let amf: Vec<&ChunkInfo> = rec
                .chunks
                .iter()
                .filter(|c| matches!(c.type_id, 15 | 17 | 18 | 20) && !c.payload.is_empty())
                .collect();
            let chunk = match amf.len() {
                n if n > 0 && rng.percent(70) => Some(amf[rng.below(n)].clone()),
                _ => chunk,
            };
            let Some(c) = chunk else {
                return "no chunk".into();
            };
            if c.payload.is_empty() {
                return "empty payload".into();
            }
            let at = rng.between(c.payload.start, c.payload.end - 1);
            if rng.percent(60) {
                let width = rng.between(2, 4);
                let v = *rng.pick(&HUGE_U32);
                write_be(data, at, v, width);
                format!("body: {v:#x} as {width} bytes at {at}")
            } else {
                let m = rng.below(0x14) as u8;
                if let Some(b) = data.get_mut(at) {
                    *b = m;
                }
                format!("body: marker {m:#04x} at {at}")
            }
        }
        10 | 11 => {
            // A whole extra message at a chunk boundary.
            let Some(c) = chunk else {
                return "no chunk".into();
            };
            let extra = injected_message(rng, c.chunk_size);
            let at = c.start.min(data.len());
            let n = extra.len();
            data.splice(at..at, extra);
            format!("inject {n}-byte message at {at}")
        }
        12 => {
            // Repeat one chunk many times (command floods, csid churn).
            let Some(c) = chunk else {
                return "no chunk".into();
            };
            let end = c.payload.end.min(data.len());
            let one = data[c.start.min(end)..end].to_vec();
            let times = rng.between(2, 200);
            let at = end;
            for _ in 0..times {
                data.splice(at..at, one.iter().copied());
            }
            format!("repeat chunk {} {times} times", c.start)
        }
        _ => {
            // Shift the stream by a few bytes (loses chunk alignment).
            let at = position(rng, len);
            let n = rng.between(1, 3);
            data.splice(at..at, rng.bytes(n));
            format!("shift by {n} at {at}")
        }
    }
}

// ---------------------------------------------------------------------------------
// Replay (the harness is tests/harness, shared with the fuzz targets)

/// The chunk layer and the message parsers on their own, over the chunk stream after
/// the handshake (see `harness::decode_chunks` for what is checked).
fn decode_messages(stream: &[u8], rng: &mut Rng) {
    let _ = harness::decode_chunks(stream, Some(rng), ChunkLimits::default(), true);
}

/// One mutation case: returns how it ended.
fn run_case(seed: u64, recs: &[Recording]) -> &'static str {
    let mut rng = Rng::new(seed);
    let rec = rng.pick(recs);
    let mut data = rec.bytes.to_vec();
    let mut what = vec![rec.name.to_string()];
    for _ in 0..rng.between(1, 4) {
        what.push(mutate(&mut rng, &mut data, rec, recs));
        data.truncate(MAX_CASE_LEN);
    }
    let description = what.join("; ");
    let whole = replay(&data, None);
    let piecewise = replay(&data, Some(&mut rng));
    assert_eq!(
        whole, piecewise,
        "feeding in pieces changed the outcome ({description})"
    );
    if data.len() > HANDSHAKE_LEN {
        decode_messages(&data[HANDSHAKE_LEN..], &mut rng);
    }
    match whole {
        Outcome {
            handshake_error: Some(_),
            ..
        } => "handshake error",
        Outcome {
            handshake_done: false,
            ..
        } => "handshake incomplete",
        Outcome {
            session_error: Some(e),
            ..
        } if e.contains("chunk") => "chunk error",
        Outcome {
            session_error: Some(_),
            ..
        } => "message error",
        _ => "ok",
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".into()
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The cases run in a child process (see `in_child_process`) on a thread with a
/// connection thread's stack, so a stack overflow fails this test alone and names the
/// case it happened in.
#[test]
fn mutated_sessions_end_cleanly() {
    in_child_process("mutated_sessions_end_cleanly", run_mutation_cases);
}

fn run_mutation_cases() {
    let seeds: Vec<u64> = match env_u64("RTMPD_MUTATION_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("RTMPD_MUTATION_CASES").unwrap_or(DEFAULT_CASES))
            .map(case_seed)
            .collect(),
    };
    let count = seeds.len();
    let (progress, watch) = mpsc::channel::<(u64, Instant)>();
    let worker = thread::Builder::new()
        .name("mutation-cases".into())
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            let recs = recordings();
            let mut failures = Vec::new();
            let mut slowest = (Duration::ZERO, 0);
            let mut endings = BTreeMap::new();
            for seed in seeds {
                let started = Instant::now();
                let _ = progress.send((seed, started));
                // The parent shows the last of these if this process dies.
                println!("case {seed:#018x}");
                match panic::catch_unwind(AssertUnwindSafe(|| run_case(seed, &recs))) {
                    Ok(ending) => *endings.entry(ending).or_insert(0) += 1,
                    Err(payload) => {
                        failures.push(format!("seed {seed:#018x}: {}", panic_text(&*payload)))
                    }
                }
                slowest = slowest.max((started.elapsed(), seed));
            }
            (failures, slowest, endings)
        })
        .expect("spawning the mutation worker");

    let started = Instant::now();
    let mut current: Option<(u64, Instant)> = None;
    loop {
        match watch.recv_timeout(Duration::from_millis(200)) {
            Ok(case) => current = Some(case),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some((seed, since)) = current {
            assert!(
                since.elapsed() < CASE_TIMEOUT,
                "mutation case seed {seed:#018x} still running after {CASE_TIMEOUT:?}: a hang \
                 (rerun with RTMPD_MUTATION_SEED={seed:#x})"
            );
        }
    }
    let (failures, (slow, slow_seed), endings) = worker.join().expect("the worker catches panics");
    eprintln!(
        "mutation: {count} cases in {:.2?}, slowest {slow:.2?} (seed {slow_seed:#x}); {endings:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} mutation cases failed (rerun one with RTMPD_MUTATION_SEED=...):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

// ---------------------------------------------------------------------------------
// The recordings themselves

/// Frames per "Kind/Role".
fn frame_counts(events: &[SessionEvent]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        if let SessionEvent::Frame { frame, .. } = e {
            *counts
                .entry(format!("{:?}/{:?}", frame.kind, frame.role))
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Events other than frames, in order.
fn control_events(events: &[SessionEvent]) -> Vec<&SessionEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, SessionEvent::Frame { .. }))
        .collect()
}

fn connected(port: u16) -> SessionEvent {
    SessionEvent::Connected {
        app: "live".into(),
        tc_url: Some(format!("rtmp://127.0.0.1:{port}/live")),
        query: None,
    }
}

#[test]
fn recordings_replay_to_the_expected_events() {
    let recs = recordings();
    for rec in &recs {
        let whole = replay(rec.bytes, None);
        assert!(whole.handshake_done, "{}: handshake", rec.name);
        assert_eq!(whole.handshake_error, None, "{}", rec.name);
        assert_eq!(whole.session_error, None, "{}", rec.name);
        // Any split of the same bytes gives the same events.
        for seed in 0..8 {
            let piecewise = replay(rec.bytes, Some(&mut Rng::new(seed)));
            assert_eq!(whole, piecewise, "{}: split with seed {seed}", rec.name);
        }
        // The walker used for targeted mutations agrees with the decoder.
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.push(&rec.bytes[HANDSHAKE_LEN..]);
        let mut messages = 0;
        while let Some(m) = decoder.next_message().expect("recording decodes") {
            if m.type_id == msg::SET_CHUNK_SIZE {
                let size = msg::read_u32("set chunk size", &m.payload).unwrap();
                decoder.set_chunk_size(size).unwrap();
            }
            messages += 1;
        }
        let walked = &rec.chunks;
        let last = walked.last().expect("chunks");
        let complete_messages = walked.iter().filter(|c| c.first).count();
        assert!(
            messages == complete_messages || messages + 1 == complete_messages,
            "{}: walker saw {complete_messages} messages, decoder {messages}",
            rec.name
        );
        assert!(rec.bytes.len() - last.payload.end <= MAX_HEADER_LEN + 4096);

        let control = control_events(&whole.events);
        let frames = frame_counts(&whole.events);
        match rec.name {
            "ffmpeg_publish" => {
                assert_eq!(
                    control,
                    [
                        &connected(29351),
                        &SessionEvent::PublishRequested {
                            stream_id: 1,
                            name: "test".into(),
                            query: None,
                            mode: "live".into(),
                        },
                    ]
                );
                let expect = [
                    ("Data/Metadata", 1),
                    ("Audio/SequenceHeader", 1),
                    ("Video/SequenceHeader", 1),
                    ("Video/Keyframe", 2),
                    ("Video/Frame", 40),
                    ("Audio/Frame", 73),
                ];
                let expect: BTreeMap<String, usize> =
                    expect.iter().map(|&(k, n)| (k.to_string(), n)).collect();
                assert_eq!(frames, expect, "frames");
                // Metadata, then both sequence headers, before any media frame.
                let roles: Vec<FrameRole> = whole
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        SessionEvent::Frame { frame, .. } => Some(frame.role),
                        _ => None,
                    })
                    .collect();
                assert_eq!(roles[0], FrameRole::Metadata);
                assert!(roles[1..3].iter().all(|r| *r == FrameRole::SequenceHeader));
            }
            "rtmpdump_play" | "ffmpeg_play" => {
                let (port, start) = if rec.name == "rtmpdump_play" {
                    (29352, -1000.0)
                } else {
                    (29353, -2000.0)
                };
                assert_eq!(
                    control,
                    [
                        &connected(port),
                        &SessionEvent::PlayRequested {
                            stream_id: 1,
                            name: "test".into(),
                            query: None,
                            start,
                            duration: -1.0,
                            reset: true,
                        },
                        &SessionEvent::PlayStopped { stream_id: 1 },
                    ],
                    "{}",
                    rec.name
                );
                assert!(frames.is_empty(), "{}: a player sends no media", rec.name);
            }
            other => panic!("no expectations for {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------
// Regression tests for bugs found while fuzzing (fixed in src since)

/// Appends `v` as an AMF3 U29 (values below 2^21 here).
fn u29(v: u32, out: &mut Vec<u8>) {
    assert!(v < 1 << 21);
    if v >= 1 << 14 {
        out.push(0x80 | (v >> 14) as u8);
    }
    if v >= 1 << 7 {
        out.push(0x80 | ((v >> 7) & 0x7F) as u8);
    }
    out.push((v & 0x7F) as u8);
}

/// AVM+ switch, then an AMF3 array of one `len`-byte string followed by `refs - 1`
/// references to it: ~12 KB that decode to ~16 MB of strings.
fn string_reference_bomb(len: usize, refs: usize) -> Vec<u8> {
    let mut v = vec![0x11, 0x09];
    u29(((refs as u32) << 1) | 1, &mut v);
    v.push(0x01); // no associative part
    v.push(0x06);
    u29(((len as u32) << 1) | 1, &mut v);
    v.extend(std::iter::repeat_n(b'A', len));
    for _ in 1..refs {
        v.extend_from_slice(&[0x06, 0x00]);
    }
    v
}

/// AMF3 back-references let a few bytes stand for a long string. The expansion
/// budget must cover a whole message: it once started afresh for every AVM+ (0x11)
/// value in an AMF0 message, and `decode_all_with` kept them all, so N * 11.6 KB
/// decoded to N * 16 MB (a 1 MB command, parsed before `connect` is checked, cost
/// ~1.4 GB).
#[test]
fn amf3_references_cannot_expand_one_message_without_bound() {
    let bomb = string_reference_bomb(5792, 2896);
    let mut payload = Vec::new();
    for _ in 0..3 {
        payload.extend_from_slice(&bomb);
    }
    let limit = payload.len() + AMF_EXPANSION_SLACK;
    if let Ok(values) = amf0::decode_all_with(&payload, AmfLimits::default()) {
        let weight: usize = values.iter().map(amf0_weight).sum();
        assert!(
            weight <= limit,
            "{} bytes of AMF decode to {weight} bytes of strings (limit {limit})",
            payload.len()
        );
    }
}

/// The stack of a connection thread (server/mod.rs, THREAD_STACK): all of the
/// session's work happens on it.
const CONNECTION_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    128 * 1024
};
const CHILD_ENV: &str = "RTMPD_MUTATION_CHILD";

/// Runs the test named `test` (in this module) in a child process: a stack overflow
/// aborts the whole process, and must fail only the test that caused it. The child
/// runs `body`; the parent checks that it passed and otherwise shows its output.
fn in_child_process(test: &str, body: fn()) {
    let name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    };
    if std::env::var(CHILD_ENV).as_deref() == Ok(name.as_str()) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &name)
        .output()
        .expect("running the test in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stdout.contains("1 passed") {
        eprint!(
            "{}",
            stderr
                .lines()
                .filter(|l| l.starts_with("mutation:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        return;
    }
    let tail = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    panic!(
        "{name} failed in a child process ({}); its output ends with:\n{}\n{}",
        out.status,
        tail(&stdout, 12),
        tail(&stderr, 40)
    );
}

/// Runs `body` on a thread with a connection thread's stack.
fn on_connection_stack(body: fn()) {
    thread::Builder::new()
        .stack_size(CONNECTION_STACK)
        .spawn(body)
        .expect("spawning the connection-like thread")
        .join()
        .unwrap_or_else(|e| panic::resume_unwind(e));
}

/// An aggregate message whose only part is an aggregate whose only part is ...
fn nested_aggregate(depth: usize) -> Vec<u8> {
    let mut p: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![msg::AGGREGATE];
        outer.extend_from_slice(&(p.len() as u32).to_be_bytes()[1..]);
        outer.extend_from_slice(&[0; 7]);
        outer.extend_from_slice(&p);
        outer.extend_from_slice(&((p.len() + 11) as u32).to_be_bytes());
        p = outer;
    }
    p
}

/// Bytes a client sends: a simple handshake, then `messages` as (type, payload) on
/// chunk stream 3 at the default chunk size.
fn client_bytes(messages: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = vec![3];
    bytes.resize(HANDSHAKE_LEN, 0);
    for (type_id, payload) in messages {
        bytes.extend(encode_message(3, *type_id, 0, payload, 128));
    }
    bytes
}

/// The session handles an aggregate by handling each part (session.rs, the
/// msg::AGGREGATE arm of handle_message). When parts could be aggregates themselves,
/// aggregates nested N deep cost N stack frames and O(N^2) copied bytes: 400 levels
/// (a 6 KB message, accepted before connect) overflowed a release connection
/// thread's 128 KiB stack and aborted the whole server; 10,000 levels (150 KB) took
/// ~740 MB.
#[test]
fn nested_aggregates_cannot_overflow_the_connection_stack() {
    in_child_process(
        "nested_aggregates_cannot_overflow_the_connection_stack",
        || {
            on_connection_stack(|| {
                let input = client_bytes(&[(msg::AGGREGATE, nested_aggregate(5000))]);
                let outcome = replay(&input, None);
                assert!(outcome.handshake_done);
            })
        },
    );
}

/// AMF nested as deep as the default limits allow, in AMF0 and through the AVM+
/// switch in AMF3, decodes within a connection thread's stack.
#[test]
fn deepest_amf_fits_the_connection_stack() {
    in_child_process("deepest_amf_fits_the_connection_stack", || {
        on_connection_stack(deepest_amf)
    });
}

fn deepest_amf() {
    let depth = AmfLimits::default().max_depth;
    for nest in [
        &[0x03, 0x00, 0x01, b'a'][..],   // AMF0 objects
        &[0x0A, 0x00, 0x00, 0x00, 0x01], // AMF0 strict arrays
        &[0x11, 0x09, 0x03, 0x01],       // AVM+ switch, then AMF3 arrays
    ] {
        let mut cmd = vec![0x02, 0x00, 0x07];
        cmd.extend_from_slice(b"connect");
        cmd.extend_from_slice(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        for level in 0..depth + 2 {
            // After the AVM+ switch the rest is AMF3.
            let skip = usize::from(nest[0] == 0x11 && level > 0);
            cmd.extend_from_slice(&nest[skip..]);
        }
        let outcome = replay(&client_bytes(&[(msg::COMMAND_AMF0, cmd)]), None);
        assert!(
            outcome.session_error.is_some(),
            "too deep, so refused: {outcome:?}"
        );
    }
}

/// Resident memory of this process in KiB (Linux).
fn resident_kib() -> Option<u64> {
    rtmpd::procfs::Status::read("self").ok()?.rss_kib
}

/// Every reply the session produces goes to the connection's writer through a
/// channel (server/connection.rs, start_writer). A client that publishes and then
/// sends Ping Requests (7 bytes each as fmt 3 chunks) without ever reading must not
/// make the server queue replies without bound: with an unbounded channel it queued
/// a Ping Response per ping until the 30 s write timeout, ~12 bytes of memory per
/// byte received, 3.2 GB after 30 s from one client in a release build.
#[test]
fn replies_to_a_client_that_never_reads_stay_bounded() {
    in_child_process(
        "replies_to_a_client_that_never_reads_stay_bounded",
        replies_stay_bounded,
    );
}

fn replies_stay_bounded() {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};

    let config = rtmpd::config::Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()],
        ..rtmpd::config::Config::default()
    };
    let server = rtmpd::server::Server::bind(config).expect("binding a server");
    let addr = server.local_addr();
    thread::spawn(move || server.run());

    let command = |name: &str, transaction: f64, args: Vec<Amf0Value>| {
        Command {
            name: name.into(),
            transaction_id: transaction,
            command_object: Amf0Value::Null,
            args,
        }
        .encode()
    };
    let mut connect = command("connect", 1.0, vec![]);
    connect.truncate(connect.len() - 1); // the null command object
    connect.extend(amf0::encode_all_to_vec(&[amf0::object(vec![(
        "app",
        Amf0Value::String("live".into()),
    )])]));
    let mut setup = encode_message(3, msg::COMMAND_AMF0, 0, &connect, 128);
    setup.extend(encode_message(
        3,
        msg::COMMAND_AMF0,
        0,
        &command("createStream", 2.0, vec![]),
        128,
    ));
    setup.extend(encode_message(
        4,
        msg::COMMAND_AMF0,
        1,
        &command("publish", 0.0, vec!["flood".into(), "live".into()]),
        128,
    ));
    // A Ping Request, then the same again as 7-byte fmt 3 chunks.
    setup.extend(encode_message(
        2,
        msg::USER_CONTROL,
        0,
        &[0, 6, 0, 0, 0, 1],
        128,
    ));
    let ping = [0xC2, 0, 6, 0, 0, 0, 1];
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100_000)
        .collect();

    let mut socket = TcpStream::connect(addr).expect("connecting");
    socket
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut handshake = vec![3u8];
    handshake.resize(1 + HANDSHAKE_SIZE, 0);
    socket.write_all(&handshake).unwrap();
    let mut s0s1s2 = vec![0u8; HANDSHAKE_LEN];
    std::io::Read::read_exact(&mut socket, &mut s0s1s2).unwrap();
    socket.write_all(&vec![0u8; HANDSHAKE_SIZE]).unwrap();
    socket.write_all(&setup).unwrap();
    // Wait for the publish to be accepted (and the first ping answered).
    // A bound on a hang, generous for a busy machine.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 4096];
    while !replies.windows(23).any(|w| w == b"NetStream.Publish.Start") {
        let n = std::io::Read::read(&mut socket, &mut buf).expect("replies to the setup");
        assert!(n > 0, "the server closed the connection during setup");
        replies.extend_from_slice(&buf[..n]);
    }

    let before = resident_kib().expect("VmRSS");
    let started = Instant::now();
    let mut sent = 0usize;
    // 16 MB of pings, never reading a reply, within 20 s (before the server's
    // 30 s write timeout). A server that stops reading or closes us is fine.
    while sent < 16 << 20 && started.elapsed() < Duration::from_secs(20) {
        if socket.write_all(&flood).is_err() {
            break;
        }
        sent += flood.len();
    }
    thread::sleep(Duration::from_millis(500));
    let grown = resident_kib().expect("VmRSS").saturating_sub(before) / 1024;
    assert!(
        grown < 64,
        "the server grew by {grown} MiB while a client sent {} MiB of pings and read \
         nothing (in {:.1?})",
        sent >> 20,
        started.elapsed()
    );
}
