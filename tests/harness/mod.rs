//! The protocol-core harness that the fuzz targets (tests/fuzz) and the mutation
//! test (tests/integration/mutation.rs) share: input fed in pieces, a client's bytes
//! replayed through the server's handshake and session, the chunk decoder with every
//! message parsed, and the bounds decoded AMF must stay within. Test code, not part
//! of rtmpd's API: both include this file with `#[path]`.
// Each includer uses part of it.
#![allow(dead_code)]

use std::borrow::BorrowMut;

use rtmpd::amf::amf0::{self, Amf0Value, AmfLimits};
use rtmpd::amf::amf3::{self, Amf3Value};
use rtmpd::rng::Rng;
use rtmpd::rtmp::chunk::{ChunkDecoder, ChunkLimits, RawMessage, MAX_HEADER_LEN};
use rtmpd::rtmp::handshake::{Progress, ServerHandshake, HANDSHAKE_SIZE};
use rtmpd::rtmp::message::{self as msg, Command, UserControl};
use rtmpd::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

/// C0 + C1 + C2, and S0 + S1 + S2.
pub const HANDSHAKE_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;
/// A loose bound on what AMF3 references may expand one message by (amf3.rs allows
/// far less beyond the input's own size).
pub const AMF_EXPANSION_SLACK: usize = 16 << 20;

// ---------------------------------------------------------------------------------
// Input in pieces

/// Random piece lengths: mostly small, sometimes large, sometimes all the rest.
pub fn piece_len(rng: &mut Rng, left: usize) -> usize {
    let n = match rng.below(10) {
        0..=3 => rng.between(1, 16),
        4..=6 => rng.between(17, 512),
        7 | 8 => rng.between(513, 8192),
        _ => left,
    };
    n.clamp(1, left.max(1))
}

/// `data` cut into the pieces a reader might get: random lengths drawn from `rng`,
/// or everything at once without one.
pub struct Pieces<'a, R> {
    rest: &'a [u8],
    rng: Option<R>,
}

impl<'a, R: BorrowMut<Rng>> Pieces<'a, R> {
    pub fn new(data: &'a [u8], rng: Option<R>) -> Self {
        Pieces { rest: data, rng }
    }
}

impl<'a, R: BorrowMut<Rng>> Iterator for Pieces<'a, R> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = match &mut self.rng {
            Some(rng) => piece_len(rng.borrow_mut(), self.rest.len()),
            None => self.rest.len(),
        };
        let (piece, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(piece)
    }
}

/// For a fuzz target whose first input byte picks how the rest arrives: a
/// generator seeded with it, or none (all at once) for 0.
pub fn fuzz_rng(seed: u8) -> Option<Rng> {
    (seed != 0).then(|| Rng::new(u64::from(seed)))
}

// ---------------------------------------------------------------------------------
// A client session replayed through the server side

/// How a replay ended.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub handshake_error: Option<String>,
    pub handshake_done: bool,
    pub session_error: Option<String>,
    pub events: Vec<SessionEvent>,
}

/// FCUnpublish stops a name's streams in HashMap order (session.rs), so a run of
/// PublishStopped events has no defined order: sort it.
fn normalize(events: &mut [SessionEvent]) {
    let mut i = 0;
    while i < events.len() {
        let run = events[i..]
            .iter()
            .take_while(|e| matches!(e, SessionEvent::PublishStopped { .. }))
            .count();
        events[i..i + run].sort_by_key(|e| match e {
            SessionEvent::PublishStopped { stream_id } => *stream_id,
            _ => 0,
        });
        i += run.max(1);
    }
}

/// Drives the server side over `input` like a connection's reader thread would,
/// accepting every publish and play request. `pieces: None` feeds everything at once.
pub fn replay(input: &[u8], pieces: Option<&mut Rng>) -> Outcome {
    let mut outcome = Outcome {
        handshake_error: None,
        handshake_done: false,
        session_error: None,
        events: Vec::new(),
    };
    let mut handshake = ServerHandshake::new(1234);
    let mut session: Option<ServerSession> = None;
    let mut sent = Vec::new();
    let mut fed = 0;
    let mut queued = 0usize;
    for piece in Pieces::new(input, pieces) {
        fed += piece.len();
        let bytes = match &mut session {
            Some(_) => piece.to_vec(),
            None => match handshake.process(piece, &mut sent) {
                Err(e) => {
                    outcome.handshake_error = Some(e.to_string());
                    return outcome;
                }
                Ok(Progress::InProgress) => continue,
                Ok(Progress::Done { remaining }) => {
                    assert_eq!(sent.len(), HANDSHAKE_LEN, "S0+S1+S2");
                    outcome.handshake_done = true;
                    session = Some(ServerSession::new(SessionConfig::default()));
                    remaining
                }
            },
        };
        let Some(s) = session.as_mut() else { continue };
        let before = outcome.events.len();
        let result = s.handle_input(&bytes, &mut outcome.events);
        for event in &outcome.events[before..] {
            match event {
                SessionEvent::PublishRequested {
                    stream_id, name, ..
                } => s.accept_publish(*stream_id, name),
                SessionEvent::PlayRequested {
                    stream_id, name, ..
                } => s.accept_play(*stream_id, name, true),
                _ => {}
            }
        }
        queued += s.take_output().len();
        // Every event and reply needs at least a byte of input behind it.
        assert!(
            outcome.events.len() <= fed && queued <= 8 * fed + 8,
            "{} events and {queued} replies from {fed} bytes",
            outcome.events.len()
        );
        if let Err(e) = result {
            outcome.session_error = Some(e.to_string());
            normalize(&mut outcome.events);
            return outcome;
        }
    }
    let media: usize = outcome
        .events
        .iter()
        .map(|e| match e {
            SessionEvent::Frame { frame, .. } => frame.payload.len(),
            _ => 0,
        })
        .sum();
    assert!(
        media <= input.len(),
        "{media} bytes of frames from {} bytes",
        input.len()
    );
    normalize(&mut outcome.events);
    outcome
}

/// The chunk decoder over a chunk stream (what follows the handshake), with Set
/// Chunk Size and Abort applied as a session would and, with `parse`, every message
/// run through the parsers. Returns the messages, and the error that ended them.
/// Checks: a drained decoder keeps at most one partial header; messages never add
/// up to more bytes than were pushed; errors are sticky.
pub fn decode_chunks(
    data: &[u8],
    pieces: Option<&mut Rng>,
    limits: ChunkLimits,
    parse: bool,
) -> (Vec<RawMessage>, Option<String>) {
    let mut decoder = ChunkDecoder::new(limits);
    let mut messages = Vec::new();
    let mut pushed = 0usize;
    let mut reassembled = 0usize;
    for piece in Pieces::new(data, pieces) {
        decoder.push(piece);
        pushed += piece.len();
        loop {
            let m = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    // Errors are sticky.
                    assert_eq!(decoder.next_message(), Err(e.clone()));
                    return (messages, Some(e.to_string()));
                }
            };
            reassembled += m.payload.len();
            assert!(
                reassembled <= pushed,
                "{reassembled} message bytes from {pushed}"
            );
            if m.type_id == msg::SET_CHUNK_SIZE {
                match msg::read_u32("set chunk size", &m.payload) {
                    Ok(size) => {
                        if let Err(e) = decoder.set_chunk_size(size) {
                            return (messages, Some(e.to_string()));
                        }
                    }
                    Err(e) => return (messages, Some(e.to_string())),
                }
            } else if m.type_id == msg::ABORT {
                match msg::read_u32("abort", &m.payload) {
                    Ok(csid) => decoder.abort(csid),
                    Err(e) => return (messages, Some(e.to_string())),
                }
            }
            if parse {
                parse_message(&m);
            }
            messages.push(m);
        }
        assert!(
            decoder.buffered_len() <= MAX_HEADER_LEN,
            "a drained decoder holds {} bytes",
            decoder.buffered_len()
        );
    }
    assert_eq!(decoder.bytes_received(), data.len() as u64);
    (messages, None)
}

// ---------------------------------------------------------------------------------
// Bounds on decoded AMF

/// Bytes of strings and data plus one per node: what a decoded value costs, give or
/// take a constant factor.
pub fn amf0_weight(v: &Amf0Value) -> usize {
    let pairs = |p: &[(String, Amf0Value)]| -> usize {
        p.iter().map(|(k, v)| k.len() + amf0_weight(v)).sum()
    };
    1 + match v {
        Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => s.len(),
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => pairs(p),
        Amf0Value::StrictArray(items) => items.iter().map(amf0_weight).sum(),
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => class_name.len() + pairs(properties),
        Amf0Value::Amf3(v) => amf3_weight(v),
        _ => 0,
    }
}

pub fn amf3_weight(v: &Amf3Value) -> usize {
    let pairs = |p: &[(String, Amf3Value)]| -> usize {
        p.iter().map(|(k, v)| k.len() + amf3_weight(v)).sum()
    };
    1 + match v {
        Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => s.len(),
        Amf3Value::Array { assoc, dense } => {
            pairs(assoc) + dense.iter().map(amf3_weight).sum::<usize>()
        }
        Amf3Value::Object {
            class_name,
            properties,
        } => class_name.len() + pairs(properties),
        Amf3Value::ByteArray(b) => b.len(),
        Amf3Value::VectorInt(v) => v.len(),
        Amf3Value::VectorUint(v) => v.len(),
        Amf3Value::VectorDouble(v) => v.len(),
        Amf3Value::VectorObject { type_name, items } => {
            type_name.len() + items.iter().map(amf3_weight).sum::<usize>()
        }
        Amf3Value::Dictionary(entries) => entries
            .iter()
            .map(|(k, v)| amf3_weight(k) + amf3_weight(v))
            .sum(),
        _ => 0,
    }
}

/// Decoded AMF must stay within the documented expansion of its input.
pub fn assert_bounded(weight: usize, input: usize, what: &str) {
    let limit = 4 * input + AMF_EXPANSION_SLACK;
    assert!(
        weight <= limit,
        "{what}: {input} bytes decode to {weight} (limit {limit})"
    );
}

/// Runs every parser that applies to a message's type.
pub fn parse_message(m: &RawMessage) {
    let limits = AmfLimits::default();
    match m.type_id {
        msg::USER_CONTROL => {
            let _ = UserControl::parse(&m.payload);
        }
        msg::AGGREGATE => {
            if let Ok(parts) = msg::split_aggregate(m.timestamp, &m.payload) {
                let total: usize = parts.iter().map(|p| p.payload.len()).sum();
                assert!(total <= m.payload.len());
            }
        }
        msg::COMMAND_AMF0 | msg::COMMAND_AMF3 | msg::DATA_AMF0 | msg::DATA_AMF3 => {
            let body = msg::strip_amf3_marker(m.type_id, &m.payload);
            if let Ok(cmd) = Command::parse(body, limits) {
                let weight = amf0_weight(&cmd.command_object)
                    + cmd.args.iter().map(amf0_weight).sum::<usize>();
                assert_bounded(weight, body.len(), "command");
            }
            if let Ok(values) = amf0::decode_all_with(body, limits) {
                let weight = values.iter().map(amf0_weight).sum();
                assert_bounded(weight, body.len(), "AMF0 body");
            }
            let _ = msg::data_name(body);
            if let Ok((value, _)) = amf3::decode_value(body) {
                assert_bounded(amf3_weight(&value), body.len(), "AMF3 body");
            }
        }
        _ => {}
    }
}
