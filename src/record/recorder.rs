//! One recording's thread: it reads its lossless subscription, feeds `segments`
//! and does what that says with real files (`file`), checkpointing every
//! `record_flush`. It ends with the publish, or on the first error (one error
//! line, the status flagged; the stream goes on).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{error, info};

use super::file::{FileError, FlvFile, Storage};
use super::metadata::FieldOffsets;
use super::naming::start_time;
use super::segments::{Limits, Output, Segments};
use super::{Ended, Recorders, Status};
use crate::admission::RecordDoneHook;
use crate::config::record::RecordSettings;
use crate::media::frame::Frame;
use crate::registry::{Next, PlayerItem, Subscription};
use crate::stream_key::StreamKey;

/// Everything a recording thread needs.
pub(super) struct Job {
    pub recorders: Arc<Recorders>,
    pub key: StreamKey,
    /// The publisher's address.
    pub peer: SocketAddr,
    pub settings: RecordSettings,
    pub limits: Limits,
    pub status: Arc<Status>,
    pub hook: Option<RecordDoneHook>,
    pub subscription: Subscription,
}

/// How long a new recording waits for the key's last one to close its file
/// before it gives up continuing it (`record_append`).
const APPEND_WAIT: Duration = Duration::from_secs(5);

/// Why a recording stopped early.
enum Stop {
    /// The registry dropped it: the disk fell behind by more than the bound.
    FellBehind(String),
    File(FileError),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::FellBehind(why) => write!(f, "the disk fell behind: {why}"),
            Stop::File(e) => e.fmt(f),
        }
    }
}

impl From<FileError> for Stop {
    fn from(e: FileError) -> Stop {
        Stop::File(e)
    }
}

pub(super) fn run(job: Job) {
    let Job {
        recorders,
        key,
        peer,
        settings,
        limits,
        status,
        hook,
        subscription,
    } = job;
    // Accounted for however the thread ends, a panic included, so the stop
    // never waits for a recording that is gone.
    let _done = ThreadDone {
        recorders: &recorders,
        key: &key,
        status: &status,
    };
    // Frames queue up meanwhile (within the bound): nothing is lost.
    let ended = settings
        .append
        .then(|| recorders.take_ended(&key, APPEND_WAIT))
        .flatten();
    let (mut segments, continued) = match ended {
        Some(ended) => {
            let mut segments = ended.segments;
            segments.new_publish(limits);
            (segments, Some((ended.file, ended.len, ended.fields)))
        }
        None => (Segments::new(limits), None),
    };
    let mut files = Files {
        storage: recorders.storage.as_ref(),
        settings: &settings,
        key: &key,
        status: &status,
        recorders: &recorders,
        hook: hook.as_ref(),
        peer,
        file: None,
        last: continued,
    };
    let result = record(&subscription, &mut segments, &mut files, settings.flush);
    // Unsubscribed before anything slow (a failing close): the publisher's
    // thread no longer queues for us.
    drop(subscription);
    match result {
        Ok(()) => {
            if settings.append && segments.has_file() {
                if let Some((file, len, fields)) = files.last.take() {
                    let ended = Ended {
                        segments,
                        file,
                        len,
                        fields,
                        at: Instant::now(),
                        gap: settings.reconnect_gap,
                    };
                    recorders.keep_for_append(&key, ended);
                }
            }
        }
        Err(stop) => {
            let duration = segments.duration_ms();
            // A file that only fell behind is sound: close it properly. After a
            // write error, what is on disk is what is left.
            let closed = match (&stop, files.file.take()) {
                (Stop::FellBehind(_), Some(file)) => file.close(duration).map(|_| ()).err(),
                _ => None,
            };
            let kept = match status.path.lock().as_ref() {
                Some(_) => "; the file keeps what was written before",
                None => "",
            };
            let also = closed.map(|e| format!(" (then {e})")).unwrap_or_default();
            match &stop {
                // The registry said so in its one error line when it dropped us.
                Stop::FellBehind(_) => {
                    info!("recording {key}: ended after falling behind{also}{kept}")
                }
                Stop::File(_) => error!(
                    "recording {key} stopped: {stop}{also}{kept}; the stream goes on unrecorded"
                ),
            }
            *status.error.lock() = Some(stop.to_string());
            recorders.totals.failed.fetch_add(1, Ordering::Relaxed);
            if let (Some(hook), Some(path)) = (&hook, status.path.lock().clone()) {
                let bytes = status.bytes.load(Ordering::Relaxed);
                let took = Duration::from_millis(duration);
                hook.send(&path, bytes, took, Some(&stop.to_string()));
            }
        }
    }
}

/// Tells the recorders the thread is done when dropped.
struct ThreadDone<'a> {
    recorders: &'a Recorders,
    key: &'a StreamKey,
    status: &'a Arc<Status>,
}

impl Drop for ThreadDone<'_> {
    fn drop(&mut self) {
        self.recorders.thread_done(self.key, self.status);
    }
}

/// Reads the subscription until the publish ends.
fn record(
    subscription: &Subscription,
    segments: &mut Segments,
    files: &mut Files,
    flush: Duration,
) -> Result<(), Stop> {
    let mut checkpoint = Instant::now() + flush;
    loop {
        match subscription.next(checkpoint) {
            Next::Item(PlayerItem::Frame(frame)) => segments.push(&frame, files)?,
            Next::Item(PlayerItem::PublishStop) => {
                segments.end_publish(files)?;
                return Ok(());
            }
            // Subscribed while live: a start is not news.
            Next::Item(PlayerItem::PublishStart) | Next::Idle => {}
            Next::Ended(Some(why)) => return Err(Stop::FellBehind(why)),
            // `next` says this as `Ended`; the item is how the player engine hears it.
            Next::Item(PlayerItem::Dropped(why)) => return Err(Stop::FellBehind(why.to_string())),
            Next::Ended(None) => {
                segments.end_publish(files)?;
                return Ok(());
            }
        }
        let now = Instant::now();
        if now >= checkpoint {
            if let Some(file) = files.file.as_mut() {
                file.checkpoint(segments.duration_ms())?;
            }
            checkpoint = now + flush;
        }
    }
}

/// The files of one recording, as `segments` asks for them.
struct Files<'a> {
    storage: &'a dyn Storage,
    settings: &'a RecordSettings,
    key: &'a StreamKey,
    status: &'a Status,
    recorders: &'a Recorders,
    hook: Option<&'a RecordDoneHook>,
    /// The publisher, for log lines about its frames.
    peer: SocketAddr,
    file: Option<FlvFile>,
    /// The last file closed (or the one a previous publish left): what
    /// `resume` opens again.
    last: Option<(PathBuf, u64, FieldOffsets)>,
}

impl Files<'_> {
    fn opened(&mut self, file: FlvFile, how: &str) {
        info!("recording {}: {how} {}", self.key, file.path().display());
        *self.status.path.lock() = Some(file.path().to_owned());
        self.status.bytes.store(file.len(), Ordering::Relaxed);
        self.file = Some(file);
    }
}

impl Output for Files<'_> {
    type Error = FileError;

    fn begin(&mut self, head: &[u8], fields: FieldOffsets) -> Result<(), FileError> {
        let name = self.settings.path.expand(
            &self.key.app,
            &self.key.name,
            &start_time(SystemTime::now()),
        );
        let path = self.settings.dir.join(name);
        let file = FlvFile::create(self.storage, &path, head, fields, self.peer)?;
        self.recorders
            .totals
            .bytes
            .fetch_add(file.len(), Ordering::Relaxed);
        self.opened(file, "writing");
        Ok(())
    }

    fn resume(&mut self) -> Result<(), FileError> {
        let (path, len, fields) = self.last.clone().ok_or_else(|| FileError {
            path: PathBuf::new(),
            action: "continue",
            source: std::io::Error::other("no file to continue"),
        })?;
        let file = FlvFile::reopen(self.storage, &path, len, fields, self.peer)?;
        self.opened(file, "continuing");
        Ok(())
    }

    fn tag(&mut self, frame: &Arc<Frame>, timestamp: u32) -> Result<(), FileError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let before = file.len();
        file.write_tag(frame, timestamp)?;
        self.status.bytes.store(file.len(), Ordering::Relaxed);
        self.recorders
            .totals
            .bytes
            .fetch_add(file.len() - before, Ordering::Relaxed);
        Ok(())
    }

    fn end(&mut self, duration_ms: u64) -> Result<(), FileError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let path = file.path().to_owned();
        let fields = file.fields();
        let len = file.close(duration_ms)?;
        let took = Duration::from_millis(duration_ms);
        info!(
            "recording {}: closed {} ({len} bytes, {:.1} s)",
            self.key,
            path.display(),
            took.as_secs_f64()
        );
        self.status.files.fetch_add(1, Ordering::Relaxed);
        self.recorders.totals.files.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.hook {
            hook.send(&path, len, took, None);
        }
        self.last = Some((path, len, fields));
        Ok(())
    }
}
