//! A blocking RTMP client: one connection, driven from the caller's thread.
//! It dials `rtmp://host[:port]/app/name` (or `rtmps://`, over TLS: the
//! server's certificate verified against the system's roots by the URL's host,
//! unless [`ClientOptions::tls_verify`] is off), shakes hands (simple or digest),
//! connects to the application and then publishes or plays; everything the
//! server sends afterwards comes out of [`Client::next_event`] in wire order.
//! Protocol control is handled underneath (chunk size changes, aborts,
//! acknowledgements per the server's window, ping replies), so callers see
//! media, data, status and command messages, plus user control events for
//! checking what the server did. Low-level senders ([`Client::send_raw`],
//! [`Client::send_bytes`]) exist for protocol tests that must misbehave.
//!
//! The wire work is done by the I/O-free core (`rtmp::handshake`, then
//! `rtmp::client_session`, which chunks, parses and answers protocol control);
//! this module only owns the connection (a `crate::net::Transport`, plain TCP
//! or TLS) and waits for replies. Nothing the server sends can make it panic:
//! malformed input ends in a [`ClientError`].
//!
//! ```no_run
//! use rtmpd::client::{Client, ClientEvent, ClientOptions, RtmpUrl};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = RtmpUrl::parse("rtmp://127.0.0.1/live/key")?;
//! let mut player = Client::connect(&url, &ClientOptions::default())?;
//! player.play(&url.name)?;
//! loop {
//!     if let ClientEvent::Media { type_id, timestamp, payload, .. } = player.next_event()? {
//!         println!("type {type_id} at {timestamp} ms: {} bytes", payload.len());
//!     }
//! }
//! # }
//! ```

mod error;
mod url;

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::rtmp::client_session::{ClientEvent, Status};
pub use error::ClientError;
pub use url::{RtmpUrl, UrlError, DEFAULT_PORT, DEFAULT_TLS_PORT};

use crate::net::{Socket, TcpTransport, Transport};

use crate::amf::amf0::Amf0Value;
use crate::rtmp::chunk::{RawMessage, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
use crate::rtmp::client_session::{is_reply, ClientSession};
use crate::rtmp::handshake::{ClientHandshake, HandshakeKind, Progress};
use crate::rtmp::message::{self as msg, Command, UserControl};

/// What a player asks the server to buffer; informational for live streams.
const PLAY_BUFFER_MS: u32 = 1000;
/// `play` start argument: live if there is such a stream, else recorded.
const PLAY_START_ANY: f64 = -2000.0;

const READ_BUFFER: usize = 64 * 1024;

/// How the client connects. `Default` gives a digest handshake, 4096-byte
/// chunks, 5 s timeouts and an AMF0 connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sign C1 like Flash Player 9 and ffmpeg do (and verify the server's
    /// S1/S2); `false` sends the spec's simple handshake.
    pub digest_handshake: bool,
    /// Chunk size announced with Set Chunk Size before `connect` and used for
    /// everything sent after it (128, the protocol default, sends nothing).
    pub chunk_size: u32,
    /// Connect, read and write timeout of the socket, and the limit on how
    /// long a call waits for its answer.
    pub timeout: Duration,
    /// Send `connect` as an AMF3 command message (type 17) announcing
    /// `objectEncoding` 3, like Flash Player with AMF3 encoding.
    pub amf3_connect: bool,
    /// The `flashVer` string of `connect`.
    pub flash_ver: String,
    /// For `rtmps://`: verify the server's certificate (the default). Off, any
    /// certificate is taken (a self-signed upstream); the connection is still
    /// encrypted, but not authenticated.
    pub tls_verify: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            digest_handshake: true,
            chunk_size: 4096,
            timeout: Duration::from_secs(5),
            amf3_connect: false,
            flash_ver: "FMLE/3.0 (compatible; rtmpd-client)".into(),
            tls_verify: true,
        }
    }
}

/// A connection taken apart ([`Client::into_parts`]).
pub struct ClientParts {
    /// The connection, plain or TLS, with the client's timeout as its stall limit.
    pub transport: Box<dyn Transport>,
    pub session: ClientSession,
    /// The stream it publishes on (0 if none).
    pub stream_id: u32,
    /// The chunk size it announced and sends with.
    pub chunk_size: u32,
    /// Events read but not yet handed out, in wire order.
    pub events: Vec<ClientEvent>,
}

/// A connection to an RTMP server. See the module documentation.
pub struct Client {
    transport: Box<dyn Transport>,
    local: SocketAddr,
    url: RtmpUrl,
    opts: ClientOptions,
    handshake: HandshakeKind,
    session: ClientSession,
    read_buf: Vec<u8>,
    /// Events read but not yet handed out, in wire order.
    pending: VecDeque<ClientEvent>,
    connect_reply: Option<Command>,
    publishing: Option<(u32, String)>,
    playing: Option<u32>,
    /// Bytes written to the socket, handshake included.
    written: Cell<u64>,
}

impl Client {
    /// Dials the server, shakes hands and connects to the URL's application.
    pub fn connect(url: &RtmpUrl, opts: &ClientOptions) -> Result<Client, ClientError> {
        let mut client = Client::open(url, opts)?;
        client.connect_app()?;
        Ok(client)
    }

    /// Dials and shakes hands only; nothing above the chunk layer is sent
    /// yet. Follow with [`connect_app`](Self::connect_app), or misbehave.
    pub fn open(url: &RtmpUrl, opts: &ClientOptions) -> Result<Client, ClientError> {
        if opts.timeout.is_zero() {
            return Err(ClientError::InvalidOption("timeout must not be zero"));
        }
        if !(1..=MAX_CHUNK_SIZE).contains(&opts.chunk_size) {
            return Err(ClientError::InvalidOption(
                "chunk_size must be 1..=2147483647",
            ));
        }
        let (transport, local) = dial(url, opts)?;
        let mut client = Client {
            transport,
            local,
            url: url.clone(),
            opts: opts.clone(),
            handshake: HandshakeKind::Simple,
            session: ClientSession::new(),
            read_buf: vec![0; READ_BUFFER],
            pending: VecDeque::new(),
            connect_reply: None,
            publishing: None,
            playing: None,
            written: Cell::new(0),
        };
        client.shake_hands()?;
        Ok(client)
    }

    fn shake_hands(&mut self) -> Result<(), ClientError> {
        let mut handshake = ClientHandshake::new(self.opts.digest_handshake);
        let mut out = Vec::new();
        handshake.start(&mut out);
        self.write(&out)?;
        loop {
            let n = self.read_some(self.opts.timeout)?;
            out.clear();
            let progress = handshake.process(&self.read_buf[..n], &mut out)?;
            if !out.is_empty() {
                self.write(&out)?;
            }
            if let Progress::Done { remaining } = progress {
                self.handshake = handshake.kind().unwrap_or(HandshakeKind::Simple);
                // The server may already have sent its first chunks.
                self.session.push_input(&remaining)?;
                return self.flush();
            }
        }
    }

    /// Sends Set Chunk Size (unless the option is the default 128) and
    /// `connect`, then waits for the server's `_result`, which is returned.
    pub fn connect_app(&mut self) -> Result<&Command, ClientError> {
        if self.connect_reply.is_some() {
            return Err(ClientError::InvalidState("already connected"));
        }
        if self.opts.chunk_size != DEFAULT_CHUNK_SIZE {
            self.set_chunk_size(self.opts.chunk_size)?;
        }
        let encoding = if self.opts.amf3_connect { 3.0 } else { 0.0 };
        let properties = Amf0Value::Object(vec![
            ("app".into(), self.url.app.as_str().into()),
            ("type".into(), "nonprivate".into()),
            ("flashVer".into(), self.opts.flash_ver.as_str().into()),
            ("tcUrl".into(), self.url.tc_url().into()),
            ("fpad".into(), false.into()),
            ("capabilities".into(), 15.0.into()),
            ("audioCodecs".into(), 4071.0.into()),
            ("videoCodecs".into(), 252.0.into()),
            ("videoFunction".into(), 1.0.into()),
            ("objectEncoding".into(), encoding.into()),
        ]);
        let transaction_id = self.new_transaction();
        let body = Command {
            name: "connect".into(),
            transaction_id,
            command_object: properties,
            args: Vec::new(),
        }
        .encode();
        if self.opts.amf3_connect {
            // Type 17 carries a format byte (0: AMF0 follows) before the body.
            let mut payload = Vec::with_capacity(body.len() + 1);
            payload.push(0);
            payload.extend_from_slice(&body);
            self.session
                .send_message(msg::CSID_COMMAND, 0, msg::COMMAND_AMF3, 0, &payload)?;
        } else {
            self.session
                .send_message(msg::CSID_COMMAND, 0, msg::COMMAND_AMF0, 0, &body)?;
        }
        self.flush()?;
        let reply = self.wait_reply("connect", transaction_id)?;
        Ok(self.connect_reply.insert(reply))
    }

    /// The server's `_result` to `connect` (fmsVer, code, objectEncoding...).
    pub fn connect_reply(&self) -> Option<&Command> {
        self.connect_reply.as_ref()
    }

    /// Which handshake the server answered with.
    pub fn handshake_kind(&self) -> HandshakeKind {
        self.handshake
    }

    pub fn url(&self) -> &RtmpUrl {
        &self.url
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Gives up the connection to a new owner (a relay handing it to the player
    /// engine): the socket, the session with everything it knows (chunk sizes,
    /// acknowledgement window, header compression), the stream it publishes on
    /// and the events read but not handed out.
    pub fn into_parts(self) -> ClientParts {
        ClientParts {
            transport: self.transport,
            session: self.session,
            stream_id: self.publishing.map_or(0, |(id, _)| id),
            chunk_size: self.opts.chunk_size,
            events: self.pending.into(),
        }
    }

    /// The server's address, as dialled.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.transport.peer())
    }

    /// Bytes written to the socket so far, the handshake included.
    pub fn bytes_written(&self) -> u64 {
        self.written.get()
    }

    /// Bytes read from the server after the handshake.
    pub fn bytes_received(&self) -> u64 {
        self.session.bytes_received()
    }

    /// Changes the socket timeouts and the wait limit of calls.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::InvalidOption("timeout must not be zero"));
        }
        self.transport.set_stall(timeout).map_err(ClientError::Io)?;
        self.opts.timeout = timeout;
        Ok(())
    }

    /// The stream id this client publishes on, once `publish` succeeded.
    pub fn publish_stream(&self) -> Option<u32> {
        self.publishing.as_ref().map(|(id, _)| *id)
    }

    /// The stream id this client plays on, once `play` succeeded.
    pub fn play_stream(&self) -> Option<u32> {
        self.playing
    }

    // -----------------------------------------------------------------------
    // Calls and commands

    /// Calls `name` on the connection (stream 0) and waits for the answer:
    /// `_result` is returned, `_error` becomes [`ClientError::CallFailed`].
    /// Other messages that arrive meanwhile stay queued for `next_event`.
    pub fn call(
        &mut self,
        name: &str,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<Command, ClientError> {
        let transaction_id = self.new_transaction();
        self.send_command(0, name, transaction_id, command_object, args)?;
        self.wait_reply(name, transaction_id)
    }

    /// Sends a command without waiting for anything. A non-zero transaction
    /// id means the server's reply arrives as a [`ClientEvent::Command`].
    pub fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<(), ClientError> {
        self.session
            .send_command(stream_id, name, transaction_id, command_object, args)?;
        self.flush()
    }

    /// A fresh transaction id for [`send_command`](Self::send_command).
    pub fn new_transaction(&mut self) -> f64 {
        self.session.new_transaction()
    }

    /// `createStream`; returns the new stream id.
    pub fn create_stream(&mut self) -> Result<u32, ClientError> {
        let reply = self.call("createStream", Amf0Value::Null, Vec::new())?;
        match reply.arg(0).and_then(Amf0Value::as_f64) {
            Some(id) if id.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&id) => {
                Ok(id as u32)
            }
            _ => Err(ClientError::UnexpectedReply {
                call: "createStream".into(),
                reply: Box::new(reply),
            }),
        }
    }

    /// Publishes live under `name` (query string allowed) the way ffmpeg
    /// does: releaseStream, FCPublish, createStream, publish. Returns the
    /// stream id once `NetStream.Publish.Start` arrived; an error status
    /// (`NetStream.Publish.BadName`, ...) becomes [`ClientError::Status`].
    /// The statuses stay queued for `next_event`.
    pub fn publish(&mut self, name: &str) -> Result<u32, ClientError> {
        if self.publishing.is_some() {
            return Err(ClientError::InvalidState("this client already publishes"));
        }
        for call in ["releaseStream", "FCPublish"] {
            let transaction_id = self.new_transaction();
            self.session.ignore_reply(transaction_id);
            self.send_command(0, call, transaction_id, Amf0Value::Null, vec![name.into()])?;
        }
        let stream_id = self.create_stream()?;
        self.send_command(
            stream_id,
            "publish",
            0.0,
            Amf0Value::Null,
            vec![name.into(), "live".into()],
        )?;
        self.wait_status(stream_id, "NetStream.Publish.Start")?;
        self.publishing = Some((stream_id, name.to_owned()));
        Ok(stream_id)
    }

    /// Plays `name` (live, or recorded if the server has no live stream):
    /// createStream, play, Set Buffer Length. Returns the stream id once
    /// `NetStream.Play.Start` arrived; an error status becomes
    /// [`ClientError::Status`]. Everything the server sent meanwhile,
    /// `NetStream.Play.Start` included, stays queued for `next_event`, so
    /// the whole sequence can be checked.
    pub fn play(&mut self, name: &str) -> Result<u32, ClientError> {
        if self.playing.is_some() {
            return Err(ClientError::InvalidState("this client already plays"));
        }
        let stream_id = self.create_stream()?;
        self.send_command(
            stream_id,
            "play",
            0.0,
            Amf0Value::Null,
            vec![name.into(), PLAY_START_ANY.into()],
        )?;
        self.send_raw(&msg::user_control(UserControl::SetBufferLength {
            stream_id,
            millis: PLAY_BUFFER_MS,
        }))?;
        self.wait_status(stream_id, "NetStream.Play.Start")?;
        self.playing = Some(stream_id);
        Ok(stream_id)
    }

    /// Pauses or resumes the played stream; the server answers with
    /// `NetStream.Pause.Notify` / `NetStream.Unpause.Notify` statuses.
    pub fn pause(&mut self, paused: bool, position_ms: f64) -> Result<(), ClientError> {
        let stream_id = self
            .playing
            .ok_or(ClientError::InvalidState("pause without play"))?;
        self.send_command(
            stream_id,
            "pause",
            0.0,
            Amf0Value::Null,
            vec![paused.into(), position_ms.into()],
        )
    }

    // -----------------------------------------------------------------------
    // Sending

    /// Sends one message on the publishing stream: audio (type 8) on chunk
    /// stream 6, video (9) on 7, anything else (data 18, aggregate 22, ...)
    /// on 4. Timestamps may go up to 2^32-1 (extended timestamps are used
    /// as needed).
    pub fn send_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let stream_id = self.media_stream()?;
        self.session
            .send_media(stream_id, type_id, timestamp, payload)?;
        self.flush()
    }

    fn media_stream(&self) -> Result<u32, ClientError> {
        self.publish_stream().ok_or(ClientError::InvalidState(
            "media before a successful publish",
        ))
    }

    /// Sends FLV script data (`onMetaData` and its values, as an FLV script
    /// tag holds them) the way encoders do: as `@setDataFrame` + the data.
    pub fn send_metadata(&mut self, timestamp: u32, script_data: &[u8]) -> Result<(), ClientError> {
        let stream_id = self.media_stream()?;
        self.session
            .send_metadata(stream_id, timestamp, script_data)?;
        self.flush()
    }

    /// Announces a new chunk size and sends with it from now on.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ClientError> {
        self.session.set_chunk_size(size)?;
        self.flush()
    }

    /// Sends any message as it is, through the client's chunk encoder (so
    /// header compression stays consistent). Nothing is interpreted: a Set
    /// Chunk Size sent this way does not change the client's own chunk size
    /// (use [`set_chunk_size`](Self::set_chunk_size) for that).
    pub fn send_raw(&mut self, message: &RawMessage) -> Result<(), ClientError> {
        self.session.send_raw(message)?;
        self.flush()
    }

    /// Writes bytes straight to the socket, for hand-made chunks. They must
    /// not touch chunk streams the client's encoder uses (2-8), or its
    /// header compression no longer matches what the server saw.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write(bytes)
    }

    /// Writes what the session has to send.
    fn flush(&mut self) -> Result<(), ClientError> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let result = send(
            &mut *self.transport,
            self.session.output(),
            &self.written,
            self.opts.timeout,
        );
        self.session.clear_output();
        result
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        send(
            &mut *self.transport,
            bytes,
            &self.written,
            self.opts.timeout,
        )
    }

    // -----------------------------------------------------------------------
    // Receiving

    /// The next event from the server, blocking for at most the timeout per
    /// read ([`ClientError::Timeout`] leaves the client usable).
    pub fn next_event(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            self.pump(None)?;
        }
    }

    /// Like [`next_event`](Self::next_event), but `Ok(None)` once `wait` passes
    /// without one (the client stays usable).
    pub fn next_event_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<ClientEvent>, ClientError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        match self.pump(Some(Instant::now() + wait)) {
            Ok(()) => Ok(self.pending.pop_front()),
            Err(ClientError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads and handles one message; events it produces join `pending`.
    fn pump(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        loop {
            let handled = self.session.handle_next(&mut self.pending)?;
            // Replies to what was handled (a Ping Response) go out at once.
            self.flush()?;
            if handled {
                return Ok(());
            }
            let timeout = match deadline {
                None => self.opts.timeout,
                Some(d) => d
                    .checked_duration_since(Instant::now())
                    .filter(|left| !left.is_zero())
                    .ok_or(ClientError::Timeout(self.opts.timeout))?,
            };
            let n = self.read_some(timeout)?;
            self.session.push_input(&self.read_buf[..n])?;
            self.flush()?;
        }
    }

    /// Waits at most `timeout` for bytes from the server.
    fn read_some(&mut self, timeout: Duration) -> Result<usize, ClientError> {
        loop {
            match self.transport.read_within(&mut self.read_buf, timeout) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e, timeout)),
            }
        }
    }

    /// Waits for the `_result`/`_error` of `transaction_id` and takes it out
    /// of the queue; everything else stays queued.
    fn wait_reply(&mut self, call: &str, transaction_id: f64) -> Result<Command, ClientError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut scanned = 0;
        loop {
            let found = self.pending.iter().skip(scanned).position(|e| {
                matches!(e, ClientEvent::Command { command, .. }
                    if is_reply(command) && command.transaction_id == transaction_id)
            });
            if let Some(i) = found {
                if let Some(ClientEvent::Command { command, .. }) = self.pending.remove(scanned + i)
                {
                    if command.name == "_error" {
                        return Err(ClientError::CallFailed {
                            call: call.to_owned(),
                            reply: Box::new(command),
                        });
                    }
                    return Ok(command);
                }
            }
            scanned = self.pending.len();
            self.pump(Some(deadline))?;
        }
    }

    /// Waits for `success` on `stream_id`, or an error status there. The
    /// status stays queued.
    fn wait_status(&mut self, stream_id: u32, success: &str) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut scanned = 0;
        loop {
            for event in self.pending.iter().skip(scanned) {
                if let ClientEvent::Status(s) = event {
                    if s.stream_id != stream_id {
                        continue;
                    }
                    if s.code == success {
                        return Ok(());
                    }
                    if s.level == "error" {
                        return Err(ClientError::Status(Box::new(s.clone())));
                    }
                }
            }
            scanned = self.pending.len();
            self.pump(Some(deadline))?;
        }
    }

    /// Ends the session politely: unpublishes (FCUnpublish, deleteStream),
    /// stops playing, then half-closes and waits (up to the timeout) for the
    /// server to close its side, so everything sent has been processed by
    /// the time this returns. Errors are ignored: the connection may already
    /// be gone, and there is nothing left to do about it.
    pub fn close(mut self) {
        if let Some((stream_id, name)) = self.publishing.take() {
            let _ = self.send_command(0, "FCUnpublish", 0.0, Amf0Value::Null, vec![name.into()]);
            let _ = self.delete_stream(stream_id);
        }
        if let Some(stream_id) = self.playing.take() {
            let _ = self.delete_stream(stream_id);
        }
        // Draining also keeps unread input from turning our close into a reset.
        self.transport.linger(self.opts.timeout, usize::MAX);
    }

    fn delete_stream(&mut self, stream_id: u32) -> Result<(), ClientError> {
        self.send_command(
            0,
            "deleteStream",
            0.0,
            Amf0Value::Null,
            vec![f64::from(stream_id).into()],
        )
    }
}

/// Writes `bytes`, adding them to `written`.
fn send(
    transport: &mut dyn Transport,
    bytes: &[u8],
    written: &Cell<u64>,
    timeout: Duration,
) -> Result<(), ClientError> {
    transport
        .write_bytes(bytes)
        .map_err(|e| io_error(e, timeout))?;
    written.set(written.get() + bytes.len() as u64);
    Ok(())
}

fn io_error(e: io::Error, timeout: Duration) -> ClientError {
    if crate::net::is_timeout(&e) {
        ClientError::Timeout(timeout)
    } else {
        ClientError::Io(e)
    }
}

/// Resolves and connects, trying each address in turn; for `rtmps://`, runs
/// the TLS handshake too. The timeout bounds each step and any write's stall.
fn dial(
    url: &RtmpUrl,
    opts: &ClientOptions,
) -> Result<(Box<dyn Transport>, SocketAddr), ClientError> {
    let timeout = opts.timeout;
    let addr_text = format!("{}:{}", url.host, url.port);
    let failed = |source| ClientError::Connect {
        addr: addr_text.clone(),
        source,
    };
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(failed)?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    let mut connected = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                connected = Some((stream, addr));
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let Some((stream, peer)) = connected else {
        return Err(failed(last_error));
    };
    // Commands are small and wait for replies: no Nagle delay.
    let local = stream
        .set_nodelay(true)
        .and_then(|()| stream.local_addr())
        .map_err(failed)?;
    let socket = Socket::new(Arc::new(stream), timeout).map_err(failed)?;
    if !url.tls {
        return Ok((Box::new(TcpTransport::over(socket, peer)), local));
    }
    let transport = crate::tls::client::connect(socket, peer, &url.host, opts.tls_verify, timeout)
        .map_err(|e| ClientError::Tls {
            addr: addr_text.clone(),
            error: e.to_string(),
        })?;
    Ok((Box::new(transport), local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0::{self, AmfLimits};
    use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
    use crate::rtmp::handshake::ServerHandshake;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    /// The server end of a loopback connection, scripted by each test with
    /// the same codec the client uses.
    struct FakeServer {
        socket: TcpStream,
        decoder: ChunkDecoder,
        encoder: ChunkEncoder,
        /// Bytes written after the handshake, what the client acknowledges.
        written: u64,
    }

    impl FakeServer {
        /// Listens on a free port; the returned URL points at it.
        fn start(
            script: impl FnOnce(FakeServer) + Send + 'static,
        ) -> (RtmpUrl, thread::JoinHandle<()>) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let handle = thread::spawn(move || {
                let (socket, _) = listener.accept().unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut server = FakeServer {
                    socket,
                    decoder: ChunkDecoder::new(ChunkLimits::default()),
                    encoder: ChunkEncoder::new(),
                    written: 0,
                };
                server.shake_hands();
                script(server);
            });
            (
                RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/app/key")).unwrap(),
                handle,
            )
        }

        fn shake_hands(&mut self) {
            let mut handshake = ServerHandshake::new(0);
            let mut buf = [0u8; 4096];
            loop {
                let n = self.socket.read(&mut buf).unwrap();
                assert!(n > 0, "client hung up during the handshake");
                let mut out = Vec::new();
                let progress = handshake.process(&buf[..n], &mut out).unwrap();
                self.socket.write_all(&out).unwrap();
                if let Progress::Done { remaining } = progress {
                    self.decoder.push(&remaining);
                    return;
                }
            }
        }

        /// The next message from the client; its Set Chunk Size is applied.
        fn read(&mut self) -> RawMessage {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(m) = self.decoder.next_message().unwrap() {
                    if m.type_id == msg::SET_CHUNK_SIZE {
                        let size = msg::read_u32("", &m.payload).unwrap();
                        self.decoder.set_chunk_size(size).unwrap();
                    }
                    return m;
                }
                let n = self.socket.read(&mut buf).unwrap();
                assert!(n > 0, "client hung up");
                self.decoder.push(&buf[..n]);
            }
        }

        /// Reads until a command named `name` arrives.
        fn read_command(&mut self, name: &str) -> (RawMessage, Command) {
            loop {
                let m = self.read();
                if matches!(m.type_id, msg::COMMAND_AMF0 | msg::COMMAND_AMF3) {
                    let body = msg::strip_amf3_marker(m.type_id, &m.payload);
                    let cmd = Command::parse(body, AmfLimits::default()).unwrap();
                    if cmd.name == name {
                        return (m, cmd);
                    }
                }
            }
        }

        fn encode(&mut self, m: &RawMessage) -> Vec<u8> {
            let mut out = Vec::new();
            self.encoder.encode_message(m, &mut out).unwrap();
            out
        }

        fn send_bytes(&mut self, bytes: &[u8]) {
            self.socket.write_all(bytes).unwrap();
            self.written += bytes.len() as u64;
        }

        fn send(&mut self, m: &RawMessage) {
            let bytes = self.encode(m);
            self.send_bytes(&bytes);
            if m.type_id == msg::SET_CHUNK_SIZE {
                let size = msg::read_u32("", &m.payload).unwrap();
                self.encoder.set_chunk_size(size).unwrap();
            }
        }

        /// Answers `connect` like a server with a 1000-byte ack window and
        /// 100-byte chunks.
        fn accept_connect(&mut self) {
            let (_, connect) = self.read_command("connect");
            assert_eq!(
                connect
                    .command_object
                    .get("app")
                    .and_then(Amf0Value::as_str),
                Some("app")
            );
            self.send(&msg::window_ack_size(1000));
            self.send(&msg::set_peer_bandwidth(1000, msg::LIMIT_DYNAMIC));
            self.send(&msg::set_chunk_size(100));
            self.send(&msg::command(
                3,
                0,
                "_result",
                connect.transaction_id,
                Amf0Value::Null,
                vec![msg::status_info(
                    "status",
                    "NetConnection.Connect.Success",
                    "ok",
                )],
            ));
        }
    }

    fn media(type_id: u8, timestamp: u32, payload: Vec<u8>) -> ClientEvent {
        ClientEvent::Media {
            stream_id: 1,
            type_id,
            timestamp,
            payload,
        }
    }

    fn aggregate_part(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::media::flv::write_tag(&mut out, type_id, ts, body);
        out
    }

    #[test]
    fn protocol_control_is_handled_underneath() {
        let (url, server) = FakeServer::start(|mut s| {
            s.accept_connect();

            s.send(&msg::user_control(UserControl::PingRequest(42)));
            loop {
                let m = s.read();
                if m.type_id == msg::USER_CONTROL {
                    assert_eq!(
                        UserControl::parse(&m.payload).unwrap(),
                        UserControl::PingResponse(42)
                    );
                    break;
                }
            }

            // More than the 1000-byte window: the client must acknowledge.
            s.send(&msg::raw(7, 1, msg::VIDEO, vec![0x27; 3000]));
            let sent = s.written;
            loop {
                let m = s.read();
                if m.type_id == msg::ACKNOWLEDGEMENT {
                    let seq = u64::from(msg::read_u32("", &m.payload).unwrap());
                    assert!((1000..=sent).contains(&seq), "ack {seq} of {sent} bytes");
                    break;
                }
            }

            // A message cut off by Abort, then a whole one on the same csid.
            let partial = s.encode(&msg::raw(6, 1, msg::AUDIO, vec![0xaa; 300]));
            s.send_bytes(&partial[..12 + 100]);
            s.send(&msg::raw(2, 0, msg::ABORT, 6u32.to_be_bytes().to_vec()));
            s.send(&RawMessage {
                timestamp: 5,
                ..msg::raw(6, 1, msg::AUDIO, vec![0xbb; 50])
            });

            let mut agg = aggregate_part(msg::VIDEO, 100, &[0x17, 1, 2]);
            agg.extend(aggregate_part(msg::AUDIO, 120, &[0xaf, 1]));
            s.send(&RawMessage {
                timestamp: 1000,
                ..msg::raw(4, 1, msg::AGGREGATE, agg)
            });

            let mut amf3_data = vec![0];
            amf0::encode_all(&["onCuePoint".into(), 1.0.into()], &mut amf3_data);
            s.send(&msg::raw(5, 1, msg::DATA_AMF3, amf3_data));
            s.send(&msg::on_status(1, "status", "NetStream.Play.Start", "go"));
            s.send(&msg::command(
                3,
                0,
                "onBWDone",
                0.0,
                Amf0Value::Null,
                vec![],
            ));
            s.send(&msg::raw(3, 0, msg::SHARED_OBJECT_AMF0, vec![1, 2]));
            s.send(&msg::acknowledgement(77));
        });

        let opts = ClientOptions {
            digest_handshake: false,
            ..ClientOptions::default()
        };
        let mut client = Client::connect(&url, &opts).unwrap();
        assert_eq!(client.handshake_kind(), HandshakeKind::Simple);
        let mut events = Vec::new();
        let end = loop {
            match client.next_event() {
                Ok(e) => events.push(e),
                Err(e) => break e,
            }
        };
        server.join().unwrap();
        assert!(end.is_disconnect(), "{end}");

        let mut cue = Vec::new();
        amf0::encode_all(&["onCuePoint".into(), 1.0.into()], &mut cue);
        let expected = vec![
            ClientEvent::UserControl(UserControl::PingRequest(42)),
            media(msg::VIDEO, 0, vec![0x27; 3000]),
            media(msg::AUDIO, 5, vec![0xbb; 50]),
            media(msg::VIDEO, 1000, vec![0x17, 1, 2]),
            media(msg::AUDIO, 1020, vec![0xaf, 1]),
            ClientEvent::Data {
                stream_id: 1,
                timestamp: 0,
                payload: cue,
            },
            ClientEvent::Status(Status {
                stream_id: 1,
                level: "status".into(),
                code: "NetStream.Play.Start".into(),
                description: "go".into(),
                info: msg::status_info("status", "NetStream.Play.Start", "go"),
            }),
            ClientEvent::Command {
                stream_id: 0,
                command: Command {
                    name: "onBWDone".into(),
                    transaction_id: 0.0,
                    command_object: Amf0Value::Null,
                    args: vec![],
                },
            },
            ClientEvent::Other(msg::raw(3, 0, msg::SHARED_OBJECT_AMF0, vec![1, 2])),
            ClientEvent::Acknowledgement(77),
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn refusals_and_garbage_become_errors() {
        // connect answered with _error.
        let (url, server) = FakeServer::start(|mut s| {
            let (_, connect) = s.read_command("connect");
            s.send(&msg::command(
                3,
                0,
                "_error",
                connect.transaction_id,
                Amf0Value::Null,
                vec![msg::status_info(
                    "error",
                    "NetConnection.Connect.Rejected",
                    "no",
                )],
            ));
        });
        let err = Client::connect(&url, &ClientOptions::default())
            .err()
            .expect("connect must fail");
        server.join().unwrap();
        assert_eq!(err.status_code(), Some("NetConnection.Connect.Rejected"));
        assert_eq!(
            err.to_string(),
            "the server refused 'connect': NetConnection.Connect.Rejected (no)"
        );

        // publish answered with an error status; then a truncated user control.
        let (url, server) = FakeServer::start(|mut s| {
            s.accept_connect();
            let (_, create) = s.read_command("createStream");
            s.send(&msg::command(
                3,
                0,
                "_result",
                create.transaction_id,
                Amf0Value::Null,
                vec![7.0.into()],
            ));
            let (m, publish) = s.read_command("publish");
            assert_eq!(m.stream_id, 7);
            assert_eq!(publish.arg(0).and_then(Amf0Value::as_str), Some("key"));
            s.send(&msg::on_status(
                7,
                "error",
                "NetStream.Publish.BadName",
                "taken",
            ));
            s.send(&msg::raw(2, 0, msg::USER_CONTROL, vec![0, 6]));
            // Hold the connection until the client has read everything.
            let _ = s.socket.read(&mut [0u8; 1]);
        });
        let mut client = Client::connect(&url, &ClientOptions::default()).unwrap();
        let err = client.publish("key").unwrap_err();
        assert_eq!(err.status_code(), Some("NetStream.Publish.BadName"));
        assert_eq!(
            err.to_string(),
            "the server answered NetStream.Publish.BadName (level error): taken"
        );
        assert_eq!(client.publish_stream(), None);
        assert!(matches!(
            client.send_media(msg::VIDEO, 0, &[0x17]),
            Err(ClientError::InvalidState(_))
        ));
        // The refusal stays in the event stream, then the garbage is reported.
        match client.next_event() {
            Ok(ClientEvent::Status(s)) => assert_eq!(s.code, "NetStream.Publish.BadName"),
            other => panic!("expected the BadName status, got {other:?}"),
        }
        match client.next_event() {
            Err(ClientError::Message { type_id, .. }) => assert_eq!(type_id, msg::USER_CONTROL),
            other => panic!("expected a malformed message error, got {other:?}"),
        }
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn bad_options_are_refused_before_dialling() {
        let url = RtmpUrl::parse("rtmp://127.0.0.1:1/app").unwrap();
        for opts in [
            ClientOptions {
                timeout: Duration::ZERO,
                ..ClientOptions::default()
            },
            ClientOptions {
                chunk_size: 0,
                ..ClientOptions::default()
            },
        ] {
            assert!(matches!(
                Client::open(&url, &opts),
                Err(ClientError::InvalidOption(_))
            ));
        }
    }
}
