//! The whole server pipeline over raw client bytes: ServerHandshake, then
//! ServerSession, fed in pieces chosen by the first byte, accepting every publish and
//! play like the server does. With the first byte's top bit set, the rest is the chunk
//! stream only and a canned simple handshake goes first. Checks: no panic; the pieces
//! do not change the outcome; events and replies stay bounded by the input.
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::handshake::HANDSHAKE_SIZE;

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let owned;
    let data = if seed & 0x80 != 0 {
        let mut v = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
        v[0] = 3;
        v.extend_from_slice(data);
        owned = v;
        &owned[..]
    } else {
        data
    };
    let split = seed & 0x7f;
    let piecewise = harness::replay(data, harness::fuzz_rng(split).as_mut());
    if split != 0 {
        let whole = harness::replay(data, None);
        assert_eq!(whole, piecewise, "split {seed} changed the outcome");
    }
});
