//! HLS viewers as sessions. HTTP requests carry no connection a viewer could be
//! counted by, so a session is named by a token: the multivariant playlist
//! (`index.m3u8`) sends the viewer to `s-TOKEN/media.m3u8`, and every URI in the
//! media playlist is relative, so all of the viewer's later requests carry the
//! token in their path. A client that asks for `media.m3u8` (or a segment)
//! without a token is matched by its address and User-Agent instead.
//!
//! A session is admitted once, at its first request (IP rules, secret or signed
//! URL, `on_play`); afterwards its token is its authority for that one stream.
//! It counts as an `hls` player in the stats while it lasts, and ends when it has
//! made no request for [`IDLE`]: then `on_play_done` is called with the bytes it
//! was sent. Tokens are 128 random bits from the kernel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;
use parking_lot::Mutex;

use crate::admission::Ticket;
use crate::registry::Viewer;
use crate::stream_key::StreamKey;

/// A session with no request for this long has ended.
pub const IDLE: Duration = Duration::from_secs(30);

/// What one session's requests share.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub token: String,
    /// The stream it plays (admission may have renamed the one asked for).
    pub key: StreamKey,
    /// Bytes sent to the session so far (its stats and `on_play_done`).
    pub bytes_out: Arc<AtomicU64>,
}

struct Session {
    key: StreamKey,
    peer: SocketAddr,
    started: Instant,
    last_seen: Instant,
    bytes_out: Arc<AtomicU64>,
    ticket: Option<Ticket>,
    _viewer: Viewer,
}

impl Session {
    fn reference(&self, token: &str) -> SessionRef {
        SessionRef {
            token: token.to_owned(),
            key: self.key.clone(),
            bytes_out: self.bytes_out.clone(),
        }
    }

    fn end(mut self, why: &str) {
        let bytes = self.bytes_out.load(Ordering::Relaxed);
        info!(
            "{}: hls play of {} closed after {:.1} s, {bytes} bytes out: {why}",
            self.peer,
            self.key,
            self.started.elapsed().as_secs_f64()
        );
        if let Some(ticket) = self.ticket.take() {
            ticket.finish(0, bytes);
        }
    }
}

#[derive(Default)]
struct Table {
    by_token: HashMap<String, Session>,
    /// (address, User-Agent, stream) → token, for requests without one.
    by_client: HashMap<(IpAddr, String, StreamKey), String>,
}

#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
}

impl Sessions {
    /// The session `token` names, if it is live; counts as activity. The token is
    /// the authority: the session plays its own stream whatever the path says.
    pub fn touch(&self, token: &str, now: Instant) -> Option<SessionRef> {
        let mut table = self.table.lock();
        let session = table.by_token.get_mut(token)?;
        session.last_seen = now;
        Some(session.reference(token))
    }

    /// The session of a client that sends no token, by address and User-Agent.
    pub fn touch_client(
        &self,
        ip: IpAddr,
        agent: &str,
        key: &StreamKey,
        now: Instant,
    ) -> Option<SessionRef> {
        let mut table = self.table.lock();
        let token = table
            .by_client
            .get(&(ip, agent.to_owned(), key.clone()))?
            .clone();
        let session = table.by_token.get_mut(&token)?;
        session.last_seen = now;
        Some(session.reference(&token))
    }

    /// Starts a session for an admitted viewer of `key` (asked for as `asked`,
    /// which a tokenless client keeps asking for); `bytes_out` is the counter
    /// its stats entry reads.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        key: &StreamKey,
        asked: &StreamKey,
        peer: SocketAddr,
        agent: &str,
        ticket: Ticket,
        viewer: Viewer,
        bytes_out: Arc<AtomicU64>,
    ) -> io::Result<SessionRef> {
        let token = new_token()?;
        let now = Instant::now();
        let session = Session {
            key: key.clone(),
            peer,
            started: now,
            last_seen: now,
            bytes_out,
            ticket: Some(ticket),
            _viewer: viewer,
        };
        let reference = session.reference(&token);
        let mut table = self.table.lock();
        table
            .by_client
            .insert((peer.ip(), agent.to_owned(), asked.clone()), token.clone());
        table.by_token.insert(token, session);
        Ok(reference)
    }

    /// Ends the sessions idle since before `now - IDLE`.
    pub fn expire(&self, now: Instant) {
        self.end_where(
            |s| now.saturating_duration_since(s.last_seen) >= IDLE,
            "idle for 30 s",
        );
    }

    /// Ends every session (the server is stopping).
    pub fn end_all(&self) {
        self.end_where(|_| true, "the server is stopping");
    }

    fn end_where(&self, ended: impl Fn(&Session) -> bool, why: &str) {
        let gone: Vec<Session> = {
            let mut table = self.table.lock();
            let tokens: Vec<String> = table
                .by_token
                .iter()
                .filter(|(_, s)| ended(s))
                .map(|(t, _)| t.clone())
                .collect();
            let mut gone = Vec::with_capacity(tokens.len());
            for token in tokens {
                if let Some(s) = table.by_token.remove(&token) {
                    table
                        .by_client
                        .retain(|client, t| !(t == &token && client.0 == s.peer.ip()));
                    gone.push(s);
                }
            }
            gone
        };
        // Outside the lock: ending sends the done hook and logs.
        for s in gone {
            s.end(why);
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.table.lock().by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 128 bits from the kernel's generator, in hex: unguessable, so a token is a
/// capability for its stream.
fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
