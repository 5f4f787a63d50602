//! Relays: streams carried between this server and others over plain RTMP.
//!
//! - **Push** (`push`, `--push`): while a stream is published here, each of the
//!   app's destinations gets it too, on a thread and a connection of its own, as a
//!   lossless subscriber of the stream bounded by `push_buffer` (`push`). A
//!   destination that fails or falls behind is reconnected with backoff and
//!   resumes at the next keyframe; nothing it does reaches the publisher, the
//!   players or the other destinations.
//! - **Pull**: an edge app (`origin`) pulls a key that is not live here from its
//!   origin when a player asks for it, once whatever the number of players, and
//!   lets go `origin_idle` after the last player left; a static pull (`pull`)
//!   runs as long as the server does, or until a reload takes its entry out
//!   (`pull`). A pulled stream is published here through admission like any
//!   publisher (IP rules and hooks; not the secret).
//!
//! Connections are set up by `crate::client` (the sans-IO `ClientSession` over a
//! socket), which talks like ffmpeg and OBS do; a push then runs as a sink of the
//! player engine (`crate::player`), its session reading acknowledgements, pings
//! and error statuses while frames go out, and a pull reads its stream through the
//! client. `rtmps://` upstreams go over TLS (`crate::tls::client`: the system's
//! roots, or `tls_verify = false`).
//!
//! `Relay` is the server's one place for all of them: the pulls by key, the
//! status of every relay for the API and metrics (`status`), the threads, and the
//! stop (the lifecycle's stop hook ends them; the server's run joins them).

mod backoff;
mod pull;
mod push;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::error;
use parking_lot::{Condvar, Mutex};

use crate::client::ClientOptions;
use crate::connections::THREAD_STACK;
use crate::stream_key::StreamKey;
pub(crate) use pull::{apply_static_pulls, edge_wait, Interest};
pub(crate) use push::{start_pushes, Pushes};
use status::{Direction, RelaySnapshot, RelayStatus};

/// How long a relay's connection may take for each step (dial, handshake, a
/// call's answer), and how long a write may stall before the destination counts
/// as failed.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a relay announces itself in `connect` (`flashVer`): like an encoder,
/// which is what destinations such as YouTube and Twitch expect.
const FLASH_VER: &str = "FMLE/3.0 (compatible; rtmpd relay)";

/// How a relay's client connects; `tls_verify` is the upstream's setting (an
/// `rtmps://` upstream's certificate checked, or not).
fn client_options(timeout: Duration, tls_verify: bool) -> ClientOptions {
    ClientOptions {
        timeout,
        flash_ver: FLASH_VER.into(),
        tls_verify,
        ..ClientOptions::default()
    }
}

/// Every relay of the server.
#[derive(Default)]
pub struct Relay {
    /// Pulls by local key: edge pulls while they run, static pulls always.
    pulls: Mutex<HashMap<StreamKey, Arc<pull::Pull>>>,
    /// The static pulls of the config in force, as last applied.
    statics: Mutex<Vec<pull::StaticPull>>,
    statuses: Mutex<Vec<Arc<RelayStatus>>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    stopping: AtomicBool,
    /// Rung when a relay should look at its stop flags (a publisher left, the
    /// server stops): backoff waits sleep on it.
    wake: Condvar,
    wake_lock: Mutex<()>,
}

impl Relay {
    /// Every relay, pushes first, by stream.
    pub fn snapshot(&self) -> Vec<RelaySnapshot> {
        let now = Instant::now();
        let mut all: Vec<RelaySnapshot> = self
            .statuses
            .lock()
            .iter()
            .map(|s| s.snapshot(now))
            .collect();
        fn order(s: &RelaySnapshot) -> (bool, &str, &str, &str) {
            (
                s.direction != Direction::Push,
                &s.key.app,
                &s.key.name,
                &s.url,
            )
        }
        all.sort_by(|a, b| order(a).cmp(&order(b)));
        all
    }

    /// Ends every relay: pushes finish what is queued and unpublish, pulls let go
    /// of their streams, backoff waits end. For the lifecycle's stop.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.ring();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits for the relay threads to end, until `deadline`; true if they all did.
    pub fn join(&self, deadline: Instant) -> bool {
        loop {
            let mut threads = self.threads.lock();
            threads.retain(|t| !t.is_finished());
            if threads.is_empty() {
                return true;
            }
            drop(threads);
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wakes every relay waiting in [`Relay::sleep`].
    fn ring(&self) {
        let _guard = self.wake_lock.lock();
        self.wake.notify_all();
    }

    /// Sleeps `time`, or until the server stops or `stop` is set; false then.
    fn sleep(&self, time: Duration, stop: &AtomicBool) -> bool {
        let deadline = Instant::now() + time;
        let mut guard = self.wake_lock.lock();
        loop {
            if self.is_stopping() || stop.load(Ordering::SeqCst) {
                return false;
            }
            if self.wake.wait_until(&mut guard, deadline).timed_out() {
                return !(self.is_stopping() || stop.load(Ordering::SeqCst));
            }
        }
    }

    fn add_status(&self, direction: Direction, key: &StreamKey, url: String) -> Arc<RelayStatus> {
        let status = Arc::new(RelayStatus::new(direction, key.clone(), url));
        self.statuses.lock().push(status.clone());
        status
    }

    fn remove_status(&self, status: &Arc<RelayStatus>) {
        self.statuses.lock().retain(|s| !Arc::ptr_eq(s, status));
    }

    /// Runs `work` on a thread of its own, kept so the stop can wait for it.
    fn spawn(&self, name: String, work: impl FnOnce() + Send + 'static) {
        let spawned = thread::Builder::new()
            .name(name.clone())
            .stack_size(THREAD_STACK)
            .spawn(work);
        match spawned {
            Ok(handle) => {
                let mut threads = self.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
            }
            Err(e) => error!("cannot start a thread for {name}: {e}"),
        }
    }
}
