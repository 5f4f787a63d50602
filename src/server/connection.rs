//! One RTMP client on one thread: handshake, then the session. Until it plays, the
//! thread is driven by what the client sends (blocking reads with the timeout
//! that fits its state): session events become registry calls (publish, play,
//! frames) and replies are written at once. Once it only plays, the thread is
//! driven by the stream instead: it waits for frames, takes what the client sent
//! meanwhile without blocking, writes everything in one go, then sleeps the merge
//! window so the next write carries several frames.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::writer::{Waited, Writer};
use crate::admission::{ClientInfo, Decision, Request, Ticket};
use crate::config::Verb;
use crate::connections::Context;
use crate::lifecycle::ConnectionKind;
use crate::lifecycle::{Phase, Refusal, Registration};
use crate::net::{self, TcpTransport, Transport};
use crate::record::RecordingGuard;
use crate::registry::{PlayerInfo, PlayerProtocol, PublishError, Publisher};
use crate::rtmp::handshake::{HandshakeError, Progress, ServerHandshake};
use crate::rtmp::session::{ServerSession, SessionConfig, SessionError, SessionEvent};
use crate::stream_key::{BadName, LogName, StreamKey};

/// The status a refused publish gets unless admission refused it.
const BAD_NAME: &str = "NetStream.Publish.BadName";

/// Players and idle clients send little (a handshake, a few commands, acks), and
/// this buffer is theirs for as long as they play; publishers get a larger one so
/// a megabit stream takes few reads.
const READ_BUFFER: usize = 1024;
const PUBLISH_READ_BUFFER: usize = 64 * 1024;
/// How long a player waits for frames before it looks at what the client sent
/// (a command, or the connection closing) on a stream with nothing flowing. A
/// publisher's arrival wakes it at once (the doorbell); only the client's own
/// input waits this long. Each look costs a wake-up: 300 players waiting for a
/// stream cost 2.7% of a core at 250 ms, so an audience of thousands waiting for
/// an event to start would keep a core busy at a much shorter period.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often a player whose frames flow looks at what the client sent: often
/// enough that a pause or a closed connection is acted on at once to a person,
/// seldom enough that a player written to every frame (`--merge-writes-ms 0`)
/// does not pay a read per frame.
const INPUT_POLL: Duration = Duration::from_millis(100);
/// Reads a playing client gets per look, so a chatty one cannot hold its frames.
const READS_PER_POLL: usize = 8;
/// The longest a blocking read waits before looking at the stop flag, so a
/// publisher whose encoder is silent, or a client between streams, notices a
/// stop within this. Only silent clients pay the wake-ups.
const STOP_POLL: Duration = Duration::from_millis(500);
/// At a stop, how long a connection that has written its ending keeps reading
/// (and discarding) until the client closes: closing with unread input would
/// reset the connection and could destroy that ending before the client reads it.
const STOP_LINGER: Duration = Duration::from_secs(1);
/// How long after its last media write a player with a merge window keeps to its
/// ticks alone (see [`Pace`]). Longer than the gaps a saturated machine puts
/// between a publisher's pushes (up to 100-200 ms measured at 2000 players), short
/// enough that the players of a stream that stopped are woken at once by the next
/// publisher's first frames.
const QUIET_SPELL: Duration = Duration::from_secs(1);

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
    /// The client took none of our bytes for this long.
    WriteStalled(Duration),
    Refused(String),
    /// The server is stopping.
    Stopping,
    /// Closed while pending for a newer connection (`--max-pending`).
    Evicted,
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
            CloseReason::WriteStalled(t) => {
                write!(f, "client accepted no data for {:.1} s", t.as_secs_f64())
            }
            CloseReason::Refused(why) => write!(f, "refused: {why}"),
            CloseReason::Stopping => f.write_str("the server is stopping"),
            CloseReason::Evicted => f.write_str(
                "closed while pending to make room for a newer connection (--max-pending)",
            ),
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
                | CloseReason::WriteStalled(_)
                | CloseReason::Refused(_)
        )
    }
}

impl From<Refusal> for CloseReason {
    fn from(refusal: Refusal) -> CloseReason {
        match refusal {
            Refusal::Full { .. } => CloseReason::Refused(refusal.to_string()),
            Refusal::Evicted => CloseReason::Evicted,
            Refusal::Stopping => CloseReason::Stopping,
        }
    }
}

/// Runs one client to the end and logs why it ended.
pub(crate) fn serve(entry: Registration, ctx: Arc<Context>) {
    let peer = entry.peer();
    debug!("{peer}: accepted");
    let stall = ctx.config.write_stall_timeout;
    let mut transport = match TcpTransport::new(entry.socket().clone(), peer, stall) {
        Ok(transport) => transport,
        Err(e) => {
            debug!("{peer}: {e}");
            return;
        }
    };
    let transport: &mut dyn Transport = &mut transport;
    let started = Instant::now();
    let pace = Pace::new(ctx.config.merge_writes, next_tick_group());
    let mut conn = Connection {
        peer,
        entry,
        ctx,
        started,
        app: None,
        session: None,
        writer: Writer::new(peer),
        publisher: None,
        recording: None,
        tickets: HashMap::new(),
        idle_since: None,
        // So the first play round already looks at the client's input.
        polled: started.checked_sub(INPUT_POLL).unwrap_or(started),
        pace,
        bytes_out: Arc::new(AtomicU64::new(0)),
    };
    let reason = conn.run(transport);
    let bytes_in = conn.session.as_ref().map_or(0, |s| s.bytes_received());
    let stopping = matches!(reason, CloseReason::Stopping);
    if stopping {
        conn.end_for_stop(transport);
    }
    // Dropping the publisher and subscriptions releases their keys at once.
    conn.publisher = None;
    conn.recording = None;
    conn.writer.stop_all();
    let stream_ids: Vec<u32> = conn.tickets.keys().copied().collect();
    for stream_id in stream_ids {
        conn.end_ticket(stream_id);
    }
    if !matches!(
        reason,
        CloseReason::Io(_) | CloseReason::WriteStalled(_) | CloseReason::Evicted
    ) {
        // What is still queued (a refusal's status message, say) goes out before
        // the socket closes; a peer that takes nothing holds us up to the stall.
        let _ = conn.write(transport);
    }
    if stopping {
        transport.linger(STOP_LINGER, usize::MAX);
    }
    transport.shutdown();
    let summary = format!(
        "{peer}: closed after {:.1} s, {bytes_in} bytes in, {} bytes out: {reason}",
        started.elapsed().as_secs_f64(),
        conn.bytes_out.load(Ordering::Relaxed)
    );
    if reason.is_client_fault() {
        warn!("{summary}");
    } else if matches!(reason, CloseReason::Evicted) {
        // A flood evicts thousands: the table logs a summary at warn instead.
        debug!("{summary}");
    } else {
        info!("{summary}");
    }
}

struct Connection {
    peer: SocketAddr,
    /// This connection's entry in the server's connection table.
    entry: Registration,
    ctx: Arc<Context>,
    started: Instant,
    app: Option<String>,
    session: Option<ServerSession>,
    /// Replies and played frames waiting to be written, and the playbacks.
    writer: Writer,
    publisher: Option<(u32, Publisher)>,
    /// The publish's recording, if its app records (`crate::record`).
    recording: Option<RecordingGuard>,
    /// What admission gave each stream that publishes or plays, by stream id;
    /// ending one sends its `_done` hook.
    tickets: HashMap<u32, Ticket>,
    /// When the last stream of a client that had one ended.
    idle_since: Option<Instant>,
    /// When a playing client's input was last looked at.
    polled: Instant,
    /// When the player thread waits for frames and sleeps between writes.
    pace: Pace,
    bytes_out: Arc<AtomicU64>,
}

impl Connection {
    fn run(&mut self, transport: &mut dyn Transport) -> CloseReason {
        match self.try_run(transport) {
            Ok(()) => CloseReason::PeerClosed,
            Err(reason) => reason,
        }
    }

    fn try_run(&mut self, transport: &mut dyn Transport) -> Result<(), CloseReason> {
        let mut buf = vec![0u8; READ_BUFFER];
        let rest = self.handshake(transport, &mut buf)?;
        let config = &self.ctx.config;
        self.session = Some(
            ServerSession::new(SessionConfig {
                chunk_size: config.chunk_size,
                chunk_limits: config.chunk_limits,
                amf_limits: config.amf_limits,
                ..SessionConfig::default()
            })
            .with_log_prefix(self.peer.to_string()),
        );
        let mut events = Vec::new();
        self.feed(&rest, &mut events)?;
        self.write(transport)?;
        loop {
            if self.publisher.is_none() && self.writer.is_playing() {
                self.play_round(transport, &mut buf, &mut events)?;
                continue;
            }
            let n = self.read(transport, &mut buf)?;
            self.feed(&buf[..n], &mut events)?;
            // A connection that publishes may play too; its frames go with the replies.
            self.writer.gather();
            self.write(transport)?;
            if self.publisher.is_some() && buf.len() < PUBLISH_READ_BUFFER {
                buf.resize(PUBLISH_READ_BUFFER, 0);
            }
        }
    }

    /// One round of a connection that only plays: wait for frames (or, while they
    /// flow, just look), take what the client sent meanwhile, write it all at once,
    /// then sleep to the next merge tick so the next frames gather.
    fn play_round(
        &mut self,
        transport: &mut dyn Transport,
        buf: &mut [u8],
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), CloseReason> {
        if self.ctx.lifecycle.is_stopping() {
            return Err(CloseReason::Stopping);
        }
        let uptime = self.ctx.started;
        let more = match self.writer.wait(self.pace.doorbell_wait(uptime.elapsed())) {
            Waited::Item => self.writer.gather(),
            Waited::Timeout => false,
        };
        if self.polled.elapsed() >= INPUT_POLL {
            self.poll_input(transport, buf, events)?;
        }
        let media = self.writer.has_media();
        self.write(transport)?;
        let sleep = self.pace.after_round(uptime.elapsed(), media, more);
        if !sleep.is_zero() {
            thread::sleep(sleep);
        }
        Ok(())
    }

    /// Takes what a playing client sent, without waiting for more.
    fn poll_input(
        &mut self,
        transport: &mut dyn Transport,
        buf: &mut [u8],
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), CloseReason> {
        self.polled = Instant::now();
        for _ in 0..READS_PER_POLL {
            match transport.try_read(buf) {
                Ok(0) => return Err(self.ended(CloseReason::PeerClosed)),
                Ok(n) => {
                    self.ctx.counters.add_bytes_in(ConnectionKind::Rtmp, n);
                    self.feed(&buf[..n], events)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if net::is_disconnect(&e) => return Err(self.ended(CloseReason::PeerClosed)),
                Err(e) => return Err(self.ended(CloseReason::Io(e))),
            }
        }
        Ok(())
    }

    /// Writes what waits, counting the bytes.
    fn write(&mut self, transport: &mut dyn Transport) -> Result<(), CloseReason> {
        let stall = self.ctx.config.write_stall_timeout;
        match self.writer.write(transport) {
            Ok(n) => {
                self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                self.ctx.counters.add_bytes_out(ConnectionKind::Rtmp, n);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(CloseReason::WriteStalled(stall)),
            Err(e) if net::is_disconnect(&e) => Err(CloseReason::PeerClosed),
            Err(e) => Err(CloseReason::Io(e)),
        }
    }

    /// Runs bytes through the session and acts on what they meant.
    fn feed(&mut self, input: &[u8], events: &mut Vec<SessionEvent>) -> Result<(), CloseReason> {
        let result = self.session().handle_input(input, events);
        // Events first: a writer state change (pause) must be in effect before the
        // status reply announcing it is written. Anything that must precede a writer
        // command (play's status sequence) is queued by its handler.
        for event in events.drain(..) {
            self.handle(event)?;
        }
        // Replies to what did parse still go out before an error closes us.
        self.queue_session_output();
        result.map_err(CloseReason::Session)
    }

    fn session(&mut self) -> &mut ServerSession {
        self.session
            .as_mut()
            .expect("session exists after the handshake")
    }

    /// Reads with the timeout that fits what the client is doing now.
    fn read(
        &mut self,
        transport: &mut dyn Transport,
        buf: &mut [u8],
    ) -> Result<usize, CloseReason> {
        let config = &self.ctx.config;
        // A client with nothing playing or publishing gets the setup allowance,
        // counted from connecting or from the end of its last stream.
        let idle_timeout = match self.idle_since {
            Some(_) => CloseReason::IdleAfterStream(config.setup_timeout),
            None => CloseReason::SetupTimeout(config.setup_timeout),
        };
        let called = Instant::now();
        loop {
            if self.ctx.lifecycle.is_stopping() {
                return Err(CloseReason::Stopping);
            }
            // Reads drive the connection only while it publishes or has nothing
            // playing (a player is driven by its queue, in `play_round`).
            let left = if self.publisher.is_some() {
                config.publish_timeout.checked_sub(called.elapsed())
            } else {
                let since = self.idle_since.unwrap_or(self.started);
                config.setup_timeout.checked_sub(since.elapsed())
            };
            let Some(left) = left.filter(|d| !d.is_zero()) else {
                if self.publisher.is_some() {
                    return Err(CloseReason::PublisherIdle(config.publish_timeout));
                }
                return Err(idle_timeout);
            };
            match transport.read_within(buf, left.min(STOP_POLL)) {
                Ok(0) => return Err(self.ended(CloseReason::PeerClosed)),
                Ok(n) => {
                    self.ctx.counters.add_bytes_in(ConnectionKind::Rtmp, n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The allowance and the stop flag are looked at again above.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if net::is_disconnect(&e) => return Err(self.ended(CloseReason::PeerClosed)),
                Err(e) => return Err(self.ended(CloseReason::Io(e))),
            }
        }
    }

    /// Why the socket ended: the peer, or our own table (eviction, a stop).
    fn ended(&self, reason: CloseReason) -> CloseReason {
        if self.ctx.lifecycle.is_stopping() {
            CloseReason::Stopping
        } else if self.entry.phase() == Phase::Closing {
            CloseReason::Evicted
        } else {
            reason
        }
    }

    /// Ends the connection for the server's stop the way a publisher's stop ends
    /// it: a publisher is told its stream ended; a player gets what its queue still
    /// holds, which ends with the registry's `PublishStop` (StreamEOF,
    /// UnpublishNotify).
    fn end_for_stop(&mut self, transport: &mut dyn Transport) {
        if let Some((stream_id, _)) = &self.publisher {
            let stream_id = *stream_id;
            self.session()
                .end_publish(stream_id, "The server is shutting down.");
            self.queue_session_output();
        }
        while self.writer.gather() {
            if self.write(transport).is_err() {
                return;
            }
        }
    }

    /// Runs the handshake on this thread; returns the bytes that followed C2.
    fn handshake(
        &mut self,
        transport: &mut dyn Transport,
        buf: &mut [u8],
    ) -> Result<Vec<u8>, CloseReason> {
        let uptime = self.ctx.started.elapsed().as_millis() as u32;
        let mut handshake = ServerHandshake::new(uptime);
        let mut out = Vec::new();
        loop {
            let n = self.read(transport, buf)?;
            let progress = handshake
                .process(&buf[..n], &mut out)
                .map_err(CloseReason::Handshake)?;
            if !out.is_empty() {
                transport.write_bytes(&out).map_err(CloseReason::Io)?;
                out.clear();
            }
            if let Progress::Done { remaining } = progress {
                if let Some(kind) = handshake.kind() {
                    debug!("{}: {kind} done", self.peer);
                }
                for remark in handshake.remarks() {
                    debug!("{}: handshake: {remark}", self.peer);
                }
                return Ok(remaining);
            }
        }
    }

    /// Queues whatever the session produced while handling input.
    fn queue_session_output(&mut self) {
        let output = self.session().take_output();
        self.writer.messages(output);
    }

    /// The key `name` names in this connection's app (both as the client sent
    /// them, the query split off): the rule HTTP paths follow too.
    fn key(&self, name: &str) -> Result<StreamKey, BadName> {
        let app = self.app.as_deref().unwrap_or_default();
        StreamKey::from_request(app, name, self.ctx.config.max_name_len)
    }

    fn handle(&mut self, event: SessionEvent) -> Result<(), CloseReason> {
        let peer = self.peer;
        match event {
            SessionEvent::Connected { app, tc_url, .. } => {
                // Quoted and cut: these are the client's bytes, not ours to print
                // raw; the query may hold a secret.
                info!(
                    "{peer}: connect app {} ({})",
                    LogName(&app),
                    tc_url.as_deref().map_or("no tcUrl".into(), |u| {
                        LogName(crate::stream_key::split_query(u).0).to_string()
                    })
                );
                self.app = Some(app);
            }
            SessionEvent::PublishRequested {
                stream_id,
                name,
                query,
                mode,
            } => self.publish(stream_id, &name, query.as_deref(), &mode)?,
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
                    self.recording = None;
                    self.end_ticket(stream_id);
                }
            }
            SessionEvent::PlayRequested {
                stream_id,
                name,
                query,
                reset,
                ..
            } => self.play(stream_id, &name, query.as_deref(), reset)?,
            SessionEvent::PlayStopped { stream_id } => {
                self.end_ticket(stream_id);
                if let Some(sub) = self.writer.stop(stream_id) {
                    info!("{peer}: stop playing {}", sub.key());
                    if !self.writer.is_playing() {
                        self.idle_since = Some(Instant::now());
                    }
                }
            }
            SessionEvent::Paused { stream_id, paused } => {
                if let Some(f) = self.writer.filter(stream_id) {
                    f.set_paused(paused);
                }
            }
            SessionEvent::ReceiveAudio { stream_id, enabled } => {
                if let Some(f) = self.writer.filter(stream_id) {
                    f.set_audio(enabled);
                }
            }
            SessionEvent::ReceiveVideo { stream_id, enabled } => {
                if let Some(f) = self.writer.filter(stream_id) {
                    f.set_video(enabled);
                }
            }
        }
        self.queue_session_output();
        Ok(())
    }

    /// Asks admission whether this client may `verb` `key`.
    fn admit(
        &mut self,
        verb: Verb,
        key: &StreamKey,
        query: Option<&str>,
    ) -> Result<Ticket, String> {
        let said = self.session().client();
        let client = ClientInfo {
            tc_url: said.tc_url.clone(),
            flash_ver: said.flash_ver.clone(),
            swf_url: said.swf_url.clone(),
            page_url: said.page_url.clone(),
        };
        let decision = self.ctx.admission.decide(&Request {
            verb,
            key,
            query,
            peer: self.peer,
            client_id: self.entry.id(),
            client: &client,
        });
        match decision {
            Decision::Admit(ticket) => Ok(ticket),
            Decision::Refuse(refusal) => Err(refusal.reason),
        }
    }

    /// Ends a publish's or play's admission: its `_done` hook goes out.
    fn end_ticket(&mut self, stream_id: u32) {
        if let Some(ticket) = self.tickets.remove(&stream_id) {
            let bytes_in = self.session.as_ref().map_or(0, |s| s.bytes_received());
            ticket.finish(bytes_in, self.bytes_out.load(Ordering::Relaxed));
        }
    }

    fn publish(
        &mut self,
        stream_id: u32,
        name: &str,
        query: Option<&str>,
        mode: &str,
    ) -> Result<(), CloseReason> {
        let peer = self.peer;
        // The client is told why; the log (for the operator) says it with the name
        // once and, for a taken key, who holds it.
        let refuse = |conn: &mut Connection,
                      code: &str,
                      why: &str,
                      log: String|
         -> Result<(), CloseReason> {
            conn.session().reject_publish(stream_id, code, why);
            conn.queue_session_output();
            Err(CloseReason::Refused(log))
        };
        if self.publisher.is_some() {
            let why = "this connection is already publishing";
            let log = format!("publish {}: {why}", LogName(name));
            return refuse(self, BAD_NAME, why, log);
        }
        let key = match self.key(name) {
            Ok(key) => key,
            Err(bad) => {
                let log = format!("publish {}: {bad}", LogName(name));
                return refuse(self, BAD_NAME, &bad.to_string(), log);
            }
        };
        let ticket = match self.admit(Verb::Publish, &key, query) {
            Ok(ticket) => ticket,
            Err(why) => {
                let log = format!("publish {key}: {why}");
                return refuse(self, "NetStream.Publish.Unauthorized", &why, log);
            }
        };
        if let Err(refusal) = self.entry.establish() {
            self.session()
                .reject_publish(stream_id, BAD_NAME, &refusal.to_string());
            self.queue_session_output();
            return Err(refusal.into());
        }
        let claimed = self.ctx.registry.publish(ticket.key(), peer);
        match claimed {
            Ok(publisher) => {
                if mode != "live" {
                    debug!("{peer}: publish mode {} served as live", LogName(mode));
                }
                info!("{peer}: publish {}", publisher.key());
                // Before the first frame, so the recording misses none.
                self.recording = self.ctx.recorders.start(
                    &self.ctx.registry,
                    &self.ctx.admission.policy(),
                    publisher.key(),
                    peer,
                    &ticket,
                );
                self.session().accept_publish(stream_id, name);
                self.publisher = Some((stream_id, publisher));
                self.tickets.insert(stream_id, ticket);
                Ok(())
            }
            Err(e) => {
                let log = match &e {
                    PublishError::AlreadyPublishing { key, by } => {
                        format!("publish {key}: already being published by {by}")
                    }
                    PublishError::Closed => format!("publish {}: {e}", ticket.key()),
                };
                refuse(self, BAD_NAME, &e.to_string(), log)
            }
        }
    }

    fn play(
        &mut self,
        stream_id: u32,
        name: &str,
        query: Option<&str>,
        reset: bool,
    ) -> Result<(), CloseReason> {
        let key = match self.key(name) {
            Ok(key) => key,
            Err(bad) => {
                self.session().reject_play(
                    stream_id,
                    "NetStream.Play.StreamNotFound",
                    &bad.to_string(),
                );
                self.queue_session_output();
                return Err(CloseReason::Refused(format!(
                    "play {}: {bad}",
                    LogName(name)
                )));
            }
        };
        let ticket = match self.admit(Verb::Play, &key, query) {
            Ok(ticket) => ticket,
            Err(why) => {
                self.session()
                    .reject_play(stream_id, "NetStream.Play.Failed", &why);
                self.queue_session_output();
                return Err(CloseReason::Refused(format!("play {key}: {why}")));
            }
        };
        if let Err(refusal) = self.entry.establish() {
            self.session()
                .reject_play(stream_id, "NetStream.Play.Failed", &refusal.to_string());
            self.queue_session_output();
            return Err(refusal.into());
        }
        let key = ticket.key().clone();
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
        self.queue_session_output();
        self.writer.play(stream_id, subscription);
        // Playing again on the same stream id replaced the old play (its
        // PlayStopped came first), so this is the only ticket of the id.
        self.tickets.insert(stream_id, ticket);
        Ok(())
    }
}

/// Groups of players that share merge ticks. One group (everyone on the same
/// tick) is cheapest, as the machine idles once per tick instead of once per
/// player, but the last player of a big group is written several milliseconds
/// after its tick; a few groups staggered across the window keep most of the
/// saving and spread that delay. Measured at 500 players, 40 ms: separate
/// sleeps 3.0 CPU s/GB; one group 1.7-2.0 CPU s/GB with latency p99 at window
/// + 5-8 ms.
const TICK_GROUPS: u32 = 4;

/// The tick group of the next connection: round robin.
fn next_tick_group() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % TICK_GROUPS
}

/// When a playing connection's thread waits for frames and when it sleeps; times
/// are since the server started.
///
/// A busy player is written to at most once per merge window: sleeping to its next
/// tick after a media write lets the next frames queue up without waking the
/// thread per frame, and they leave in one write. While its stream flows, the
/// ticks alone wake it: a tick that finds the queue empty (the publisher is late,
/// or this thread was woken late for the tick before) sleeps to the next tick
/// rather than park on the doorbell. Were it to park, the publisher would wake it
/// with the next frame, and on a saturated machine a publisher that wakes
/// hundreds of threads per frame is preempted by them, falls behind the stream and
/// leaves still more queues empty at the next ticks: at 2000 players that feedback
/// cut delivery to 15-46% of the stream. The doorbell is for a quiet stream (no
/// media written for [`QUIET_SPELL`]: waiting for a publisher, or a joining player,
/// whose first frames then go out at once) and for writing every frame as it
/// arrives (`--merge-writes-ms 0`).
#[derive(Debug)]
struct Pace {
    merge: Duration,
    tick_group: u32,
    /// When media was last written.
    last_media: Option<Duration>,
}

impl Pace {
    fn new(merge: Duration, tick_group: u32) -> Pace {
        Pace {
            merge,
            tick_group,
            last_media: None,
        }
    }

    /// Whether the player's own ticks wake it, not the publisher.
    fn ticking(&self, now: Duration) -> bool {
        !self.merge.is_zero()
            && self
                .last_media
                .is_some_and(|at| now.saturating_sub(at) < QUIET_SPELL)
    }

    /// How long a round starting at `now` may park on the doorbell for an item.
    fn doorbell_wait(&self, now: Duration) -> Duration {
        if self.ticking(now) {
            Duration::ZERO
        } else {
            IDLE_POLL
        }
    }

    /// How long to sleep after a round that ended at `now`, having written media
    /// or not and left `more` queued (a burst too big for one write continues
    /// without a pause).
    fn after_round(&mut self, now: Duration, media: bool, more: bool) -> Duration {
        let ticking = self.ticking(now);
        if media {
            self.last_media = Some(now);
        }
        if self.merge.is_zero() || more || !(media || ticking) {
            return Duration::ZERO;
        }
        until_next_tick(now, self.merge, self.tick_group)
    }
}

/// How long to sleep from `now` (time since the server started) to the next tick
/// of `group`: the multiples of `window`, shifted by the group's share of it.
fn until_next_tick(now: Duration, window: Duration, group: u32) -> Duration {
    let window = window.as_nanos().max(1);
    let shift = window * u128::from(group % TICK_GROUPS) / u128::from(TICK_GROUPS);
    let left = window - (now.as_nanos() + shift) % window;
    Duration::from_nanos(left.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_multiples_of_the_window_shifted_by_group() {
        let ms = Duration::from_millis;
        assert_eq!(until_next_tick(ms(0), ms(40), 0), ms(40));
        assert_eq!(until_next_tick(ms(1), ms(40), 0), ms(39));
        assert_eq!(until_next_tick(ms(39), ms(40), 0), ms(1));
        assert_eq!(until_next_tick(ms(40), ms(40), 0), ms(40));
        assert_eq!(until_next_tick(ms(1_000_123), ms(20), 0), ms(17));
        // Group 1 ticks one group's step earlier: at 40 - step, 80 - step...
        let step = ms(40) / TICK_GROUPS;
        assert_eq!(until_next_tick(ms(0), ms(40), 1), ms(40) - step);
        assert_eq!(until_next_tick(ms(40) - step, ms(40), 1), ms(40));
        assert_eq!(
            until_next_tick(ms(41) - step, ms(40), 1),
            ms(39),
            "just past a tick, the next is a window away"
        );
    }

    #[test]
    fn while_frames_flow_a_player_sleeps_to_its_ticks_and_never_parks_on_the_doorbell() {
        let ms = Duration::from_millis;
        let mut pace = Pace::new(ms(60), 0);
        // Joining: it waits on the doorbell, so its first frames go out at once...
        assert_eq!(pace.doorbell_wait(ms(1000)), IDLE_POLL);
        // ...then it sleeps to its next tick (1020 ms) after the write.
        assert_eq!(pace.after_round(ms(1005), true, false), ms(15));
        // A tick that finds the queue empty (the publisher is late) only looks:
        // parked, the player would cost the publisher a wake-up with the next frame.
        assert_eq!(pace.doorbell_wait(ms(1020)), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1020), false, false), ms(60));
        // A backlog too big for one write continues without a pause.
        assert_eq!(pace.after_round(ms(1080), true, true), Duration::ZERO);
        assert_eq!(pace.doorbell_wait(ms(1081)), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1082), true, false), ms(58));
        // Still on the ticks just short of a quiet spell without media...
        let quiet = ms(1082) + QUIET_SPELL;
        let just_before = quiet - ms(1);
        assert_eq!(pace.doorbell_wait(just_before), Duration::ZERO);
        assert!(!pace.after_round(just_before, false, false).is_zero());
        // ...after it, the stream has stopped: the doorbell again, so the next
        // publisher's first frames go out at once.
        assert_eq!(pace.doorbell_wait(quiet), IDLE_POLL);
        assert_eq!(pace.after_round(quiet, false, false), Duration::ZERO);
    }

    /// A player of a stream whose frames come late and in bursts parks on the
    /// doorbell only to join; the publisher's pushes never have to wake it.
    #[test]
    fn a_late_publisher_wakes_no_ticking_player() {
        let ms = Duration::from_millis;
        // From 500 ms after the player joined, 77 items a second, but every 400 ms
        // the publisher stalls for 150 ms and then pushes what it owes at once.
        let frames: Vec<Duration> = (0..770u64)
            .map(|i| {
                let due = i * 13;
                let stalled = due % 400 >= 250;
                ms(500 + if stalled { due - due % 400 + 400 } else { due })
            })
            .collect();
        let mut pace = Pace::new(ms(60), 1);
        let (mut now, mut taken, mut parks, mut writes) = (ms(0), 0, 0, 0);
        while taken < frames.len() {
            let queued = frames[taken..].iter().take_while(|&&t| t <= now).count();
            let media = if queued > 0 {
                taken += queued;
                true
            } else if pace.doorbell_wait(now).is_zero() {
                false
            } else {
                // Parked until the publisher's next push rings the bell.
                parks += 1;
                now = frames[taken];
                taken += 1;
                true
            };
            writes += usize::from(media);
            now += pace.after_round(now, media, false);
        }
        assert_eq!(parks, 1, "only the joining wait parks");
        // One write per tick at most: 10 s of 60 ms windows.
        assert!(writes <= 10_000 / 60 + 1, "{writes} writes");
        // Writing every frame, each one is a wake-up: that is what the doorbell is for.
        let mut every_frame = Pace::new(Duration::ZERO, 0);
        assert_eq!(every_frame.doorbell_wait(ms(5)), IDLE_POLL);
        assert_eq!(every_frame.after_round(ms(5), true, false), Duration::ZERO);
        assert_eq!(every_frame.doorbell_wait(ms(6)), IDLE_POLL);
    }
}
