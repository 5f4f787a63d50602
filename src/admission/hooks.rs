//! HTTP hooks as nginx-rtmp's notify module sends them, so backends written for
//! it work unchanged: a `POST` of `application/x-www-form-urlencoded` fields
//! (`call`, `addr`, `clientid`, `app`, `flashver`, `swfurl`, `tcurl`, `pageurl`,
//! `name`, `type`, then every query argument of the stream name). `on_publish` and
//! `on_play` are asked on the client's own thread with `hook_timeout`: 2xx admits,
//! 3xx with `Location` redirects to that name (without: admits), anything else
//! refuses. The `_done` calls add `bytes_in`, `bytes_out` and `duration` and go
//! out from one background worker with a bounded queue, so they never delay a
//! connection's end or the next publisher.
//!
//! ureq is the client: blocking, with timeouts, never following redirects.

use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};
use log::{debug, warn};
use parking_lot::{Condvar, Mutex};

use super::Request;
use crate::config::policy::{canonical, HookUrl};

/// `_done` calls waiting to be sent; past this new ones are dropped (and logged).
const DONE_QUEUE: usize = 1024;

/// What a hook answered.
#[derive(Debug, PartialEq, Eq)]
pub enum HookAnswer {
    Admit,
    /// 3xx with a `Location`.
    Redirect(String),
    /// A status that refuses (4xx, 5xx, 1xx).
    Refuse(u16),
    /// No answer: unreachable, timed out, broken.
    Failed(String),
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    // No redirects: a 3xx is the answer (nginx-rtmp's rename), not a place to go.
    // https:// hooks verify the server as rtmps:// upstreams do.
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .redirects(0)
            .tls_config(crate::tls::client::config(true))
            .build()
    })
}

/// The form fields nginx-rtmp sends for `call` (`publish`, `play`, ...).
pub fn fields(req: &Request, call: &str, args: &[(String, String)]) -> Vec<(String, String)> {
    let client = req.client;
    let mut fields: Vec<(String, String)> = [
        ("call", call.to_owned()),
        ("addr", canonical(req.peer.ip()).to_string()),
        ("clientid", req.client_id.to_string()),
        ("app", req.key.app.clone()),
        ("flashver", client.flash_ver.clone()),
        ("swfurl", client.swf_url.clone()),
        ("tcurl", client.tc_url.clone()),
        ("pageurl", client.page_url.clone()),
        ("name", req.key.name.clone()),
        ("type", "live".to_owned()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    fields.extend(args.iter().cloned());
    fields
}

/// Posts `fields` to `url` and waits for the answer, at most `timeout`.
pub fn ask(url: &HookUrl, timeout: Duration, fields: &[(String, String)]) -> HookAnswer {
    let (status, location) = match post(url, timeout, fields) {
        Ok(answer) => answer,
        Err(why) => return HookAnswer::Failed(why),
    };
    match status {
        200..=299 => HookAnswer::Admit,
        300..=399 => match location {
            Some(location) if !location.is_empty() => HookAnswer::Redirect(location),
            _ => HookAnswer::Admit,
        },
        _ => HookAnswer::Refuse(status),
    }
}

/// The status and `Location` of the answer, or why there is none.
fn post(
    url: &HookUrl,
    timeout: Duration,
    fields: &[(String, String)],
) -> Result<(u16, Option<String>), String> {
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let response = match agent().post(&url.0).timeout(timeout).send_form(&form) {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => {
            return Err(match e.kind() {
                ureq::ErrorKind::Io if e.to_string().contains("timed out") => {
                    format!(
                        "no answer within {:.1} s (hook_timeout)",
                        timeout.as_secs_f64()
                    )
                }
                _ => e.to_string(),
            })
        }
    };
    let location = response.header("location").map(str::to_owned);
    Ok((response.status(), location))
}

/// A `_done` call, prepared when its publish or play was admitted.
#[derive(Clone)]
pub struct DoneCall {
    name: &'static str,
    url: HookUrl,
    timeout: Duration,
    fields: Vec<(String, String)>,
}

impl DoneCall {
    pub fn new(name: &'static str, url: HookUrl, timeout: Duration, req: &Request) -> DoneCall {
        let args = super::token::query_args(req.query.unwrap_or_default());
        let call = format!("{}_done", req.verb.as_str());
        DoneCall {
            name,
            url,
            timeout,
            fields: fields(req, &call, &args),
        }
    }

    /// Adds what nginx-rtmp does not send: the connection's byte counts and the
    /// publish or play's length in whole seconds.
    pub fn finish(&mut self, bytes_in: u64, bytes_out: u64, duration: Duration) {
        self.fields.extend([
            ("bytes_in".to_owned(), bytes_in.to_string()),
            ("bytes_out".to_owned(), bytes_out.to_string()),
            ("duration".to_owned(), duration.as_secs().to_string()),
        ]);
    }

    /// nginx-rtmp's `record_done` for an admitted publish: its fields, plus
    /// `recorder` (empty: rtmpd's one recorder per app is nginx-rtmp's unnamed
    /// one); [`DoneCall::add`] puts `path` and the rest.
    pub fn record_done(url: HookUrl, timeout: Duration, req: &Request) -> DoneCall {
        let args = super::token::query_args(req.query.unwrap_or_default());
        let mut fields = fields(req, "record_done", &args);
        fields.push(("recorder".to_owned(), String::new()));
        DoneCall {
            name: "on_record_done",
            url,
            timeout,
            fields,
        }
    }

    /// Adds a field.
    pub fn add(&mut self, name: &str, value: String) {
        self.fields.push((name.to_owned(), value));
    }

    fn send(&self) {
        let field = |n: &str| {
            self.fields
                .iter()
                .find(|(k, _)| k == n)
                .map_or("", |(_, v)| v.as_str())
        };
        let what = format!("{} {}/{}", field("addr"), field("app"), field("name"));
        match post(&self.url, self.timeout, &self.fields) {
            Ok((status, _)) if (200..400).contains(&status) => {
                debug!("{}: {what}: answered {status}", self.name)
            }
            Ok((status, _)) => warn!("{} ({}): {what}: answered {status}", self.name, self.url),
            Err(why) => warn!("{} ({}): {what}: {why}", self.name, self.url),
        }
    }
}

/// The background worker of the `_done` calls, started with the first one.
#[derive(Default)]
pub struct DoneHooks {
    queue: Mutex<Option<Sender<DoneCall>>>,
    /// Calls queued and not yet sent, to wait for them at a stop.
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl DoneHooks {
    /// Queues a call; never blocks.
    pub fn send(&self, call: DoneCall) {
        let mut queue = self.queue.lock();
        if queue.is_none() {
            match self.spawn() {
                Ok(tx) => *queue = Some(tx),
                Err(e) => {
                    warn!("{}: cannot start the hook worker: {e}", call.name);
                    return;
                }
            }
        }
        let Some(tx) = queue.as_ref() else { return };
        *self.pending.0.lock() += 1;
        if let Err(e) = tx.try_send(call) {
            let (call, why) = match e {
                TrySendError::Full(call) => (call, "calls already waiting"),
                TrySendError::Disconnected(call) => (call, "the worker has stopped"),
            };
            warn!("{} ({}): not sent: {DONE_QUEUE} {why}", call.name, call.url);
            self.sent();
        }
    }

    fn spawn(&self) -> std::io::Result<Sender<DoneCall>> {
        let (tx, rx) = bounded::<DoneCall>(DONE_QUEUE);
        let pending = self.pending.clone();
        thread::Builder::new()
            .name("done hooks".into())
            .spawn(move || {
                // Ends when the admission (the only sender) is dropped.
                for call in rx {
                    call.send();
                    let (count, changed) = &*pending;
                    *count.lock() -= 1;
                    changed.notify_all();
                }
            })?;
        Ok(tx)
    }

    fn sent(&self) {
        let (count, changed) = &*self.pending;
        *count.lock() -= 1;
        changed.notify_all();
    }

    /// Waits until nothing is queued or `deadline` passes.
    pub fn flush(&self, deadline: Instant) {
        let (count, changed) = &*self.pending;
        let mut count = count.lock();
        while *count > 0 {
            if changed.wait_until(&mut count, deadline).timed_out() {
                warn!("{} _done hook call(s) not sent before the stop", *count);
                return;
            }
        }
    }
}
