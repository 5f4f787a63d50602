//! Recording: each publish on an app with `record = true` is kept as FLV files
//! under `record_dir`, written by a thread of its own that never slows the stream.
//!
//! When a publish starts, its connection asks [`Recorders::start`] on its own
//! thread, before its first frame: the recording subscribes to the key as a
//! *lossless* subscriber of the registry (every frame, never skipped, up to
//! `record_buffer_bytes` waiting) and a thread takes it from there
//! (`recorder`): the frames go through the sans-IO state machine of `segments`
//! (which tags, which file, when to cut), into `file`, which buffers them and
//! checkpoints every `record_flush` (write, `duration`/`filesize` rewritten in
//! place from `metadata`, `fdatasync`). Names come from the `record_path`
//! template (`config::record`) and `naming`.
//!
//! A disk that falls behind by more than the bound gets the recording dropped by
//! the registry, a write that fails ends it: either way one error line, a flag in
//! `/api/streams` and `/metrics`, and the publisher and players never notice.
//! Memory stays within the bound whatever the disk does.
//!
//! A recording ends with its publish (the registry's `PublishStop`, which the
//! graceful stop sends to every subscriber too): the file's duration and size
//! are written, `on_record_done` is queued, and with `record_append` the state
//! is kept for `record_reconnect_gap` so a publisher that comes back continues
//! the same file. The server's stop waits for the recordings to close
//! ([`Recorders::wait_idle`]). `listing` lists finished files for
//! `/api/recordings`.

pub mod file;
pub mod listing;
pub mod metadata;
pub mod naming;
mod recorder;
pub mod segments;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, warn};
use parking_lot::{Condvar, Mutex};

use crate::admission::Ticket;
use crate::config::Policy;
use crate::registry::{Backlog, Registry};
use crate::stream_key::StreamKey;
use file::Storage;
use metadata::FieldOffsets;
use segments::{Limits, Segments};

/// Every recording of the server: the ones running, what `/api/streams` and the
/// metrics show of them, and the state kept for `record_append`.
pub struct Recorders {
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
    /// Signalled when a recording thread ends.
    idle: Condvar,
    totals: Totals,
}

#[derive(Default)]
struct State {
    /// The recording of each stream that is live (or whose publisher is just
    /// leaving): running, or stopped by an error.
    current: HashMap<StreamKey, Arc<Status>>,
    /// Recording threads running, in all and per stream (a new publish's
    /// recording may start while the last one's is still closing its file).
    running: usize,
    running_per_key: HashMap<StreamKey, usize>,
    /// The last file of each stream, for a publisher that comes back soon.
    ended: HashMap<StreamKey, Ended>,
}

/// A recording's file between two publishes (`record_append`).
struct Ended {
    segments: Segments,
    file: PathBuf,
    len: u64,
    fields: FieldOffsets,
    at: Instant,
    gap: Duration,
}

/// Counters since the server started.
#[derive(Default)]
struct Totals {
    started: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    files: AtomicU64,
}

/// What one recording is doing; shared by its thread and the API.
pub struct Status {
    started: Instant,
    /// How far behind the stream the recording is, and whether the registry
    /// dropped it for that (seen here at once, even while its thread is stuck
    /// in a write).
    backlog: Option<Backlog>,
    /// The file being written (the last one, once stopped).
    path: Mutex<Option<PathBuf>>,
    /// Bytes in that file.
    bytes: AtomicU64,
    /// Files closed so far (more than one with segments).
    files: AtomicU64,
    /// Why it stopped, if it failed.
    error: Mutex<Option<String>>,
    /// The recording's thread and its publisher's guard: the entry leaves
    /// `State::current` when both are done with it.
    holders: AtomicUsize,
}

/// A snapshot of one stream's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStatus {
    pub path: Option<PathBuf>,
    pub bytes: u64,
    pub files: u64,
    pub since: Duration,
    /// Set once the recording stopped on an error; the stream goes on.
    pub error: Option<String>,
    /// Stream bytes waiting for the disk now, the most that ever did, and the
    /// bound (`record_buffer_bytes`).
    pub backlog: u64,
    pub backlog_peak: u64,
    pub buffer: u64,
}

/// Server-wide recording numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderCounts {
    /// Recording now.
    pub active: u64,
    /// Stopped by an error, while their publishers are still live.
    pub failed_now: u64,
    pub started_total: u64,
    pub failed_total: u64,
    pub files_total: u64,
    pub bytes_total: u64,
}

/// Held by the publishing connection while it publishes: when it is dropped the
/// stream's recording status goes too (once its thread is done).
pub struct RecordingGuard {
    recorders: Arc<Recorders>,
    key: StreamKey,
    status: Arc<Status>,
}

impl Drop for RecordingGuard {
    fn drop(&mut self) {
        self.recorders.release(&self.key, &self.status);
    }
}

/// Stack of a recording thread: metadata AMF is bounded in depth, the rest flat.
const THREAD_STACK: usize = 512 * 1024;

impl Recorders {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<Recorders> {
        Arc::new(Recorders {
            storage,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            totals: Totals::default(),
        })
    }

    /// Starts recording `key` if `policy` records its app: a publish that just
    /// began, on the publisher's own thread before its first frame (so the
    /// recording misses nothing). `peer` is the publisher's address, for the
    /// log; `ticket` brings the publish's `on_record_done`.
    pub fn start(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        policy: &Policy,
        key: &StreamKey,
        peer: SocketAddr,
        ticket: &Ticket,
    ) -> Option<RecordingGuard> {
        let settings = policy.app(&key.app).record()?;
        let limits = Limits {
            duration_ms: settings.segment_duration.map(|d| d.as_millis() as u64),
            bytes: settings.segment_bytes,
        };
        let label = format!("recording {key}");
        let subscription = registry.subscribe_lossless(key, peer, label, settings.buffer_bytes);
        let status = Arc::new(Status {
            started: Instant::now(),
            backlog: subscription.backlog(),
            path: Mutex::new(None),
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            error: Mutex::new(None),
            holders: AtomicUsize::new(2),
        });
        {
            let mut state = self.state.lock();
            state.current.insert(key.clone(), status.clone());
            state.running += 1;
            *state.running_per_key.entry(key.clone()).or_default() += 1;
        }
        self.totals.started.fetch_add(1, Ordering::Relaxed);
        let job = recorder::Job {
            recorders: self.clone(),
            key: key.clone(),
            peer,
            settings,
            limits,
            status: status.clone(),
            hook: ticket.record_done_hook(),
            subscription,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("record {key}"))
            .stack_size(THREAD_STACK)
            .spawn(move || recorder::run(job));
        if let Err(e) = spawned {
            error!("recording {key}: cannot start its thread: {e}; the stream goes on unrecorded");
            *status.error.lock() = Some(format!("cannot start its thread: {e}"));
            self.totals.failed.fetch_add(1, Ordering::Relaxed);
            self.thread_done(key, &status);
        }
        Some(RecordingGuard {
            recorders: self.clone(),
            key: key.clone(),
            status,
        })
    }

    /// The recording of `key` now, if any.
    pub fn status(&self, key: &StreamKey) -> Option<RecordingStatus> {
        let status = self.state.lock().current.get(key).cloned()?;
        Some(status.snapshot())
    }

    /// The files being written now (not yet finished).
    pub fn files_in_progress(&self) -> Vec<PathBuf> {
        let state = self.state.lock();
        state
            .current
            .values()
            .filter_map(|s| s.path.lock().clone())
            .collect()
    }

    pub fn counts(&self) -> RecorderCounts {
        let state = self.state.lock();
        let failed_now = state
            .current
            .values()
            .filter(|s| s.error().is_some())
            .count() as u64;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderCounts {
            active: state.running as u64,
            failed_now,
            started_total: load(&self.totals.started),
            failed_total: load(&self.totals.failed),
            files_total: load(&self.totals.files),
            bytes_total: load(&self.totals.bytes),
        }
    }

    /// Waits until every recording thread has closed its file, or `deadline`
    /// passes (the server's stop: every publish has ended by then). True if none
    /// is left.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while state.running > 0 {
            if self.idle.wait_until(&mut state, deadline).timed_out() {
                let left: Vec<String> = state
                    .current
                    .iter()
                    .filter_map(|(k, s)| {
                        Some(format!("{k} ({})", s.path.lock().as_ref()?.display()))
                    })
                    .collect();
                warn!(
                    "stop: {} recording(s) still writing at the deadline, left as the last \
                     checkpoint wrote them: {}",
                    state.running,
                    left.join(", ")
                );
                return false;
            }
        }
        true
    }

    /// The file the last publish of `key` left to continue, if it ended within
    /// its gap. Asked by a new recording's thread (not the publisher's) first
    /// thing: it waits, at most `wait`, for an older recording of the key to
    /// close its file, so a publisher that reconnects at once still continues it.
    fn take_ended(&self, key: &StreamKey, wait: Duration) -> Option<Ended> {
        let deadline = Instant::now() + wait;
        let mut state = self.state.lock();
        while state.running_per_key.get(key).copied().unwrap_or(0) > 1 {
            if self.idle.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.ended.retain(|_, e| e.at.elapsed() <= e.gap);
        state.ended.remove(key)
    }

    /// A recording thread is done with its status.
    fn thread_done(&self, key: &StreamKey, status: &Arc<Status>) {
        let mut state = self.state.lock();
        state.running -= 1;
        if let Some(n) = state.running_per_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                state.running_per_key.remove(key);
            }
        }
        self.drop_holder(&mut state, key, status);
        drop(state);
        self.idle.notify_all();
    }

    /// The publisher is done with the status.
    fn release(&self, key: &StreamKey, status: &Arc<Status>) {
        let mut state = self.state.lock();
        self.drop_holder(&mut state, key, status);
    }

    fn drop_holder(&self, state: &mut State, key: &StreamKey, status: &Arc<Status>) {
        if status.holders.fetch_sub(1, Ordering::AcqRel) == 1
            && state
                .current
                .get(key)
                .is_some_and(|s| Arc::ptr_eq(s, status))
        {
            state.current.remove(key);
        }
    }

    /// Keeps a finished recording's file for a publisher that comes back.
    fn keep_for_append(&self, key: &StreamKey, ended: Ended) {
        self.state.lock().ended.insert(key.clone(), ended);
    }
}

impl Status {
    fn snapshot(&self) -> RecordingStatus {
        let backlog = self.backlog.as_ref();
        RecordingStatus {
            path: self.path.lock().clone(),
            bytes: self.bytes.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            since: self.started.elapsed(),
            error: self.error(),
            backlog: backlog.map_or(0, Backlog::bytes),
            backlog_peak: backlog.map_or(0, Backlog::peak),
            buffer: backlog.map_or(0, Backlog::limit),
        }
    }

    /// Why the recording stopped: its own error, or the registry's drop.
    fn error(&self) -> Option<String> {
        let own = self.error.lock().clone();
        own.or_else(|| {
            let why = self.backlog.as_ref()?.dropped()?;
            Some(format!("the disk fell behind: {why}"))
        })
    }
}
