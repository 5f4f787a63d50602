//! Admission: the one decision every publish and play passes, whatever the
//! protocol (RTMP publish and play, HTTP-FLV and WebSocket-FLV play; later HLS and
//! relays). Protocol code builds a [`Request`] and asks [`Admission::decide`]; the
//! answer admits (with a [`Ticket`], possibly for another key: a hook's redirect)
//! or refuses (with a reason for the client and the rule for the log).
//!
//! The checks run in the order the rules are documented in, each only when
//! configured for the stream's app (`config::Policy::app`): IP rules
//! (`allow_*`/`deny_*`), then the secret or a signed token (`token`), then the
//! HTTP hook (`hooks`). A refusal for the client's own fault counts against its
//! address (`blocklist`); enough of them close its connections at accept.
//! The `_done` hooks are sent when a [`Ticket`] ends, from a background worker,
//! so they never delay teardown.
//!
//! The rules are data: a reload swaps in a new `Policy` ([`Admission::set_policy`])
//! and new requests see it; admitted clients keep what they were admitted with.

mod blocklist;
mod hooks;
pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::RwLock;

use crate::config::policy::canonical;
use crate::config::relay::UpstreamUrl;
use crate::config::{AppPolicy, Policy, Verb};
use crate::stream_key::{percent_decode, BadName, NamePart, StreamKey};
use blocklist::Blocklist;
use hooks::{DoneCall, DoneHooks, HookAnswer};

/// What the client said about itself when it connected (RTMP's connect command;
/// HTTP fills what it has). Sent to hooks as nginx-rtmp sends it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
}

/// One publish or play to decide.
pub struct Request<'a> {
    pub verb: Verb,
    /// The stream as the server names it (no query).
    pub key: &'a StreamKey,
    /// What followed `?` in the stream name or URL, as sent.
    pub query: Option<&'a str>,
    pub peer: SocketAddr,
    /// The connection's number in the server (nginx-rtmp's `clientid`).
    pub client_id: u64,
    pub client: &'a ClientInfo,
    /// A stream the server pulls itself (an edge's origin, a static pull): `peer`
    /// is the upstream's address. IP rules and hooks apply as to any publisher;
    /// the secret does not, as the server cannot show one and the operator
    /// configured the pull.
    pub relayed: bool,
}

/// The answer.
pub enum Decision {
    Admit(Ticket),
    Refuse(Refusal),
}

/// Why a request was refused: `reason` is for the client and says nothing
/// about anyone else; the log line (written by `decide`) names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
}

/// An admitted publish or play. Its `key` is what to publish or play (a hook
/// may have renamed it). When it ends (`finish`, or dropped), the `_done` hook,
/// if any, is queued.
pub struct Ticket {
    key: StreamKey,
    done: Option<(DoneCall, Arc<DoneHooks>)>,
    /// A publish's `on_record_done`, for its recordings (boxed: most tickets
    /// have none).
    record_done: Option<Box<RecordDoneHook>>,
    started: Instant,
    bytes: (u64, u64),
}

impl Ticket {
    /// What the client publishes or plays.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The `on_record_done` hook of a publish, if its app has one.
    pub fn record_done_hook(&self) -> Option<RecordDoneHook> {
        self.record_done.as_deref().cloned()
    }

    /// Ends the publish or play with the connection's byte counts.
    pub fn finish(mut self, bytes_in: u64, bytes_out: u64) {
        self.bytes = (bytes_in, bytes_out);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((mut call, worker)) = self.done.take() {
            let (bytes_in, bytes_out) = self.bytes;
            call.finish(bytes_in, bytes_out, self.started.elapsed());
            worker.send(call);
        }
    }
}

/// `on_record_done` for one admitted publish: the recorder sends it for each
/// file it closes, from the `_done` hooks' worker.
#[derive(Clone)]
pub struct RecordDoneHook {
    call: DoneCall,
    worker: Arc<DoneHooks>,
}

impl RecordDoneHook {
    /// Queues the call for a closed file: nginx-rtmp's fields and `path`, plus
    /// its `size` (bytes) and `duration` (whole seconds), and `error` if the
    /// recording stopped on one.
    pub fn send(&self, path: &std::path::Path, size: u64, duration: Duration, error: Option<&str>) {
        let mut call = self.call.clone();
        call.add("path", path.display().to_string());
        call.add("size", size.to_string());
        call.add("duration", duration.as_secs().to_string());
        if let Some(error) = error {
            call.add("error", error.to_owned());
        }
        self.worker.send(call);
    }
}

/// The server's admission: the live policy, the blocklist and the hook workers.
pub struct Admission {
    policy: RwLock<Arc<Policy>>,
    blocklist: Blocklist,
    done_hooks: Arc<DoneHooks>,
}

impl Admission {
    pub fn new(policy: Arc<Policy>) -> Admission {
        Admission {
            policy: RwLock::new(policy),
            blocklist: Blocklist::default(),
            done_hooks: Arc::new(DoneHooks::default()),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// Replaces the policy for every request from now on.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        *self.policy.write() = policy;
    }

    /// Decides a publish or play: IP rules, then secret or token, then the hook.
    /// Blocks for as long as the hook takes (at most `hook_timeout`).
    pub fn decide(&self, req: &Request) -> Decision {
        let policy = self.policy();
        let app = policy.app(&req.key.app);
        match self.check(req, &app) {
            Ok(key) => {
                let done = app.done_hook(req.verb).map(|(name, url)| {
                    let call = DoneCall::new(name, url.clone(), app.hook_timeout(), req);
                    (call, self.done_hooks.clone())
                });
                let record_done = match (req.verb, app.record_done_hook()) {
                    (Verb::Publish, Some((_, url))) => Some(Box::new(RecordDoneHook {
                        call: DoneCall::record_done(url.clone(), app.hook_timeout(), req),
                        worker: self.done_hooks.clone(),
                    })),
                    _ => None,
                };
                Decision::Admit(Ticket {
                    key,
                    done,
                    record_done,
                    started: Instant::now(),
                    bytes: (0, 0),
                })
            }
            Err(refused) => {
                let verb = req.verb.as_str();
                warn!(
                    "{}: {verb} {} refused by {}: {}",
                    req.peer, req.key, refused.rule, refused.detail
                );
                if refused.counts {
                    self.failed(req.peer.ip());
                }
                Decision::Refuse(Refusal {
                    reason: refused.reason,
                })
            }
        }
    }

    /// The checks in order; the key to use, or why not.
    fn check(&self, req: &Request, app: &AppPolicy) -> Result<StreamKey, Refused> {
        let verb = req.verb.as_str();
        app.ip_rules(req.verb)
            .check(req.peer.ip())
            .map_err(|rule| Refused {
                rule,
                detail: format!("address {}", canonical(req.peer.ip())),
                reason: format!("{verb} is not allowed from your address"),
                counts: true,
            })?;
        let args = token::query_args(req.query.unwrap_or_default());
        if let Some(secret) = app.secret(req.verb).filter(|_| !req.relayed) {
            token::check(secret, req.verb, req.key, &args, token::unix_now()).map_err(|why| {
                Refused {
                    rule: format!("{verb}_secret"),
                    detail: why.to_owned(),
                    reason: format!("{verb} needs a valid secret or signed token: {why}"),
                    counts: true,
                }
            })?;
        }
        let Some((name, url)) = app.hook(req.verb) else {
            return Ok(req.key.clone());
        };
        let answer = hooks::ask(url, app.hook_timeout(), &hooks::fields(req, verb, &args));
        let failed = |why: String| {
            if app.hook_fail_open() {
                warn!(
                    "{}: {verb} {}: {name} failed ({why}); admitted (hook_fail_open)",
                    req.peer, req.key
                );
                Ok(req.key.clone())
            } else {
                Err(Refused {
                    rule: name.to_owned(),
                    detail: format!("the hook failed: {why}"),
                    reason: format!("{verb} refused: the server could not check it, try again"),
                    counts: false,
                })
            }
        };
        match answer {
            HookAnswer::Admit => Ok(req.key.clone()),
            HookAnswer::Redirect(location) => {
                if location.starts_with("rtmp://") || location.starts_with("rtmps://") {
                    // nginx-rtmp relays to such a Location. rtmpd's relays are the
                    // operator's (push, origin, pull in the config), never a
                    // backend's answer; the log shows the URL without its key.
                    let shown = UpstreamUrl::parse(&location)
                        .map_or_else(|_| "an rtmp:// URL".to_owned(), |u| u.redacted());
                    return Err(Refused {
                        rule: name.to_owned(),
                        detail: format!(
                            "redirect to {shown}: rtmpd relays only as its config says \
                             (push, origin, pull), not on a hook's answer"
                        ),
                        reason: format!("{verb} refused: redirect to another server"),
                        counts: false,
                    });
                }
                // The backend names a stream as a client would: the query split
                // off, the name percent-decoded (the app is ours, decoded already).
                let (new_name, _) = crate::stream_key::split_query(&location);
                let renamed = percent_decode(new_name)
                    .map_err(|problem| BadName {
                        part: NamePart::Stream,
                        problem,
                    })
                    .and_then(|name| StreamKey::new(&req.key.app, &name));
                match renamed {
                    Ok(key) => {
                        info!(
                            "{}: {verb} {} redirected by {name} to {key}",
                            req.peer, req.key
                        );
                        Ok(key)
                    }
                    Err(e) => failed(format!("redirect to a bad name: {e}")),
                }
            }
            HookAnswer::Refuse(status) => Err(Refused {
                rule: name.to_owned(),
                detail: format!("it answered {status}"),
                reason: format!("{verb} refused by the server's {name} check"),
                counts: true,
            }),
            HookAnswer::Failed(why) => failed(why),
        }
    }

    /// Records a failed attempt from `ip` (a refusal, a bad API token).
    pub fn failed(&self, ip: IpAddr) {
        self.blocklist.failed(ip);
    }

    /// Whether connections from `ip` are closed at accept now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.blocklist.is_blocked(ip)
    }

    /// Waits until the queued `_done` hooks are sent, or `timeout` passes (at
    /// a stop, so the last ones are not lost).
    pub fn flush_done_hooks(&self, timeout: Duration) {
        self.done_hooks.flush(Instant::now() + timeout);
    }
}

/// A refusal while checking: what the log and the client are told.
struct Refused {
    /// The rule that refused (`deny_publish 10.0.0.0/8`, `play_secret`, `on_play`).
    rule: String,
    /// For the log.
    detail: String,
    /// For the client.
    reason: String,
    /// The client's own fault: counts towards its address being blocked.
    counts: bool,
}
