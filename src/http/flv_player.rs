//! HTTP-FLV and WebSocket-FLV players. The connection's thread subscribes to the
//! stream (only if it is live: an unknown or idle key is a 404 at once, so scripts
//! and players learn it immediately and retry on their own schedule), sends the
//! response head and an FLV header, then writes the subscription's queue as FLV tags:
//! the same fast-start burst, bounded queue and keyframe skipping as RTMP players,
//! the same `PlayerFilter`, with timestamps starting at 0 like an FLV file. Frames
//! stay shared `Arc`s until they are copied into the connection's write buffer.
//!
//! The body is chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0 ones;
//! over WebSocket each write is one binary message holding whole FLV tags. When the
//! publisher stops, the response ends (last chunk, or a WebSocket close frame): FLV
//! players cannot follow a new publisher's codec setup reliably, and ending lets
//! ffmpeg/ffplay exit and browser players reconnect.
//!
//! A second thread per player watches the socket: it notices the client leaving even
//! while no frames flow, and for WebSocket it runs tungstenite's reader, whose
//! replies (pong, close) come back to the writer as whole frames to send between
//! FLV messages.

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use log::{info, warn};

use super::request::{Request, Version};
use super::response::{self, Body};
use super::{websocket, Conn};
use crate::admission::{ClientInfo, Decision, Request as Admit, Ticket};
use crate::config::Verb;
use crate::connections::{Context, THREAD_STACK};
use crate::lifecycle::ConnectionKind;
use crate::media::flv::{self, FlvHeader, MAX_TAG_DATA_LEN};
use crate::media::player::PlayerFilter;
use crate::net::{TcpTransport, Transport};
use crate::registry::{PlayerInfo, PlayerItem, PlayerProtocol, Queued, Subscription};
use crate::stream_key::{LogName, StreamKey};

/// Stop gathering queued frames once this much is ready, so one write stays bounded.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// After ending the stream, how long the client gets to close its side.
const LINGER: Duration = Duration::from_secs(2);
/// Messages from the watcher waiting for the writer; past this the watcher waits.
const WATCH_QUEUE: usize = 64;

/// How the FLV bytes are wrapped on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    UntilClose,
    WebSocket,
}

/// What the watcher thread tells the writer.
#[derive(Debug)]
pub(crate) enum WatchEvent {
    /// Whole WebSocket frames (pong, close reply) to send between FLV messages.
    Control(Vec<u8>),
    /// The client is gone or broke the protocol; `fault` for the latter.
    Closed { reason: String, fault: bool },
}

/// Why a player's stream ended.
#[derive(Debug)]
enum End {
    PublisherStopped,
    Client {
        reason: String,
        fault: bool,
    },
    /// The client accepted nothing for `--play-timeout`.
    Stalled(Duration),
    WriteFailed(io::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::PublisherStopped => f.write_str("the publisher stopped"),
            End::Client { reason, .. } => f.write_str(reason),
            End::Stalled(t) => write!(
                f,
                "client accepted no data for {:.1} s (--play-timeout)",
                t.as_secs_f64()
            ),
            End::WriteFailed(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// `GET|HEAD /{app}/{key}.flv` without an upgrade.
pub(crate) fn serve_http(conn: &mut Conn, req: &Request, app: &str, key: &str, head: bool) {
    let framing = match req.version {
        Version::Http11 => Framing::Chunked,
        Version::Http10 => Framing::UntilClose,
    };
    let body = match framing {
        Framing::Chunked => Body::Chunked,
        _ => Body::UntilClose,
    };
    let Some(key) = stream_key(conn, app, key, !head) else {
        return;
    };
    let Some(ticket) = admit(conn, req, &key, !head) else {
        return;
    };
    let key = ticket.key().clone();
    if head {
        let live = conn
            .ctx
            .registry
            .stream_info(&key)
            .is_some_and(|s| s.publisher.is_some());
        let reply = if live {
            response::head(200, Some("video/x-flv"), body, &[])
        } else {
            response::text(404, &not_live(&key), false, &[])
        };
        conn.send(&reply);
        return;
    }
    let player = PlayerInfo::new(conn.peer, PlayerProtocol::HttpFlv);
    let Some(sub) = conn.ctx.registry.play_if_live(&key, player.clone()) else {
        info!(
            "{}: {}: {}",
            conn.peer,
            super::describe(req),
            not_live(&key)
        );
        conn.send(&response::text(404, &not_live(&key), true, &[]));
        return;
    };
    info!(
        "{}: play {key} over http-flv ({})",
        conn.peer,
        super::describe(req)
    );
    let head = response::head(200, Some("video/x-flv"), body, &[]);
    let started = Playing {
        key,
        sub,
        player,
        ticket,
    };
    play(conn, started, framing, head, Vec::new());
}

/// `GET /{app}/{key}.flv` with `Upgrade: websocket`.
pub(crate) fn serve_websocket(
    conn: &mut Conn,
    req: &Request,
    app: &str,
    key: &str,
    client_key: &str,
    rest: Vec<u8>,
) {
    let Some(key) = stream_key(conn, app, key, true) else {
        return;
    };
    let Some(ticket) = admit(conn, req, &key, true) else {
        return;
    };
    let key = ticket.key().clone();
    let player = PlayerInfo::new(conn.peer, PlayerProtocol::WsFlv);
    // Refused before the upgrade, so the browser sees a failed handshake at once.
    let Some(sub) = conn.ctx.registry.play_if_live(&key, player.clone()) else {
        info!("{}: WebSocket for {key}: {}", conn.peer, not_live(&key));
        conn.send(&response::text(404, &not_live(&key), true, &[]));
        return;
    };
    info!("{}: play {key} over ws-flv", conn.peer);
    let accept = websocket::accept_key(client_key);
    let head = response::head(
        101,
        None,
        Body::None,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", &accept),
        ],
    );
    let started = Playing {
        key,
        sub,
        player,
        ticket,
    };
    play(conn, started, Framing::WebSocket, head, rest);
}

/// Asks admission whether the client may play `key`; answers 403 itself if not.
fn admit(conn: &mut Conn, req: &Request, key: &StreamKey, with_body: bool) -> Option<Ticket> {
    let host = req.header("host").unwrap_or("");
    let client = ClientInfo {
        tc_url: format!("http://{host}/{}", key.app),
        page_url: req
            .header("origin")
            .or_else(|| req.header("referer"))
            .unwrap_or("")
            .to_owned(),
        ..ClientInfo::default()
    };
    let decision = conn.ctx.admission.decide(&Admit {
        verb: Verb::Play,
        key,
        query: req.query.as_deref(),
        peer: conn.peer,
        client_id: conn.id,
        client: &client,
    });
    match decision {
        Decision::Admit(ticket) => Some(ticket),
        Decision::Refuse(refusal) => {
            conn.send(&response::text(403, &refusal.reason, with_body, &[]));
            None
        }
    }
}

/// An admitted player, subscribed.
struct Playing {
    key: StreamKey,
    sub: Subscription,
    player: PlayerInfo,
    ticket: Ticket,
}

/// The key the path names, by the rule RTMP names follow (the request's query is
/// `req.query`); a name the rule refuses is answered with a 400 here.
fn stream_key(conn: &mut Conn, app: &str, key: &str, with_body: bool) -> Option<StreamKey> {
    match StreamKey::from_request(app, key, conn.ctx.config.max_name_len) {
        Ok(key) => Some(key),
        Err(e) => {
            warn!(
                "{}: refused {}/{}: {e}",
                conn.peer,
                LogName(app),
                LogName(key)
            );
            let message = format!("bad stream name: {e}");
            conn.send(&response::text(400, &message, with_body, &[]));
            None
        }
    }
}

fn not_live(key: &StreamKey) -> String {
    format!("no stream {key} is being published")
}

/// Streams until the publisher stops, the client leaves or stalls; then logs.
fn play(conn: &mut Conn, playing: Playing, framing: Framing, head: Vec<u8>, ws_rest: Vec<u8>) {
    let Playing {
        key,
        sub,
        player,
        ticket,
    } = playing;
    let started = Instant::now();
    let peer = conn.peer;
    let (events_tx, events) = bounded(WATCH_QUEUE);
    let watcher = match spawn_watcher(conn, framing, events_tx, ws_rest) {
        Ok(handle) => handle,
        Err(e) => {
            warn!("{peer}: cannot start a watcher thread: {e}");
            conn.send(&response::text(500, "out of threads", true, &[]));
            return;
        }
    };
    let mut writer = FlvWriter {
        transport: &mut conn.transport,
        ctx: &conn.ctx,
        framing,
        queue: sub.receiver(),
        events,
        filter: PlayerFilter::zero_based(),
        pending: head,
        body: Vec::with_capacity(16 * 1024),
        bytes_out: player.bytes_out.clone(),
    };
    let codecs = sub.codecs();
    let flv_header = match (codecs.audio.is_some(), codecs.video.is_some()) {
        // Nothing known yet (the publisher just started): announce both, as players
        // then wait for whichever arrives.
        (false, false) => FlvHeader {
            has_audio: true,
            has_video: true,
        },
        (has_audio, has_video) => FlvHeader {
            has_audio,
            has_video,
        },
    };
    flv::write_header(&mut writer.body, flv_header);
    let end = writer.run();
    writer.finish(&end);
    let FlvWriter { events, .. } = writer;
    // The watcher may be blocked handing us an event: let it fail instead.
    drop(events);
    conn.transport.shutdown();
    let _ = watcher.join();
    let summary = format!(
        "{peer}: {} play of {key} closed after {:.1} s, {} bytes out, {} frames dropped: {end}",
        player.protocol,
        started.elapsed().as_secs_f64(),
        player.bytes_out.load(Ordering::Relaxed),
        sub.dropped_frames(),
    );
    match end {
        End::Stalled(_) | End::Client { fault: true, .. } => warn!("{summary}"),
        _ => info!("{summary}"),
    }
    ticket.finish(0, player.bytes_out.load(Ordering::Relaxed));
}

fn spawn_watcher(
    conn: &Conn,
    framing: Framing,
    events: Sender<WatchEvent>,
    ws_rest: Vec<u8>,
) -> io::Result<thread::JoinHandle<()>> {
    let socket = conn.socket.try_clone()?;
    // The request was read with a deadline; from now on the client may stay quiet.
    socket.set_read_timeout(None)?;
    let ctx = conn.ctx.clone();
    thread::Builder::new()
        .name(format!("http {} watcher", conn.peer))
        .stack_size(THREAD_STACK)
        .spawn(move || match framing {
            Framing::WebSocket => websocket::read_client(socket, ws_rest, events, &ctx),
            _ => watch_plain(socket, events, &ctx),
        })
}

/// An HTTP player has nothing more to say: read and discard until it leaves.
fn watch_plain(mut socket: TcpStream, events: Sender<WatchEvent>, ctx: &Context) {
    let mut buf = [0u8; 1024];
    let reason = loop {
        match socket.read(&mut buf) {
            Ok(0) => break "client closed the connection".to_owned(),
            Ok(n) => ctx.counters.add_bytes_in(ConnectionKind::Http, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break format!("socket error: {e}"),
        }
    };
    let _ = events.send(WatchEvent::Closed {
        reason,
        fault: false,
    });
}

struct FlvWriter<'a> {
    transport: &'a mut TcpTransport,
    ctx: &'a Context,
    framing: Framing,
    queue: Receiver<Queued>,
    events: Receiver<WatchEvent>,
    filter: PlayerFilter,
    /// Bytes that go out before the next FLV batch: the response head, control frames.
    pending: Vec<u8>,
    /// FLV bytes (header, tags) of the next write.
    body: Vec<u8>,
    bytes_out: Arc<AtomicU64>,
}

enum Next {
    Item(PlayerItem),
    Event(WatchEvent),
}

impl FlvWriter<'_> {
    fn run(&mut self) -> End {
        loop {
            if let Err(end) = self.step() {
                return end;
            }
        }
    }

    /// Sends what is ready, then waits for more.
    fn step(&mut self) -> Result<(), End> {
        self.gather()?;
        self.flush()?;
        let next = select! {
            recv(self.queue) -> item => match item {
                Ok(Queued { item, .. }) => Next::Item(item),
                // Only if the registry dropped us; treat it like the stream ending.
                Err(_) => return Err(End::PublisherStopped),
            },
            recv(self.events) -> event => match event {
                Ok(event) => Next::Event(event),
                Err(_) => Next::Event(WatchEvent::Closed {
                    reason: "watcher ended".into(),
                    fault: false,
                }),
            },
        };
        match next {
            Next::Item(item) => self.item(item),
            Next::Event(event) => self.event(event),
        }
    }

    /// Takes whatever else is already queued, up to one batch.
    fn gather(&mut self) -> Result<(), End> {
        while let Ok(event) = self.events.try_recv() {
            self.event(event)?;
        }
        while self.body.len() < WRITE_BATCH_BYTES {
            match self.queue.try_recv() {
                Ok(Queued { item, .. }) => self.item(item)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn item(&mut self, item: PlayerItem) -> Result<(), End> {
        match item {
            PlayerItem::Frame(frame) => {
                let Some(ts) = self.filter.admit(&frame) else {
                    return Ok(());
                };
                if frame.payload.len() > MAX_TAG_DATA_LEN {
                    // RTMP message lengths are 24-bit too, so this cannot happen;
                    // never let it panic the FLV writer.
                    warn!(
                        "{}: skipping a {}-byte frame: too big for FLV",
                        self.transport.peer(),
                        frame.payload.len()
                    );
                    return Ok(());
                }
                flv::write_tag(
                    &mut self.body,
                    flv::tag_type(frame.kind),
                    ts,
                    &frame.payload,
                );
                Ok(())
            }
            PlayerItem::PublishStart => {
                self.filter.new_epoch();
                Ok(())
            }
            PlayerItem::PublishStop => Err(End::PublisherStopped),
        }
    }

    fn event(&mut self, event: WatchEvent) -> Result<(), End> {
        match event {
            WatchEvent::Control(frames) => {
                self.pending.extend_from_slice(&frames);
                Ok(())
            }
            WatchEvent::Closed { reason, fault } => Err(End::Client { reason, fault }),
        }
    }

    /// Writes the pending bytes and the FLV batch, framed, in one vectored write.
    fn flush(&mut self) -> Result<(), End> {
        if self.pending.is_empty() && self.body.is_empty() {
            return Ok(());
        }
        let mut prefix = Vec::new();
        let mut suffix: &[u8] = b"";
        if !self.body.is_empty() {
            match self.framing {
                Framing::Chunked => {
                    prefix.extend_from_slice(response::chunk_prefix(self.body.len()).as_bytes());
                    suffix = b"\r\n";
                }
                Framing::WebSocket => websocket::binary_header(self.body.len(), &mut prefix),
                Framing::UntilClose => {}
            }
        }
        let parts = [&self.pending[..], &prefix, &self.body, suffix];
        let result = self.transport.write_all(&mut parts.into_iter());
        let sent: usize = parts.iter().map(|p| p.len()).sum();
        result.map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                End::Stalled(self.ctx.config.write_stall_timeout)
            } else {
                End::WriteFailed(e)
            }
        })?;
        self.count(sent);
        self.pending.clear();
        self.body.clear();
        if self.body.capacity() > WRITE_BATCH_BYTES * 2 {
            self.body.shrink_to(16 * 1024);
        }
        Ok(())
    }

    fn count(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.ctx.counters.add_bytes_out(ConnectionKind::Http, n);
    }

    /// Ends the response properly where the connection still allows it.
    fn finish(&mut self, end: &End) {
        match end {
            End::Stalled(_) | End::WriteFailed(_) => return,
            End::Client { .. } => {
                // A WebSocket close reply may be pending; the rest is moot.
                self.body.clear();
                let _ = self.flush();
                return;
            }
            End::PublisherStopped => {}
        }
        let _ = self.flush();
        let last: Vec<u8> = match self.framing {
            Framing::Chunked => response::LAST_CHUNK.to_vec(),
            Framing::WebSocket => websocket::close_frame("the publisher stopped"),
            Framing::UntilClose => Vec::new(),
        };
        if !last.is_empty() {
            if self.transport.write_bytes(&last).is_err() {
                return;
            }
            self.count(last.len());
        }
        let _ = self.transport.shutdown_write();
        // Give the client a moment to close its side, so it reads everything.
        let deadline = Instant::now() + LINGER;
        while let Ok(event) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let WatchEvent::Closed { .. } = event {
                break;
            }
        }
    }
}
