//! HLS over HTTP: `/{app}/{key}/index.m3u8` (the multivariant playlist, which
//! starts a session), `media.m3u8`, `init-N.mp4`, `seg-N.m4s` and
//! `part-N.I.m4s`, under `s-{token}/` once the session has a token (see
//! `crate::hls::sessions`). Everything is served from the stream's segmenter in
//! memory, from shared `Arc`s, in one vectored write per response.
//!
//! Blocking requests (RFC 8216bis §6.2.5.2): a media playlist asked for with
//! `_HLS_msn` (and `_HLS_part`), and a part or segment that does not exist yet
//! (the preload hint), wait on the stream's condition variable until it exists;
//! past three target durations a playlist wait answers 503 and a part wait 404.
//! A request for a segment more than two ahead of the live edge is refused at
//! once (400 for the playlist, 404 for media).
//!
//! On an edge app (`origin`), a viewer's request for a stream that is not live
//! here pulls it from the origin first, as an RTMP player's play does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::request::{HlsFile, Request};
use super::response::{self, Body};
use super::Conn;
use crate::hls::playlist;
use crate::hls::sessions::SessionRef;
use crate::lifecycle::ConnectionKind;
use crate::registry::{PlayerInfo, PlayerProtocol};
use crate::relay;
use crate::stream_key::StreamKey;

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const MP4: &str = "video/mp4";
/// How long `index.m3u8` waits for a new stream's first part (a keyframe and
/// half a second, normally), and a plain `media.m3u8` for its first segment.
const FIRST_PART_WAIT: Duration = Duration::from_secs(10);

/// Serves one HLS request; false if the connection must close afterwards.
pub(super) fn serve(
    conn: &mut Conn,
    req: &Request,
    app: &str,
    key: &str,
    token: Option<&str>,
    file: HlsFile,
    head: bool,
) -> bool {
    let Some(key) = super::flv_player::stream_key(conn, app, key, !head) else {
        return false;
    };
    let Some(session) = session(conn, req, &key, token, file, head) else {
        return false;
    };
    let mut stream = conn.ctx.hls.stream(&session.key);
    if !head && stream.as_ref().is_none_or(|s| s.read(|s, _| s.is_ended())) {
        if let Err(why) = pull_if_edge(conn, &session.key) {
            info!("{}: {}: {why}", conn.peer, session.key);
            let message = format!("no stream {} is being published: {why}", session.key);
            return reply_error(conn, 404, &message, head);
        }
        stream = conn.ctx.hls.stream(&session.key);
    }
    let Some(stream) = stream else {
        let message = format!("no stream {} is being published", session.key);
        return reply_error(conn, 404, &message, head);
    };
    let now = Instant::now();
    let target = stream.read(|s, _| Duration::from_secs(u64::from(s.target_duration())));
    let hold = 3 * target;
    let reply = match file {
        HlsFile::Multivariant => stream.wait(
            now + FIRST_PART_WAIT,
            |s| s.last_part().is_some(),
            |s, _, _| {
                let media = format!("s-{}/media.m3u8", session.token);
                playlist::multivariant(s, &media).map(|text| Reply::text(PLAYLIST, text))
            },
        ),
        HlsFile::Media => match blocking_reload(req) {
            // Clients that ignore parts need a whole segment: a new stream's
            // first playlist waits for one (or, for a long GOP, for the deadline
            // and goes with the parts).
            Ok(None) => stream.wait(
                now + FIRST_PART_WAIT,
                |s| s.segments().iter().any(|seg| seg.complete),
                |s, text, _| s.last_part().map(|_| Reply::shared(PLAYLIST, text.clone())),
            ),
            Ok(Some((msn, part))) => {
                let too_far = stream.read(|s, _| {
                    let last = s.last_part().map_or(0, |(m, _)| m);
                    msn > last + 2
                });
                if too_far {
                    let message = format!("_HLS_msn={msn} is more than two segments ahead");
                    return reply_error(conn, 400, &message, head);
                }
                let waited = stream.wait(
                    now + hold,
                    |s| match part {
                        Some(part) => s.has_part(msn, part),
                        None => s.has_segment(msn),
                    },
                    |s, text, ok| {
                        (ok || s.is_ended()).then(|| Reply::shared(PLAYLIST, text.clone()))
                    },
                );
                if waited.is_none() {
                    let message = "the requested segment or part did not appear in time";
                    return reply_error(conn, 503, message, head);
                }
                waited
            }
            Err(message) => return reply_error(conn, 400, &message, head),
        },
        HlsFile::Init(id) => stream.read(|s, _| {
            s.init_by_id(id)
                .or_else(|| s.init().filter(|i| i.id == id).cloned())
                .map(|init| Reply::media(vec![Bytes::Init(init.bytes.clone())]))
        }),
        HlsFile::Segment(msn) => stream.wait(
            now + hold,
            |s| s.has_segment(msn) || beyond_edge(s, msn),
            |s, _, _| {
                let seg = s.segment(msn).filter(|seg| seg.complete)?;
                Some(Reply::media(
                    seg.parts.iter().cloned().map(Bytes::Part).collect(),
                ))
            },
        ),
        HlsFile::Part(msn, index) => stream.wait(
            now + hold,
            // A part past the end of a complete segment will never exist.
            |s| {
                s.part(msn, index).is_some()
                    || beyond_edge(s, msn)
                    || s.segment(msn).is_some_and(|seg| seg.complete)
            },
            |s, _, _| {
                s.part(msn, index)
                    .map(|p| Reply::media(vec![Bytes::Part(p)]))
            },
        ),
    };
    match reply {
        Some(reply) => send(conn, &session, reply, head),
        None => {
            let message = format!("{} is not (or no longer) available", req.path);
            reply_error(conn, 404, &message, head)
        }
    }
}

/// On an edge app with HLS, a viewer asking for a stream that is not live here
/// pulls it from the origin and waits for it, as RTMP and HTTP-FLV players do
/// (see `relay::edge_wait`). The session's viewer, registered already, is the
/// audience that keeps the pull going until it expires.
fn pull_if_edge(conn: &Conn, key: &StreamKey) -> Result<(), String> {
    if conn.ctx.admission.policy().app(&key.app).hls().is_none() {
        return Ok(());
    }
    relay::edge_wait(&conn.ctx, key).map(drop)
}

/// Whether waiting for segment `msn` is pointless: ended, or more than two
/// segments past the live edge.
fn beyond_edge(s: &crate::hls::Segmenter, msn: u64) -> bool {
    let edge = s.next_part().map_or(0, |(m, _)| m);
    s.is_ended() || msn > edge + 2
}

/// `_HLS_msn` and `_HLS_part` from the query; `_HLS_part` without `_HLS_msn`
/// is an error (RFC 8216bis §6.2.5.2).
fn blocking_reload(req: &Request) -> Result<Option<(u64, Option<usize>)>, String> {
    let (mut msn, mut part) = (None, None);
    for pair in req.query.as_deref().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || format!("{name}={value:?} is not a number");
        match name {
            "_HLS_msn" => msn = Some(value.parse::<u64>().map_err(|_| bad())?),
            "_HLS_part" => part = Some(value.parse::<usize>().map_err(|_| bad())?),
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part without _HLS_msn".into()),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some((msn, part))),
    }
}

/// Finds or starts the request's session; answers (403, 500) itself when it
/// cannot.
fn session(
    conn: &mut Conn,
    req: &Request,
    key: &StreamKey,
    token: Option<&str>,
    file: HlsFile,
    head: bool,
) -> Option<SessionRef> {
    let hls = conn.ctx.hls.clone();
    let now = Instant::now();
    if let Some(found) = token.and_then(|t| hls.sessions.touch(t, now)) {
        return Some(found);
    }
    let agent = req.header("user-agent").unwrap_or("");
    // The multivariant playlist always starts a session: it hands out a token.
    if file != HlsFile::Multivariant {
        if let Some(found) = hls.sessions.touch_client(conn.peer.ip(), agent, key, now) {
            return Some(found);
        }
    }
    let ticket = super::admit_player(conn, req, key, !head)?;
    let played = ticket.key().clone();
    let player = PlayerInfo::new(conn.peer, PlayerProtocol::Hls);
    let bytes_out = player.bytes_out.clone();
    let viewer = conn.ctx.registry.watch(&played, player);
    match hls
        .sessions
        .start(&played, key, conn.peer, agent, ticket, viewer, bytes_out)
    {
        Ok(session) => {
            info!(
                "{}: play {played} over hls ({})",
                conn.peer,
                super::describe(req)
            );
            Some(session)
        }
        Err(e) => {
            warn!("{}: cannot start an HLS session: {e}", conn.peer);
            conn.send(&response::text(500, "cannot start a session", !head, &[]));
            None
        }
    }
}

/// Shared bytes a response is made of.
enum Bytes {
    Text(String),
    Shared(Arc<String>),
    Init(Arc<Vec<u8>>),
    Part(Arc<crate::hls::Part>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Text(t) => t.as_bytes(),
            Bytes::Shared(t) => t.as_bytes(),
            Bytes::Init(b) => b,
            Bytes::Part(p) => &p.bytes,
        }
    }
}

struct Reply {
    content_type: &'static str,
    body: Vec<Bytes>,
}

impl Reply {
    fn text(content_type: &'static str, text: String) -> Reply {
        Reply {
            content_type,
            body: vec![Bytes::Text(text)],
        }
    }

    fn shared(content_type: &'static str, text: Arc<String>) -> Reply {
        Reply {
            content_type,
            body: vec![Bytes::Shared(text)],
        }
    }

    fn media(body: Vec<Bytes>) -> Reply {
        Reply {
            content_type: MP4,
            body,
        }
    }
}

/// Writes the response in one vectored write, counting the bytes to the session.
fn send(conn: &mut Conn, session: &SessionRef, reply: Reply, head_only: bool) -> bool {
    let len: usize = reply.body.iter().map(|b| b.as_slice().len()).sum();
    let head = response::head_with(
        200,
        Some(reply.content_type),
        Body::Length(len),
        &[],
        conn.options("no-cache"),
    );
    let mut parts: Vec<&[u8]> = vec![&head];
    if !head_only {
        parts.extend(reply.body.iter().map(Bytes::as_slice));
    }
    let sent: usize = parts.iter().map(|p| p.len()).sum();
    match conn.transport.write_all(&mut parts.into_iter()) {
        Ok(()) => {
            conn.ctx.counters.add_bytes_out(ConnectionKind::Http, sent);
            session.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
            conn.keep_alive
        }
        Err(e) => {
            log::debug!("{}: HLS write failed: {e}", conn.peer);
            false
        }
    }
}

/// An error answer that keeps a kept-alive connection open (players retry).
fn reply_error(conn: &mut Conn, status: u16, message: &str, head: bool) -> bool {
    log::debug!("{}: HLS {status}: {message}", conn.peer);
    let extra: &[(&str, &str)] = if status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    let out = response::text_with(status, message, !head, extra, conn.options("no-cache"));
    conn.send(&out) && conn.keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Result<Option<(u64, Option<usize>)>, String> {
        let req = super::super::request::parse(
            format!("GET /a/b/media.m3u8?{q} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .unwrap()
        .unwrap()
        .0;
        blocking_reload(&req)
    }

    #[test]
    fn blocking_reload_directives() {
        assert_eq!(query("x=1"), Ok(None));
        assert_eq!(query("_HLS_msn=12"), Ok(Some((12, None))));
        assert_eq!(query("_HLS_msn=12&_HLS_part=3"), Ok(Some((12, Some(3)))));
        assert!(query("_HLS_part=3").is_err());
        assert!(query("_HLS_msn=-1").is_err());
        assert!(query("_HLS_msn=1&_HLS_part=x").is_err());
    }
}
