//! One RTMP client on one thread: handshake, then the session. Until it plays, the
//! thread is driven by what the client sends (blocking reads with the timeout
//! that fits its state): session events become registry calls (publish, play,
//! frames) and replies are written at once. Once it only plays, the thread is
//! driven by the stream instead: the connection is a sink of the player engine
//! (`crate::player`), which waits for frames, hands what the client sent meanwhile
//! to the session without blocking, writes replies and frames (as chunks,
//! `player::rtmp`) in one go, then sleeps the merge window so the next write
//! carries several frames.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::admission::{ClientInfo, Decision, Request, Ticket};
use crate::config::Verb;
use crate::connections::Context;
use crate::lifecycle::ConnectionKind;
use crate::lifecycle::{Phase, Refusal, Registration};
use crate::media::player::PlayerFilter;
use crate::net::{self, Transport};
use crate::player::rtmp::RtmpFraming;
use crate::player::{self, Batch, Feed, Player, Sink};
use crate::record::RecordingGuard;
use crate::registry::{
    PlayerInfo, PlayerItem, PlayerProtocol, PublishError, Publisher, Subscription,
};
use crate::relay::{self, Pushes};
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
/// The longest a blocking read waits before looking at the stop flag, so a
/// publisher whose encoder is silent, or a client between streams, notices a
/// stop within this. Only silent clients pay the wake-ups.
const STOP_POLL: Duration = Duration::from_millis(500);
/// At a stop, how long a connection that has written its ending keeps reading
/// (and discarding) until the client closes: closing with unread input would
/// reset the connection and could destroy that ending before the client reads it.
const STOP_LINGER: Duration = Duration::from_secs(1);
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
    /// Played a stream that is not here and could not be pulled (an edge).
    NotFound(String),
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
            CloseReason::NotFound(why) => write!(f, "not found: {why}"),
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
pub(crate) fn serve(entry: Registration, mut transport: Box<dyn Transport>, ctx: Arc<Context>) {
    let peer = entry.peer();
    debug!("{peer}: accepted");
    let transport: &mut dyn Transport = &mut *transport;
    let started = Instant::now();
    let mut player = Player::new(ctx.player_config());
    let mut conn = Connection {
        peer,
        entry,
        ctx,
        started,
        app: None,
        session: None,
        events: Vec::new(),
        framing: RtmpFraming::new(peer),
        batch: Batch::new(),
        feeds: Vec::new(),
        publisher: None,
        recording: None,
        pushes: None,
        tickets: HashMap::new(),
        idle_since: None,
        bytes_out: Arc::new(AtomicU64::new(0)),
    };
    let reason = conn.run(transport, &mut player);
    let bytes_in = conn.session.as_ref().map_or(0, |s| s.bytes_received());
    let stopping = matches!(reason, CloseReason::Stopping);
    if stopping {
        conn.end_for_stop(transport, &mut player);
    }
    // Dropping the publisher and subscriptions releases their keys at once.
    conn.publisher = None;
    conn.recording = None;
    conn.pushes = None;
    conn.feeds.clear();
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
        let _ = player.write(transport, &mut conn);
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
    /// What the session made of the last input, reused.
    events: Vec<SessionEvent>,
    /// Replies and played frames as chunks, gathered in `batch` until written.
    framing: RtmpFraming,
    batch: Batch,
    /// The streams it plays, by stream id; almost always zero or one.
    feeds: Vec<Feed>,
    publisher: Option<(u32, Publisher)>,
    /// The publish's recording, if its app records (`crate::record`).
    recording: Option<RecordingGuard>,
    /// The publish's pushes to other servers; ended with it.
    pushes: Option<Pushes>,
    /// What admission gave each stream that publishes or plays, by stream id;
    /// ending one sends its `_done` hook.
    tickets: HashMap<u32, Ticket>,
    /// When the last stream of a client that had one ended.
    idle_since: Option<Instant>,
    bytes_out: Arc<AtomicU64>,
}

impl Connection {
    fn run(&mut self, transport: &mut dyn Transport, player: &mut Player) -> CloseReason {
        match self.try_run(transport, player) {
            Ok(()) => CloseReason::PeerClosed,
            Err(reason) => reason,
        }
    }

    fn try_run(
        &mut self,
        transport: &mut dyn Transport,
        player: &mut Player,
    ) -> Result<(), CloseReason> {
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
        self.feed(&rest)?;
        player.write(transport, self)?;
        loop {
            // While it only plays, the stream drives it.
            player.run(transport, self)?;
            let n = self.read(transport, &mut buf)?;
            self.feed(&buf[..n])?;
            // A connection that publishes may play too; its frames go with the replies.
            player.gather(self)?;
            player.write(transport, self)?;
            if self.publisher.is_some() && buf.len() < PUBLISH_READ_BUFFER {
                buf.resize(PUBLISH_READ_BUFFER, 0);
            }
        }
    }

    /// Runs bytes through the session and acts on what they meant.
    fn feed(&mut self, input: &[u8]) -> Result<(), CloseReason> {
        let mut events = std::mem::take(&mut self.events);
        let result = self.session().handle_input(input, &mut events);
        // Events first: a player state change (pause) must be in effect before the
        // status reply announcing it is written. Anything that must precede a
        // player's frames (play's status sequence) is queued by its handler.
        let handled = events.drain(..).try_for_each(|event| self.handle(event));
        self.events = events;
        handled?;
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
            // playing (a player is driven by its queue, in the player engine).
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
    fn end_for_stop(&mut self, transport: &mut dyn Transport, player: &mut Player) {
        if let Some((stream_id, _)) = &self.publisher {
            let stream_id = *stream_id;
            self.session()
                .end_publish(stream_id, "The server is shutting down.");
            self.queue_session_output();
        }
        let _ = player.drain(transport, self);
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
        self.framing.messages(&mut self.batch, output);
    }

    /// The filter of the stream played on `stream_id`, to pause or switch tracks.
    fn filter(&mut self, stream_id: u32) -> Option<&mut PlayerFilter> {
        let feed = self.feeds.iter_mut().find(|f| f.id == stream_id)?;
        Some(&mut feed.filter)
    }

    /// Stops playing on `stream_id`; returns the subscription it held.
    fn stop_playing(&mut self, stream_id: u32) -> Option<Subscription> {
        let i = self.feeds.iter().position(|f| f.id == stream_id)?;
        Some(self.feeds.remove(i).subscription)
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
                    self.pushes = None;
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
                if let Some(sub) = self.stop_playing(stream_id) {
                    info!("{peer}: stop playing {}", sub.key());
                    if self.feeds.is_empty() {
                        self.idle_since = Some(Instant::now());
                    }
                }
            }
            SessionEvent::Paused { stream_id, paused } => {
                if let Some(f) = self.filter(stream_id) {
                    f.set_paused(paused);
                }
            }
            SessionEvent::ReceiveAudio { stream_id, enabled } => {
                if let Some(f) = self.filter(stream_id) {
                    f.set_audio(enabled);
                }
            }
            SessionEvent::ReceiveVideo { stream_id, enabled } => {
                if let Some(f) = self.filter(stream_id) {
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
            relayed: false,
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
                self.pushes = relay::start_pushes(&self.ctx, &publisher);
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
        // An edge pulls a stream that is not here from its origin first.
        let _pulled = match relay::edge_wait(&self.ctx, &key) {
            Ok(interest) => interest,
            Err(why) => {
                self.session()
                    .reject_play(stream_id, "NetStream.Play.StreamNotFound", &why);
                self.queue_session_output();
                return Err(CloseReason::NotFound(format!("play {key}: {why}")));
            }
        };
        // The connection's byte counter doubles as the player's in the stats.
        let player = PlayerInfo {
            bytes_out: self.bytes_out.clone(),
            ..PlayerInfo::new(self.peer, PlayerProtocol::Rtmp)
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
        // Playing again on a stream id replaces what played there.
        self.stop_playing(stream_id);
        let feed = Feed::new(stream_id, subscription, PlayerFilter::new());
        self.feeds.push(feed);
        // Playing again on the same stream id replaced the old play (its
        // PlayStopped came first), so this is the only ticket of the id.
        self.tickets.insert(stream_id, ticket);
        Ok(())
    }
}

impl Sink for Connection {
    type End = CloseReason;

    fn feeds(&self) -> &[Feed] {
        &self.feeds
    }

    fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    fn item(&mut self, feed: usize, item: PlayerItem) -> Result<(), CloseReason> {
        self.framing
            .play_item(&mut self.batch, &mut self.feeds[feed], item);
        Ok(())
    }

    fn input(&mut self, bytes: &[u8]) -> Result<(), CloseReason> {
        self.feed(bytes)
    }

    fn end(&self, end: player::End) -> CloseReason {
        match end {
            player::End::Stopping => CloseReason::Stopping,
            player::End::PeerClosed => self.ended(CloseReason::PeerClosed),
            player::End::Stalled(t) => CloseReason::WriteStalled(t),
            player::End::Io(e) => self.ended(CloseReason::Io(e)),
        }
    }

    /// A connection that publishes is driven by its input, also when it plays too.
    fn is_playing(&self) -> bool {
        self.publisher.is_none() && !self.feeds.is_empty()
    }

    fn sent(&mut self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.ctx.counters.add_bytes_out(ConnectionKind::Rtmp, bytes);
    }

    fn received(&mut self, bytes: usize) {
        self.ctx.counters.add_bytes_in(ConnectionKind::Rtmp, bytes);
    }
}
