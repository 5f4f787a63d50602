//! What each relay reports to the API and the metrics: its direction, local
//! stream, upstream URL (redacted), state with the last error, bytes and
//! reconnects. The worker thread updates its `RelayStatus`; readers take a
//! `RelaySnapshot`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::stream_key::StreamKey;

/// Which way a relay carries a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A local stream published to another server (`push`).
    Push,
    /// Another server's stream published here (`origin`, `pull`).
    Pull,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }
}

/// Where a relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Dialling, shaking hands, asking to publish or play.
    Connecting,
    /// Media flows.
    Live,
    /// A pull whose source has no publisher right now; the connection stays.
    Waiting,
    /// Failed; the next attempt, after waiting `wait`, is at `retry_at`.
    BackingOff { retry_at: Instant, wait: Duration },
    /// Will not run (a URL that cannot be made for the stream); the last error
    /// says why.
    Disabled,
}

impl RelayState {
    /// The name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Connecting => "connecting",
            RelayState::Live => "live",
            RelayState::Waiting => "waiting",
            RelayState::BackingOff { .. } => "backing_off",
            RelayState::Disabled => "disabled",
        }
    }

    pub const NAMES: [&'static str; 5] =
        ["connecting", "live", "waiting", "backing_off", "disabled"];
}

struct Inner {
    state: RelayState,
    since: Instant,
    last_error: Option<String>,
    /// Connections tried again after a failure (see [`RelayStatus::retrying`]).
    reconnects: u64,
}

/// One relay's live numbers, shared by its worker and the readers.
pub struct RelayStatus {
    pub direction: Direction,
    pub key: StreamKey,
    /// Redacted: safe for logs and the API.
    pub url: String,
    inner: Mutex<Inner>,
    /// Socket bytes sent (push) or received (pull), over every connection.
    pub bytes: Arc<AtomicU64>,
}

impl RelayStatus {
    pub fn new(direction: Direction, key: StreamKey, url: String) -> RelayStatus {
        RelayStatus {
            direction,
            key,
            url,
            inner: Mutex::new(Inner {
                state: RelayState::Connecting,
                since: Instant::now(),
                last_error: None,
                reconnects: 0,
            }),
            bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn set(&self, state: RelayState) {
        Self::enter(&mut self.inner.lock(), state);
    }

    fn enter(inner: &mut Inner, state: RelayState) {
        if inner.state != state {
            inner.state = state;
            inner.since = Instant::now();
        }
    }

    /// The wait is over: connecting again, one reconnect more. Both change under
    /// one lock, so a reader never sees the new count beside the previous wait.
    pub fn retrying(&self) {
        let mut inner = self.inner.lock();
        inner.reconnects += 1;
        Self::enter(&mut inner, RelayState::Connecting);
    }

    /// Failed with `error`; the state follows, under the same lock.
    pub fn failed(&self, error: String, state: RelayState) {
        let mut inner = self.inner.lock();
        inner.last_error = Some(error);
        Self::enter(&mut inner, state);
    }

    /// Failed with `error`; the next attempt is `wait` from now. One clock
    /// reading starts the state and sets the retry, so the API's
    /// `state_seconds + retry_in_seconds` is the wait chosen.
    pub fn backing_off(&self, error: String, wait: Duration) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.last_error = Some(error);
        inner.state = RelayState::BackingOff {
            retry_at: now + wait,
            wait,
        };
        inner.since = now;
    }

    pub fn state(&self) -> RelayState {
        self.inner.lock().state
    }

    pub fn snapshot(&self, now: Instant) -> RelaySnapshot {
        let inner = self.inner.lock();
        let (retry_in, backoff) = match inner.state {
            RelayState::BackingOff { retry_at, wait } => {
                (Some(retry_at.saturating_duration_since(now)), Some(wait))
            }
            _ => (None, None),
        };
        RelaySnapshot {
            direction: self.direction,
            key: self.key.clone(),
            url: self.url.clone(),
            state: inner.state.as_str(),
            state_for: now.saturating_duration_since(inner.since),
            retry_in,
            backoff,
            last_error: inner.last_error.clone(),
            bytes: self.bytes.load(Ordering::Relaxed),
            reconnects: inner.reconnects,
        }
    }
}

/// A relay as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySnapshot {
    pub direction: Direction,
    pub key: StreamKey,
    pub url: String,
    /// `connecting`, `live`, `waiting`, `backing_off` or `disabled`.
    pub state: &'static str,
    /// How long it has been in this state.
    pub state_for: Duration,
    /// Backing off: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// Backing off: the whole wait chosen for it (the backoff's current step).
    pub backoff: Option<Duration>,
    pub last_error: Option<String>,
    pub bytes: u64,
    pub reconnects: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_backoff_plus_time_left_is_the_wait_chosen() {
        let key = StreamKey::new("live", "cam").unwrap();
        let status = RelayStatus::new(Direction::Push, key, "rtmp://x/live/cam".into());
        let wait = Duration::from_millis(1600);
        status.backing_off("refused".into(), wait);
        // Read now and later: the two parts move, their sum does not.
        for later in [Duration::ZERO, Duration::from_millis(700)] {
            let snap = status.snapshot(Instant::now() + later);
            assert_eq!(snap.state, "backing_off");
            let left = snap.retry_in.expect("backing off");
            assert_eq!(snap.state_for + left, wait, "read {later:?} later");
        }
        let snap = status.snapshot(Instant::now());
        assert_eq!(snap.last_error.as_deref(), Some("refused"));
        assert_eq!((snap.backoff, snap.reconnects), (Some(wait), 0));
        // The count moves with the state: never a new count beside the old wait.
        status.retrying();
        let snap = status.snapshot(Instant::now());
        assert_eq!(snap.state, "connecting");
        assert_eq!(
            (snap.retry_in, snap.backoff, snap.reconnects),
            (None, None, 1)
        );
    }
}
