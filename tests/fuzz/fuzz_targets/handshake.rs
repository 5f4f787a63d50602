//! Both handshake halves over arbitrary bytes fed in pieces (first byte picks the
//! split). Server: answers exactly S0+S1+S2 once C0+C1 are in, hands back every byte
//! after C2 untouched, fails only on a bad C0. Client: never panics on any S0+S1+S2.
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::handshake::{ClientHandshake, Progress, ServerHandshake, HANDSHAKE_SIZE};

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };

    let mut server = ServerHandshake::new(u32::from(seed) << 8);
    let mut out = Vec::new();
    let mut fed = 0;
    let mut after = Vec::new();
    let mut done = false;
    for piece in harness::Pieces::new(data, harness::fuzz_rng(seed)) {
        fed += piece.len();
        match server.process(piece, &mut out) {
            Ok(Progress::InProgress) => assert!(!done),
            Ok(Progress::Done { remaining }) => {
                done = true;
                after.extend_from_slice(&remaining);
            }
            Err(_) => {
                assert_ne!(data[0], 3, "a version-3 C0 was refused");
                assert!(server.process(&[], &mut out).is_err(), "errors are sticky");
                return;
            }
        }
        // S0+S1+S2 go out as soon as C0+C1 (1 + HANDSHAKE_SIZE bytes) are in.
        if fed > HANDSHAKE_SIZE {
            assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE, "S0+S1+S2");
        } else {
            assert!(out.is_empty());
        }
    }
    let total = 1 + 2 * HANDSHAKE_SIZE;
    assert_eq!(done, data.len() >= total);
    if done {
        assert_eq!(after, &data[total..]);
        assert!(server.kind().is_some());
    }

    let mut client = ClientHandshake::new(seed & 1 == 1);
    let mut c0c1 = Vec::new();
    client.start(&mut c0c1);
    assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
    let mut c2 = Vec::new();
    for piece in harness::Pieces::new(data, harness::fuzz_rng(seed)) {
        match client.process(piece, &mut c2) {
            Ok(_) => assert!(c2.is_empty() || c2.len() == HANDSHAKE_SIZE),
            Err(_) => break,
        }
    }
});
