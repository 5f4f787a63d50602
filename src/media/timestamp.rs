//! Per-player timestamp mapping. Players see the publisher's timestamps unchanged
//! while they behave; when a new publisher takes over the key, or the publisher's
//! clock jumps, the mapping shifts so the player's timeline carries on from where it
//! was instead of going backwards or leaping ahead. Arithmetic wraps at 2^32 like
//! RTMP timestamps themselves (about 49.7 days).

/// Backwards steps up to this size are normal interleaving jitter between tracks.
const MAX_BACKWARD_MS: i32 = 1_000;
/// Forward steps beyond this are a discontinuity, not a pause in the stream.
const MAX_FORWARD_MS: i32 = 10_000;

#[derive(Debug, Default, Clone)]
pub struct TimestampMapper {
    offset: u32,
    last_in: Option<u32>,
    last_out: u32,
    rebase: bool,
    /// How far after the last timestamp a new epoch starts.
    epoch_gap: u32,
}

impl TimestampMapper {
    pub fn new() -> TimestampMapper {
        TimestampMapper::default()
    }

    /// The next frame starts a new publisher's timeline.
    pub fn new_epoch(&mut self) {
        self.new_epoch_after(0);
    }

    /// The next frame starts a new timeline `gap` ms after the last timestamp
    /// (a recording continued in the same file, where two frames of a track at
    /// the same time would trouble remuxers).
    pub fn new_epoch_after(&mut self, gap: u32) {
        self.rebase = true;
        self.epoch_gap = gap;
    }

    /// Maps a publisher timestamp to the one this player is sent.
    pub fn map(&mut self, ts: u32) -> u32 {
        let first = self.last_in.is_none();
        if let Some(prev) = self.last_in {
            let step = ts.wrapping_sub(prev) as i32;
            if self.rebase || !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&step) {
                // Continue right where the player is; wrapping_sub makes out = last_out.
                let gap = if self.rebase { self.epoch_gap } else { 0 };
                self.offset = self.last_out.wrapping_add(gap).wrapping_sub(ts);
            }
        }
        self.rebase = false;
        self.last_in = Some(ts);
        let out = ts.wrapping_add(self.offset);
        // Only moving forward counts as progress: a small backward step on another
        // track must not drag the rebase point back.
        if first || (out.wrapping_sub(self.last_out) as i32) > 0 {
            self.last_out = out;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(m: &mut TimestampMapper, ts: &[u32]) -> Vec<u32> {
        ts.iter().map(|&t| m.map(t)).collect()
    }

    #[test]
    fn passes_through_a_well_behaved_stream() {
        let mut m = TimestampMapper::new();
        assert_eq!(
            map_all(&mut m, &[5000, 5023, 5040, 5046, 5080]),
            [5000, 5023, 5040, 5046, 5080]
        );
    }

    #[test]
    fn small_cross_track_jitter_is_kept() {
        let mut m = TimestampMapper::new();
        assert_eq!(
            map_all(&mut m, &[1000, 1040, 1020, 1080]),
            [1000, 1040, 1020, 1080]
        );
    }

    #[test]
    fn new_publisher_continues_the_timeline() {
        let mut m = TimestampMapper::new();
        map_all(&mut m, &[90_000, 90_040]);
        m.new_epoch();
        assert_eq!(map_all(&mut m, &[0, 40, 80]), [90_040, 90_080, 90_120]);
    }

    #[test]
    fn a_new_epoch_may_start_a_step_later() {
        let mut m = TimestampMapper::new();
        map_all(&mut m, &[1000, 1040]);
        m.new_epoch_after(40);
        assert_eq!(map_all(&mut m, &[0, 40]), [1080, 1120]);
        m.new_epoch();
        assert_eq!(map_all(&mut m, &[7]), [1120], "the gap is per epoch");
    }

    #[test]
    fn backward_jump_is_absorbed() {
        let mut m = TimestampMapper::new();
        map_all(&mut m, &[60_000, 60_040]);
        assert_eq!(map_all(&mut m, &[100, 140]), [60_040, 60_080]);
    }

    #[test]
    fn forward_leap_is_absorbed() {
        let mut m = TimestampMapper::new();
        map_all(&mut m, &[0, 40]);
        assert_eq!(map_all(&mut m, &[3_600_000, 3_600_040]), [40, 80]);
    }

    #[test]
    fn wrap_around_is_a_small_step() {
        let mut m = TimestampMapper::new();
        let near_end = u32::MAX - 30;
        assert_eq!(
            map_all(&mut m, &[near_end, near_end.wrapping_add(40)]),
            [near_end, 9]
        );
    }
}
