//! The whole server pipeline over raw client bytes: ServerHandshake, then
//! ServerSession, fed in pieces chosen by the first byte, accepting every publish and
//! play like the server does. With the first byte's top bit set, the rest is the chunk
//! stream only and a canned simple handshake goes first. Checks: no panic; the pieces
//! do not change the outcome; events and replies stay bounded by the input.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::handshake::{Progress, ServerHandshake, HANDSHAKE_SIZE};
use rtmpd::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

#[derive(Debug, PartialEq)]
struct Outcome {
    handshake_error: Option<String>,
    session_error: Option<String>,
    events: Vec<SessionEvent>,
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

fn replay(seed: u8, input: &[u8]) -> Outcome {
    let mut outcome = Outcome {
        handshake_error: None,
        session_error: None,
        events: Vec::new(),
    };
    let mut handshake = ServerHandshake::new(0);
    let mut session: Option<ServerSession> = None;
    let mut sent = Vec::new();
    let mut fed = 0usize;
    let mut queued = 0usize;
    for piece in common::Pieces::new(seed, input) {
        fed += piece.len();
        let bytes = match &session {
            Some(_) => piece.to_vec(),
            None => match handshake.process(piece, &mut sent) {
                Err(e) => {
                    outcome.handshake_error = Some(e.to_string());
                    return outcome;
                }
                Ok(Progress::InProgress) => continue,
                Ok(Progress::Done { remaining }) => {
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
        assert!(
            outcome.events.len() <= fed,
            "{} events from {fed} bytes",
            outcome.events.len()
        );
        assert!(queued <= 8 * fed + 8, "{queued} replies from {fed} bytes");
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
        "{media} bytes of frames from {}",
        input.len()
    );
    normalize(&mut outcome.events);
    outcome
}

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
    let piecewise = replay(split, data);
    if split != 0 {
        let whole = replay(0, data);
        assert_eq!(whole, piecewise, "split {seed} changed the outcome");
    }
});
