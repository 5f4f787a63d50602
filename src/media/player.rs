//! What one player is sent, whatever carries it (RTMP chunks, HTTP-FLV, WebSocket-FLV):
//! the per-player filter that decides whether a queued frame goes out and at which
//! timestamp. It knows about pause, audio/video switched off, resuming only where a
//! decoder can start, and a new publisher's timeline; the registry has already done
//! the slow-player keyframe skipping. Every player writer uses this one type so the
//! rules cannot drift apart between protocols.

use super::frame::{Frame, FrameKind, FrameRole};
use super::timestamp::TimestampMapper;

#[derive(Debug, Clone)]
pub struct PlayerFilter {
    timestamps: TimestampMapper,
    paused: bool,
    audio: bool,
    video: bool,
    /// After a pause or a gap, wait for a frame a decoder can start from.
    need_key: bool,
    seen_video: bool,
    /// For players that start their timeline at 0: the first timestamp sent.
    origin: Option<u32>,
    zero_based: bool,
}

impl Default for PlayerFilter {
    fn default() -> Self {
        PlayerFilter::new()
    }
}

impl PlayerFilter {
    /// A player that wants everything, from the first frame on.
    pub fn new() -> PlayerFilter {
        PlayerFilter {
            timestamps: TimestampMapper::new(),
            paused: false,
            audio: true,
            video: true,
            need_key: false,
            seen_video: false,
            origin: None,
            zero_based: false,
        }
    }

    /// A player whose timeline starts at 0, like an FLV file. HTTP-FLV players get
    /// this: ffmpeg, for one, reads `onMetaData` as metadata only at timestamp 0
    /// (elsewhere it becomes a data stream), and browser players start at once.
    pub fn zero_based() -> PlayerFilter {
        PlayerFilter {
            zero_based: true,
            ..PlayerFilter::new()
        }
    }

    /// A new publisher took over the key: its timeline continues the player's, and
    /// whether it carries video is not known yet.
    pub fn new_epoch(&mut self) {
        self.new_epoch_after(0);
    }

    /// [`PlayerFilter::new_epoch`], the new timeline starting `gap` ms after the
    /// last frame (a recording continued in the same file).
    pub fn new_epoch_after(&mut self, gap: u32) {
        self.timestamps.new_epoch_after(gap);
        self.seen_video = false;
    }

    /// Pausing or resuming; either way the next frame sent must be decodable alone.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.need_key = true;
    }

    pub fn set_audio(&mut self, on: bool) {
        self.audio = on;
    }

    /// Turning video back on waits for a keyframe: inter frames would not decode.
    pub fn set_video(&mut self, on: bool) {
        self.need_key |= on && !self.video;
        self.video = on;
    }

    /// Whether this player gets the frame, and at which timestamp.
    pub fn admit(&mut self, frame: &Frame) -> Option<u32> {
        let wanted = match frame.kind {
            FrameKind::Audio => self.audio,
            FrameKind::Video => self.video,
            FrameKind::Data => true,
        };
        if self.paused || !wanted {
            return None;
        }
        if frame.kind == FrameKind::Video {
            self.seen_video = true;
        }
        if self.need_key && !frame.is_essential() && frame.kind != FrameKind::Data {
            let start_here =
                frame.is_keyframe() || (frame.kind == FrameKind::Audio && !self.seen_video);
            if !start_here {
                return None;
            }
            self.need_key = false;
        }
        if frame.role == FrameRole::Metadata {
            // Players read onMetaData as stream metadata only at timestamp 0 (ffmpeg
            // turns it into a data stream anywhere else), and it sets no timeline.
            return Some(0);
        }
        if !self.zero_based {
            return Some(self.timestamps.map(frame.timestamp));
        }
        if self.origin.is_none() && frame.kind == FrameKind::Data {
            // Metadata ahead of the first media frame may carry any timestamp (the
            // publish start, say): it opens the file at 0 and sets no timeline.
            return Some(0);
        }
        let ts = self.timestamps.map(frame.timestamp);
        let origin = *self.origin.get_or_insert(ts);
        // Cross-track jitter right at the start may step back a little: clamp at 0.
        let rel = ts.wrapping_sub(origin);
        Some(if (rel as i32) < 0 { 0 } else { rel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::frame::testing::{audio, video};

    #[test]
    fn passes_everything_by_default() {
        let mut f = PlayerFilter::new();
        assert_eq!(f.admit(&video(100, true)), Some(100));
        assert_eq!(f.admit(&audio(110)), Some(110));
        assert_eq!(f.admit(&video(140, false)), Some(140));
    }

    #[test]
    fn resume_after_pause_waits_for_a_keyframe() {
        let mut f = PlayerFilter::new();
        f.admit(&video(0, true));
        f.set_paused(true);
        assert_eq!(f.admit(&video(40, false)), None);
        f.set_paused(false);
        assert_eq!(
            f.admit(&video(80, false)),
            None,
            "inter frame after a pause"
        );
        assert_eq!(f.admit(&audio(90)), None, "audio waits for video too");
        let header = Frame::media(FrameKind::Video, 95, vec![0x17, 0, 0, 0, 0, 1]);
        assert_eq!(f.admit(&header), Some(95), "sequence headers always pass");
        assert_eq!(f.admit(&video(120, true)), Some(120));
        assert_eq!(f.admit(&video(160, false)), Some(160));
    }

    #[test]
    fn audio_only_resumes_on_any_audio_frame() {
        let mut f = PlayerFilter::new();
        f.set_paused(true);
        f.set_paused(false);
        assert_eq!(f.admit(&audio(10)), Some(10));
    }

    #[test]
    fn tracks_can_be_switched_off() {
        let mut f = PlayerFilter::new();
        f.set_audio(false);
        assert_eq!(f.admit(&audio(0)), None);
        f.set_video(false);
        assert_eq!(f.admit(&video(0, true)), None);
        f.set_video(true);
        assert_eq!(f.admit(&video(40, false)), None);
        assert_eq!(f.admit(&video(80, true)), Some(80));
    }

    #[test]
    fn zero_based_players_start_at_zero() {
        let mut f = PlayerFilter::zero_based();
        assert_eq!(f.admit(&Frame::metadata(0, vec![2])), Some(0));
        assert_eq!(
            f.admit(&video(7000, true)),
            Some(0),
            "metadata set no origin"
        );
        assert_eq!(f.admit(&audio(6990)), Some(0), "clamped, not wrapped");
        assert_eq!(f.admit(&video(7040, false)), Some(40));
        f.new_epoch();
        assert_eq!(f.admit(&video(0, true)), Some(40));
    }

    #[test]
    fn new_publisher_continues_the_timeline() {
        let mut f = PlayerFilter::new();
        f.admit(&video(5000, true));
        f.admit(&video(5040, false));
        f.new_epoch();
        assert_eq!(f.admit(&video(0, true)), Some(5040));
        assert_eq!(f.admit(&video(40, false)), Some(5080));
    }
}
