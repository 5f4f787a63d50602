//! The HTTP side of the server: HTTP-FLV and WebSocket-FLV players, the JSON stats
//! API and Prometheus metrics, on the `--http` listener. Same style as RTMP: the
//! accept loop (`crate::connections`) starts one thread per connection, which reads one request
//! (bounded in size by `request::MAX_HEADER_BYTES` and in time by
//! `--handshake-timeout`), answers it and closes. A player's thread then runs the
//! player engine (`crate::player`) with an FLV framing of its own (`flv_player`).
//!
//! `request` and `response` are I/O-free and unit-tested on bytes; `api` and
//! `metrics` build their documents from the registry and the server counters.
//!
//! Players are admitted by `crate::admission` like RTMP players (refused: 403);
//! the API and metrics need `Authorization: Bearer <api_token>` when one is set
//! (401 otherwise), and may have a listener of their own (`--api-listen`), in
//! which case the `--http` listener serves only players.

mod api;
mod flv_player;
mod hls;
mod metrics;
mod page;
pub mod request;
pub mod response;
mod websocket;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::admission::{ClientInfo, Decision, Request as Admit, Ticket};
use crate::config::Verb;
use crate::connections::Context;
use crate::lifecycle::ConnectionKind;
use crate::lifecycle::{Phase, Refusal, Registration};
use crate::net::Transport;
use crate::stream_key::StreamKey;
use request::{Request, RequestError, Route, MAX_HEADER_BYTES};
use response::Body;

/// Why a connection could not be served. `Display` says what happened, for the log.
#[derive(Debug)]
pub enum HttpError {
    /// The client sent something that is not an acceptable request.
    BadRequest(RequestError),
    /// No complete request within the deadline.
    Timeout {
        after: Duration,
        received: usize,
    },
    /// The client closed before its request was complete.
    ClosedEarly {
        received: usize,
    },
    Io(io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(e) => write!(f, "bad request: {e}"),
            HttpError::Timeout { after, received } => write!(
                f,
                "no complete request within {:.1} s ({received} bytes received)",
                after.as_secs_f64()
            ),
            HttpError::ClosedEarly { received } => {
                write!(
                    f,
                    "client closed after {received} bytes of an incomplete request"
                )
            }
            HttpError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Which routes a listener answers; the others are 404 there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routes {
    All,
    /// `--http` when `--api-listen` is set.
    Players,
    /// `--api-listen`.
    Api,
}

/// Serves one connection of the `--http` listener, all routes.
pub(crate) fn serve(entry: Registration, transport: Box<dyn Transport>, ctx: Arc<Context>) {
    serve_routes(entry, transport, ctx, Routes::All)
}

/// Serves one connection of the `--http` listener when the API has its own.
pub(crate) fn serve_players(entry: Registration, transport: Box<dyn Transport>, ctx: Arc<Context>) {
    serve_routes(entry, transport, ctx, Routes::Players)
}

/// Serves one connection of the `--api-listen` listener.
pub(crate) fn serve_api(entry: Registration, transport: Box<dyn Transport>, ctx: Arc<Context>) {
    serve_routes(entry, transport, ctx, Routes::Api)
}

/// Serves one HTTP connection to the end.
fn serve_routes(
    entry: Registration,
    transport: Box<dyn Transport>,
    ctx: Arc<Context>,
    routes: Routes,
) {
    let peer = entry.peer();
    let mut conn = Conn {
        transport,
        peer,
        id: entry.id(),
        ctx,
        routes,
        keep_alive: false,
        bytes_in: 0,
    };
    // Requests follow one another on a kept-alive connection; between them it is
    // pending again (`Registration::idle`), so a stop or an eviction closes it.
    let mut leftover = Vec::new();
    let mut served = 0u64;
    loop {
        let request = conn.read_request(std::mem::take(&mut leftover));
        // A complete request makes the connection established (`--max-connections`).
        match request.map(|r| (entry.establish(), r)) {
            Ok((Ok(()), (req, rest))) => match conn.respond(&req, rest) {
                Some(rest) if !conn.ctx.lifecycle.is_stopping() => {
                    served += 1;
                    leftover = rest;
                    entry.idle();
                    continue;
                }
                _ => {}
            },
            Ok((Err(refusal), _)) => conn.refuse_established(refusal),
            Err(_) if entry.phase() == Phase::Closing || conn.ctx.lifecycle.is_stopping() => {
                debug!("{peer}: closed while pending (eviction or stop)");
                return;
            }
            // A kept-alive connection the client closed or left idle: its end.
            Err(
                HttpError::ClosedEarly { received: 0 } | HttpError::Timeout { received: 0, .. },
            ) if served > 0 => {
                debug!("{peer}: keep-alive connection ended after {served} request(s)");
            }
            Err(e) => conn.refuse(e),
        }
        break;
    }
    conn.transport.linger(LINGER, LINGER_BYTES);
    conn.transport.shutdown();
}

/// How long, and how many bytes, a closing connection may still send us.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// One HTTP connection and what the handlers need of it.
pub(crate) struct Conn {
    /// Over the socket the server's connection table shares (so it can shut it
    /// down): plain TCP or TLS.
    pub transport: Box<dyn Transport>,
    pub peer: SocketAddr,
    /// The connection's number (hooks' `clientid`).
    pub id: u64,
    pub ctx: Arc<Context>,
    routes: Routes,
    /// The response being sent may leave the connection open for another request.
    pub keep_alive: bool,
    /// Bytes received on the connection so far (a `_done` hook's `bytes_in`).
    pub bytes_in: u64,
}

impl Conn {
    /// Reads until a complete header block; returns the request and any bytes
    /// after it. `buf` holds what was read past the previous request, if anything.
    fn read_request(&mut self, mut buf: Vec<u8>) -> Result<(Request, Vec<u8>), HttpError> {
        let timeout = self.ctx.config.setup_timeout;
        let deadline = Instant::now() + timeout;
        buf.reserve(1024);
        let mut chunk = [0u8; 2048];
        loop {
            if let Some((req, n)) = request::parse(&buf).map_err(HttpError::BadRequest)? {
                return Ok((req, buf.split_off(n)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let timed_out = HttpError::Timeout {
                after: timeout,
                received: buf.len(),
            };
            if left.is_zero() {
                return Err(timed_out);
            }
            // Never read past the limit: parse() then reports the oversize.
            let room = (MAX_HEADER_BYTES + 1)
                .saturating_sub(buf.len())
                .min(chunk.len());
            match self.transport.read_within(&mut chunk[..room.max(1)], left) {
                Ok(0) => {
                    return Err(HttpError::ClosedEarly {
                        received: buf.len(),
                    })
                }
                Ok(n) => {
                    self.ctx.counters.add_bytes_in(ConnectionKind::Http, n);
                    self.bytes_in += n as u64;
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out),
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
    }

    /// Answers a complete request that may not be served now.
    fn refuse_established(&mut self, refusal: Refusal) {
        match refusal {
            Refusal::Full { .. } => {
                warn!("{}: refused: {refusal}", self.peer);
                self.send(&response::text(
                    503,
                    &refusal.to_string(),
                    true,
                    &[("Retry-After", "5")],
                ));
            }
            Refusal::Stopping => {
                self.send(&response::text(503, &refusal.to_string(), true, &[]));
            }
            Refusal::Evicted => {}
        }
    }

    /// Answers a request that could not be read, if there is anyone to answer.
    fn refuse(&mut self, e: HttpError) {
        let peer = self.peer;
        match &e {
            HttpError::BadRequest(bad) => {
                warn!("{peer}: {e}");
                let status = match bad {
                    RequestError::HeaderTooLarge { .. } | RequestError::TooManyHeaders { .. } => {
                        431
                    }
                    RequestError::UnsupportedVersion(_) => 505,
                    _ => 400,
                };
                self.send(&response::text(status, &bad.to_string(), true, &[]));
            }
            HttpError::Timeout { .. } => {
                warn!("{peer}: {e}");
                self.send(&response::text(
                    408,
                    "the request was not complete in time",
                    true,
                    &[],
                ));
            }
            // A port scanner or a load balancer's health check: not worth more.
            HttpError::ClosedEarly { received: 0 } => debug!("{peer}: closed without a request"),
            HttpError::ClosedEarly { .. } => warn!("{peer}: {e}"),
            HttpError::Io(_) => debug!("{peer}: {e}"),
        }
    }

    /// Answers one request; `Some(rest)` when the connection stays open for the
    /// next one (`rest`: bytes already read of it).
    fn respond(&mut self, req: &Request, rest: Vec<u8>) -> Option<Vec<u8>> {
        let peer = self.peer;
        let mut route = request::route(req);
        let elsewhere = match self.routes {
            Routes::All => false,
            // The page lives with the API: it reads it.
            Routes::Players => route.is_api() || matches!(route, Route::Page { .. }),
            Routes::Api => route.is_player(),
        };
        if elsewhere {
            route = Route::Error {
                status: 404,
                message: format!("nothing at {} on this listener", req.path),
            };
        }
        debug!("{peer}: {} {}: {route}", req.method, req.path);
        self.keep_alive = wants_keep_alive(req)
            && matches!(
                route,
                Route::Hls { .. }
                    | Route::Page { .. }
                    | Route::Streams { .. }
                    | Route::Stream { .. }
                    | Route::ServerInfo { .. }
                    | Route::Metrics { .. }
                    | Route::Preflight
            );
        if route.is_api() && !self.authorized(req) {
            return None;
        }
        match route {
            Route::Flv { app, key, head } => {
                flv_player::serve_http(self, req, &app, &key, head);
                return None;
            }
            Route::WebSocketFlv {
                app,
                key,
                accept_key,
            } => {
                flv_player::serve_websocket(self, req, &app, &key, &accept_key, rest);
                return None;
            }
            Route::Hls {
                app,
                key,
                session,
                file,
                head,
            } => {
                if !hls::serve(self, req, &app, &key, session.as_deref(), file, head) {
                    return None;
                }
            }
            Route::Page { head } => {
                self.send_body(200, "text/html; charset=utf-8", page::HTML.as_bytes(), head);
            }
            Route::Streams { head } => {
                let doc = api::streams(&self.ctx);
                self.send_json(200, &doc, head);
            }
            Route::Stream { app, key, head } => {
                let (status, doc) = api::stream(&self.ctx, &app, &key);
                self.send_json(status, &doc, head);
            }
            Route::ServerInfo { head } => {
                let doc = api::server(&self.ctx);
                self.send_json(200, &doc, head);
            }
            Route::Recordings { head } => {
                let doc = api::recordings(&self.ctx);
                self.send_json(200, &doc, head);
            }
            Route::Relays { head } => {
                let doc = api::relays(&self.ctx);
                self.send_json(200, &doc, head);
            }
            Route::Metrics { head } => {
                let text = metrics::render(&self.ctx);
                self.send_body(200, metrics::CONTENT_TYPE, text.as_bytes(), head);
            }
            Route::Preflight => {
                // Browsers ask before a cross-origin request with custom headers.
                let allow_headers = req
                    .header("access-control-request-headers")
                    .filter(|h| h.len() <= 512)
                    .unwrap_or("*");
                let head = response::head_with(
                    204,
                    None,
                    Body::None,
                    &[
                        ("Allow", "GET, HEAD, OPTIONS"),
                        ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                        ("Access-Control-Allow-Headers", allow_headers),
                        ("Access-Control-Max-Age", "86400"),
                    ],
                    self.options("no-cache, no-store"),
                );
                self.send(&head);
            }
            Route::Error { status, message } => {
                if status == 404 {
                    debug!("{peer}: {} {}: {message}", req.method, req.path);
                } else {
                    warn!("{peer}: {} {}: {status} {message}", req.method, req.path);
                }
                let extra: &[(&str, &str)] = match status {
                    405 => &[("Allow", "GET, HEAD, OPTIONS")],
                    426 => &[("Sec-WebSocket-Version", "13")],
                    _ => &[],
                };
                let head = req.method == request::Method::Head;
                self.send(&response::text(status, &message, !head, extra));
                return None;
            }
        }
        self.keep_alive.then_some(rest)
    }

    /// Response options for a response with a length: kept alive if allowed.
    pub fn options<'a>(&self, cache_control: &'a str) -> response::Options<'a> {
        response::Options {
            keep_alive: self.keep_alive,
            cache_control,
        }
    }

    /// Whether the request may use the API: no `api_token`, or the right one as
    /// `Authorization: Bearer`. Answers 401 itself when not.
    fn authorized(&mut self, req: &Request) -> bool {
        let Some(token) = self.ctx.admission.policy().api_token.clone() else {
            return true;
        };
        let given = req
            .header("authorization")
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let why = match given {
            Some(given) if crate::admission::token::same_secret(&token, given) => return true,
            Some(_) => "a wrong API token",
            None => "no API token",
        };
        warn!(
            "{}: {} {}: refused by api_token: {why}",
            self.peer, req.method, req.path
        );
        self.ctx.admission.failed(self.peer.ip());
        let head = req.method == request::Method::Head;
        self.send(&response::text(
            401,
            "this needs Authorization: Bearer <api_token>",
            !head,
            &[("WWW-Authenticate", "Bearer")],
        ));
        false
    }

    fn send_json(&mut self, status: u16, doc: &serde_json::Value, head_only: bool) {
        let mut body = doc.to_string();
        body.push('\n');
        self.send_body(status, "application/json", body.as_bytes(), head_only);
    }

    fn send_body(&mut self, status: u16, content_type: &str, body: &[u8], head_only: bool) {
        let options = self.options("no-cache, no-store");
        let mut out = response::head_with(
            status,
            Some(content_type),
            Body::Length(body.len()),
            &[],
            options,
        );
        if !head_only {
            out.extend_from_slice(body);
        }
        self.send(&out);
    }

    /// Writes a whole response; a client that went away is only worth a debug line.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        match self.transport.write_bytes(bytes) {
            Ok(()) => {
                self.ctx
                    .counters
                    .add_bytes_out(ConnectionKind::Http, bytes.len());
                true
            }
            Err(e) => {
                debug!("{}: write failed: {e}", self.peer);
                false
            }
        }
    }
}

/// Whether the client lets the connection stay open after the response:
/// HTTP/1.1 unless it says `close`, HTTP/1.0 only if it says `keep-alive`.
fn wants_keep_alive(req: &Request) -> bool {
    match req.version {
        request::Version::Http11 => !req.header_has_token("connection", "close"),
        request::Version::Http10 => req.header_has_token("connection", "keep-alive"),
    }
}

/// Asks admission whether the client may play `key`; answers 403 itself if not.
pub(crate) fn admit_player(
    conn: &mut Conn,
    req: &Request,
    key: &StreamKey,
    with_body: bool,
) -> Option<Ticket> {
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
        relayed: false,
    });
    match decision {
        Decision::Admit(ticket) => Some(ticket),
        Decision::Refuse(refusal) => {
            conn.send(&response::text(403, &refusal.reason, with_body, &[]));
            None
        }
    }
}

/// Logged at info: the request line of a player, for the connect log line.
fn describe(req: &Request) -> String {
    let agent = req.header("user-agent").unwrap_or("no User-Agent");
    format!("{} {} ({agent})", req.method, req.path)
}
