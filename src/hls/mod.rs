//! HLS from memory: fMP4 segments and Low-Latency HLS parts of every live
//! stream, built as frames arrive and shared by every viewer.
//!
//! One [`Segmenter`] per live stream (not per viewer) is fed by the registry's
//! publish tap on the publisher's thread, so it sees every frame, in order, and
//! costs no thread or queue. Its state sits behind one mutex with a condition
//! variable that is signalled at each new part: a viewer's blocking playlist
//! reload (`_HLS_msn`/`_HLS_part`) or preload-hint request waits on it with a
//! deadline instead of polling. The media playlist is rendered once per part and
//! shared (its URIs are relative). Memory grows with the segments kept
//! (`hls_segments`), not with the viewers: they are handed `Arc`s of the same
//! bytes.
//!
//! A stream whose publisher stops gets `EXT-X-ENDLIST` and stays readable for
//! [`RETAIN_ENDED`], so viewers see the end; a new publish on the key replaces
//! it. Viewers are counted as sessions (`sessions`).

pub mod playlist;
pub mod segmenter;
pub mod sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

use crate::media::frame::Frame;
use crate::registry::{FrameTap, PublishTap};
use crate::stream_key::StreamKey;
pub use segmenter::{Init, Part, Segment, Segmenter, SegmenterConfig};
pub use sessions::Sessions;

/// How long an ended stream's playlist (with `EXT-X-ENDLIST`) stays served.
pub const RETAIN_ENDED: Duration = Duration::from_secs(30);

/// The settings of a key's app, or `None` when HLS is off for it.
pub type SettingsFor = dyn Fn(&StreamKey) -> Option<SegmenterConfig> + Send + Sync;

/// Every stream's HLS, and the viewers' sessions.
pub struct Hls {
    streams: Mutex<HashMap<StreamKey, Arc<HlsStream>>>,
    settings: Box<SettingsFor>,
    pub sessions: Sessions,
    closed: AtomicBool,
}

impl Hls {
    pub fn new(settings: Box<SettingsFor>) -> Arc<Hls> {
        Arc::new(Hls {
            streams: Mutex::new(HashMap::new()),
            settings,
            sessions: Sessions::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// The stream's HLS, live or recently ended.
    pub fn stream(&self, key: &StreamKey) -> Option<Arc<HlsStream>> {
        self.streams.lock().get(key).cloned()
    }

    /// Drops streams that ended more than [`RETAIN_ENDED`] ago and ends idle
    /// sessions; called every second or so.
    pub fn sweep(&self, now: Instant) {
        self.streams.lock().retain(|_, s| {
            s.state
                .lock()
                .ended_at
                .is_none_or(|at| now.saturating_duration_since(at) < RETAIN_ENDED)
        });
        self.sessions.expire(now);
    }

    /// The server is stopping: every stream ends (viewers waiting are woken and
    /// see `EXT-X-ENDLIST`) and every session ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let streams: Vec<_> = self.streams.lock().values().cloned().collect();
        for s in streams {
            s.end();
        }
        self.sessions.end_all();
    }
}

impl PublishTap for Hls {
    fn start(&self, key: &StreamKey) -> Option<Box<dyn FrameTap>> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let config = (self.settings)(key)?;
        let stream = Arc::new(HlsStream {
            key: key.clone(),
            state: Mutex::new(StreamState {
                segmenter: Segmenter::new(config),
                playlist: Arc::new(String::new()),
                ended_at: None,
            }),
            changed: Condvar::new(),
        });
        // A new publish replaces what an earlier one left.
        self.streams.lock().insert(key.clone(), stream.clone());
        Some(Box::new(Feed(stream)))
    }
}

/// The tap of one publish.
struct Feed(Arc<HlsStream>);

impl FrameTap for Feed {
    fn frame(&mut self, frame: &Arc<Frame>) {
        self.0.push(frame);
    }

    fn end(&mut self) {
        self.0.end();
    }
}

/// One stream's segments, playlist and the viewers' wake-up.
pub struct HlsStream {
    pub key: StreamKey,
    state: Mutex<StreamState>,
    /// Signalled at each new part and at the end.
    changed: Condvar,
}

struct StreamState {
    segmenter: Segmenter,
    /// The media playlist as of the last part.
    playlist: Arc<String>,
    ended_at: Option<Instant>,
}

impl HlsStream {
    fn push(&self, frame: &Frame) {
        let mut state = self.state.lock();
        let pushed = state.segmenter.push(frame, SystemTime::now());
        if let Some(note) = &pushed.note {
            warn!("{}: HLS: {note}", self.key);
        }
        if pushed.new_part {
            if state.segmenter.segments().len() == 1
                && state.segmenter.segments()[0].parts.len() == 1
            {
                let init = state.segmenter.init().map(|i| {
                    i.tracks
                        .iter()
                        .map(|t| t.codec_string.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                });
                info!("{}: HLS started ({})", self.key, init.unwrap_or_default());
            }
            state.playlist = Arc::new(playlist::media(&state.segmenter));
            drop(state);
            self.changed.notify_all();
        }
    }

    fn end(&self) {
        let mut state = self.state.lock();
        if state.ended_at.is_some() {
            return;
        }
        state.segmenter.end();
        state.playlist = Arc::new(playlist::media(&state.segmenter));
        state.ended_at = Some(Instant::now());
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until `ready` holds for the segmenter (or the stream ended, or
    /// `deadline` passed), then reads from it with `read(segmenter, ready)`.
    pub fn wait<T>(
        &self,
        deadline: Instant,
        ready: impl Fn(&Segmenter) -> bool,
        read: impl FnOnce(&Segmenter, &Arc<String>, bool) -> T,
    ) -> T {
        let mut state = self.state.lock();
        loop {
            if ready(&state.segmenter) {
                return read(&state.segmenter, &state.playlist, true);
            }
            if state.ended_at.is_some() || self.changed.wait_until(&mut state, deadline).timed_out()
            {
                let ok = ready(&state.segmenter);
                return read(&state.segmenter, &state.playlist, ok);
            }
        }
    }

    /// Reads the segmenter as it is now.
    pub fn read<T>(&self, read: impl FnOnce(&Segmenter, &Arc<String>) -> T) -> T {
        let state = self.state.lock();
        read(&state.segmenter, &state.playlist)
    }
}
