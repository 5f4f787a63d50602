//! The reader thread of one client: handshake, then the session over the socket's
//! read half. It turns session events into registry calls (publish, play, frames)
//! and hands everything to send to the connection's writer thread.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use super::deadline;
use super::writer::{self, WriterCommand};
use super::{ConnectionKind, Context, THREAD_STACK};
use crate::net;
use crate::registry::{PlayerInfo, PlayerProtocol, Publisher, StreamKey, Subscription};
use crate::rtmp::handshake::{HandshakeError, Progress, ServerHandshake};
use crate::rtmp::session::{ServerSession, SessionConfig, SessionError, SessionEvent};

/// Players and idle clients send little; publishers get a larger buffer so a
/// megabit stream takes few reads.
const READ_BUFFER: usize = 4 * 1024;
const PUBLISH_READ_BUFFER: usize = 64 * 1024;
/// Commands the reader may queue ahead of its writer.
const WRITER_QUEUE: usize = 64;

#[derive(Debug)]
enum CloseReason {
    PeerClosed,
    Io(io::Error),
    Handshake(HandshakeError),
    Session(SessionError),
    SetupTimeout(Duration),
    /// Published or played, stopped, then sat idle.
    IdleAfterStream(Duration),
    PublisherIdle(Duration),
    Refused(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::Handshake(e) => write!(f, "handshake failed: {e}"),
            CloseReason::Session(e) => write!(f, "protocol error: {e}"),
            CloseReason::IdleAfterStream(t) => write!(
                f,
                "idle for {:.1} s after its stream ended",
                t.as_secs_f64()
            ),
            CloseReason::SetupTimeout(t) => {
                write!(
                    f,
                    "no publish or play within {:.1} s of connecting",
                    t.as_secs_f64()
                )
            }
            CloseReason::PublisherIdle(t) => {
                write!(f, "publisher sent nothing for {:.1} s", t.as_secs_f64())
            }
            CloseReason::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl CloseReason {
    /// Misbehaviour is worth a warning; ordinary endings are not.
    fn is_client_fault(&self) -> bool {
        matches!(
            self,
            CloseReason::Handshake(_)
                | CloseReason::Session(_)
                | CloseReason::SetupTimeout(_)
                | CloseReason::PublisherIdle(_)
                | CloseReason::Refused(_)
        )
    }
}

/// Runs one client to the end and logs why it ended.
pub(crate) fn serve(socket: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    debug!("{peer}: accepted");
    let started = Instant::now();
    let mut conn = Connection {
        peer,
        ctx,
        started,
        app: None,
        session: None,
        writer: None,
        publisher: None,
        players: HashMap::new(),
        idle_since: None,
        read_timeout: None,
        bytes_out: Arc::new(AtomicU64::new(0)),
    };
    let reason = conn.run(&socket);
    let bytes_in = conn.session.as_ref().map_or(0, |s| s.bytes_received());
    // Dropping the publisher and subscriptions releases their keys at once.
    conn.publisher = None;
    conn.players.clear();
    if let Some((tx, handle)) = conn.writer.take() {
        // Let the writer send what is queued (a refusal's status message, say) before
        // the socket closes; it stops once the queue is empty, or at its write timeout.
        drop(tx);
        let _ = socket.shutdown(Shutdown::Read);
        let _ = handle.join();
    }
    let _ = socket.shutdown(Shutdown::Both);
    let summary = format!(
        "{peer}: closed after {:.1} s, {bytes_in} bytes in, {} bytes out: {reason}",
        started.elapsed().as_secs_f64(),
        conn.bytes_out.load(Ordering::Relaxed)
    );
    if reason.is_client_fault() {
        warn!("{summary}");
    } else {
        info!("{summary}");
    }
}

struct Connection {
    peer: SocketAddr,
    ctx: Arc<Context>,
    started: Instant,
    app: Option<String>,
    session: Option<ServerSession>,
    writer: Option<(Sender<WriterCommand>, thread::JoinHandle<()>)>,
    publisher: Option<(u32, Publisher)>,
    players: HashMap<u32, Subscription>,
    /// When the last stream of a client that had one ended.
    idle_since: Option<Instant>,
    /// The socket's read timeout as last set.
    read_timeout: Option<Option<Duration>>,
    bytes_out: Arc<AtomicU64>,
}

impl Connection {
    fn run(&mut self, socket: &TcpStream) -> CloseReason {
        match self.try_run(socket) {
            Ok(()) => CloseReason::PeerClosed,
            Err(reason) => reason,
        }
    }

    fn try_run(&mut self, socket: &TcpStream) -> Result<(), CloseReason> {
        // Small writes (status replies) must not wait for Nagle.
        let _ = socket.set_nodelay(true);
        socket
            .set_write_timeout(Some(deadline::send_timeout(self.ctx.config.play_timeout)))
            .map_err(CloseReason::Io)?;
        let mut buf = vec![0u8; READ_BUFFER];
        let rest = self.handshake(socket, &mut buf)?;
        self.start_writer(socket)?;
        let config = &self.ctx.config;
        self.session = Some(ServerSession::new(SessionConfig {
            chunk_size: config.chunk_size,
            chunk_limits: config.chunk_limits,
            amf_limits: config.amf_limits,
            ..SessionConfig::default()
        }));
        let mut events = Vec::new();
        self.feed(&rest, &mut events)?;
        loop {
            let n = self.read(socket, &mut buf)?;
            self.feed(&buf[..n], &mut events)?;
            if self.publisher.is_some() && buf.len() < PUBLISH_READ_BUFFER {
                buf.resize(PUBLISH_READ_BUFFER, 0);
            }
        }
    }

    /// Runs bytes through the session and acts on what they meant.
    fn feed(&mut self, input: &[u8], events: &mut Vec<SessionEvent>) -> Result<(), CloseReason> {
        let result = self.session().handle_input(input, events);
        // Events first: a writer state change (pause) must be in effect before the
        // status reply announcing it is written. Anything that must precede a writer
        // command (play's status sequence) is flushed by its handler.
        for event in events.drain(..) {
            self.handle(event)?;
        }
        // Replies to what did parse still go out before an error closes us.
        self.flush();
        result.map_err(CloseReason::Session)
    }

    fn session(&mut self) -> &mut ServerSession {
        self.session
            .as_mut()
            .expect("session exists after the handshake")
    }

    /// Reads with the timeout that fits what the client is doing now.
    fn read(&mut self, socket: &TcpStream, buf: &mut [u8]) -> Result<usize, CloseReason> {
        let config = &self.ctx.config;
        // A client with nothing playing or publishing gets the setup allowance,
        // counted from connecting or from the end of its last stream.
        let idle_timeout = match self.idle_since {
            Some(_) => CloseReason::IdleAfterStream(config.handshake_timeout),
            None => CloseReason::SetupTimeout(config.handshake_timeout),
        };
        loop {
            let timeout = if self.publisher.is_some() {
                Some(config.publish_timeout)
            } else if self.players.is_empty() {
                let since = self.idle_since.unwrap_or(self.started);
                let left = config.handshake_timeout.checked_sub(since.elapsed());
                match left.filter(|d| !d.is_zero()) {
                    Some(left) => Some(left),
                    None => return Err(idle_timeout),
                }
            } else {
                // Players may stay silent for as long as they like.
                None
            };
            // Only when it changes: this runs once per read on the publish path.
            if self.read_timeout != Some(timeout) {
                socket.set_read_timeout(timeout).map_err(CloseReason::Io)?;
                self.read_timeout = Some(timeout);
            }
            match (&*socket).read(buf) {
                Ok(0) => return Err(CloseReason::PeerClosed),
                Ok(n) => {
                    self.ctx.counters.add_bytes_in(ConnectionKind::Rtmp, n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if net::is_timeout(&e) => {
                    if self.publisher.is_some() {
                        return Err(CloseReason::PublisherIdle(config.publish_timeout));
                    }
                    if self.players.is_empty() {
                        return Err(idle_timeout);
                    }
                }
                Err(e) if net::is_disconnect(&e) => return Err(CloseReason::PeerClosed),
                Err(e) => return Err(CloseReason::Io(e)),
            }
        }
    }

    /// Runs the handshake on this thread; returns the bytes that followed C2.
    fn handshake(&mut self, socket: &TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, CloseReason> {
        let uptime = self.ctx.started.elapsed().as_millis() as u32;
        let mut handshake = ServerHandshake::new(uptime);
        let mut out = Vec::new();
        loop {
            let n = self.read(socket, buf)?;
            let progress = handshake
                .process(&buf[..n], &mut out)
                .map_err(CloseReason::Handshake)?;
            if !out.is_empty() {
                (&*socket).write_all(&out).map_err(CloseReason::Io)?;
                out.clear();
            }
            if let Progress::Done { remaining } = progress {
                debug!("{}: {:?} handshake done", self.peer, handshake.kind());
                return Ok(remaining);
            }
        }
    }

    fn start_writer(&mut self, socket: &TcpStream) -> Result<(), CloseReason> {
        let write_half = socket.try_clone().map_err(CloseReason::Io)?;
        // Bounded: a client that sends but never reads makes this reader wait (and
        // so stop reading it) instead of queuing replies without end.
        let (tx, rx) = crossbeam_channel::bounded(WRITER_QUEUE);
        let peer = self.peer;
        let bytes_out = self.bytes_out.clone();
        let ctx = self.ctx.clone();
        let handle = thread::Builder::new()
            .name(format!("rtmp {peer} writer"))
            .stack_size(THREAD_STACK)
            .spawn(move || writer::run(write_half, rx, peer, bytes_out, &ctx))
            .map_err(CloseReason::Io)?;
        self.writer = Some((tx, handle));
        Ok(())
    }

    fn send(&self, command: WriterCommand) {
        if let WriterCommand::Messages(m) = &command {
            if m.is_empty() {
                return;
            }
        }
        if let Some((tx, _)) = &self.writer {
            // A dead writer has shut the socket down; the next read notices.
            let _ = tx.send(command);
        }
    }

    /// Sends whatever the session queued while handling an event.
    fn flush(&mut self) {
        let output = self.session().take_output();
        self.send(WriterCommand::Messages(output));
    }

    fn key(&self, name: &str) -> Result<StreamKey, String> {
        let app = self.app.as_deref().unwrap_or_default();
        StreamKey::with_max_len(app, name, self.ctx.config.max_name_len).map_err(|e| e.to_string())
    }

    fn handle(&mut self, event: SessionEvent) -> Result<(), CloseReason> {
        let peer = self.peer;
        match event {
            SessionEvent::Connected { app, tc_url, .. } => {
                // Debug formatting: these are the client's bytes, not ours to print raw.
                info!(
                    "{peer}: connect app {app:?} ({})",
                    tc_url
                        .as_deref()
                        .map_or("no tcUrl".into(), |u| format!("{u:?}"))
                );
                self.app = Some(app);
            }
            SessionEvent::PublishRequested {
                stream_id,
                name,
                mode,
                ..
            } => self.publish(stream_id, &name, &mode)?,
            SessionEvent::Frame { stream_id, frame } => match &self.publisher {
                Some((id, publisher)) if *id == stream_id => publisher.push(frame),
                _ => {}
            },
            SessionEvent::PublishStopped { stream_id } => {
                if self.publisher.as_ref().map(|(id, _)| *id) == Some(stream_id) {
                    if let Some((_, publisher)) = self.publisher.take() {
                        info!("{peer}: unpublish {}", publisher.key());
                        self.idle_since = Some(Instant::now());
                    }
                }
            }
            SessionEvent::PlayRequested {
                stream_id,
                name,
                reset,
                ..
            } => self.play(stream_id, &name, reset)?,
            SessionEvent::PlayStopped { stream_id } => {
                if let Some(sub) = self.players.remove(&stream_id) {
                    info!("{peer}: stop playing {}", sub.key());
                    if self.players.is_empty() {
                        self.idle_since = Some(Instant::now());
                    }
                    self.send(WriterCommand::Stop { stream_id });
                }
            }
            SessionEvent::Paused { stream_id, paused } => {
                self.send(WriterCommand::Pause { stream_id, paused })
            }
            SessionEvent::ReceiveAudio { stream_id, enabled } => {
                self.send(WriterCommand::ReceiveAudio {
                    stream_id,
                    on: enabled,
                })
            }
            SessionEvent::ReceiveVideo { stream_id, enabled } => {
                self.send(WriterCommand::ReceiveVideo {
                    stream_id,
                    on: enabled,
                })
            }
        }
        self.flush();
        Ok(())
    }

    fn publish(&mut self, stream_id: u32, name: &str, mode: &str) -> Result<(), CloseReason> {
        let peer = self.peer;
        let claimed = if self.publisher.is_some() {
            Err("this connection is already publishing".to_owned())
        } else {
            self.key(name).and_then(|key| {
                self.ctx
                    .registry
                    .publish(&key, peer)
                    .map_err(|e| e.to_string())
            })
        };
        match claimed {
            Ok(publisher) => {
                if mode != "live" {
                    debug!("{peer}: publish mode '{mode}' served as live");
                }
                info!("{peer}: publish {}", publisher.key());
                self.session().accept_publish(stream_id, name);
                self.publisher = Some((stream_id, publisher));
                Ok(())
            }
            Err(why) => {
                self.session().reject_publish(stream_id, &why);
                self.flush();
                Err(CloseReason::Refused(format!("publish {name:?}: {why}")))
            }
        }
    }

    fn play(&mut self, stream_id: u32, name: &str, reset: bool) -> Result<(), CloseReason> {
        let key = match self.key(name) {
            Ok(key) => key,
            Err(why) => {
                self.session()
                    .reject_play(stream_id, "NetStream.Play.StreamNotFound", &why);
                self.flush();
                return Err(CloseReason::Refused(format!("play {name:?}: {why}")));
            }
        };
        // The connection's byte counter doubles as the player's in the stats.
        let player = PlayerInfo {
            peer: self.peer,
            protocol: PlayerProtocol::Rtmp,
            bytes_out: self.bytes_out.clone(),
        };
        let subscription = self.ctx.registry.play_as(&key, player);
        let live = subscription.is_live();
        info!(
            "{}: play {key}{}",
            self.peer,
            if live {
                ""
            } else {
                " (waiting for a publisher)"
            }
        );
        // The status replies must precede the first frame of the queue.
        self.session().accept_play(stream_id, name, reset);
        self.flush();
        self.send(WriterCommand::Play {
            stream_id,
            queue: subscription.receiver(),
        });
        self.players.insert(stream_id, subscription);
        Ok(())
    }
}
