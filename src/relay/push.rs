//! Push: one local publish sent on to a destination, on a thread of its own.
//!
//! The worker subscribes to the stream as a lossless subscriber bounded by
//! `push_buffer` (the registry's, in time and bytes), connects and publishes like
//! an encoder (connect with tcUrl, releaseStream, FCPublish, createStream,
//! publish), then hands the connection to the player engine as a sink of its own
//! (`PushSink`): RTMP chunks from the shared frames, `@setDataFrame onMetaData`
//! and sequence headers first, the merge window and doorbell of every player, and
//! the client session reading what the destination sends (acknowledgements,
//! pings, Set Chunk Size, error statuses). A push costs what a player costs. A
//! failure (refused, closed, stalled, too far behind) drops the subscription and
//! the connection, waits the backoff, and starts over; the stream then resumes at
//! a keyframe after the last frame sent, with the publisher's timestamps, so the
//! destination's timeline carries on. The push ends when the publisher does (its
//! subscription ends with `PublishStop`, and the [`Pushes`] guard of the publish
//! wakes a worker that is backing off).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::backoff::Backoff;
use super::status::{Direction, RelayState, RelayStatus};
use super::{client_options, RELAY_TIMEOUT};
use crate::amf::amf0::Amf0Value;
use crate::client::{Client, ClientError, ClientEvent, RtmpUrl};
use crate::connections::Context;
use crate::media::frame::{Frame, FrameKind, FrameRole};
use crate::media::player::PlayerFilter;
use crate::net::Transport;
use crate::player::rtmp::RtmpFraming;
use crate::player::{Batch, End, Feed, Player, PlayerConfig, Sink};
use crate::registry::{Bound, PlayerItem, PublishSession, Publisher, Subscription};
use crate::rtmp::client_session::ClientSession;
use crate::rtmp::message as msg;

/// The pushes of one publish; dropping it (the publisher left) ends them: a
/// connected worker sends what its queue still holds and unpublishes, one that
/// is backing off stops waiting.
pub struct Pushes {
    stop: Arc<AtomicBool>,
    ctx: Arc<Context>,
    /// Destinations that will not run (a URL that cannot be made for the
    /// stream), shown in the API meanwhile.
    disabled: Vec<Arc<RelayStatus>>,
}

impl Drop for Pushes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ctx.relay.ring();
        for status in &self.disabled {
            self.ctx.relay.remove_status(status);
        }
    }
}

/// Starts the pushes the policy in force gives `publisher`'s stream, if any.
pub fn start_pushes(ctx: &Arc<Context>, publisher: &Publisher) -> Option<Pushes> {
    let key = publisher.key();
    let app = ctx.admission.policy().app(&key.app);
    let entries: Vec<_> = app
        .pushes()
        .iter()
        .filter(|e| e.applies_to(&key.name))
        .collect();
    if entries.is_empty() {
        return None;
    }
    let mut pushes = Pushes {
        stop: Arc::new(AtomicBool::new(false)),
        ctx: ctx.clone(),
        disabled: Vec::new(),
    };
    let (min, max) = app.backoff();
    let mut subscribed = Vec::new();
    for entry in entries {
        let shown = entry.url.redacted();
        let status = ctx.relay.add_status(Direction::Push, key, shown.clone());
        let url = match entry.url.resolve(key) {
            Ok(url) => url,
            Err(why) => {
                warn!("push {key} to {shown}: {why}; not pushed");
                status.failed(why, RelayState::Disabled);
                pushes.disabled.push(status);
                continue;
            }
        };
        let worker = Worker {
            ctx: ctx.clone(),
            session: publisher.session(),
            url,
            tls_verify: entry.tls_verify.unwrap_or(true),
            status,
            stop: pushes.stop.clone(),
            buffer: app.push_buffer(),
            backoff: Backoff::new(min, max),
            resume: Resume::default(),
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        subscribed.push(rx);
        ctx.relay
            .spawn(format!("push {key} {}", worker.url.host), move || {
                worker.run(tx)
            });
    }
    // Each worker subscribes on its own thread (its doorbell is that thread's),
    // and the publisher's first frame waits for them: a destination misses
    // nothing of the stream's start however late its thread gets going.
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    for rx in subscribed {
        let _ = rx.recv_deadline(deadline);
    }
    Some(pushes)
}

/// The longest a new publish waits for its pushes to subscribe.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

struct Worker {
    ctx: Arc<Context>,
    session: PublishSession,
    url: RtmpUrl,
    /// Check an `rtmps://` destination's certificate (`tls_verify`, default true).
    tls_verify: bool,
    status: Arc<RelayStatus>,
    stop: Arc<AtomicBool>,
    buffer: Duration,
    backoff: Backoff,
    resume: Resume,
}

/// Why a connection to the destination ended.
enum Ended {
    /// The publisher stopped (or the server): the push is over.
    Finished,
    /// Failed, after having been live for this long (if it got there).
    Failed {
        why: String,
        up_for: Option<Duration>,
    },
}

impl Worker {
    /// Pushes until the publish ends; `subscribed` hears of the first
    /// subscription (see `start_pushes`).
    fn run(mut self, subscribed: crossbeam_channel::Sender<()>) {
        let key = self.session.key().clone();
        let shown = self.status.url.clone();
        let mut first = Some(subscribed);
        loop {
            if self.over() {
                break;
            }
            self.status.set(RelayState::Connecting);
            // Subscribed first, so what is published while the connection is
            // being set up waits in the queue (within the bound) instead of
            // being lost: a destination gets the stream from its start.
            let sub = self.subscribe();
            if let Some(first) = first.take() {
                let _ = first.send(());
            }
            let Some(sub) = sub else {
                break;
            };
            let (why, up_for) = match self.connect() {
                Ok(client) => match self.stream(client, sub) {
                    Ended::Finished => break,
                    Ended::Failed { why, up_for } => (why, up_for),
                },
                Err(e) => (e.to_string(), None),
            };
            if self.over() {
                break;
            }
            let wait = self.backoff.failed(up_for);
            warn!(
                "push {key} to {shown}: {why}; retrying in {:.1} s",
                wait.as_secs_f64()
            );
            self.status.backing_off(why, wait);
            if !self.ctx.relay.sleep(wait, &self.stop) {
                break;
            }
            self.status.retrying();
            self.resume.reconnected();
        }
        self.ctx.relay.remove_status(&self.status);
    }

    /// The publisher has gone (or the server stops): no more connections.
    fn over(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.ctx.relay.is_stopping() || !self.session.is_on()
    }

    /// Dials, connects and publishes.
    fn connect(&self) -> Result<Client, ClientError> {
        let opts = client_options(RELAY_TIMEOUT, self.tls_verify);
        let mut client = Client::connect(&self.url, &opts)?;
        client.publish(&self.url.name)?;
        Ok(client)
    }

    /// A lossless subscription to the stream, bounded by `push_buffer`; `None`
    /// once the publisher left.
    fn subscribe(&self) -> Option<Subscription> {
        // The registry names it by label; the address is only a placeholder.
        let peer = SocketAddr::from(([0, 0, 0, 0], self.url.port));
        let label = format!("push {} to {}", self.session.key(), self.status.url);
        let bound = Bound {
            max_bytes: max_bytes(self.buffer),
            max_lag: Some(self.buffer),
        };
        self.session.subscribe_lossless(peer, label, bound)
    }

    /// Sends the stream until the publisher stops or the destination fails: the
    /// player engine runs the connection as a sink of its own (RTMP chunks from
    /// the shared frames, the merge window, the doorbell), with the client's
    /// session reading what the destination sends.
    fn stream(&mut self, client: Client, sub: Subscription) -> Ended {
        let key = self.session.key().clone();
        let live = Instant::now();
        let failed = |why: String| Ended::Failed {
            why,
            up_for: Some(live.elapsed()),
        };
        let mut parts = client.into_parts();
        if let Some(why) = refusal(parts.events.drain(..)) {
            return failed(why);
        }
        let mut transport = parts.transport;
        let transport: &mut dyn Transport = &mut *transport;
        let peer = transport.peer();
        let mut framing = RtmpFraming::new(peer);
        // The client announced its chunk size with `connect`.
        framing.assume_chunk_size(parts.chunk_size);
        self.status.set(RelayState::Live);
        info!("push {key} to {}: live ({peer})", self.status.url);
        let mut sink = PushSink {
            feeds: vec![Feed::new(parts.stream_id, sub, PlayerFilter::new())],
            batch: Batch::new(),
            framing,
            session: parts.session,
            resume: &mut self.resume,
            bytes: &self.status.bytes,
            state: State::Playing,
        };
        // Paced like every player (merge window, tick groups): a push is no player
        // (the audience counts none), but it follows the window the audience sets;
        // stalled writes give up after the relay's own limit.
        let mut player = Player::new(PlayerConfig {
            stall: RELAY_TIMEOUT,
            ..self.ctx.player_config()
        });
        let ended = match player.run(transport, &mut sink) {
            // The server stops: what is queued goes out first (the registry ended
            // every stream, so it ends with `PublishStop`).
            Err(PushEnd::Stopping) => player.drain(transport, &mut sink),
            other => other,
        };
        match (ended, std::mem::replace(&mut sink.state, State::Playing)) {
            (Ok(()), State::Finished) => {
                info!("push {key} to {}: the publisher stopped", self.status.url);
                sink.unpublish(transport, &self.url.name);
                Ended::Finished
            }
            (Ok(()), State::Failed(why)) | (Err(PushEnd::Failed(why)), _) => failed(why),
            (Ok(()), State::Playing) | (Err(PushEnd::Stopping), _) => {
                sink.unpublish(transport, &self.url.name);
                Ended::Finished
            }
        }
    }
}

/// Where a connected push is.
enum State {
    Playing,
    /// The publisher stopped: unpublish and end.
    Finished,
    /// The destination failed or fell behind.
    Failed(String),
}

/// Why the engine stopped a push.
enum PushEnd {
    /// The server is stopping: drain and unpublish.
    Stopping,
    Failed(String),
}

/// A push as a subscriber of the player engine: its one feed (the lossless
/// subscription), RTMP framing on the destination's stream id, and the client
/// session for what the destination sends (acknowledgements and pongs go out
/// in the same writes; an error status ends the push).
struct PushSink<'a> {
    feeds: Vec<Feed>,
    batch: Batch,
    framing: RtmpFraming,
    session: ClientSession,
    resume: &'a mut Resume,
    bytes: &'a AtomicU64,
    state: State,
}

impl PushSink<'_> {
    fn frame(&mut self, frame: Arc<Frame>) {
        let stream_id = self.feeds[0].id;
        let ts = frame.timestamp;
        let frame = match frame.role {
            // Encoders send metadata as `@setDataFrame onMetaData ...`.
            FrameRole::Metadata => Arc::new(Frame::data(ts, msg::set_data_frame(&frame.payload))),
            _ => frame,
        };
        self.framing.frame(&mut self.batch, frame, ts, stream_id);
    }

    /// Moves what the session has to send (acknowledgements, pongs, commands)
    /// into the batch.
    fn take_session_output(&mut self) {
        self.batch.own().extend_from_slice(self.session.output());
        self.session.clear_output();
    }

    /// Ends the publish politely (FCUnpublish, deleteStream), then closes: the
    /// destination ends the stream for its players at once instead of waiting
    /// for a timeout.
    fn unpublish(&mut self, transport: &mut dyn Transport, name: &str) {
        let stream_id = self.feeds[0].id;
        let _ =
            self.session
                .send_command(0, "FCUnpublish", 0.0, Amf0Value::Null, vec![name.into()]);
        let id = f64::from(stream_id).into();
        let _ = self
            .session
            .send_command(0, "deleteStream", 0.0, Amf0Value::Null, vec![id]);
        let _ = transport.write_bytes(self.session.output());
        self.session.clear_output();
        transport.linger(CLOSE_LINGER, usize::MAX);
    }
}

impl Sink for PushSink<'_> {
    type End = PushEnd;

    fn feeds(&self) -> &[Feed] {
        &self.feeds
    }

    fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    fn item(&mut self, _feed: usize, item: PlayerItem) -> Result<(), PushEnd> {
        match item {
            PlayerItem::Frame(frame) => {
                if self.resume.admit(&frame) {
                    self.frame(frame);
                }
            }
            PlayerItem::PublishStart => {}
            PlayerItem::PublishStop => self.state = State::Finished,
            PlayerItem::Dropped(why) => self.state = State::Failed(why.to_string()),
        }
        Ok(())
    }

    fn input(&mut self, bytes: &[u8]) -> Result<(), PushEnd> {
        let mut events = Vec::new();
        let handled = self.session.handle_input(bytes, &mut events);
        self.take_session_output();
        if let Some(why) = refusal(events) {
            return Err(PushEnd::Failed(why));
        }
        handled.map_err(|e| PushEnd::Failed(format!("the destination sent {e}")))
    }

    fn end(&self, end: End) -> PushEnd {
        PushEnd::Failed(match end {
            End::Stopping => return PushEnd::Stopping,
            End::PeerClosed => "the destination closed the connection".into(),
            End::Stalled(t) => format!("the destination took nothing for {:.1} s", t.as_secs_f64()),
            End::Io(e) => format!("socket error: {e}"),
        })
    }

    fn is_playing(&self) -> bool {
        matches!(self.state, State::Playing)
    }

    fn sent(&mut self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// How long a finished push waits for the destination to close after it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The byte bound of a push's subscription, a safety net under its bound in
/// time: `push_buffer` at 100 Mbit/s.
fn max_bytes(buffer: Duration) -> u64 {
    const BYTES_PER_SECOND: f64 = 100e6 / 8.0;
    (buffer.as_secs_f64() * BYTES_PER_SECOND) as u64
}

/// The destination's refusal among what it sent (an error status), if any.
fn refusal(events: impl IntoIterator<Item = ClientEvent>) -> Option<String> {
    events.into_iter().find_map(|event| match event {
        ClientEvent::Status(s) if s.level == "error" => Some(format!(
            "the destination answered {}: {}",
            s.code, s.description
        )),
        _ => None,
    })
}

/// Where a push's stream resumes after a reconnect: at a keyframe after the last
/// media frame it sent (any audio frame for a stream without video), so the
/// destination gets no frame twice and nothing it cannot decode. Sequence headers
/// and metadata always pass: the new connection needs them first.
#[derive(Debug, Default)]
struct Resume {
    /// The timestamp of the last media frame sent.
    last_media: Option<u32>,
    seen_video: bool,
    need_key: bool,
}

impl Resume {
    fn reconnected(&mut self) {
        self.need_key = self.last_media.is_some();
    }

    fn admit(&mut self, frame: &Frame) -> bool {
        self.seen_video |= frame.kind == FrameKind::Video;
        if frame.is_essential() {
            return true;
        }
        if self.need_key {
            let start = frame.is_keyframe() || (frame.kind == FrameKind::Audio && !self.seen_video);
            let after = self
                .last_media
                .is_none_or(|last| frame.timestamp.wrapping_sub(last) as i32 > 0);
            if !(start && after) {
                return false;
            }
            self.need_key = false;
        }
        if frame.kind != FrameKind::Data {
            self.last_media = Some(frame.timestamp);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::frame::testing::{audio, video};

    #[test]
    fn a_reconnected_push_resumes_at_a_keyframe_after_what_it_sent() {
        let mut r = Resume::default();
        for f in [
            video(0, true),
            audio(10),
            video(40, false),
            video(80, false),
        ] {
            assert!(r.admit(&f), "first connection: everything");
        }
        r.reconnected();
        // The cache's burst: headers, then the GOP from keyframe 0, already sent.
        let header = Frame::media(FrameKind::Video, 0, vec![0x17, 0, 0, 0, 0, 1]);
        assert!(r.admit(&header), "sequence headers always");
        assert!(r.admit(&Frame::metadata(0, vec![2])), "metadata always");
        for f in [
            video(0, true),
            audio(10),
            video(40, false),
            video(120, false),
            audio(130),
        ] {
            assert!(!r.admit(&f), "{} before the next keyframe", f.timestamp);
        }
        assert!(r.admit(&video(160, true)));
        assert!(r.admit(&audio(170)) && r.admit(&video(200, false)));
        // Down longer than a GOP: the cached keyframe is new, and starts it.
        r.reconnected();
        assert!(r.admit(&video(2000, true)));
    }

    #[test]
    fn audio_only_resumes_on_the_next_audio_frame() {
        let mut r = Resume::default();
        assert!(r.admit(&audio(0)) && r.admit(&audio(23)));
        r.reconnected();
        assert!(!r.admit(&audio(0)) && !r.admit(&audio(23)));
        assert!(r.admit(&audio(46)));
    }
}
