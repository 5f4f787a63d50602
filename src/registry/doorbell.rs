//! How a player thread sleeps until its queue has something, and how the
//! publisher wakes it: the doorbell each subscription carries.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::Instant;

/// How a player thread sleeps until its queue has something, without blocking in
/// the queue itself: crossbeam's blocking receive spins and calls `sched_yield`
/// several times before it parks, and a player that writes every frame
/// (`--merge-writes-ms 0`) waits once per frame, so that spinning was half the
/// server's CPU. Here the player arms the bell, looks at its queue once more and
/// parks ([`wait_for`]); the publisher rings after each item it queues, which unparks
/// the player only if it is armed.
#[derive(Debug)]
pub struct Doorbell {
    /// The thread that waits: the first one that did. A subscription may be made
    /// on one thread (a publisher's, starting a recorder) and read on another.
    thread: OnceLock<Thread>,
    armed: AtomicBool,
}

impl Doorbell {
    pub(super) fn new() -> Doorbell {
        Doorbell {
            thread: OnceLock::new(),
            armed: AtomicBool::new(false),
        }
    }

    fn arm(&self) {
        // Set before the flag: a ring that sees the flag finds the thread.
        self.thread.get_or_init(thread::current);
        self.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }

    /// Wakes the waiting thread if it is parked (or about to park) on this bell.
    pub(super) fn ring(&self) {
        if let Some(thread) = self.answer() {
            thread.unpark();
        }
    }

    /// Rings without waking yet: the thread to unpark, if the bell was armed, goes
    /// into `wake`, for [`wake_all`] once the ringer has let go of its locks. A
    /// publisher fanning a frame out to hundreds of players unparks none of them
    /// while it holds the stream's lock.
    pub(super) fn ring_into(&self, wake: &mut Vec<Thread>) {
        if let Some(thread) = self.answer() {
            wake.push(thread.clone());
        }
    }

    /// Disarms the bell for the ringer who finds it armed, and names the thread
    /// to wake.
    fn answer(&self) -> Option<&Thread> {
        // Orders the queue write before the check, against `arm`'s store and fence.
        fence(Ordering::SeqCst);
        // A plain load first: most rings find the bell unarmed (a ticking player
        // only looks), and reading the flag leaves its cache line shared with the
        // player's thread where a swap would take it over every time.
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::SeqCst) {
            self.thread.get()
        } else {
            None
        }
    }
}

/// Unparks the threads [`Doorbell::ring_into`] collected, emptying `wake`.
pub(super) fn wake_all(wake: &mut Vec<Thread>) {
    for thread in wake.drain(..) {
        thread.unpark();
    }
}

/// What `check` finds in the queues behind `bells`, parking the calling thread
/// (the subscriptions' reader) between looks; None once `deadline` passes. The bells
/// are armed before the second look, so an item queued before it is seen there and
/// one queued after it rings: no wake-up is lost. With the deadline already past,
/// this is one look and the bells stay unarmed: the publisher rings no one.
pub fn wait_for<'a, T>(
    bells: impl Iterator<Item = &'a Doorbell> + Clone,
    deadline: Instant,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        for bell in bells.clone() {
            bell.arm();
        }
        let found = check();
        if found.is_none() {
            thread::park_timeout(left);
        }
        for bell in bells.clone() {
            bell.disarm();
        }
        if found.is_some() {
            return found;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A player that only looks at its queue (between merge ticks) must not arm its
    /// bell: an armed bell makes the publisher's next push wake it.
    #[test]
    fn a_wait_already_past_its_deadline_looks_once_and_arms_nothing() {
        let bell = Doorbell::new();
        let mut looks = 0;
        let found: Option<()> = wait_for(std::iter::once(&bell), Instant::now(), || {
            looks += 1;
            assert!(
                !bell.armed.load(Ordering::SeqCst),
                "armed during look {looks}"
            );
            None
        });
        assert!(found.is_none());
        assert_eq!(looks, 1);
        assert!(!bell.armed.load(Ordering::SeqCst));
    }
}
