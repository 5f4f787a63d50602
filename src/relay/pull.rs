//! Pull: another server's stream published here, on a thread of its own.
//!
//! An **edge pull** starts when a player asks an app with an `origin` for a key
//! that is not live here ([`edge_wait`]): the first such player starts it, later
//! ones find it in the relay's map, so the origin sees one player per key however
//! many watch here. The players wait (their play is answered once the stream is
//! here) at most `origin_timeout`; if the origin cannot be reached, refuses, or
//! sends nothing in that time, they are told the stream is not found and the pull
//! is forgotten, so the next player tries again. Once live, the pull stays while
//! players (or players still waiting to subscribe: [`Interest`]) remain, follows
//! the origin's publisher going and coming back, reconnects with backoff if the
//! connection breaks, and ends `origin_idle` after the last player left.
//!
//! A **static pull** (`pull = [{ from, as }]`) starts with the server and runs
//! until it stops, reconnecting with backoff (an IP camera, a remote encoder). A
//! reload applies the file's list: pulls of entries gone or changed stop, new
//! entries start, the others run on untouched ([`apply_static_pulls`]).
//!
//! Either way the stream is published here through admission, as a publisher
//! from the upstream's address, and is recorded and pushed like any publish. A
//! local publisher on the key holds it: the pull then waits (static) or gives way
//! (edge), and a local publisher arriving while a pull holds the key is refused
//! like any second publisher.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use super::backoff::Backoff;
use super::status::{Direction, RelayState, RelayStatus};
use super::{client_options, Pushes, RELAY_TIMEOUT};
use crate::admission::{ClientInfo, Decision, Request, Ticket};
use crate::client::{Client, ClientError, ClientEvent, RtmpUrl};
use crate::config::relay::PullEntry;
use crate::config::Verb;
use crate::connections::Context;
use crate::media::frame::{Frame, FrameKind, FrameRole};
use crate::record::RecordingGuard;
use crate::registry::{PublishError, Publisher};
use crate::rtmp::message::{self as msg, UserControl};
use crate::rtmp::session::data_frame;
use crate::stream_key::StreamKey;

/// How long a pull waits for the upstream between looks at its stop flag and
/// its players.
const POLL: Duration = Duration::from_millis(250);

/// What kind of pull, and what ends it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Started by players; ends `idle` after the last one left.
    Edge { idle: Duration },
    /// Runs while the server runs.
    Static,
}

/// What waiting players learn.
#[derive(Debug, Clone)]
enum Outcome {
    /// Still connecting.
    Pending,
    /// The stream has been published here (it may have paused since).
    Up,
    /// The pull gave up before its stream arrived.
    Failed(String),
}

/// One pull, shared by its worker, the relay's map and the waiting players.
pub(super) struct Pull {
    key: StreamKey,
    /// Set when a reload dropped the (static) pull's entry: its worker ends.
    stop: AtomicBool,
    /// Players between [`edge_wait`] and their subscription.
    waiters: AtomicUsize,
    outcome: Mutex<Outcome>,
    changed: Condvar,
}

impl Pull {
    fn new(key: StreamKey) -> Arc<Pull> {
        Arc::new(Pull {
            key,
            stop: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            outcome: Mutex::new(Outcome::Pending),
            changed: Condvar::new(),
        })
    }

    fn settle(&self, outcome: Outcome) {
        *self.outcome.lock() = outcome;
        self.changed.notify_all();
    }

    /// Tells players still waiting that the stream is not coming, unless they
    /// were told something already.
    fn fail_if_pending(&self, why: &str) {
        let mut outcome = self.outcome.lock();
        if matches!(*outcome, Outcome::Pending) {
            *outcome = Outcome::Failed(why.to_owned());
            self.changed.notify_all();
        }
    }
}

/// A player's claim on a pull until it has subscribed: the pull does not end
/// under it for lack of players.
pub struct Interest(Arc<Pull>);

impl Drop for Interest {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// For a player of `key`: if its app is an edge (`origin`) and the key is not
/// live here, pulls it (or joins the pull already running) and waits for it, at
/// most `origin_timeout`. `Ok(None)`: nothing to wait for, play as usual;
/// `Ok(Some(interest))`: the pulled stream is here, hold `interest` until
/// subscribed; `Err(why)`: not found.
pub fn edge_wait(ctx: &Arc<Context>, key: &StreamKey) -> Result<Option<Interest>, String> {
    let app = ctx.admission.policy().app(&key.app);
    let Some(origin) = app.origin() else {
        return Ok(None);
    };
    let timeout = app.origin_timeout();
    let relay = &ctx.relay;
    let mut pulls = relay.pulls.lock();
    let pull = match pulls.get(key) {
        Some(pull) => pull.clone(),
        None => {
            if ctx
                .registry
                .stream_info(key)
                .is_some_and(|s| s.publisher.is_some())
            {
                return Ok(None);
            }
            if relay.is_stopping() {
                return Err("the server is shutting down".into());
            }
            let source = origin.url.resolve(key).map_err(|why| {
                warn!("pull {key} from {}: {why}", origin.url);
                format!("the stream is not here and its origin cannot be reached: {why}")
            })?;
            let pull = Pull::new(key.clone());
            let kind = Kind::Edge {
                idle: app.origin_idle(),
            };
            let (min, max) = app.backoff();
            let status = relay.add_status(Direction::Pull, key, origin.url.redacted());
            let spec = Spec {
                source,
                tls_verify: origin.tls_verify.unwrap_or(true),
                kind,
                first_frame: timeout,
                backoff: Backoff::new(min, max),
                query: None,
            };
            let worker = Worker::new(ctx, pull.clone(), spec, status);
            pulls.insert(key.clone(), pull.clone());
            relay.spawn(format!("pull {key}"), move || worker.run());
            pull
        }
    };
    pull.waiters.fetch_add(1, Ordering::SeqCst);
    let interest = Interest(pull.clone());
    drop(pulls);
    let deadline = Instant::now() + timeout;
    let mut outcome = pull.outcome.lock();
    loop {
        match &*outcome {
            Outcome::Up => {
                drop(outcome);
                return Ok(Some(interest));
            }
            Outcome::Failed(why) => return Err(why.clone()),
            Outcome::Pending => {}
        }
        if ctx.lifecycle.is_stopping() {
            return Err("the server is shutting down".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the stream did not arrive from the origin within {:.1} s",
                timeout.as_secs_f64()
            ));
        }
        // In slices, so a stop is noticed.
        let slice = (Instant::now() + POLL).min(deadline);
        pull.changed.wait_until(&mut outcome, slice);
    }
}

/// A static pull as the config file gave it, and what runs for it: its pull,
/// or (an entry that cannot run) only its status.
pub(super) struct StaticPull {
    entry: PullEntry,
    key: StreamKey,
    pull: Option<Arc<Pull>>,
    status: Arc<RelayStatus>,
}

/// Brings the static pulls in line with the policy in force: at the server's
/// start every entry starts; at a reload, the pulls of entries no longer there
/// (or changed) stop and new entries start, while unchanged ones run on.
pub fn apply_static_pulls(ctx: &Arc<Context>) {
    let policy = ctx.admission.policy();
    // Checked when the file was read; an error here cannot happen.
    let mut wanted = policy.static_pulls().unwrap_or_default();
    let relay = &ctx.relay;
    let mut running = relay.statics.lock();
    running.retain(|s| {
        if let Some(at) = wanted
            .iter()
            .position(|(entry, key)| *entry == s.entry && *key == s.key)
        {
            wanted.remove(at);
            return true;
        }
        info!(
            "pull {} from {}: no longer in the configuration, stopping",
            s.key, s.status.url
        );
        match &s.pull {
            // The worker takes its status and its map entry with it.
            Some(pull) => pull.stop.store(true, Ordering::SeqCst),
            None => relay.remove_status(&s.status),
        }
        false
    });
    relay.ring();
    for (entry, key) in wanted {
        let app = policy.app(&key.app);
        let shown = entry.from.redacted();
        let status = relay.add_status(Direction::Pull, &key, shown.clone());
        let mut started = StaticPull {
            entry,
            key,
            pull: None,
            status,
        };
        let (entry, key) = (&started.entry, &started.key);
        match entry.from.resolve(key) {
            Ok(source) => {
                let (_, query) =
                    crate::stream_key::split_query(entry.as_name.as_deref().unwrap_or_default());
                let pull = Pull::new(key.clone());
                let (min, max) = app.backoff();
                let spec = Spec {
                    source,
                    tls_verify: entry.tls_verify.unwrap_or(true),
                    kind: Kind::Static,
                    first_frame: app.origin_timeout(),
                    backoff: Backoff::new(min, max),
                    query: query.map(str::to_owned),
                };
                let worker = Worker::new(ctx, pull.clone(), spec, started.status.clone());
                info!("pull {key} from {shown}: starting");
                relay.pulls.lock().insert(key.clone(), pull.clone());
                relay.spawn(format!("pull {key}"), move || worker.run());
                started.pull = Some(pull);
            }
            Err(why) => {
                warn!("pull {key} from {shown}: {why}; not pulled");
                started.status.failed(why, RelayState::Disabled);
            }
        }
        running.push(started);
    }
}

/// The stream published here by a pull, and what came with it.
struct Local {
    publisher: Publisher,
    _recording: Option<RecordingGuard>,
    _pushes: Option<Pushes>,
    /// Ends with the socket bytes that came in meanwhile (the `_done` hook).
    ticket: Option<Ticket>,
    bytes: Arc<AtomicU64>,
    bytes_at_start: u64,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let bytes_in = self.bytes.load(Ordering::Relaxed) - self.bytes_at_start;
            ticket.finish(bytes_in, 0);
        }
    }
}

/// What a pull pulls and how.
struct Spec {
    source: RtmpUrl,
    /// Check an `rtmps://` source's certificate (`tls_verify`, default true).
    tls_verify: bool,
    kind: Kind,
    /// How long an attempt may take to bring the first frame.
    first_frame: Duration,
    backoff: Backoff,
    /// The query the local publish shows admission (a static pull's `as`).
    query: Option<String>,
}

struct Worker {
    ctx: Arc<Context>,
    pull: Arc<Pull>,
    spec: Spec,
    status: Arc<RelayStatus>,
    local: Option<Local>,
    /// The stream has been here at least once.
    was_up: bool,
}

/// How an attempt ended.
enum Ended {
    /// The pull is over (idle, stopping, or the key is a local publisher's).
    Over,
    /// It failed; try again (or give up, before the first frame of an edge pull).
    Failed {
        why: String,
        up_for: Option<Duration>,
    },
}

impl Worker {
    fn new(ctx: &Arc<Context>, pull: Arc<Pull>, spec: Spec, status: Arc<RelayStatus>) -> Worker {
        Worker {
            ctx: ctx.clone(),
            pull,
            spec,
            status,
            local: None,
            was_up: false,
        }
    }

    fn key(&self) -> &StreamKey {
        &self.pull.key
    }

    /// The server stops, or a reload dropped this pull.
    fn over(&self) -> bool {
        self.ctx.relay.is_stopping() || self.pull.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        let key = self.key().clone();
        let shown = self.status.url.clone();
        loop {
            if self.over() {
                break;
            }
            self.status.set(RelayState::Connecting);
            let (why, up_for) = match self.attempt() {
                Ended::Over => break,
                Ended::Failed { why, up_for } => (why, up_for),
            };
            self.local = None;
            if self.over() {
                break;
            }
            if let Kind::Edge { .. } = self.spec.kind {
                if !self.was_up {
                    warn!("pull {key} from {shown}: {why}; players are told it is not found");
                    // Forgotten before the players hear it: the next one
                    // starts afresh, and the API no longer lists it.
                    self.retire_unconditionally();
                    self.ctx.relay.remove_status(&self.status);
                    self.pull.settle(Outcome::Failed(format!(
                        "the stream is not here and the origin did not send it: {why}"
                    )));
                    break;
                }
                if self.retire() {
                    info!("pull {key} from {shown}: {why}; no players left, not retried");
                    break;
                }
            }
            let wait = self.spec.backoff.failed(up_for);
            warn!(
                "pull {key} from {shown}: {why}; retrying in {:.1} s",
                wait.as_secs_f64()
            );
            self.status.backing_off(why, wait);
            if !self.ctx.relay.sleep(wait, &self.pull.stop) {
                break;
            }
            self.status.retrying();
        }
        self.local = None;
        self.retire_unconditionally();
        self.ctx.relay.remove_status(&self.status);
        self.pull.fail_if_pending("the server is shutting down");
    }

    /// One connection to the upstream, from dialling to its end.
    fn attempt(&mut self) -> Ended {
        let started = Instant::now();
        let mut client = match self.connect() {
            Ok(client) => client,
            Err(e) => {
                return Ended::Failed {
                    why: e.to_string(),
                    up_for: None,
                }
            }
        };
        let peer = client
            .peer_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], self.spec.source.port)));
        let base = self.status.bytes.load(Ordering::Relaxed);
        let mut up: Option<Instant> = None;
        let mut idle_since: Option<Instant> = None;
        let mut looked = Instant::now();
        let ended = loop {
            let event = match client.next_event_within(POLL) {
                Ok(event) => event,
                Err(e) => {
                    break Ended::Failed {
                        why: match e {
                            ClientError::Closed => "the upstream closed the connection".into(),
                            e => e.to_string(),
                        },
                        up_for: up.map(|t| t.elapsed()),
                    }
                }
            };
            self.status
                .bytes
                .store(base + client.bytes_received(), Ordering::Relaxed);
            match self.handle(event, peer) {
                Ok(()) => {}
                Err(end) => break end,
            }
            if self.local.is_some() && up.is_none() {
                up = Some(Instant::now());
            }
            if self.over() {
                break Ended::Over;
            }
            if up.is_none() && started.elapsed() >= self.spec.first_frame {
                break Ended::Failed {
                    why: format!(
                        "no stream from the upstream within {:.1} s",
                        self.spec.first_frame.as_secs_f64()
                    ),
                    up_for: None,
                };
            }
            if let Kind::Edge { idle } = self.spec.kind {
                if looked.elapsed() >= POLL {
                    looked = Instant::now();
                    if self.has_audience() {
                        idle_since = None;
                    } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= idle
                        && self.retire()
                    {
                        info!(
                            "pull {} from {}: no players for {:.1} s, stopped",
                            self.key(),
                            self.status.url,
                            idle.as_secs_f64()
                        );
                        break Ended::Over;
                    }
                }
            }
        };
        // The local stream ends before the upstream hears from us.
        self.local = None;
        client.close();
        ended
    }

    fn connect(&self) -> Result<Client, ClientError> {
        let timeout = match self.spec.kind {
            Kind::Edge { .. } => self.spec.first_frame,
            Kind::Static => RELAY_TIMEOUT,
        };
        let opts = client_options(timeout, self.spec.tls_verify);
        let mut client = Client::connect(&self.spec.source, &opts)?;
        client.play(&self.spec.source.name)?;
        Ok(client)
    }

    /// Acts on one event from the upstream (or on none: a quiet poll).
    fn handle(
        &mut self,
        event: Option<ClientEvent>,
        peer: std::net::SocketAddr,
    ) -> Result<(), Ended> {
        let frame = match event {
            None => return Ok(()),
            Some(ClientEvent::Media {
                type_id,
                timestamp,
                payload,
                ..
            }) => {
                let kind = if type_id == msg::AUDIO {
                    FrameKind::Audio
                } else {
                    FrameKind::Video
                };
                Frame::media(kind, timestamp, payload)
            }
            Some(ClientEvent::Data {
                timestamp, payload, ..
            }) => {
                let frame = data_frame(timestamp, &payload);
                // What the upstream's server says to its players, not the stream's.
                let servers_own = matches!(
                    msg::data_name(&payload),
                    Some((name, _)) if name == "|RtmpSampleAccess" || name == "onStatus"
                );
                if servers_own && frame.role != FrameRole::Metadata {
                    return Ok(());
                }
                frame
            }
            Some(ClientEvent::Status(s)) if s.code == "NetStream.Play.UnpublishNotify" => {
                self.unpublished();
                return Ok(());
            }
            Some(ClientEvent::UserControl(UserControl::StreamEof(_))) => {
                self.unpublished();
                return Ok(());
            }
            Some(ClientEvent::Status(s)) if s.level == "error" => {
                return Err(Ended::Failed {
                    why: format!("the upstream answered {}: {}", s.code, s.description),
                    up_for: None,
                })
            }
            Some(_) => return Ok(()),
        };
        if self.local.is_none() {
            self.publish(peer)?;
        }
        if let Some(local) = &self.local {
            local.publisher.push(frame);
        }
        Ok(())
    }

    /// The upstream's publisher left: so does the local stream, until it is back.
    fn unpublished(&mut self) {
        if self.local.take().is_some() {
            info!(
                "pull {} from {}: the upstream's publisher stopped; waiting for it",
                self.key(),
                self.status.url
            );
            self.status.set(RelayState::Waiting);
        }
    }

    /// Publishes the pulled stream here, through admission.
    fn publish(&mut self, peer: std::net::SocketAddr) -> Result<(), Ended> {
        let key = self.key().clone();
        let client = ClientInfo {
            tc_url: self.spec.source.tc_url(),
            flash_ver: super::FLASH_VER.into(),
            ..ClientInfo::default()
        };
        let decision = self.ctx.admission.decide(&Request {
            verb: Verb::Publish,
            key: &key,
            query: self.spec.query.as_deref(),
            peer,
            client_id: 0,
            client: &client,
            relayed: true,
        });
        let ticket = match decision {
            Decision::Admit(ticket) => ticket,
            Decision::Refuse(refusal) => {
                return Err(Ended::Failed {
                    why: format!("publishing it here was refused: {}", refusal.reason),
                    up_for: None,
                })
            }
        };
        let publisher = match self.ctx.registry.publish(ticket.key(), peer) {
            Ok(publisher) => publisher,
            Err(PublishError::AlreadyPublishing { by, .. }) => {
                return Err(match self.spec.kind {
                    Kind::Edge { .. } => {
                        // Players play the local publisher's stream instead.
                        info!("pull {key}: published here by {by} meanwhile; the pull gives way");
                        self.was_up = true;
                        self.pull.settle(Outcome::Up);
                        Ended::Over
                    }
                    Kind::Static => Ended::Failed {
                        why: format!("{key} is published here by {by}"),
                        up_for: None,
                    },
                });
            }
            Err(PublishError::Closed) => return Err(Ended::Over),
        };
        info!(
            "pull {} from {}: live ({peer})",
            publisher.key(),
            self.status.url
        );
        // Recorded and pushed like any publish.
        let recording = self.ctx.recorders.start(
            &self.ctx.registry,
            &self.ctx.admission.policy(),
            publisher.key(),
            peer,
            &ticket,
        );
        let pushes = super::start_pushes(&self.ctx, &publisher);
        let bytes = self.status.bytes.clone();
        self.local = Some(Local {
            publisher,
            _recording: recording,
            _pushes: pushes,
            ticket: Some(ticket),
            bytes_at_start: bytes.load(Ordering::Relaxed),
            bytes,
        });
        self.was_up = true;
        self.status.set(RelayState::Live);
        self.pull.settle(Outcome::Up);
        Ok(())
    }

    /// Players on the local stream, or on their way to it.
    fn has_audience(&self) -> bool {
        self.pull.waiters.load(Ordering::SeqCst) > 0
            || self
                .ctx
                .registry
                .stream_info(self.key())
                .is_some_and(|s| s.players > 0)
    }

    /// Takes an edge pull out of the relay's map if it has no audience, ending
    /// its local stream under the map's lock so a newcomer either finds it or
    /// starts afresh. True if it was taken out.
    fn retire(&mut self) -> bool {
        let mut pulls = self.ctx.relay.pulls.lock();
        if self.has_audience() {
            return false;
        }
        if pulls
            .get(self.key())
            .is_some_and(|p| Arc::ptr_eq(p, &self.pull))
        {
            pulls.remove(self.key());
        }
        self.local = None;
        true
    }

    fn retire_unconditionally(&mut self) {
        let mut pulls = self.ctx.relay.pulls.lock();
        if pulls
            .get(self.key())
            .is_some_and(|p| Arc::ptr_eq(p, &self.pull))
        {
            pulls.remove(self.key());
        }
        self.local = None;
    }
}
