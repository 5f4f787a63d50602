//! RTMP messages above the chunk layer: type ids, protocol control and user control
//! payloads, command and data messages, aggregate splitting, and the builders for the
//! messages a server sends (`_result`, `onStatus`, ...). Bytes in, values out, and back.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use crate::amf::amf0::{self, Amf0Error, Amf0Reader, Amf0Value, AmfLimits};
use crate::media::frame::FrameKind;
use crate::rtmp::chunk::RawMessage;

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF3: u8 = 15;
pub const SHARED_OBJECT_AMF3: u8 = 16;
pub const COMMAND_AMF3: u8 = 17;
pub const DATA_AMF0: u8 = 18;
pub const SHARED_OBJECT_AMF0: u8 = 19;
pub const COMMAND_AMF0: u8 = 20;
pub const AGGREGATE: u8 = 22;

/// Chunk stream ids the server writes on. Protocol control must use 2; the rest only
/// need to be distinct so each keeps its own header compression.
pub const CSID_CONTROL: u32 = 2;
pub const CSID_COMMAND: u32 = 3;
pub const CSID_STREAM_DATA: u32 = 5;
pub const CSID_AUDIO: u32 = 6;
pub const CSID_VIDEO: u32 = 7;

/// The message type that carries a frame of this kind (the same number as its FLV
/// tag type).
pub fn frame_type_id(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Audio => AUDIO,
        FrameKind::Video => VIDEO,
        FrameKind::Data => DATA_AMF0,
    }
}

/// The chunk stream players receive a frame of this kind on.
pub fn frame_csid(kind: FrameKind) -> u32 {
    match kind {
        FrameKind::Audio => CSID_AUDIO,
        FrameKind::Video => CSID_VIDEO,
        FrameKind::Data => CSID_STREAM_DATA,
    }
}

/// Set Peer Bandwidth limit types.
pub const LIMIT_HARD: u8 = 0;
pub const LIMIT_SOFT: u8 = 1;
pub const LIMIT_DYNAMIC: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum MessageError {
    Truncated {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    Amf {
        what: &'static str,
        source: Amf0Error,
    },
    NotACommand,
    Aggregate {
        offset: usize,
        problem: &'static str,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Truncated { what, needed, got } => {
                write!(f, "{what} message needs {needed} bytes, got {got}")
            }
            MessageError::Amf { what, source } => write!(f, "{what}: {source}"),
            MessageError::NotACommand => {
                f.write_str("command message does not start with a command name string")
            }
            MessageError::Aggregate { offset, problem } => {
                write!(f, "aggregate message at byte {offset}: {problem}")
            }
        }
    }
}

impl std::error::Error for MessageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MessageError::Amf { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn need(what: &'static str, payload: &[u8], needed: usize) -> Result<(), MessageError> {
    if payload.len() < needed {
        return Err(MessageError::Truncated {
            what,
            needed,
            got: payload.len(),
        });
    }
    Ok(())
}

/// Reads the 4-byte big-endian value every control message starts with.
pub fn read_u32(what: &'static str, payload: &[u8]) -> Result<u32, MessageError> {
    need(what, payload, 4)?;
    Ok(BigEndian::read_u32(payload))
}

/// User Control events (message type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength { stream_id: u32, millis: u32 },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    Other(u16),
}

/// For a log line: `StreamEOF (stream 1)`, `event 9`.
impl fmt::Display for UserControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserControl::StreamBegin(id) => write!(f, "StreamBegin (stream {id})"),
            UserControl::StreamEof(id) => write!(f, "StreamEOF (stream {id})"),
            UserControl::StreamDry(id) => write!(f, "StreamDry (stream {id})"),
            UserControl::SetBufferLength { stream_id, millis } => {
                write!(f, "SetBufferLength (stream {stream_id}, {millis} ms)")
            }
            UserControl::StreamIsRecorded(id) => write!(f, "StreamIsRecorded (stream {id})"),
            UserControl::PingRequest(t) => write!(f, "PingRequest ({t})"),
            UserControl::PingResponse(t) => write!(f, "PingResponse ({t})"),
            UserControl::Other(event) => write!(f, "event {event}"),
        }
    }
}

impl UserControl {
    pub fn parse(payload: &[u8]) -> Result<UserControl, MessageError> {
        const WHAT: &str = "user control";
        need(WHAT, payload, 6)?;
        let event = BigEndian::read_u16(payload);
        let value = BigEndian::read_u32(&payload[2..]);
        Ok(match event {
            0 => UserControl::StreamBegin(value),
            1 => UserControl::StreamEof(value),
            2 => UserControl::StreamDry(value),
            3 => {
                need(WHAT, payload, 10)?;
                UserControl::SetBufferLength {
                    stream_id: value,
                    millis: BigEndian::read_u32(&payload[6..]),
                }
            }
            4 => UserControl::StreamIsRecorded(value),
            6 => UserControl::PingRequest(value),
            7 => UserControl::PingResponse(value),
            other => UserControl::Other(other),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let (event, value, extra) = match *self {
            UserControl::StreamBegin(v) => (0, v, None),
            UserControl::StreamEof(v) => (1, v, None),
            UserControl::StreamDry(v) => (2, v, None),
            UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
            UserControl::StreamIsRecorded(v) => (4, v, None),
            UserControl::PingRequest(v) => (6, v, None),
            UserControl::PingResponse(v) => (7, v, None),
            UserControl::Other(e) => (e, 0, None),
        };
        let mut out = vec![0; 6];
        BigEndian::write_u16(&mut out, event);
        BigEndian::write_u32(&mut out[2..], value);
        if let Some(extra) = extra {
            out.extend_from_slice(&extra.to_be_bytes());
        }
        out
    }
}

/// A command message (type 20, or 17 with its leading format byte removed).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub command_object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

impl Command {
    pub fn parse(payload: &[u8], limits: AmfLimits) -> Result<Command, MessageError> {
        let amf = |source| MessageError::Amf {
            what: "command",
            source,
        };
        let mut values = amf0::decode_all_with(payload, limits)
            .map_err(amf)?
            .into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) | Some(Amf0Value::LongString(s)) => s,
            Some(other) => match other.as_str() {
                Some(s) => s.to_owned(),
                None => return Err(MessageError::NotACommand),
            },
            None => return Err(MessageError::NotACommand),
        };
        // Some clients omit the transaction id and command object on notifications.
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            command_object,
            args: values.collect(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        amf0::encode_value(&Amf0Value::String(self.name.clone()), &mut out);
        amf0::encode_value(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode_value(&self.command_object, &mut out);
        amf0::encode_all(&self.args, &mut out);
        out
    }

    /// The n-th argument after the command object, if present.
    pub fn arg(&self, n: usize) -> Option<&Amf0Value> {
        self.args.get(n)
    }
}

/// Strips the AMF3 format byte that types 15 and 17 carry before their AMF0 body.
pub fn strip_amf3_marker(type_id: u8, payload: &[u8]) -> &[u8] {
    match (type_id, payload.first()) {
        (DATA_AMF3 | COMMAND_AMF3, Some(0)) => &payload[1..],
        _ => payload,
    }
}

/// For a data message, the name it starts with (`@setDataFrame`, `onMetaData`, ...)
/// and the byte offset just past that name.
pub fn data_name(payload: &[u8]) -> Option<(String, usize)> {
    let mut reader = Amf0Reader::new(payload, AmfLimits::default());
    let value = reader.read_value().ok()?;
    let name = value.as_str()?.to_owned();
    Some((name, reader.position()))
}

/// FLV script data (`onMetaData` and its values, as an FLV script tag holds
/// them) as encoders send it: `@setDataFrame` + the data.
pub fn set_data_frame(script_data: &[u8]) -> Vec<u8> {
    let mut payload = amf0::encode_all_to_vec(&["@setDataFrame".into()]);
    payload.extend_from_slice(script_data);
    payload
}

/// One message taken out of an aggregate (type 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

impl SubMessage {
    /// The part as a message of its own, on the aggregate's chunk and message
    /// streams.
    pub fn within(self, aggregate: &RawMessage) -> RawMessage {
        RawMessage {
            csid: aggregate.csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: aggregate.stream_id,
            payload: self.payload,
        }
    }
}

/// Splits an aggregate message into its FLV-tag-shaped parts. The parts' own
/// timestamps are made relative to the first one and rebased on the aggregate's.
pub fn split_aggregate(timestamp: u32, payload: &[u8]) -> Result<Vec<SubMessage>, MessageError> {
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut first_ts = None;
    while pos < payload.len() {
        let header = payload.get(pos..pos + 11).ok_or(MessageError::Aggregate {
            offset: pos,
            problem: "truncated sub-message header",
        })?;
        let type_id = header[0];
        let len = BigEndian::read_u24(&header[1..]) as usize;
        let ts = BigEndian::read_u24(&header[4..]) | (u32::from(header[7]) << 24);
        let body_start = pos + 11;
        let body = payload
            .get(body_start..body_start + len)
            .ok_or(MessageError::Aggregate {
                offset: pos,
                problem: "sub-message longer than the aggregate",
            })?;
        let first = *first_ts.get_or_insert(ts);
        parts.push(SubMessage {
            type_id,
            timestamp: timestamp.wrapping_add(ts.wrapping_sub(first)),
            payload: body.to_vec(),
        });
        // Each part is followed by a 4-byte back pointer (its total size), unchecked:
        // encoders disagree on whether it counts the header.
        pos = body_start + len + 4;
    }
    Ok(parts)
}

/// Builds an outgoing message on the given chunk stream.
pub fn raw(csid: u32, stream_id: u32, type_id: u8, payload: Vec<u8>) -> RawMessage {
    RawMessage {
        csid,
        timestamp: 0,
        type_id,
        stream_id,
        payload,
    }
}

pub fn set_chunk_size(size: u32) -> RawMessage {
    raw(CSID_CONTROL, 0, SET_CHUNK_SIZE, size.to_be_bytes().to_vec())
}

pub fn window_ack_size(size: u32) -> RawMessage {
    raw(
        CSID_CONTROL,
        0,
        WINDOW_ACK_SIZE,
        size.to_be_bytes().to_vec(),
    )
}

pub fn acknowledgement(sequence: u32) -> RawMessage {
    raw(
        CSID_CONTROL,
        0,
        ACKNOWLEDGEMENT,
        sequence.to_be_bytes().to_vec(),
    )
}

pub fn set_peer_bandwidth(size: u32, limit_type: u8) -> RawMessage {
    let mut payload = size.to_be_bytes().to_vec();
    payload.push(limit_type);
    raw(CSID_CONTROL, 0, SET_PEER_BANDWIDTH, payload)
}

pub fn user_control(event: UserControl) -> RawMessage {
    raw(CSID_CONTROL, 0, USER_CONTROL, event.encode())
}

/// A command message (`_result`, `onStatus`, ...) from the server.
pub fn command(
    csid: u32,
    stream_id: u32,
    name: &str,
    transaction_id: f64,
    command_object: Amf0Value,
    args: Vec<Amf0Value>,
) -> RawMessage {
    let cmd = Command {
        name: name.to_owned(),
        transaction_id,
        command_object,
        args,
    };
    raw(csid, stream_id, COMMAND_AMF0, cmd.encode())
}

/// The info object of a status event.
pub fn status_info(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
}

/// `onStatus` on a media stream, as NetStream listeners expect it.
pub fn on_status(stream_id: u32, level: &str, code: &str, description: &str) -> RawMessage {
    command(
        CSID_STREAM_DATA,
        stream_id,
        "onStatus",
        0.0,
        Amf0Value::Null,
        vec![status_info(level, code, description)],
    )
}

/// An AMF0 data message (type 18) on a media stream.
pub fn data(stream_id: u32, values: &[Amf0Value]) -> RawMessage {
    let mut payload = Vec::with_capacity(64);
    amf0::encode_all(values, &mut payload);
    raw(CSID_STREAM_DATA, stream_id, DATA_AMF0, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_events_read_as_words() {
        assert_eq!(
            UserControl::StreamEof(1).to_string(),
            "StreamEOF (stream 1)"
        );
        assert_eq!(
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000
            }
            .to_string(),
            "SetBufferLength (stream 1, 3000 ms)"
        );
        assert_eq!(UserControl::Other(31).to_string(), "event 31");
    }

    #[test]
    fn user_control_round_trips() {
        for event in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(7),
            UserControl::StreamDry(2),
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(123_456),
            UserControl::PingResponse(u32::MAX),
        ] {
            assert_eq!(UserControl::parse(&event.encode()).unwrap(), event);
        }
    }

    #[test]
    fn user_control_wire_bytes() {
        assert_eq!(
            UserControl::StreamBegin(1).encode(),
            [0, 0, 0, 0, 0, 1],
            "event type 0, stream id 1"
        );
        assert_eq!(
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 0x0bb8
            }
            .encode(),
            [0, 3, 0, 0, 0, 1, 0, 0, 0x0b, 0xb8]
        );
    }

    #[test]
    fn truncated_user_control_is_an_error() {
        assert!(UserControl::parse(&[0, 0, 0]).is_err());
        assert!(UserControl::parse(&[0, 3, 0, 0, 0, 1, 0]).is_err());
        assert_eq!(
            UserControl::parse(&[0, 99, 0, 0, 0, 0]).unwrap(),
            UserControl::Other(99)
        );
    }

    #[test]
    fn command_round_trips() {
        let cmd = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            command_object: Amf0Value::Null,
            args: vec![
                Amf0Value::String("key".into()),
                Amf0Value::String("live".into()),
            ],
        };
        let parsed = Command::parse(&cmd.encode(), AmfLimits::default()).unwrap();
        assert_eq!(parsed, cmd);
        assert_eq!(parsed.arg(0).and_then(|v| v.as_str()), Some("key"));
    }

    #[test]
    fn command_wire_bytes_for_create_stream() {
        // "createStream", 2.0, null — as ffmpeg sends it.
        let mut bytes = vec![0x02, 0x00, 0x0c];
        bytes.extend_from_slice(b"createStream");
        bytes.extend_from_slice(&[0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x05]);
        let cmd = Command::parse(&bytes, AmfLimits::default()).unwrap();
        assert_eq!(cmd.name, "createStream");
        assert_eq!(cmd.transaction_id, 2.0);
        assert_eq!(cmd.command_object, Amf0Value::Null);
        assert!(cmd.args.is_empty());
    }

    #[test]
    fn command_without_name_is_an_error() {
        let mut bytes = Vec::new();
        amf0::encode_value(&Amf0Value::Number(1.0), &mut bytes);
        assert_eq!(
            Command::parse(&bytes, AmfLimits::default()),
            Err(MessageError::NotACommand)
        );
        assert_eq!(
            Command::parse(&[], AmfLimits::default()),
            Err(MessageError::NotACommand)
        );
        assert!(Command::parse(&[0x02, 0x00], AmfLimits::default()).is_err());
    }

    #[test]
    fn amf3_marker_is_stripped_only_where_it_belongs() {
        assert_eq!(strip_amf3_marker(COMMAND_AMF3, &[0, 2, 0]), &[2, 0]);
        assert_eq!(strip_amf3_marker(DATA_AMF3, &[0, 2]), &[2]);
        assert_eq!(strip_amf3_marker(COMMAND_AMF0, &[0, 2]), &[0, 2]);
        assert_eq!(strip_amf3_marker(DATA_AMF3, &[]), &[] as &[u8]);
    }

    #[test]
    fn data_name_finds_set_data_frame() {
        let mut payload = Vec::new();
        amf0::encode_all(
            &[
                Amf0Value::String("@setDataFrame".into()),
                Amf0Value::String("onMetaData".into()),
            ],
            &mut payload,
        );
        let (name, end) = data_name(&payload).unwrap();
        assert_eq!(name, "@setDataFrame");
        assert_eq!(end, 3 + "@setDataFrame".len());
        assert_eq!(data_name(&payload[end..]).unwrap().0, "onMetaData");
        assert_eq!(data_name(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    fn aggregate_part(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![type_id];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        out
    }

    #[test]
    fn aggregate_splits_and_rebases_timestamps() {
        let mut payload = aggregate_part(VIDEO, 1000, &[0x17, 1, 2]);
        payload.extend(aggregate_part(AUDIO, 1023, &[0xaf, 1]));
        payload.extend(aggregate_part(VIDEO, 0x0100_0000 + 1000, &[0x27]));
        let parts = split_aggregate(5000, &payload).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            SubMessage {
                type_id: VIDEO,
                timestamp: 5000,
                payload: vec![0x17, 1, 2]
            }
        );
        assert_eq!(parts[1].timestamp, 5023);
        assert_eq!(parts[1].payload, vec![0xaf, 1]);
        assert_eq!(parts[2].timestamp, 5000 + 0x0100_0000, "extended ts byte");
    }

    #[test]
    fn broken_aggregates_are_errors() {
        let good = aggregate_part(VIDEO, 0, &[1, 2, 3, 4]);
        for cut in 1..good.len() - 4 {
            assert!(
                split_aggregate(0, &good[..cut]).is_err(),
                "cut at {cut} must be refused"
            );
        }
        // Missing only the back pointer is tolerated: the body is complete.
        assert_eq!(
            split_aggregate(0, &good[..good.len() - 4]).unwrap().len(),
            1
        );
        assert!(split_aggregate(0, &[]).unwrap().is_empty());
    }

    #[test]
    fn builders_use_control_stream() {
        let m = set_chunk_size(4096);
        assert_eq!(
            (m.csid, m.type_id, m.stream_id),
            (CSID_CONTROL, SET_CHUNK_SIZE, 0)
        );
        assert_eq!(m.payload, [0, 0, 0x10, 0]);
        assert_eq!(
            set_peer_bandwidth(2_500_000, LIMIT_DYNAMIC).payload.len(),
            5
        );
        let status = on_status(1, "status", "NetStream.Play.Start", "Started");
        let cmd = Command::parse(&status.payload, AmfLimits::default()).unwrap();
        assert_eq!(cmd.name, "onStatus");
        assert_eq!(
            cmd.arg(0)
                .and_then(|o| o.get("code"))
                .and_then(|c| c.as_str()),
            Some("NetStream.Play.Start")
        );
    }
}
