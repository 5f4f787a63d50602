//! When a player's thread waits for frames, when it writes and when it sleeps: the
//! merge window, the tick groups and the doorbell, decided in one place for every
//! player of every protocol. The engine asks [`Pace`] how long it may park for the
//! next frame and how long to sleep after a write; nothing here touches a socket
//! or a queue.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a player waits for frames before it looks at what the client sent
/// (a command, or the connection closing) on a stream with nothing flowing. A
/// publisher's arrival wakes it at once (the doorbell); only the client's own
/// input waits this long. Each look costs a wake-up: 300 players waiting for a
/// stream cost 2.7% of a core at 250 ms, so an audience of thousands waiting for
/// an event to start would keep a core busy at a much shorter period.
pub const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long after its last media write a player with a merge window keeps to its
/// ticks alone (see [`Pace`]). Longer than the gaps a saturated machine puts
/// between a publisher's pushes (up to 100-200 ms measured at 2000 players), short
/// enough that the players of a stream that stopped are woken at once by the next
/// publisher's first frames.
const QUIET_SPELL: Duration = Duration::from_secs(1);

/// Groups of players that share merge ticks. One group (everyone on the same
/// tick) is cheapest, as the machine idles once per tick instead of once per
/// player, but the last player of a big group is written several milliseconds
/// after its tick; a few groups staggered across the window keep most of the
/// saving and spread that delay. Measured at 500 players, 40 ms: separate
/// sleeps 3.0 CPU s/GB; one group 1.7-2.0 CPU s/GB with latency p99 at window
/// + 5-8 ms.
const TICK_GROUPS: u32 = 4;

/// The tick group of the next connection: round robin.
fn next_tick_group() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % TICK_GROUPS
}

/// When a playing connection's thread waits for frames and when it sleeps; times
/// are since the server started.
///
/// A busy player is written to at most once per merge window: sleeping to its next
/// tick after a media write lets the next frames queue up without waking the
/// thread per frame, and they leave in one write. While its stream flows, the
/// ticks alone wake it: a tick that finds the queue empty (the publisher is late,
/// or this thread was woken late for the tick before) sleeps to the next tick
/// rather than park on the doorbell. Were it to park, the publisher would wake it
/// with the next frame, and on a saturated machine a publisher that wakes
/// hundreds of threads per frame is preempted by them, falls behind the stream and
/// leaves still more queues empty at the next ticks: at 2000 players that feedback
/// cut delivery to 15-46% of the stream. The doorbell is for a quiet stream (no
/// media written for [`QUIET_SPELL`]: waiting for a publisher, or a joining player,
/// whose first frames then go out at once) and for writing every frame as it
/// arrives (`--merge-writes-ms 0`).
#[derive(Debug)]
pub struct Pace {
    merge: Duration,
    tick_group: u32,
    /// When media was last written.
    last_media: Option<Duration>,
}

impl Pace {
    /// The pace of a player whose busy writes are at most one per `merge` (zero:
    /// every frame as it comes), on the next tick group.
    pub fn new(merge: Duration) -> Pace {
        Pace::in_group(merge, next_tick_group())
    }

    fn in_group(merge: Duration, tick_group: u32) -> Pace {
        Pace {
            merge,
            tick_group,
            last_media: None,
        }
    }

    /// Whether the player's own ticks wake it, not the publisher.
    fn ticking(&self, now: Duration) -> bool {
        !self.merge.is_zero()
            && self
                .last_media
                .is_some_and(|at| now.saturating_sub(at) < QUIET_SPELL)
    }

    /// How long a round starting at `now` may park on the doorbell for an item.
    pub fn doorbell_wait(&self, now: Duration) -> Duration {
        if self.ticking(now) {
            Duration::ZERO
        } else {
            IDLE_POLL
        }
    }

    /// How long to sleep after a round that ended at `now`, having written media
    /// or not and left `more` queued (a burst too big for one write continues
    /// without a pause).
    pub fn after_round(&mut self, now: Duration, media: bool, more: bool) -> Duration {
        let ticking = self.ticking(now);
        if media {
            self.last_media = Some(now);
        }
        if self.merge.is_zero() || more || !(media || ticking) {
            return Duration::ZERO;
        }
        until_next_tick(now, self.merge, self.tick_group)
    }
}

/// How long to sleep from `now` (time since the server started) to the next tick
/// of `group`: the multiples of `window`, shifted by the group's share of it.
fn until_next_tick(now: Duration, window: Duration, group: u32) -> Duration {
    let window = window.as_nanos().max(1);
    let shift = window * u128::from(group % TICK_GROUPS) / u128::from(TICK_GROUPS);
    let left = window - (now.as_nanos() + shift) % window;
    Duration::from_nanos(left.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_multiples_of_the_window_shifted_by_group() {
        let ms = Duration::from_millis;
        assert_eq!(until_next_tick(ms(0), ms(40), 0), ms(40));
        assert_eq!(until_next_tick(ms(1), ms(40), 0), ms(39));
        assert_eq!(until_next_tick(ms(39), ms(40), 0), ms(1));
        assert_eq!(until_next_tick(ms(40), ms(40), 0), ms(40));
        assert_eq!(until_next_tick(ms(1_000_123), ms(20), 0), ms(17));
        // Group 1 ticks one group's step earlier: at 40 - step, 80 - step...
        let step = ms(40) / TICK_GROUPS;
        assert_eq!(until_next_tick(ms(0), ms(40), 1), ms(40) - step);
        assert_eq!(until_next_tick(ms(40) - step, ms(40), 1), ms(40));
        assert_eq!(
            until_next_tick(ms(41) - step, ms(40), 1),
            ms(39),
            "just past a tick, the next is a window away"
        );
    }

    #[test]
    fn while_frames_flow_a_player_sleeps_to_its_ticks_and_never_parks_on_the_doorbell() {
        let ms = Duration::from_millis;
        let mut pace = Pace::in_group(ms(60), 0);
        // Joining: it waits on the doorbell, so its first frames go out at once...
        assert_eq!(pace.doorbell_wait(ms(1000)), IDLE_POLL);
        // ...then it sleeps to its next tick (1020 ms) after the write.
        assert_eq!(pace.after_round(ms(1005), true, false), ms(15));
        // A tick that finds the queue empty (the publisher is late) only looks:
        // parked, the player would cost the publisher a wake-up with the next frame.
        assert_eq!(pace.doorbell_wait(ms(1020)), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1020), false, false), ms(60));
        // A backlog too big for one write continues without a pause.
        assert_eq!(pace.after_round(ms(1080), true, true), Duration::ZERO);
        assert_eq!(pace.doorbell_wait(ms(1081)), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1082), true, false), ms(58));
        // Still on the ticks just short of a quiet spell without media...
        let quiet = ms(1082) + QUIET_SPELL;
        let just_before = quiet - ms(1);
        assert_eq!(pace.doorbell_wait(just_before), Duration::ZERO);
        assert!(!pace.after_round(just_before, false, false).is_zero());
        // ...after it, the stream has stopped: the doorbell again, so the next
        // publisher's first frames go out at once.
        assert_eq!(pace.doorbell_wait(quiet), IDLE_POLL);
        assert_eq!(pace.after_round(quiet, false, false), Duration::ZERO);
    }

    /// A player of a stream whose frames come late and in bursts parks on the
    /// doorbell only to join; the publisher's pushes never have to wake it.
    #[test]
    fn a_late_publisher_wakes_no_ticking_player() {
        let ms = Duration::from_millis;
        // From 500 ms after the player joined, 77 items a second, but every 400 ms
        // the publisher stalls for 150 ms and then pushes what it owes at once.
        let frames: Vec<Duration> = (0..770u64)
            .map(|i| {
                let due = i * 13;
                let stalled = due % 400 >= 250;
                ms(500 + if stalled { due - due % 400 + 400 } else { due })
            })
            .collect();
        let mut pace = Pace::in_group(ms(60), 1);
        let (mut now, mut taken, mut parks, mut writes) = (ms(0), 0, 0, 0);
        while taken < frames.len() {
            let queued = frames[taken..].iter().take_while(|&&t| t <= now).count();
            let media = if queued > 0 {
                taken += queued;
                true
            } else if pace.doorbell_wait(now).is_zero() {
                false
            } else {
                // Parked until the publisher's next push rings the bell.
                parks += 1;
                now = frames[taken];
                taken += 1;
                true
            };
            writes += usize::from(media);
            now += pace.after_round(now, media, false);
        }
        assert_eq!(parks, 1, "only the joining wait parks");
        // One write per tick at most: 10 s of 60 ms windows.
        assert!(writes <= 10_000 / 60 + 1, "{writes} writes");
        // Writing every frame, each one is a wake-up: that is what the doorbell is for.
        let mut every_frame = Pace::in_group(Duration::ZERO, 0);
        assert_eq!(every_frame.doorbell_wait(ms(5)), IDLE_POLL);
        assert_eq!(every_frame.after_round(ms(5), true, false), Duration::ZERO);
        assert_eq!(every_frame.doorbell_wait(ms(6)), IDLE_POLL);
    }
}
