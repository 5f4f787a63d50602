//! When a player's thread waits for frames, when it writes and when it sleeps: the
//! merge window (fixed, or adapted to the audience), the tick groups and the
//! doorbell, decided in one place for every player of every protocol. The engine
//! asks [`MergeWindow`] for this round's window and [`Pace`] how long it may park
//! for the next frame and how long to sleep after a write; nothing here touches a
//! socket or a queue.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::registry::Audience;

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

/// How the merge window is chosen (`--merge-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    /// No delay while the server has few players, then a window that grows with
    /// the audience up to the maximum ([`adaptive_window`]).
    Adaptive,
    /// Always the maximum.
    Fixed,
}

impl MergeMode {
    pub const ALL: [MergeMode; 2] = [MergeMode::Adaptive, MergeMode::Fixed];

    /// The name a flag or a config file gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Adaptive => "adaptive",
            MergeMode::Fixed => "fixed",
        }
    }
}

impl fmt::Display for MergeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Players server-wide up to which the adaptive window is zero: every frame goes
/// to every player as it comes, a wake-up of the player's thread each. What a
/// wake-up costs is the server's CPU, whichever stream it serves (200 streams of
/// 2 players wake as often as one stream of 400), so the audience is counted
/// server-wide, not per stream. 64 players at about 75 frames a second (30 fps
/// video, 43-47 AAC frames) are the [`WAKE_BUDGET`].
pub const FEW_PLAYERS: usize = 64;
/// Wake-ups a second the adaptive window keeps the players within, server-wide,
/// once there are more than [`FEW_PLAYERS`]: a player on a window W wakes
/// 1000/W times a second, so W grows by 1 ms per 5 players. Measured on 2 cores:
/// a frame written alone costs a player 7-12 us of CPU more than merged (the
/// publisher's unpark, two context switches, the park), so 5000 a second are
/// 4-6% of a core.
pub const WAKE_BUDGET: u32 = 5000;
/// The shortest window the adaptive mode uses. A ticking player wakes once per
/// window whether or not a frame came; below the interval between frames (13 ms
/// at 75 a second) it would wake more often than writing each frame at once.
pub const MIN_ADAPTIVE_WINDOW: Duration = Duration::from_millis(20);

/// The adaptive merge window for `players` server-wide, at most `max`: zero up to
/// [`FEW_PLAYERS`] (the lowest latency where CPU is no issue), then what keeps
/// their wake-ups within [`WAKE_BUDGET`], from [`MIN_ADAPTIVE_WINDOW`] up to `max`
/// (the lowest cost where it matters).
pub fn adaptive_window(players: usize, max: Duration) -> Duration {
    if players <= FEW_PLAYERS || max.is_zero() {
        return Duration::ZERO;
    }
    let players = u32::try_from(players).unwrap_or(u32::MAX);
    let budget = Duration::from_secs(1)
        .checked_mul(players)
        .map_or(max, |d| d / WAKE_BUDGET);
    budget.max(MIN_ADAPTIVE_WINDOW).min(max)
}

/// The merge window every player of the server follows: `--merge-writes-ms` as
/// the maximum, `--merge-mode` for how it is chosen, and the audience it adapts to.
#[derive(Debug, Clone)]
pub struct MergeWindow {
    max: Duration,
    mode: MergeMode,
    audience: Audience,
}

impl MergeWindow {
    pub fn new(max: Duration, mode: MergeMode, audience: Audience) -> MergeWindow {
        MergeWindow {
            max,
            mode,
            audience,
        }
    }

    /// Always `window`, whatever the audience.
    pub fn fixed(window: Duration) -> MergeWindow {
        MergeWindow::new(window, MergeMode::Fixed, Audience::default())
    }

    /// The window now: a player asks once per round, so it follows the audience.
    pub fn now(&self) -> Duration {
        match self.mode {
            MergeMode::Fixed => self.max,
            MergeMode::Adaptive => adaptive_window(self.audience.players(), self.max),
        }
    }
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
    tick_group: u32,
    /// When media was last written.
    last_media: Option<Duration>,
}

impl Pace {
    /// The pace of a new player, on the next tick group. Each round says its merge
    /// window: a busy player's writes are at most one per window (zero: every
    /// frame as it comes).
    pub fn new() -> Pace {
        Pace::in_group(next_tick_group())
    }

    fn in_group(tick_group: u32) -> Pace {
        Pace {
            tick_group,
            last_media: None,
        }
    }

    /// Whether the player's own ticks wake it, not the publisher.
    fn ticking(&self, now: Duration, window: Duration) -> bool {
        !window.is_zero()
            && self
                .last_media
                .is_some_and(|at| now.saturating_sub(at) < QUIET_SPELL)
    }

    /// How long a round starting at `now` with merge window `window` may park on
    /// the doorbell for an item.
    pub fn doorbell_wait(&self, now: Duration, window: Duration) -> Duration {
        if self.ticking(now, window) {
            Duration::ZERO
        } else {
            IDLE_POLL
        }
    }

    /// How long to sleep after a round with merge window `window` that ended at
    /// `now`, having written media or not and left `more` queued (a burst too big
    /// for one write continues without a pause).
    pub fn after_round(
        &mut self,
        now: Duration,
        window: Duration,
        media: bool,
        more: bool,
    ) -> Duration {
        let ticking = self.ticking(now, window);
        if media {
            self.last_media = Some(now);
        }
        if window.is_zero() || more || !(media || ticking) {
            return Duration::ZERO;
        }
        until_next_tick(now, window, self.tick_group)
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::new()
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
        let w = ms(60);
        let mut pace = Pace::in_group(0);
        // Joining: it waits on the doorbell, so its first frames go out at once...
        assert_eq!(pace.doorbell_wait(ms(1000), w), IDLE_POLL);
        // ...then it sleeps to its next tick (1020 ms) after the write.
        assert_eq!(pace.after_round(ms(1005), w, true, false), ms(15));
        // A tick that finds the queue empty (the publisher is late) only looks:
        // parked, the player would cost the publisher a wake-up with the next frame.
        assert_eq!(pace.doorbell_wait(ms(1020), w), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1020), w, false, false), ms(60));
        // A backlog too big for one write continues without a pause.
        assert_eq!(pace.after_round(ms(1080), w, true, true), Duration::ZERO);
        assert_eq!(pace.doorbell_wait(ms(1081), w), Duration::ZERO);
        assert_eq!(pace.after_round(ms(1082), w, true, false), ms(58));
        // Still on the ticks just short of a quiet spell without media...
        let quiet = ms(1082) + QUIET_SPELL;
        let just_before = quiet - ms(1);
        assert_eq!(pace.doorbell_wait(just_before, w), Duration::ZERO);
        assert!(!pace.after_round(just_before, w, false, false).is_zero());
        // ...after it, the stream has stopped: the doorbell again, so the next
        // publisher's first frames go out at once.
        assert_eq!(pace.doorbell_wait(quiet, w), IDLE_POLL);
        assert_eq!(pace.after_round(quiet, w, false, false), Duration::ZERO);
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
        let w = ms(60);
        let mut pace = Pace::in_group(1);
        let (mut now, mut taken, mut parks, mut writes) = (ms(0), 0, 0, 0);
        while taken < frames.len() {
            let queued = frames[taken..].iter().take_while(|&&t| t <= now).count();
            let media = if queued > 0 {
                taken += queued;
                true
            } else if pace.doorbell_wait(now, w).is_zero() {
                false
            } else {
                // Parked until the publisher's next push rings the bell.
                parks += 1;
                now = frames[taken];
                taken += 1;
                true
            };
            writes += usize::from(media);
            now += pace.after_round(now, w, media, false);
        }
        assert_eq!(parks, 1, "only the joining wait parks");
        // One write per tick at most: 10 s of 60 ms windows.
        assert!(writes <= 10_000 / 60 + 1, "{writes} writes");
        // Writing every frame, each one is a wake-up: that is what the doorbell is for.
        let zero = Duration::ZERO;
        let mut every_frame = Pace::in_group(0);
        assert_eq!(every_frame.doorbell_wait(ms(5), zero), IDLE_POLL);
        assert_eq!(every_frame.after_round(ms(5), zero, true, false), zero);
        assert_eq!(every_frame.doorbell_wait(ms(6), zero), IDLE_POLL);
    }

    #[test]
    fn the_adaptive_window_is_zero_for_few_players_then_grows_with_the_audience_to_the_max() {
        let ms = Duration::from_millis;
        let max = ms(60);
        for players in [0, 1, 10, FEW_PLAYERS] {
            assert_eq!(adaptive_window(players, max), Duration::ZERO, "{players}");
        }
        // Past the few, never below the shortest window worth ticking at...
        assert_eq!(adaptive_window(FEW_PLAYERS + 1, max), MIN_ADAPTIVE_WINDOW);
        assert_eq!(adaptive_window(100, max), MIN_ADAPTIVE_WINDOW);
        // ...then 1 ms per 5 players: their wake-ups stay within the budget...
        assert_eq!(adaptive_window(150, max), ms(30));
        assert_eq!(adaptive_window(200, max), ms(40));
        assert_eq!(adaptive_window(250, max), ms(50));
        // ...up to the configured maximum.
        for players in [300, 400, 500, 2000, 5000, usize::MAX] {
            assert_eq!(adaptive_window(players, max), max, "{players}");
        }
        for players in [10, 100, 300, 5000] {
            let wakes =
                players as f64 * 1000.0 / adaptive_window(players, max).as_millis().max(1) as f64;
            assert!(
                players <= FEW_PLAYERS
                    || wakes <= f64::from(WAKE_BUDGET)
                    || adaptive_window(players, max) == max,
                "{players} players wake {wakes} times a second"
            );
        }
        // A maximum below the shortest window caps it; zero is every frame at once.
        assert_eq!(adaptive_window(500, ms(10)), ms(10));
        assert_eq!(adaptive_window(500, Duration::ZERO), Duration::ZERO);
        assert_eq!(adaptive_window(500, ms(350)), ms(100));
        assert_eq!(adaptive_window(5000, ms(350)), ms(350));
        // The window never shrinks as the audience grows.
        let mut last = Duration::ZERO;
        for players in 0..3000 {
            let w = adaptive_window(players, ms(350));
            assert!(w >= last, "{players}: {w:?} after {last:?}");
            last = w;
        }
    }

    #[test]
    fn a_merge_window_follows_its_mode_and_the_audience() {
        let ms = Duration::from_millis;
        let audience = Audience::default();
        let adaptive = MergeWindow::new(ms(60), MergeMode::Adaptive, audience.clone());
        let fixed = MergeWindow::new(ms(60), MergeMode::Fixed, audience.clone());
        assert_eq!((adaptive.now(), fixed.now()), (Duration::ZERO, ms(60)));
        let many: Vec<_> = (0..500).map(|_| audience.join()).collect();
        assert_eq!((adaptive.now(), fixed.now()), (ms(60), ms(60)));
        drop(many);
        assert_eq!(adaptive.now(), Duration::ZERO, "the audience left");
        assert_eq!(MergeWindow::fixed(ms(7)).now(), ms(7));
    }

    /// A player whose window shrinks to zero (the audience left) goes back to the
    /// doorbell at its next round; one whose window opens starts ticking.
    #[test]
    fn a_player_follows_its_window_as_it_changes() {
        let ms = Duration::from_millis;
        let zero = Duration::ZERO;
        let mut pace = Pace::in_group(0);
        assert_eq!(pace.after_round(ms(1000), zero, true, false), zero);
        assert_eq!(pace.doorbell_wait(ms(1001), zero), IDLE_POLL);
        // The window opens: after the next write it sleeps to its tick.
        assert_eq!(pace.after_round(ms(1010), ms(20), true, false), ms(10));
        assert_eq!(pace.doorbell_wait(ms(1020), ms(20)), zero);
        // It closes again: parked on the doorbell, written to at once.
        assert_eq!(pace.doorbell_wait(ms(1020), zero), IDLE_POLL);
        assert_eq!(pace.after_round(ms(1021), zero, true, false), zero);
    }
}
