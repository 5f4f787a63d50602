//! ChunkDecoder over arbitrary bytes, fed in fuzzer-chosen pieces (first byte), with
//! Set Chunk Size / Abort applied as a session would and every message parsed.
//! Checks: no panic; a drained decoder keeps at most one partial header; messages
//! never add up to more bytes than were pushed; the pieces do not change the result.
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::chunk::{ChunkLimits, RawMessage};

/// Decodes everything; returns the messages (or the error text at the end).
fn decode(seed: u8, data: &[u8], parse: bool) -> (Vec<RawMessage>, Option<String>) {
    let limits = ChunkLimits {
        max_message_len: 1 << 20,
        ..ChunkLimits::default()
    };
    harness::decode_chunks(data, harness::fuzz_rng(seed).as_mut(), limits, parse)
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
