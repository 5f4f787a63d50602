//! Command and data message bodies against a connected session. The first byte picks
//! the message type (20, 17, 18 or 15), its stream id, and whether stream 1 is
//! publishing first; the rest is the body. Checks: no panic; `Command::parse` and the
//! session agree (after connect, a command that parses is handled without error and
//! one that does not parse closes the connection); replies and events stay bounded.
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::amf::amf0::{Amf0Value, AmfLimits};
use rtmpd::rtmp::chunk::ChunkEncoder;
use rtmpd::rtmp::message::{self as msg, Command};
use rtmpd::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

fn send(
    session: &mut ServerSession,
    encoder: &mut ChunkEncoder,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    events: &mut Vec<SessionEvent>,
) -> Result<(), String> {
    let mut bytes = Vec::new();
    encoder
        .encode(3, 0, type_id, stream_id, payload, &mut bytes)
        .map_err(|e| e.to_string())?;
    session
        .handle_input(&bytes, events)
        .map_err(|e| e.to_string())
}

fn command(name: &str, transaction: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
    Command {
        name: name.into(),
        transaction_id: transaction,
        command_object: object,
        args,
    }
    .encode()
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let type_id = [
        msg::COMMAND_AMF0,
        msg::COMMAND_AMF3,
        msg::DATA_AMF0,
        msg::DATA_AMF3,
    ][usize::from(flags & 3)];
    let stream_id = u32::from((flags >> 2) & 3);
    let publish_first = flags & 0x10 != 0;

    let mut session = ServerSession::new(SessionConfig::default());
    let mut encoder = ChunkEncoder::new();
    let mut events = Vec::new();
    let connect = command(
        "connect",
        1.0,
        Amf0Value::Object(vec![
            ("app".into(), Amf0Value::String("live".into())),
            ("tcUrl".into(), Amf0Value::String("rtmp://h/live".into())),
        ]),
        vec![],
    );
    send(
        &mut session,
        &mut encoder,
        msg::COMMAND_AMF0,
        0,
        &connect,
        &mut events,
    )
    .expect("connect");
    if publish_first {
        let create = command("createStream", 2.0, Amf0Value::Null, vec![]);
        send(
            &mut session,
            &mut encoder,
            msg::COMMAND_AMF0,
            0,
            &create,
            &mut events,
        )
        .expect("createStream");
        let publish = command(
            "publish",
            3.0,
            Amf0Value::Null,
            vec!["key".into(), "live".into()],
        );
        send(
            &mut session,
            &mut encoder,
            msg::COMMAND_AMF0,
            1,
            &publish,
            &mut events,
        )
        .expect("publish");
        session.accept_publish(1, "key");
    }
    let _ = session.take_output();
    let before = events.len();

    let parsed = Command::parse(msg::strip_amf3_marker(type_id, body), AmfLimits::default());
    let result = send(
        &mut session,
        &mut encoder,
        type_id,
        stream_id,
        body,
        &mut events,
    );
    if type_id == msg::COMMAND_AMF0 || type_id == msg::COMMAND_AMF3 {
        assert_eq!(
            parsed.is_ok(),
            result.is_ok(),
            "Command::parse says {parsed:?}, the session says {result:?}"
        );
    } else {
        assert!(
            result.is_ok(),
            "data messages never close the connection: {result:?}"
        );
    }
    assert!(
        events.len() - before <= 2,
        "{} events",
        events.len() - before
    );
    assert!(session.take_output().len() <= 8);
    for e in &events[before..] {
        if let SessionEvent::Frame { frame, .. } = e {
            assert!(frame.payload.len() <= body.len());
        }
    }
});
