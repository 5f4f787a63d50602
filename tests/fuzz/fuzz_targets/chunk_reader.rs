//! ChunkDecoder over arbitrary bytes, fed in fuzzer-chosen pieces (first byte), with
//! Set Chunk Size / Abort applied as a session would and every message parsed.
//! Checks: no panic; a drained decoder keeps at most one partial header; messages
//! never add up to more bytes than were pushed; the pieces do not change the result.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::chunk::{ChunkDecoder, ChunkLimits, RawMessage, MAX_HEADER_LEN};
use rtmpd::rtmp::message as msg;

/// Decodes everything; returns the messages (or the error text at the end).
fn decode(seed: u8, data: &[u8], parse: bool) -> (Vec<RawMessage>, Option<String>) {
    let limits = ChunkLimits {
        max_message_len: 1 << 20,
        ..ChunkLimits::default()
    };
    let mut decoder = ChunkDecoder::new(limits);
    let mut messages = Vec::new();
    let mut pushed = 0usize;
    let mut reassembled = 0usize;
    for piece in common::Pieces::new(seed, data) {
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
                common::parse_message(&m);
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

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let piecewise = decode(seed, data, true);
    if seed != 0 {
        let whole = decode(0, data, false);
        assert_eq!(whole, piecewise, "split {seed} changed the result");
    }
});
