//! When a relay tries again: exponential backoff from `push_backoff_min`,
//! doubling on each failure up to `push_backoff_max`, back to the start once a
//! connection has stayed up for a while. A destination that refuses us (a wrong
//! key, a stream name in use) is therefore retried ever more slowly, never in a
//! loop, and one that was fine for hours is retried at once after a blip.

use std::time::Duration;

/// How long a connection must stay up for the next failure to count as the
/// first again (or `push_backoff_max`, if shorter).
const STABLE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// A connection failed (after being up for `up_for`, if it got that far):
    /// how long to wait before the next one.
    pub fn failed(&mut self, up_for: Option<Duration>) -> Duration {
        if up_for.is_some_and(|d| d >= self.max.min(STABLE_AFTER)) {
            self.next = self.min;
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_and_starts_again_after_a_stable_spell() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(30));
        let waits: Vec<_> = (0..7).map(|_| b.failed(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.failed(Some(s(3))), s(30), "up 3 s is not stable");
        assert_eq!(b.failed(Some(s(10))), s(1), "up 10 s: a fresh start");
        assert_eq!(b.failed(None), s(2));
        // A maximum below 10 s is also the stable spell; a maximum below the
        // minimum is the minimum.
        let ms = Duration::from_millis;
        let mut quick = Backoff::new(ms(100), ms(400));
        assert_eq!(
            [None, None, None, Some(ms(400))].map(|up| quick.failed(up).as_millis()),
            [100, 200, 400, 100]
        );
        assert_eq!(Backoff::new(s(5), s(1)).failed(None), s(5));
    }
}
