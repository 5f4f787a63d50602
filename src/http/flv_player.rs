//! HTTP-FLV and WebSocket-FLV players. The connection's thread subscribes to the
//! stream (only if it is live: an unknown or idle key is a 404 at once, so scripts
//! and players learn it immediately and retry on their own schedule), then runs
//! the player engine (`crate::player`) like an RTMP player: the same fast-start
//! burst, bounded queue and keyframe skipping, the same `PlayerFilter` (with
//! timestamps starting at 0 like an FLV file), merge window and doorbell, frames
//! written from the shared payloads. What is HTTP's own is the framing: the
//! response head, then FLV tags, each batch of them one HTTP chunk for HTTP/1.1
//! clients, plain bytes until the connection closes for HTTP/1.0 ones, one binary
//! WebSocket message over WebSocket; and what the client sends: nothing that
//! matters over HTTP (read and discarded; a 0-byte read means it left), control
//! frames over WebSocket (a ping is answered, a close is answered and ends the
//! play) whose answers go out between FLV messages.
//!
//! When the publisher stops, the response ends (last chunk, or a WebSocket close
//! frame): FLV players cannot follow a new publisher's codec setup reliably, and
//! ending lets ffmpeg/ffplay exit and browser players reconnect. The server's stop
//! ends it the same way, saying so.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::request::{Request, Version};
use super::response::{self, Body};
use super::websocket::{self, ClientFrames};
use super::Conn;
use crate::admission::Ticket;
use crate::connections::Context;
use crate::lifecycle::ConnectionKind;
use crate::media::flv::FlvHeader;
use crate::media::player::PlayerFilter;
use crate::net::Transport;
use crate::player::flv::{FlvEnd, FlvFraming};
use crate::player::{self, Batch, Feed, Player, Sink};
use crate::registry::{Overflow, PlayerInfo, PlayerItem, PlayerProtocol, Subscription};
use crate::relay::{self, Interest};
use crate::stream_key::{LogName, StreamKey};

/// After ending the stream, how long (and how many bytes) the client gets to close
/// its side, so it reads everything.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// How the FLV bytes are wrapped on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Envelope {
    Chunked,
    UntilClose,
    WebSocket,
}

/// Why a player's stream ended.
#[derive(Debug)]
enum End {
    PublisherStopped,
    ServerStopping,
    Client {
        reason: String,
        fault: bool,
    },
    /// The client accepted nothing for `--play-timeout`.
    Stalled(Duration),
    Io(io::Error),
    Dropped(Arc<Overflow>),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::PublisherStopped => f.write_str("the publisher stopped"),
            End::ServerStopping => f.write_str("the server is stopping"),
            End::Client { reason, .. } => f.write_str(reason),
            End::Stalled(t) => write!(
                f,
                "client accepted no data for {:.1} s (--play-timeout)",
                t.as_secs_f64()
            ),
            End::Io(e) => write!(f, "socket error: {e}"),
            End::Dropped(why) => write!(f, "dropped: {why}"),
        }
    }
}

impl From<FlvEnd> for End {
    fn from(end: FlvEnd) -> End {
        match end {
            FlvEnd::PublisherStopped => End::PublisherStopped,
            FlvEnd::ServerStopping => End::ServerStopping,
            FlvEnd::Dropped(why) => End::Dropped(why),
        }
    }
}

/// `GET|HEAD /{app}/{key}.flv` without an upgrade.
pub(crate) fn serve_http(conn: &mut Conn, req: &Request, app: &str, key: &str, head: bool) {
    let envelope = match req.version {
        Version::Http11 => Envelope::Chunked,
        Version::Http10 => Envelope::UntilClose,
    };
    let body = match envelope {
        Envelope::Chunked => Body::Chunked,
        _ => Body::UntilClose,
    };
    let Some(key) = stream_key(conn, app, key, !head) else {
        return;
    };
    let Some(ticket) = super::admit_player(conn, req, &key, !head) else {
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
    let Some(_pulled) = pull_if_edge(conn, &key, true) else {
        return;
    };
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
    play(conn, started, envelope, head, Vec::new());
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
    let Some(ticket) = super::admit_player(conn, req, &key, true) else {
        return;
    };
    let key = ticket.key().clone();
    let Some(_pulled) = pull_if_edge(conn, &key, true) else {
        return;
    };
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
    play(conn, started, Envelope::WebSocket, head, rest);
}

/// On an edge app, pulls a stream that is not here from the origin and waits for
/// it (see `relay::edge_wait`), so HTTP players get edge streams as RTMP players
/// do. `None` (a 404 sent): it did not come. `Some(interest)`: go on, holding
/// `interest` until subscribed.
fn pull_if_edge(conn: &mut Conn, key: &StreamKey, with_body: bool) -> Option<Option<Interest>> {
    match relay::edge_wait(&conn.ctx, key) {
        Ok(interest) => Some(interest),
        Err(why) => {
            info!("{}: {key}: {why}", conn.peer);
            conn.send(&response::text(
                404,
                &format!("{}: {why}", not_live(key)),
                with_body,
                &[],
            ));
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
/// The stream an HTTP path names; answers 400 itself when the name is bad.
pub(super) fn stream_key(
    conn: &mut Conn,
    app: &str,
    key: &str,
    with_body: bool,
) -> Option<StreamKey> {
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

/// Streams until the publisher stops, the client leaves or stalls, or the server
/// stops; then logs.
fn play(conn: &mut Conn, playing: Playing, envelope: Envelope, head: Vec<u8>, ws_rest: Vec<u8>) {
    let Playing {
        key,
        sub,
        player,
        ticket,
    } = playing;
    let started = Instant::now();
    let peer = conn.peer;
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
    let mut sink = FlvSink {
        feed: Feed::new(0, sub, PlayerFilter::zero_based()),
        framing: FlvFraming::new(peer),
        batch: Batch::new(),
        envelope,
        client_frames: None,
        ctx: &conn.ctx,
        bytes_out: player.bytes_out.clone(),
        bytes_in: conn.bytes_in,
    };
    sink.batch.pre().extend_from_slice(&head);
    sink.framing.header(&mut sink.batch, flv_header);
    let mut engine = Player::new(conn.ctx.player_config());
    let transport: &mut dyn Transport = &mut *conn.transport;
    let end = match sink.start_websocket(envelope, ws_rest) {
        Err(end) => end,
        Ok(()) => loop {
            if let Err(end) = engine.round(transport, &mut sink) {
                break end;
            }
        },
    };
    let end = sink.finish(&mut engine, transport, end);
    let summary = format!(
        "{peer}: {} play of {key} closed after {:.1} s, {} bytes out, {} frames dropped: {end}",
        player.protocol,
        started.elapsed().as_secs_f64(),
        player.bytes_out.load(Ordering::Relaxed),
        sink.feed.subscription.dropped_frames(),
    );
    match end {
        End::Stalled(_) | End::Client { fault: true, .. } => warn!("{summary}"),
        _ => info!("{summary}"),
    }
    ticket.finish(sink.bytes_in, player.bytes_out.load(Ordering::Relaxed));
}

/// Puts a batch's tags in their envelope: one HTTP chunk, or one binary WebSocket
/// message (an empty body gets none: a zero-length chunk would end the response).
fn wrap(envelope: Envelope, batch: &mut Batch) {
    let len = batch.body_len();
    if len == 0 {
        return;
    }
    match envelope {
        Envelope::Chunked => {
            let prefix = response::chunk_prefix(len);
            batch.pre().extend_from_slice(prefix.as_bytes());
            batch.post().extend_from_slice(b"\r\n");
        }
        Envelope::WebSocket => websocket::binary_header(len, batch.pre()),
        Envelope::UntilClose => {}
    }
}

/// An HTTP-FLV or WebSocket-FLV player, as the engine runs it.
struct FlvSink<'a> {
    feed: Feed,
    framing: FlvFraming,
    batch: Batch,
    envelope: Envelope,
    /// What a WebSocket client sends (pings, a close); `None` over plain HTTP.
    client_frames: Option<ClientFrames>,
    ctx: &'a Context,
    bytes_out: Arc<AtomicU64>,
    /// The connection's bytes received: its requests, then the client's frames.
    bytes_in: u64,
}

impl FlvSink<'_> {
    /// Starts reading a WebSocket client's frames with what came right behind its
    /// upgrade request.
    fn start_websocket(&mut self, envelope: Envelope, rest: Vec<u8>) -> Result<(), End> {
        if envelope == Envelope::WebSocket {
            let frames = self.client_frames.insert(ClientFrames::new(rest));
            frames
                .read(&[], self.batch.pre())
                .map_err(|closed| End::Client {
                    reason: closed.reason,
                    fault: closed.fault,
                })?;
        }
        Ok(())
    }

    /// Ends the response properly where the connection still allows it: what was
    /// gathered, then the last chunk or a close frame saying why. At a stop the
    /// queue ends with the registry's `PublishStop`, after frames that go first.
    fn finish(&mut self, engine: &mut Player, transport: &mut dyn Transport, end: End) -> End {
        let end = match end {
            End::ServerStopping => match engine.drain(transport, self) {
                Ok(()) => End::ServerStopping,
                Err(end) => end,
            },
            end => end,
        };
        match &end {
            End::Stalled(_) | End::Io(_) => return end,
            End::Client { .. } => {
                // A WebSocket close reply may be waiting; the rest is moot.
                self.batch.discard_body();
                let _ = engine.write(transport, self);
                return end;
            }
            End::PublisherStopped | End::ServerStopping | End::Dropped(_) => {}
        }
        if engine.write(transport, self).is_err() {
            return end;
        }
        let last = match self.envelope {
            Envelope::Chunked => response::LAST_CHUNK.to_vec(),
            Envelope::WebSocket => websocket::close_frame(&end.to_string()),
            Envelope::UntilClose => Vec::new(),
        };
        self.batch.post().extend_from_slice(&last);
        if engine.write(transport, self).is_ok() {
            transport.linger(LINGER, LINGER_BYTES);
        }
        end
    }
}

impl Sink for FlvSink<'_> {
    type End = End;

    fn feeds(&self) -> &[Feed] {
        std::slice::from_ref(&self.feed)
    }

    fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    fn item(&mut self, _feed: usize, item: PlayerItem) -> Result<(), End> {
        self.framing
            .play_item(&mut self.batch, &mut self.feed, item)
            .map_err(End::from)
    }

    fn input(&mut self, bytes: &[u8]) -> Result<(), End> {
        match &mut self.client_frames {
            // An HTTP player has nothing more to say.
            None => Ok(()),
            Some(frames) => frames
                .read(bytes, self.batch.pre())
                .map_err(|closed| End::Client {
                    reason: closed.reason,
                    fault: closed.fault,
                }),
        }
    }

    fn end(&self, end: player::End) -> End {
        match end {
            player::End::Stopping => End::ServerStopping,
            player::End::PeerClosed => End::Client {
                reason: "client closed the connection".into(),
                fault: false,
            },
            player::End::Stalled(t) => End::Stalled(t),
            player::End::Io(e) => End::Io(e),
        }
    }

    fn seal(&mut self) {
        wrap(self.envelope, &mut self.batch);
    }

    fn sent(&mut self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.ctx.counters.add_bytes_out(ConnectionKind::Http, bytes);
    }

    fn received(&mut self, bytes: usize) {
        self.bytes_in += bytes as u64;
        self.ctx.counters.add_bytes_in(ConnectionKind::Http, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::{FlvTag, TAG_AUDIO, TAG_VIDEO};
    use crate::media::frame::{Frame, FrameKind};
    use crate::net::transport::testing::pair;
    use crate::rng::Rng;
    use std::io::{Cursor, Read};
    use std::thread;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::FrameHeader;

    /// The body inside the envelopes, as a client takes it apart: HTTP chunks up
    /// to the last one, or binary WebSocket messages up to the close frame.
    fn unwrap(envelope: Envelope, mut wire: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        match envelope {
            Envelope::UntilClose => wire.to_vec(),
            Envelope::Chunked => loop {
                let eol = wire.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&wire[..eol]).unwrap(), 16).unwrap();
                assert!(
                    size > 0 || &wire[eol..] == b"\r\n\r\n",
                    "last chunk ends it"
                );
                if size == 0 {
                    return body;
                }
                let data = &wire[eol + 2..];
                body.extend_from_slice(&data[..size]);
                assert_eq!(&data[size..size + 2], b"\r\n");
                wire = &data[size + 2..];
            },
            Envelope::WebSocket => loop {
                let mut cursor = Cursor::new(wire);
                let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
                let start = cursor.position() as usize;
                let payload = &wire[start..start + len as usize];
                assert!(header.is_final && header.mask.is_none());
                match header.opcode {
                    OpCode::Data(Data::Binary) => body.extend_from_slice(payload),
                    OpCode::Control(_) => {
                        assert_eq!(
                            &wire[..start + payload.len()],
                            websocket::close_frame("end")
                        );
                        assert_eq!(start + payload.len(), wire.len(), "nothing after the close");
                        return body;
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
                wire = &wire[start + payload.len()..];
            },
        }
    }

    /// Tags of random sizes, sealed and written at random points over a real
    /// socket in each envelope, must come back as the same tags, in order.
    #[test]
    fn random_batches_unwrap_to_the_tags_in_every_envelope() {
        for seed in 1..10u64 {
            let envelope =
                [Envelope::Chunked, Envelope::WebSocket, Envelope::UntilClose][seed as usize % 3];
            let mut rng = Rng::new(seed);
            let (mut server, mut client) = pair(Duration::from_secs(5));
            let reader = thread::spawn(move || {
                let mut got = Vec::new();
                client.read_to_end(&mut got).unwrap();
                got
            });
            let mut batch = Batch::new();
            let header = FlvHeader {
                has_audio: true,
                has_video: true,
            };
            let framing = FlvFraming::new(server.peer());
            framing.header(&mut batch, header);
            let mut want = Vec::new();
            let mut write = |batch: &mut Batch| {
                wrap(envelope, batch);
                batch.write(&mut server).unwrap();
            };
            for i in 0..300u32 {
                if rng.below(8) == 0 {
                    write(&mut batch);
                }
                let kind = [FrameKind::Audio, FrameKind::Video][rng.below(2)];
                let len = [0usize, 1, 11, 4096, 70_000][rng.below(5)];
                let payload: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
                let ts = i * 40 + rng.below(40) as u32;
                let frame = Arc::new(Frame::media(kind, ts, payload.clone()));
                framing.tag(&mut batch, frame, ts);
                want.push(FlvTag {
                    tag_type: [TAG_AUDIO, TAG_VIDEO][(kind == FrameKind::Video) as usize],
                    timestamp: ts,
                    data: payload,
                });
            }
            write(&mut batch);
            // Nothing gathered: no empty chunk (it would end the response early).
            write(&mut batch);
            let last = match envelope {
                Envelope::Chunked => response::LAST_CHUNK.to_vec(),
                Envelope::WebSocket => websocket::close_frame("end"),
                Envelope::UntilClose => Vec::new(),
            };
            batch.post().extend_from_slice(&last);
            write(&mut batch);
            server.shutdown_write().unwrap();
            let wire = reader.join().unwrap();
            let (got_header, tags) = crate::media::flv::parse(&unwrap(envelope, &wire))
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(got_header, header);
            assert_eq!(tags, want, "seed {seed} {envelope:?}");
        }
    }
}
