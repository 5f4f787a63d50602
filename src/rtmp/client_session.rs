//! The client side of one RTMP connection after the handshake, without I/O: the
//! counterpart of the server's `session`. Bytes from the server go in
//! ([`ClientSession::push_input`], then [`ClientSession::handle_next`] one message
//! at a time, or [`ClientSession::handle_input`] for all); out come events in wire
//! order (media, data, statuses, commands, user control, acknowledgements) and the
//! chunked bytes to send back. Protocol control is handled underneath (`control`,
//! shared with the server): chunk size changes, aborts, acknowledgements per the
//! server's window, ping replies. Commands, media and metadata the application
//! sends are chunked into the same output, in call order.
//!
//! The blocking client (`crate::client`) drives one over a socket; a relay that
//! publishes upstream can drive one too, reading acknowledgements, pings and error
//! statuses while it sends.

use crate::amf::amf0::{Amf0Value, AmfLimits};
use crate::rtmp::chunk::{ChunkEncoder, ChunkError, ChunkLimits, RawMessage, MAX_CHUNK_SIZE};
use crate::rtmp::control::{Control, Inbound, InputError};
use crate::rtmp::message::{self as msg, Command, UserControl};

/// Chunk stream ids the client writes on. Commands on stream 0 share one;
/// commands on a media stream (publish, play, pause) use another, as ffmpeg
/// does, so their headers compress independently.
const CSID_STREAM_COMMAND: u32 = 8;
const CSID_DATA: u32 = 4;
const CSID_AUDIO: u32 = msg::CSID_AUDIO;
const CSID_VIDEO: u32 = msg::CSID_VIDEO;

/// An `onStatus` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The message stream it arrived on (0 for the connection).
    pub stream_id: u32,
    /// `status`, `warning` or `error`.
    pub level: String,
    pub code: String,
    pub description: String,
    /// The whole info object, for fields beyond the usual three.
    pub info: Amf0Value,
}

/// What the server sent, in wire order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Audio (type 8) or video (type 9), payload untouched. Aggregate messages
    /// arrive already split into their parts.
    Media {
        stream_id: u32,
        type_id: u8,
        timestamp: u32,
        payload: Vec<u8>,
    },
    /// A data message (type 18, or 15 without its AMF3 marker byte): AMF0
    /// values such as `onMetaData {...}` or `|RtmpSampleAccess`.
    Data {
        stream_id: u32,
        timestamp: u32,
        payload: Vec<u8>,
    },
    Status(Status),
    /// Any other command: `onFCPublish`, `onBWDone`, replies to calls, ...
    /// Replies to calls marked with [`ClientSession::ignore_reply`] are dropped.
    Command {
        stream_id: u32,
        command: Command,
    },
    /// User control events. Ping requests have already been answered.
    UserControl(UserControl),
    /// The server acknowledged this many bytes (sequence number).
    Acknowledgement(u32),
    /// Message types the client does not interpret (shared objects, ...).
    Other(RawMessage),
}

/// One connection's client-side state above the handshake. See the module
/// documentation.
pub struct ClientSession {
    inbound: Inbound,
    encoder: ChunkEncoder,
    amf_limits: AmfLimits,
    /// Chunked bytes waiting to be sent, in order.
    out: Vec<u8>,
    next_transaction: f64,
    /// Transactions whose replies nobody waits for (releaseStream, FCPublish):
    /// dropped when they arrive instead of cluttering the events.
    unawaited: Vec<f64>,
}

impl Default for ClientSession {
    fn default() -> Self {
        ClientSession::new()
    }
}

impl ClientSession {
    pub fn new() -> ClientSession {
        ClientSession {
            inbound: Inbound::new(ChunkLimits::default()),
            encoder: ChunkEncoder::new(),
            amf_limits: AmfLimits::default(),
            out: Vec::with_capacity(16 * 1024),
            next_transaction: 1.0,
            unawaited: Vec::new(),
        }
    }

    // -----------------------------------------------------------------------
    // Input

    /// Bytes from the server. An Acknowledgement joins the output once a window's
    /// worth has come in, as the server asked with Window Acknowledgement Size.
    pub fn push_input(&mut self, bytes: &[u8]) -> Result<(), ChunkError> {
        self.inbound.push(bytes);
        match self.inbound.ack_due() {
            Some(ack) => self.send_raw(&ack),
            None => Ok(()),
        }
    }

    /// Handles the next complete message, appending what it meant to `events`
    /// (nothing, for protocol control; several events, for an aggregate). False
    /// when no complete message is buffered: push more input.
    pub fn handle_next(
        &mut self,
        events: &mut impl Extend<ClientEvent>,
    ) -> Result<bool, InputError> {
        match self.inbound.next_message()? {
            Some(m) => {
                self.handle(m, events)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`push_input`](Self::push_input), then every complete message.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        events: &mut impl Extend<ClientEvent>,
    ) -> Result<(), InputError> {
        self.push_input(bytes)?;
        while self.handle_next(events)? {}
        Ok(())
    }

    /// Bytes received from the server so far (the handshake not included).
    pub fn bytes_received(&self) -> u64 {
        self.inbound.bytes_received()
    }

    fn handle(
        &mut self,
        m: RawMessage,
        events: &mut impl Extend<ClientEvent>,
    ) -> Result<(), InputError> {
        let m = match self.inbound.handle(m)? {
            Control::Applied | Control::ChunkSize(_) => return Ok(()),
            Control::UserControl { event, reply } => {
                if let Some(reply) = reply {
                    self.send_raw(&reply)?;
                }
                events.extend([ClientEvent::UserControl(event)]);
                return Ok(());
            }
            Control::Other(m) => m,
        };
        let type_id = m.type_id;
        let bad = |source| InputError::Message { type_id, source };
        match type_id {
            msg::ACKNOWLEDGEMENT => {
                let sequence = msg::read_u32("acknowledgement", &m.payload).map_err(bad)?;
                events.extend([ClientEvent::Acknowledgement(sequence)]);
            }
            msg::AUDIO | msg::VIDEO => events.extend([ClientEvent::Media {
                stream_id: m.stream_id,
                type_id,
                timestamp: m.timestamp,
                payload: m.payload,
            }]),
            msg::DATA_AMF0 | msg::DATA_AMF3 => {
                let mut payload = m.payload;
                let marker = payload.len() - msg::strip_amf3_marker(type_id, &payload).len();
                payload.drain(..marker);
                events.extend([ClientEvent::Data {
                    stream_id: m.stream_id,
                    timestamp: m.timestamp,
                    payload,
                }]);
            }
            msg::COMMAND_AMF0 | msg::COMMAND_AMF3 => {
                let body = msg::strip_amf3_marker(type_id, &m.payload);
                let command = Command::parse(body, self.amf_limits).map_err(bad)?;
                self.handle_command(m.stream_id, command, events);
            }
            msg::AGGREGATE => {
                for part in msg::split_aggregate(m.timestamp, &m.payload).map_err(bad)? {
                    // Only media and data nest; anything else (a nested
                    // aggregate, a command) is not something a stream carries.
                    if matches!(part.type_id, msg::AUDIO | msg::VIDEO | msg::DATA_AMF0) {
                        self.handle(part.within(&m), events)?;
                    }
                }
            }
            _ => events.extend([ClientEvent::Other(m)]),
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        command: Command,
        events: &mut impl Extend<ClientEvent>,
    ) {
        if is_reply(&command) {
            if let Some(i) = self
                .unawaited
                .iter()
                .position(|&t| t == command.transaction_id)
            {
                self.unawaited.swap_remove(i);
                return;
            }
        }
        if command.name == "onStatus" {
            if let Some(status) = status_of(stream_id, &command) {
                events.extend([ClientEvent::Status(status)]);
                return;
            }
        }
        events.extend([ClientEvent::Command { stream_id, command }]);
    }

    // -----------------------------------------------------------------------
    // Output

    /// Chunked bytes waiting to be sent, in order.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output, once it has been written (or can no longer be).
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Chunks one message into the output. On error nothing is added.
    pub fn send_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), ChunkError> {
        self.encoder
            .encode(csid, timestamp, type_id, stream_id, payload, &mut self.out)
    }

    /// Sends any message as it is. Nothing is interpreted: a Set Chunk Size sent
    /// this way does not change the chunk size the session sends with (see
    /// [`set_chunk_size`](Self::set_chunk_size)).
    pub fn send_raw(&mut self, message: &RawMessage) -> Result<(), ChunkError> {
        self.encoder.encode_message(message, &mut self.out)
    }

    /// Announces a new chunk size and sends with it from now on.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if !(1..=MAX_CHUNK_SIZE).contains(&size) {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.send_raw(&msg::set_chunk_size(size))?;
        self.encoder.set_chunk_size(size)
    }

    /// A fresh transaction id for [`send_command`](Self::send_command).
    pub fn new_transaction(&mut self) -> f64 {
        let id = self.next_transaction;
        self.next_transaction += 1.0;
        id
    }

    /// Drops the reply to `transaction_id` when it arrives, for calls nobody
    /// waits on.
    pub fn ignore_reply(&mut self, transaction_id: f64) {
        self.unawaited.push(transaction_id);
    }

    /// A command on the connection (stream 0) or a media stream.
    pub fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<(), ChunkError> {
        let csid = if stream_id == 0 {
            msg::CSID_COMMAND
        } else {
            CSID_STREAM_COMMAND
        };
        let m = msg::command(csid, stream_id, name, transaction_id, command_object, args);
        self.send_raw(&m)
    }

    /// One message on a publishing stream: audio (type 8) on chunk stream 6,
    /// video (9) on 7, anything else (data 18, aggregate 22, ...) on 4.
    pub fn send_media(
        &mut self,
        stream_id: u32,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), ChunkError> {
        let csid = match type_id {
            msg::AUDIO => CSID_AUDIO,
            msg::VIDEO => CSID_VIDEO,
            _ => CSID_DATA,
        };
        self.send_message(csid, timestamp, type_id, stream_id, payload)
    }

    /// FLV script data (`onMetaData` and its values, as an FLV script tag holds
    /// them) sent the way encoders do: as `@setDataFrame` + the data.
    pub fn send_metadata(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        script_data: &[u8],
    ) -> Result<(), ChunkError> {
        let payload = msg::set_data_frame(script_data);
        self.send_media(stream_id, msg::DATA_AMF0, timestamp, &payload)
    }
}

/// `_result` or `_error`: the answer to a call.
pub fn is_reply(command: &Command) -> bool {
    command.name == "_result" || command.name == "_error"
}

fn status_of(stream_id: u32, command: &Command) -> Option<Status> {
    let info = command.arg(0)?;
    let text = |key| {
        info.get(key)
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let code = info.get("code")?.as_str()?.to_owned();
    Some(Status {
        stream_id,
        level: text("level"),
        code,
        description: text("description"),
        info: info.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder};
    use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

    /// The two sessions wired together in memory, with the chunking the server's
    /// writer does in between, and a decoder that sees everything the client sent.
    struct Pair {
        client: ClientSession,
        server: ServerSession,
        encoder: ChunkEncoder,
        client_sent: ChunkDecoder,
        server_events: Vec<SessionEvent>,
    }

    impl Pair {
        fn new() -> Pair {
            Pair {
                client: ClientSession::new(),
                server: ServerSession::new(SessionConfig::default()),
                encoder: ChunkEncoder::new(),
                client_sent: ChunkDecoder::new(ChunkLimits::default()),
                server_events: Vec::new(),
            }
        }

        /// The client's output goes to the server; returns what it was.
        fn deliver(&mut self) -> Vec<RawMessage> {
            let out = self.client.output().to_vec();
            self.client.clear_output();
            self.client_sent.push(&out);
            self.server
                .handle_input(&out, &mut self.server_events)
                .unwrap();
            std::iter::from_fn(|| self.client_sent.next_message().unwrap()).collect()
        }

        /// Chunks messages as the server's writer does.
        fn server_bytes(&mut self, messages: Vec<RawMessage>) -> Vec<u8> {
            let mut out = Vec::new();
            for m in messages {
                self.encoder.encode_message(&m, &mut out).unwrap();
                if m.type_id == msg::SET_CHUNK_SIZE {
                    let size = msg::read_u32("", &m.payload).unwrap();
                    self.encoder.set_chunk_size(size).unwrap();
                }
            }
            out
        }

        /// One round: the client's output to the server, publishes accepted, the
        /// server's output back to the client.
        fn exchange(&mut self) -> Vec<ClientEvent> {
            self.deliver();
            for e in std::mem::take(&mut self.server_events) {
                if let SessionEvent::PublishRequested {
                    stream_id, name, ..
                } = e
                {
                    self.server.accept_publish(stream_id, &name);
                }
            }
            let replies = self.server.take_output();
            let bytes = self.server_bytes(replies);
            let mut events = Vec::new();
            self.client.handle_input(&bytes, &mut events).unwrap();
            events
        }
    }

    /// Connect, publish and media against the server's session, then the protocol
    /// control the client answers underneath.
    #[test]
    fn publishes_to_the_server_session_in_memory() {
        let mut p = Pair::new();
        let connect = p.client.new_transaction();
        let app = Amf0Value::Object(vec![("app".into(), "live".into())]);
        p.client
            .send_command(0, "connect", connect, app, vec![])
            .unwrap();
        let events = p.exchange();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::Command { command, .. }
                if command.name == "_result" && command.transaction_id == connect)),
            "{events:?}"
        );

        let create = p.client.new_transaction();
        p.client
            .send_command(0, "createStream", create, Amf0Value::Null, vec![])
            .unwrap();
        let stream_id = p
            .exchange()
            .iter()
            .find_map(|e| match e {
                ClientEvent::Command { command, .. } if command.transaction_id == create => {
                    command.arg(0).and_then(Amf0Value::as_f64)
                }
                _ => None,
            })
            .expect("createStream answered") as u32;
        let ignored = p.client.new_transaction();
        p.client.ignore_reply(ignored);
        p.client
            .send_command(
                0,
                "releaseStream",
                ignored,
                Amf0Value::Null,
                vec!["k".into()],
            )
            .unwrap();
        let publish = vec!["k".into(), "live".into()];
        p.client
            .send_command(stream_id, "publish", 0.0, Amf0Value::Null, publish)
            .unwrap();
        let events = p.exchange();
        assert!(
            events
                .iter()
                .all(|e| !matches!(e, ClientEvent::Command { command, .. }
                if command.transaction_id == ignored)),
            "an ignored reply is dropped: {events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, ClientEvent::Status(s)
            if s.code == "NetStream.Publish.Start" && s.stream_id == stream_id)));

        p.client
            .send_media(stream_id, msg::VIDEO, 40, &[0x17, 1, 0, 0, 0])
            .unwrap();
        p.deliver();
        assert!(matches!(
            &p.server_events[..],
            [SessionEvent::Frame { frame, .. }] if frame.timestamp == 40 && frame.is_keyframe()
        ));

        // Underneath: a ping is answered, and a full window (the server's, 2.5 MB
        // announced at connect) acknowledged.
        let ping = p.server_bytes(vec![msg::user_control(UserControl::PingRequest(7))]);
        let mut events = Vec::new();
        p.client.handle_input(&ping, &mut events).unwrap();
        assert_eq!(
            events,
            [ClientEvent::UserControl(UserControl::PingRequest(7))]
        );
        let pong = p.deliver();
        assert_eq!(
            UserControl::parse(&pong[0].payload).unwrap(),
            UserControl::PingResponse(7)
        );
        let big = p.server_bytes(vec![msg::raw(
            6,
            stream_id,
            msg::AUDIO,
            vec![0xaf; 3_000_000],
        )]);
        p.client.push_input(&big).unwrap();
        let ack = p.deliver();
        assert_eq!(ack[0].type_id, msg::ACKNOWLEDGEMENT);
        assert_eq!(
            u64::from(msg::read_u32("", &ack[0].payload).unwrap()),
            p.client.bytes_received()
        );
    }
}
