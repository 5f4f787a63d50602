//! The server side of one RTMP connection after the handshake, without I/O. Bytes
//! from the peer go in through `handle_input`; out come events for the application
//! (connect, publish, play, frames, ...) and messages to send back, which the caller
//! chunks and writes. Protocol control (chunk size, acknowledgements, pings: see
//! `control`, shared with the client's session) and the command replies clients wait
//! for are handled here; decisions that need the rest
//! of the server (may this key be published?) are returned as events and answered
//! with `accept_*` / `reject_*`.
//!
//! Publish and play requests are taken optimistically: frames that arrive in the
//! same read as the publish command are already attributed to the stream, and a
//! caller that refuses the request closes the connection.

use std::collections::HashMap;
use std::fmt;

use log::debug;

use crate::amf::amf0::{Amf0Value, AmfLimits};
use crate::media::frame::{Frame, FrameKind};
use crate::rtmp::chunk::{ChunkError, ChunkLimits, RawMessage};
use crate::rtmp::control::{Control, Inbound, InputError};
use crate::rtmp::message::{self as msg, Command, MessageError, UserControl};
use crate::stream_key::LogName;

/// Server identity in the connect reply; clients only display it.
const FMS_VERSION: &str = "FMS/3,5,7,7009";
/// Streams one connection may create; real clients use one or two.
const MAX_STREAMS: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Chunk size announced to the peer right after connect.
    pub chunk_size: u32,
    pub window_ack_size: u32,
    pub peer_bandwidth: u32,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Connected {
        app: String,
        tc_url: Option<String>,
        query: Option<String>,
    },
    PublishRequested {
        stream_id: u32,
        /// Stream name without the query string.
        name: String,
        query: Option<String>,
        mode: String,
    },
    PlayRequested {
        stream_id: u32,
        name: String,
        query: Option<String>,
        start: f64,
        duration: f64,
        reset: bool,
    },
    /// Audio, video or data from a publishing stream, payload untouched.
    Frame {
        stream_id: u32,
        frame: Frame,
    },
    PublishStopped {
        stream_id: u32,
    },
    PlayStopped {
        stream_id: u32,
    },
    Paused {
        stream_id: u32,
        paused: bool,
    },
    ReceiveAudio {
        stream_id: u32,
        enabled: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        enabled: bool,
    },
}

#[derive(Debug)]
pub enum SessionError {
    /// The chunk stream is broken, or a message does not parse.
    Input(InputError),
    CommandBeforeConnect(String),
    ConnectWithoutApp,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Input(e) => e.fmt(f),
            SessionError::CommandBeforeConnect(name) => {
                write!(f, "command '{name}' before connect")
            }
            SessionError::ConnectWithoutApp => f.write_str("connect command without an app name"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Input(e) => e.source(),
            _ => None,
        }
    }
}

impl From<ChunkError> for SessionError {
    fn from(e: ChunkError) -> Self {
        SessionError::Input(InputError::Chunk(e))
    }
}

impl From<InputError> for SessionError {
    fn from(e: InputError) -> Self {
        SessionError::Input(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Idle,
    Publishing(String),
    Playing(String),
}

/// What the client said about itself in its connect command (strings only;
/// absent ones are empty), for access hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
}

pub struct ServerSession {
    config: SessionConfig,
    client: ClientProperties,
    inbound: Inbound,
    /// Starts the session's debug lines: the caller's name for the client (its
    /// address), since the session itself has no socket.
    log_prefix: String,
    out: Vec<RawMessage>,
    connected: bool,
    streams: HashMap<u32, Role>,
    next_stream_id: u32,
}

impl ServerSession {
    pub fn new(config: SessionConfig) -> ServerSession {
        ServerSession {
            config,
            client: ClientProperties::default(),
            inbound: Inbound::new(config.chunk_limits),
            log_prefix: "rtmp session".into(),
            out: Vec::new(),
            connected: false,
            streams: HashMap::new(),
            next_stream_id: 1,
        }
    }

    /// Names the client in the session's log lines (`203.0.113.5:50123: ...`).
    pub fn with_log_prefix(mut self, prefix: impl Into<String>) -> ServerSession {
        self.log_prefix = prefix.into();
        self
    }

    /// Feeds bytes from the peer; events are appended to `events` in order.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        self.inbound.push(bytes);
        while let Some(message) = self.inbound.next_message()? {
            self.handle_message(message, events)?;
        }
        self.out.extend(self.inbound.ack_due());
        Ok(())
    }

    /// Messages to send, in order. The caller chunks them with one encoder and must
    /// switch its chunk size after writing a Set Chunk Size message.
    pub fn take_output(&mut self) -> Vec<RawMessage> {
        std::mem::take(&mut self.out)
    }

    pub fn bytes_received(&self) -> u64 {
        self.inbound.bytes_received()
    }

    /// What the client's connect command said about it.
    pub fn client(&self) -> &ClientProperties {
        &self.client
    }

    pub fn accept_publish(&mut self, stream_id: u32, name: &str) {
        self.out.push(msg::on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        ));
    }

    /// Refuses a publish with `code`: `NetStream.Publish.BadName` (the name is
    /// bad or taken) or `NetStream.Publish.Unauthorized` (access refused).
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.streams.insert(stream_id, Role::Idle);
        self.out
            .push(msg::on_status(stream_id, "error", code, description));
    }

    /// Tells a publisher that the server ended its stream and is closing the
    /// connection (the server is stopping). At level "error" ffmpeg prints the
    /// description ("Server error: ...") and stops at once; at level "status" it
    /// ignores the message and only reports "End of file" once the socket closes.
    pub fn end_publish(&mut self, stream_id: u32, description: &str) {
        self.streams.insert(stream_id, Role::Idle);
        self.out.push(msg::on_status(
            0,
            "error",
            "NetConnection.Connect.Closed",
            description,
        ));
    }

    /// The status sequence players expect before media: StreamBegin, Play.Reset,
    /// Play.Start, |RtmpSampleAccess. No `onStatus {NetStream.Data.Start}` data
    /// message (nginx-rtmp sends none either): ffmpeg's and VLC's FLV demuxers turn a
    /// data message that is not onMetaData into an extra "Data" stream, which breaks
    /// `-map 0` remuxing and stream counts.
    pub fn accept_play(&mut self, stream_id: u32, name: &str, reset: bool) {
        self.out
            .push(msg::user_control(UserControl::StreamBegin(stream_id)));
        if reset {
            self.out.push(msg::on_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            ));
        }
        self.out.push(msg::on_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        ));
        self.out.push(msg::data(
            stream_id,
            &[
                Amf0Value::String("|RtmpSampleAccess".into()),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        ));
    }

    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.streams.insert(stream_id, Role::Idle);
        self.out
            .push(msg::on_status(stream_id, "error", code, description));
    }

    fn handle_message(
        &mut self,
        m: RawMessage,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        let m = match self.inbound.handle(m)? {
            Control::Applied => return Ok(()),
            Control::ChunkSize(size) => {
                debug!("{}: client chunk size {size}", self.log_prefix);
                return Ok(());
            }
            Control::UserControl { event, reply } => {
                self.out.extend(reply);
                match event {
                    UserControl::PingRequest(_) => {}
                    UserControl::SetBufferLength { stream_id, millis } => debug!(
                        "{}: stream {stream_id}: client buffer {millis} ms",
                        self.log_prefix
                    ),
                    other => debug!("{}: user control {other} ignored", self.log_prefix),
                }
                return Ok(());
            }
            Control::Other(m) => m,
        };
        let bad = |source| {
            SessionError::Input(InputError::Message {
                type_id: m.type_id,
                source,
            })
        };
        match m.type_id {
            msg::ACKNOWLEDGEMENT => {}
            msg::AUDIO | msg::VIDEO => {
                let kind = if m.type_id == msg::AUDIO {
                    FrameKind::Audio
                } else {
                    FrameKind::Video
                };
                if self.is_publishing(m.stream_id) {
                    events.push(SessionEvent::Frame {
                        stream_id: m.stream_id,
                        frame: Frame::media(kind, m.timestamp, m.payload),
                    });
                }
            }
            msg::DATA_AMF0 | msg::DATA_AMF3 => {
                if self.is_publishing(m.stream_id) {
                    let body = msg::strip_amf3_marker(m.type_id, &m.payload);
                    let frame = data_frame(m.timestamp, body);
                    events.push(SessionEvent::Frame {
                        stream_id: m.stream_id,
                        frame,
                    });
                }
            }
            msg::COMMAND_AMF0 | msg::COMMAND_AMF3 => {
                let body = msg::strip_amf3_marker(m.type_id, &m.payload);
                let cmd = Command::parse(body, self.config.amf_limits).map_err(bad)?;
                self.handle_command(m.stream_id, cmd, events)?;
            }
            msg::AGGREGATE => {
                for part in msg::split_aggregate(m.timestamp, &m.payload).map_err(bad)? {
                    if part.type_id == msg::AGGREGATE {
                        // Nothing sends these; recursing on them would let a peer
                        // choose our stack depth.
                        return Err(bad(MessageError::Aggregate {
                            offset: 0,
                            problem: "aggregate nested inside an aggregate",
                        }));
                    }
                    self.handle_message(part.within(&m), events)?;
                }
            }
            other => debug!(
                "{}: message type {other} ({} bytes) ignored",
                self.log_prefix,
                m.payload.len()
            ),
        }
        Ok(())
    }

    fn is_publishing(&self, stream_id: u32) -> bool {
        matches!(self.streams.get(&stream_id), Some(Role::Publishing(_)))
    }

    fn reply(&mut self, transaction_id: f64, name: &str, args: Vec<Amf0Value>) {
        self.out.push(msg::command(
            msg::CSID_COMMAND,
            0,
            name,
            transaction_id,
            Amf0Value::Null,
            args,
        ));
    }

    /// The `onFCPublish`-style notifications some encoders and CDNs wait for.
    fn notify(&mut self, name: &str, code: &str, description: &str) {
        self.out.push(msg::command(
            msg::CSID_COMMAND,
            0,
            name,
            0.0,
            Amf0Value::Null,
            vec![msg::status_info("status", code, description)],
        ));
    }

    /// `_result` for calls that expect an answer but have nothing to say.
    fn ack_call(&mut self, cmd: &Command) {
        if cmd.transaction_id != 0.0 {
            self.reply(cmd.transaction_id, "_result", vec![Amf0Value::Undefined]);
        }
    }

    fn stop_stream(&mut self, stream_id: u32, events: &mut Vec<SessionEvent>) {
        match self.streams.get(&stream_id) {
            Some(Role::Publishing(_)) => events.push(SessionEvent::PublishStopped { stream_id }),
            Some(Role::Playing(_)) => events.push(SessionEvent::PlayStopped { stream_id }),
            _ => {}
        }
    }

    fn claim_stream(&mut self, stream_id: u32, role: Role) {
        // Tolerate clients that skip createStream; the count is still bounded.
        if self.streams.contains_key(&stream_id) || self.streams.len() < MAX_STREAMS {
            self.streams.insert(stream_id, role);
        }
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        cmd: Command,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        debug!(
            "{}: command {} (transaction {})",
            self.log_prefix,
            LogName(&cmd.name),
            cmd.transaction_id
        );
        if !self.connected && cmd.name != "connect" {
            return Err(SessionError::CommandBeforeConnect(cmd.name));
        }
        let str_arg = |n: usize| {
            cmd.arg(n)
                .and_then(Amf0Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match cmd.name.as_str() {
            "connect" => self.connect(&cmd, events)?,
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS {
                    self.call_failed(&cmd, "too many streams on this connection");
                } else {
                    let id = self.next_stream_id;
                    self.next_stream_id += 1;
                    self.streams.insert(id, Role::Idle);
                    self.reply(
                        cmd.transaction_id,
                        "_result",
                        vec![Amf0Value::Number(id.into())],
                    );
                }
            }
            "releaseStream" => self.ack_call(&cmd),
            "FCPublish" => {
                let name = str_arg(0);
                self.notify("onFCPublish", "NetStream.Publish.Start", &name);
                self.ack_call(&cmd);
            }
            "FCUnpublish" => {
                let name = str_arg(0);
                let (name, _) = crate::stream_key::split_query(&name);
                let publishing: Vec<u32> = self
                    .streams
                    .iter()
                    .filter(|(_, r)| matches!(r, Role::Publishing(n) if n == name))
                    .map(|(id, _)| *id)
                    .collect();
                for id in publishing {
                    events.push(SessionEvent::PublishStopped { stream_id: id });
                    self.streams.insert(id, Role::Idle);
                }
                self.notify("onFCUnpublish", "NetStream.Unpublish.Success", name);
                self.ack_call(&cmd);
            }
            "publish" => {
                let full = str_arg(0);
                let (name, query) = crate::stream_key::split_query(&full);
                let mode = cmd
                    .arg(1)
                    .and_then(Amf0Value::as_str)
                    .unwrap_or("live")
                    .to_owned();
                self.claim_stream(stream_id, Role::Publishing(name.to_owned()));
                events.push(SessionEvent::PublishRequested {
                    stream_id,
                    name: name.to_owned(),
                    query: query.map(str::to_owned),
                    mode,
                });
            }
            "play" => {
                let full = str_arg(0);
                // NaN or infinite arguments mean nothing; use the defaults.
                let num = |n: usize, default: f64| {
                    cmd.arg(n)
                        .and_then(Amf0Value::as_f64)
                        .filter(|v| v.is_finite())
                        .unwrap_or(default)
                };
                let reset = match cmd.arg(3) {
                    Some(Amf0Value::Boolean(b)) => *b,
                    Some(v) => v.as_f64().is_none_or(|n| n != 0.0),
                    None => true,
                };
                let (start, duration) = (num(1, -2.0), num(2, -1.0));
                self.play(stream_id, &full, start, duration, reset, events);
            }
            "play2" => {
                // play2 switches a playing stream to another name (bitrate switching);
                // for live streams that is a plain play of the new name.
                let params = cmd.arg(0);
                let name = params
                    .and_then(|p| p.get("streamName"))
                    .and_then(Amf0Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let start = params
                    .and_then(|p| p.get("start"))
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(-2.0);
                self.play(stream_id, &name, start, -1.0, false, events);
            }
            "deleteStream" => {
                let id = cmd.arg(0).and_then(Amf0Value::as_f64).unwrap_or(-1.0);
                if id >= 0.0 && id <= f64::from(u32::MAX) {
                    let id = id as u32;
                    self.stop_stream(id, events);
                    self.streams.remove(&id);
                }
            }
            "closeStream" => {
                self.stop_stream(stream_id, events);
                if let Some(role) = self.streams.get_mut(&stream_id) {
                    *role = Role::Idle;
                }
            }
            "pause" | "pauseRaw" => {
                let paused = match cmd.arg(0) {
                    Some(Amf0Value::Boolean(b)) => *b,
                    _ => true,
                };
                let (code, text) = if paused {
                    ("NetStream.Pause.Notify", "Paused.")
                } else {
                    self.out
                        .push(msg::user_control(UserControl::StreamBegin(stream_id)));
                    ("NetStream.Unpause.Notify", "Unpaused.")
                };
                self.out
                    .push(msg::on_status(stream_id, "status", code, text));
                events.push(SessionEvent::Paused { stream_id, paused });
            }
            "receiveAudio" | "receiveVideo" => {
                let enabled = cmd.arg(0).and_then(Amf0Value::as_bool).unwrap_or(true);
                events.push(if cmd.name == "receiveAudio" {
                    SessionEvent::ReceiveAudio { stream_id, enabled }
                } else {
                    SessionEvent::ReceiveVideo { stream_id, enabled }
                });
            }
            "getStreamLength" => {
                // Live streams have no length.
                self.reply(cmd.transaction_id, "_result", vec![Amf0Value::Number(0.0)]);
            }
            "_checkbw" => self.ack_call(&cmd),
            "FCSubscribe" => {
                let name = str_arg(0);
                self.notify("onFCSubscribe", "NetStream.Play.Start", &name);
                self.ack_call(&cmd);
            }
            // Answers to calls we made, or notifications: nothing to say back.
            "_result" | "_error" | "onStatus" | "onBWDone" | "FCUnsubscribe" | "setDataFrame" => {}
            _ => {
                debug!(
                    "{}: unknown command {}",
                    self.log_prefix,
                    LogName(&cmd.name)
                );
                if cmd.transaction_id != 0.0 {
                    let text = format!("unknown command '{}'", cmd.name);
                    self.call_failed(&cmd, &text);
                }
            }
        }
        Ok(())
    }

    fn call_failed(&mut self, cmd: &Command, description: &str) {
        self.reply(
            cmd.transaction_id,
            "_error",
            vec![msg::status_info(
                "error",
                "NetConnection.Call.Failed",
                description,
            )],
        );
    }

    fn play(
        &mut self,
        stream_id: u32,
        full_name: &str,
        start: f64,
        duration: f64,
        reset: bool,
        events: &mut Vec<SessionEvent>,
    ) {
        let (name, query) = crate::stream_key::split_query(full_name);
        if matches!(self.streams.get(&stream_id), Some(Role::Playing(_))) {
            // Playing something else on the same stream id replaces it.
            events.push(SessionEvent::PlayStopped { stream_id });
        }
        self.claim_stream(stream_id, Role::Playing(name.to_owned()));
        events.push(SessionEvent::PlayRequested {
            stream_id,
            name: name.to_owned(),
            query: query.map(str::to_owned),
            start,
            duration,
            reset,
        });
    }

    fn connect(
        &mut self,
        cmd: &Command,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        if self.connected {
            self.call_failed(cmd, "already connected");
            return Ok(());
        }
        let props = &cmd.command_object;
        let app_full = props
            .get("app")
            .and_then(Amf0Value::as_str)
            .ok_or(SessionError::ConnectWithoutApp)?;
        let (app, query) = crate::stream_key::split_query(app_full);
        let app = app.trim_end_matches('/').to_owned();
        let tc_url = props
            .get("tcUrl")
            .and_then(Amf0Value::as_str)
            .map(str::to_owned);
        let text = |name: &str| {
            props
                .get(name)
                .and_then(Amf0Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        self.client = ClientProperties {
            tc_url: text("tcUrl"),
            flash_ver: text("flashVer"),
            swf_url: text("swfUrl"),
            page_url: text("pageUrl"),
        };
        let object_encoding = props
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.connected = true;
        self.out
            .push(msg::window_ack_size(self.config.window_ack_size));
        self.out.push(msg::set_peer_bandwidth(
            self.config.peer_bandwidth,
            msg::LIMIT_DYNAMIC,
        ));
        self.out.push(msg::set_chunk_size(self.config.chunk_size));
        let properties = Amf0Value::Object(vec![
            ("fmsVer".into(), Amf0Value::String(FMS_VERSION.into())),
            ("capabilities".into(), Amf0Value::Number(31.0)),
            ("mode".into(), Amf0Value::Number(1.0)),
        ]);
        let mut info = msg::status_info(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(fields) = &mut info {
            fields.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        }
        self.out.push(msg::command(
            msg::CSID_COMMAND,
            0,
            "_result",
            cmd.transaction_id,
            properties,
            vec![info],
        ));
        events.push(SessionEvent::Connected {
            app,
            tc_url,
            query: query.map(str::to_owned),
        });
        Ok(())
    }
}

/// A data message from a publisher. `@setDataFrame onMetaData {...}` is stored and
/// sent to players as `onMetaData {...}`, byte for byte after the prefix; anything
/// else passes through as it came.
pub fn data_frame(timestamp: u32, body: &[u8]) -> Frame {
    match msg::data_name(body) {
        Some((name, end)) if name == "@setDataFrame" => {
            let rest = &body[end..];
            match msg::data_name(rest) {
                Some((inner, _)) if inner == "onMetaData" => {
                    Frame::metadata(timestamp, rest.to_vec())
                }
                _ => Frame::data(timestamp, rest.to_vec()),
            }
        }
        Some((name, _)) if name == "onMetaData" => Frame::metadata(timestamp, body.to_vec()),
        _ => Frame::data(timestamp, body.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0;
    use crate::media::frame::FrameRole;
    use crate::rtmp::chunk::ChunkEncoder;

    /// Drives a session the way a client would: messages in, decoded replies out.
    struct Peer {
        session: ServerSession,
        encoder: ChunkEncoder,
    }

    impl Peer {
        fn new() -> Peer {
            Peer {
                session: ServerSession::new(SessionConfig::default()),
                encoder: ChunkEncoder::new(),
            }
        }

        fn send(
            &mut self,
            csid: u32,
            stream_id: u32,
            type_id: u8,
            ts: u32,
            payload: &[u8],
        ) -> Vec<SessionEvent> {
            let mut bytes = Vec::new();
            self.encoder
                .encode(csid, ts, type_id, stream_id, payload, &mut bytes)
                .unwrap();
            let mut events = Vec::new();
            self.session.handle_input(&bytes, &mut events).unwrap();
            events
        }

        fn command(
            &mut self,
            stream_id: u32,
            name: &str,
            txn: f64,
            obj: Amf0Value,
            args: Vec<Amf0Value>,
        ) -> Vec<SessionEvent> {
            let m = msg::command(3, stream_id, name, txn, obj, args);
            self.send(3, stream_id, msg::COMMAND_AMF0, 0, &m.payload)
        }

        fn connect(&mut self) -> Vec<SessionEvent> {
            let obj = Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String("live".into())),
                (
                    "tcUrl".into(),
                    Amf0Value::String("rtmp://localhost/live".into()),
                ),
                ("objectEncoding".into(), Amf0Value::Number(3.0)),
            ]);
            self.command(0, "connect", 1.0, obj, vec![])
        }

        fn replies(&mut self) -> Vec<Command> {
            self.session
                .take_output()
                .into_iter()
                .filter(|m| m.type_id == msg::COMMAND_AMF0)
                .map(|m| Command::parse(&m.payload, AmfLimits::default()).unwrap())
                .collect()
        }
    }

    fn code(cmd: &Command) -> Option<&str> {
        cmd.arg(0)?.get("code")?.as_str()
    }

    fn s(v: &str) -> Amf0Value {
        Amf0Value::String(v.into())
    }

    #[test]
    fn connect_reply_sequence() {
        let mut peer = Peer::new();
        let events = peer.connect();
        assert_eq!(
            events,
            [SessionEvent::Connected {
                app: "live".into(),
                tc_url: Some("rtmp://localhost/live".into()),
                query: None
            }]
        );
        let out = peer.session.take_output();
        let types: Vec<u8> = out.iter().map(|m| m.type_id).collect();
        assert_eq!(
            types,
            [
                msg::WINDOW_ACK_SIZE,
                msg::SET_PEER_BANDWIDTH,
                msg::SET_CHUNK_SIZE,
                msg::COMMAND_AMF0
            ]
        );
        assert_eq!(out[2].payload, 4096u32.to_be_bytes());
        let result = Command::parse(&out[3].payload, AmfLimits::default()).unwrap();
        assert_eq!(
            (result.name.as_str(), result.transaction_id),
            ("_result", 1.0)
        );
        assert_eq!(code(&result), Some("NetConnection.Connect.Success"));
        assert_eq!(
            result
                .arg(0)
                .unwrap()
                .get("objectEncoding")
                .and_then(Amf0Value::as_f64),
            Some(3.0),
            "the client's objectEncoding is echoed"
        );
    }

    #[test]
    fn commands_before_connect_close_the_session() {
        let mut peer = Peer::new();
        let m = msg::command(3, 0, "play", 1.0, Amf0Value::Null, vec![s("x")]);
        let mut bytes = Vec::new();
        peer.encoder
            .encode(3, 0, msg::COMMAND_AMF0, 0, &m.payload, &mut bytes)
            .unwrap();
        let err = peer
            .session
            .handle_input(&bytes, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "command 'play' before connect");
    }

    #[test]
    fn connect_without_app_is_an_error() {
        let mut peer = Peer::new();
        let m = msg::command(3, 0, "connect", 1.0, Amf0Value::Object(vec![]), vec![]);
        let mut bytes = Vec::new();
        peer.encoder
            .encode(3, 0, msg::COMMAND_AMF0, 0, &m.payload, &mut bytes)
            .unwrap();
        assert!(matches!(
            peer.session.handle_input(&bytes, &mut Vec::new()),
            Err(SessionError::ConnectWithoutApp)
        ));
    }

    #[test]
    fn app_query_and_trailing_slash_are_stripped() {
        let mut peer = Peer::new();
        let obj = Amf0Value::Object(vec![("app".into(), s("live/?token=abc"))]);
        let events = peer.command(0, "connect", 1.0, obj, vec![]);
        assert_eq!(
            events,
            [SessionEvent::Connected {
                app: "live".into(),
                tc_url: None,
                query: Some("token=abc".into())
            }]
        );
    }

    #[test]
    fn ffmpeg_publish_sequence() {
        let mut peer = Peer::new();
        peer.connect();
        peer.session.take_output();
        assert!(peer
            .command(0, "releaseStream", 2.0, Amf0Value::Null, vec![s("key")])
            .is_empty());
        assert!(peer
            .command(0, "FCPublish", 3.0, Amf0Value::Null, vec![s("key")])
            .is_empty());
        peer.command(0, "createStream", 4.0, Amf0Value::Null, vec![]);
        let replies = peer.replies();
        let names: Vec<_> = replies.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["_result", "onFCPublish", "_result", "_result"]);
        assert_eq!(replies[3].transaction_id, 4.0);
        assert_eq!(replies[3].arg(0).and_then(Amf0Value::as_f64), Some(1.0));

        let events = peer.command(
            1,
            "publish",
            5.0,
            Amf0Value::Null,
            vec![s("key?token=1"), s("live")],
        );
        assert_eq!(
            events,
            [SessionEvent::PublishRequested {
                stream_id: 1,
                name: "key".into(),
                query: Some("token=1".into()),
                mode: "live".into()
            }]
        );
        peer.session.accept_publish(1, "key");
        let replies = peer.replies();
        assert_eq!(code(&replies[0]), Some("NetStream.Publish.Start"));

        // Media on the publishing stream become frames, payload untouched.
        let events = peer.send(6, 1, msg::VIDEO, 40, &[0x17, 1, 0, 0, 0, 9]);
        match &events[..] {
            [SessionEvent::Frame {
                stream_id: 1,
                frame,
            }] => {
                assert_eq!(frame.role, FrameRole::Keyframe);
                assert_eq!(frame.timestamp, 40);
                assert_eq!(frame.payload, [0x17, 1, 0, 0, 0, 9]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Media on a stream that is not publishing are ignored.
        assert!(peer.send(6, 2, msg::VIDEO, 40, &[0x17, 1]).is_empty());

        let events = peer.command(0, "FCUnpublish", 6.0, Amf0Value::Null, vec![s("key")]);
        assert_eq!(events, [SessionEvent::PublishStopped { stream_id: 1 }]);
        assert!(peer
            .command(
                0,
                "deleteStream",
                7.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(1.0)]
            )
            .is_empty());
    }

    #[test]
    fn set_data_frame_becomes_on_metadata() {
        let mut peer = Peer::new();
        peer.connect();
        peer.command(1, "publish", 5.0, Amf0Value::Null, vec![s("key")]);
        let meta = Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(320.0))]);
        let mut payload = Vec::new();
        amf0::encode_all(
            &[s("@setDataFrame"), s("onMetaData"), meta.clone()],
            &mut payload,
        );
        let events = peer.send(4, 1, msg::DATA_AMF0, 0, &payload);
        let mut expected = Vec::new();
        amf0::encode_all(&[s("onMetaData"), meta], &mut expected);
        match &events[..] {
            [SessionEvent::Frame { frame, .. }] => {
                assert_eq!(frame.role, FrameRole::Metadata);
                assert_eq!(frame.payload, expected);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Other data passes through untouched, also from AMF3 data messages.
        let mut cue = vec![0];
        amf0::encode_all(&[s("onCuePoint"), Amf0Value::Number(1.0)], &mut cue);
        let events = peer.send(4, 1, msg::DATA_AMF3, 0, &cue);
        match &events[..] {
            [SessionEvent::Frame { frame, .. }] => {
                assert_eq!(frame.role, FrameRole::Data);
                assert_eq!(frame.payload, cue[1..]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn play_status_sequence() {
        let mut peer = Peer::new();
        peer.connect();
        peer.command(0, "createStream", 2.0, Amf0Value::Null, vec![]);
        peer.session.take_output();
        let events = peer.command(
            1,
            "play",
            0.0,
            Amf0Value::Null,
            vec![s("key"), Amf0Value::Number(-2.0)],
        );
        assert!(matches!(
            &events[..],
            [SessionEvent::PlayRequested { stream_id: 1, name, start, reset: true, .. }] if name == "key" && *start == -2.0
        ));
        peer.session.accept_play(1, "key", true);
        let out = peer.session.take_output();
        assert_eq!(
            UserControl::parse(&out[0].payload).unwrap(),
            UserControl::StreamBegin(1)
        );
        let status: Vec<String> = out[1..]
            .iter()
            .map(|m| {
                let values = amf0::decode_all(&m.payload).unwrap();
                let first = values[0].as_str().unwrap().to_owned();
                let code = values
                    .iter()
                    .find_map(|v| v.get("code").and_then(Amf0Value::as_str))
                    .map(str::to_owned);
                code.unwrap_or(first)
            })
            .collect();
        assert_eq!(
            status,
            [
                "NetStream.Play.Reset",
                "NetStream.Play.Start",
                "|RtmpSampleAccess",
            ]
        );
        assert!(out[1..].iter().all(|m| m.stream_id == 1));
    }

    #[test]
    fn commands_keep_working_while_playing() {
        let mut peer = Peer::new();
        peer.connect();
        peer.command(1, "play", 0.0, Amf0Value::Null, vec![s("key")]);
        peer.session.take_output();
        let events = peer.command(
            1,
            "pause",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Boolean(true), Amf0Value::Number(0.0)],
        );
        assert_eq!(
            events,
            [SessionEvent::Paused {
                stream_id: 1,
                paused: true
            }]
        );
        assert_eq!(code(&peer.replies()[0]), Some("NetStream.Pause.Notify"));
        let events = peer.command(
            1,
            "receiveVideo",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Boolean(false)],
        );
        assert_eq!(
            events,
            [SessionEvent::ReceiveVideo {
                stream_id: 1,
                enabled: false
            }]
        );
        peer.command(0, "getStreamLength", 9.0, Amf0Value::Null, vec![s("key")]);
        assert_eq!(peer.replies()[0].name, "_result");
        let events = peer.command(
            0,
            "deleteStream",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Number(1.0)],
        );
        assert_eq!(events, [SessionEvent::PlayStopped { stream_id: 1 }]);
    }

    #[test]
    fn unknown_command_with_transaction_gets_error() {
        let mut peer = Peer::new();
        peer.connect();
        peer.session.take_output();
        peer.command(0, "frobnicate", 7.0, Amf0Value::Null, vec![]);
        let replies = peer.replies();
        assert_eq!(
            (replies[0].name.as_str(), replies[0].transaction_id),
            ("_error", 7.0)
        );
        assert_eq!(code(&replies[0]), Some("NetConnection.Call.Failed"));
        peer.command(0, "frobnicate", 0.0, Amf0Value::Null, vec![]);
        assert!(peer.replies().is_empty(), "notifications get no answer");
    }

    #[test]
    fn ping_request_is_answered() {
        let mut peer = Peer::new();
        peer.send(
            2,
            0,
            msg::USER_CONTROL,
            0,
            &UserControl::PingRequest(77).encode(),
        );
        let out = peer.session.take_output();
        assert_eq!(
            UserControl::parse(&out[0].payload).unwrap(),
            UserControl::PingResponse(77)
        );
    }

    #[test]
    fn acknowledgements_follow_the_peer_window() {
        let mut peer = Peer::new();
        peer.send(2, 0, msg::WINDOW_ACK_SIZE, 0, &100u32.to_be_bytes());
        peer.session.take_output();
        peer.send(
            2,
            0,
            msg::USER_CONTROL,
            0,
            &UserControl::PingResponse(1).encode(),
        );
        assert!(peer.session.take_output().is_empty(), "window not reached");
        peer.send(4, 0, msg::AUDIO, 0, &[0u8; 120]);
        let out = peer.session.take_output();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].type_id, msg::ACKNOWLEDGEMENT);
        let seq = u32::from_be_bytes(out[0].payload[..4].try_into().unwrap());
        assert_eq!(u64::from(seq), peer.session.bytes_received());
    }

    #[test]
    fn set_chunk_size_zero_is_refused() {
        let mut peer = Peer::new();
        let mut bytes = Vec::new();
        peer.encoder
            .encode(2, 0, msg::SET_CHUNK_SIZE, 0, &[0, 0, 0, 0], &mut bytes)
            .unwrap();
        assert!(peer.session.handle_input(&bytes, &mut Vec::new()).is_err());
    }

    #[test]
    fn peer_chunk_size_applies_to_following_chunks() {
        let mut peer = Peer::new();
        peer.connect();
        peer.command(1, "publish", 0.0, Amf0Value::Null, vec![s("k")]);
        peer.send(2, 0, msg::SET_CHUNK_SIZE, 0, &65536u32.to_be_bytes());
        peer.encoder.set_chunk_size(65536).unwrap();
        let big = vec![0x27; 70_000];
        let events = peer.send(6, 1, msg::VIDEO, 0, &big);
        assert!(matches!(&events[..], [SessionEvent::Frame { frame, .. }] if frame.payload == big));
    }

    #[test]
    fn aggregate_messages_become_frames() {
        let mut peer = Peer::new();
        peer.connect();
        peer.command(1, "publish", 0.0, Amf0Value::Null, vec![s("k")]);
        let mut agg = Vec::new();
        for (t, ts, body) in [
            (msg::VIDEO, 0u32, &[0x17u8, 1][..]),
            (msg::AUDIO, 20, &[0xaf, 1][..]),
        ] {
            agg.push(t);
            agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            agg.extend_from_slice(&ts.to_be_bytes()[1..]);
            agg.extend_from_slice(&[0, 0, 0, 0]);
            agg.extend_from_slice(body);
            agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        let events = peer.send(6, 1, msg::AGGREGATE, 1000, &agg);
        let got: Vec<(FrameKind, u32)> = events
            .iter()
            .map(|e| match e {
                SessionEvent::Frame { frame, .. } => (frame.kind, frame.timestamp),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, [(FrameKind::Video, 1000), (FrameKind::Audio, 1020)]);
    }

    #[test]
    fn broken_command_amf_is_an_error() {
        let mut peer = Peer::new();
        let mut bytes = Vec::new();
        peer.encoder
            .encode(
                3,
                0,
                msg::COMMAND_AMF0,
                0,
                &[0x02, 0x00, 0x07, b'c', b'o'],
                &mut bytes,
            )
            .unwrap();
        let err = peer
            .session
            .handle_input(&bytes, &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string().starts_with("message type 20: command: "),
            "{err}"
        );
    }
}
