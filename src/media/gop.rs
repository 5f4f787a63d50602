//! The fast-start cache of one live stream: metadata, the latest audio and video
//! sequence headers, and the frames since the last keyframe. A player that joins
//! mid-stream is sent `burst()` and can decode at once instead of waiting for the
//! next keyframe.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::{Frame, FrameKind, FrameRole};

/// How much of an audio-only stream is kept for players joining it.
const AUDIO_ONLY_WINDOW_MS: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLimits {
    /// Keep frames at all; with `false` only metadata and sequence headers are kept.
    pub enabled: bool,
    pub max_frames: usize,
    pub max_bytes: usize,
}

#[derive(Debug)]
pub struct GopCache {
    limits: GopLimits,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    has_video: bool,
}

impl GopCache {
    pub fn new(limits: GopLimits) -> GopCache {
        GopCache {
            limits,
            metadata: None,
            video_header: None,
            audio_header: None,
            frames: VecDeque::new(),
            bytes: 0,
            has_video: false,
        }
    }

    /// Whether this stream has carried video since the cache was last cleared. An
    /// audio-only stream has no keyframes, so every audio frame is a place to start.
    pub fn has_video(&self) -> bool {
        self.has_video
    }

    pub fn push(&mut self, frame: &Arc<Frame>) {
        match (frame.role, frame.kind) {
            (FrameRole::Metadata, _) => self.metadata = Some(frame.clone()),
            (FrameRole::SequenceHeader, FrameKind::Video) => {
                self.has_video = true;
                self.video_header = Some(frame.clone());
            }
            (FrameRole::SequenceHeader, _) => self.audio_header = Some(frame.clone()),
            (FrameRole::Keyframe, _) => {
                self.has_video = true;
                self.clear_frames();
                self.append(frame);
            }
            (_, FrameKind::Video) if !self.has_video => {
                // Video without a configuration record seen yet: still video.
                self.has_video = true;
                self.clear_frames();
            }
            _ => {
                // With video, a GOP only starts at a keyframe; before the first one
                // there is nothing a player could decode.
                if self.has_video && self.frames.is_empty() {
                    return;
                }
                self.append(frame);
            }
        }
    }

    fn append(&mut self, frame: &Arc<Frame>) {
        if !self.limits.enabled {
            return;
        }
        self.bytes += frame.payload.len();
        self.frames.push_back(frame.clone());
        while self.frames.len() > self.limits.max_frames || self.bytes > self.limits.max_bytes {
            if self.has_video {
                // A GOP cut at the front would start without its keyframe: useless.
                // Drop it whole and wait for the next keyframe.
                self.clear_frames();
                return;
            }
            self.pop_oldest();
        }
        if !self.has_video {
            // Audio-only: a short sliding window, so a joining player starts with a
            // little audio but never far behind live.
            while self
                .frames
                .back()
                .zip(self.frames.front())
                .is_some_and(|(new, old)| {
                    new.timestamp.wrapping_sub(old.timestamp) > AUDIO_ONLY_WINDOW_MS
                })
            {
                self.pop_oldest();
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.frames.pop_front() {
            self.bytes -= old.payload.len();
        }
    }

    fn clear_frames(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// Forgets everything: a new publisher starts from scratch.
    pub fn clear(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.clear_frames();
        self.has_video = false;
    }

    /// What a joining player is sent first: metadata, sequence headers, then the GOP.
    /// The sequence headers are restamped to the GOP's first timestamp so each track
    /// starts without a jump. Metadata keeps its own: players read `onMetaData` as
    /// stream metadata only at timestamp 0 (ffmpeg makes a data stream of it
    /// elsewhere), which the player writers take care of.
    pub fn burst(&self) -> Vec<Arc<Frame>> {
        let start = self.frames.front().map(|f| f.timestamp);
        let mut out = Vec::with_capacity(3 + self.frames.len());
        out.extend(self.metadata.iter().cloned());
        for header in [&self.video_header, &self.audio_header]
            .into_iter()
            .flatten()
        {
            out.push(match start {
                Some(ts) if ts != header.timestamp => Arc::new(header.restamped(ts)),
                _ => header.clone(),
            });
        }
        // Audio that arrived after the keyframe but is stamped before it would make
        // the player's timeline step back across tracks; it is not needed to start.
        let behind = |f: &Arc<Frame>| match start {
            Some(ts) => (f.timestamp.wrapping_sub(ts) as i32) < 0,
            None => false,
        };
        out.extend(self.frames.iter().filter(|f| !behind(f)).cloned());
        out
    }

    pub fn cached_frames(&self) -> usize {
        self.frames.len()
    }

    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GopLimits = GopLimits {
        enabled: true,
        max_frames: 100,
        max_bytes: 10_000,
    };

    fn video(ts: u32, key: bool) -> Arc<Frame> {
        Arc::new(Frame::media(
            FrameKind::Video,
            ts,
            vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0xaa],
        ))
    }

    fn audio(ts: u32) -> Arc<Frame> {
        Arc::new(Frame::media(FrameKind::Audio, ts, vec![0xaf, 1, 0x21]))
    }

    fn headers() -> [Arc<Frame>; 3] {
        [
            Arc::new(Frame::metadata(0, vec![2, 0, 10])),
            Arc::new(Frame::media(FrameKind::Video, 0, vec![0x17, 0, 0, 0, 0, 1])),
            Arc::new(Frame::media(FrameKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10])),
        ]
    }

    fn timestamps(burst: &[Arc<Frame>]) -> Vec<u32> {
        burst.iter().map(|f| f.timestamp).collect()
    }

    #[test]
    fn burst_is_headers_then_gop_from_last_keyframe() {
        let mut cache = GopCache::new(LIMITS);
        for h in headers() {
            cache.push(&h);
        }
        for f in [
            video(0, true),
            audio(10),
            video(40, false),
            video(80, true),
            audio(90),
            video(120, false),
        ] {
            cache.push(&f);
        }
        let burst = cache.burst();
        let roles: Vec<_> = burst.iter().map(|f| f.role).collect();
        assert_eq!(
            roles,
            [
                FrameRole::Metadata,
                FrameRole::SequenceHeader,
                FrameRole::SequenceHeader,
                FrameRole::Keyframe,
                FrameRole::Frame,
                FrameRole::Frame
            ]
        );
        assert_eq!(
            timestamps(&burst),
            [0, 80, 80, 80, 90, 120],
            "metadata keeps its timestamp"
        );
        assert_eq!(burst[1].kind, FrameKind::Video);
        assert_eq!(burst[2].kind, FrameKind::Audio);
    }

    #[test]
    fn burst_never_steps_back_in_time() {
        let mut cache = GopCache::new(LIMITS);
        cache.push(&video(1000, true));
        cache.push(&audio(990));
        cache.push(&audio(1013));
        assert_eq!(timestamps(&cache.burst()), [1000, 1013]);
    }

    #[test]
    fn frames_before_first_keyframe_are_not_cached() {
        let mut cache = GopCache::new(LIMITS);
        cache.push(&headers()[1]);
        cache.push(&video(0, false));
        cache.push(&audio(5));
        assert_eq!(cache.cached_frames(), 0);
        cache.push(&video(40, true));
        cache.push(&audio(45));
        assert_eq!(cache.cached_frames(), 2);
    }

    #[test]
    fn oversized_gop_is_dropped_until_next_keyframe() {
        let mut cache = GopCache::new(GopLimits {
            max_frames: 3,
            ..LIMITS
        });
        cache.push(&video(0, true));
        for ts in 1..=3 {
            cache.push(&video(ts, false));
        }
        assert_eq!(
            cache.cached_frames(),
            0,
            "over the frame limit: dropped whole"
        );
        cache.push(&video(5, false));
        assert_eq!(cache.cached_frames(), 0, "still waiting for a keyframe");
        cache.push(&video(6, true));
        assert_eq!(timestamps(&cache.burst()), [6]);
    }

    #[test]
    fn byte_limit_applies_too() {
        let mut cache = GopCache::new(GopLimits {
            max_bytes: 13,
            ..LIMITS
        });
        cache.push(&video(0, true));
        cache.push(&video(1, false));
        assert_eq!(cache.cached_bytes(), 12);
        cache.push(&video(2, false));
        assert_eq!((cache.cached_frames(), cache.cached_bytes()), (0, 0));
    }

    #[test]
    fn audio_only_keeps_a_sliding_window() {
        let mut cache = GopCache::new(GopLimits {
            max_frames: 4,
            ..LIMITS
        });
        cache.push(&headers()[2]);
        for ts in 0..10 {
            cache.push(&audio(ts * 23));
        }
        assert!(!cache.has_video());
        assert_eq!(timestamps(&cache.burst()), [138, 138, 161, 184, 207]);
    }

    #[test]
    fn audio_only_window_is_bounded_in_time() {
        let mut cache = GopCache::new(LIMITS);
        for ts in 0..100 {
            cache.push(&audio(ts * 23));
        }
        let burst = cache.burst();
        let span = burst.last().unwrap().timestamp - burst[0].timestamp;
        assert!(span <= AUDIO_ONLY_WINDOW_MS, "{span} ms cached");
        assert!(span >= AUDIO_ONLY_WINDOW_MS - 23, "{span} ms cached");
    }

    #[test]
    fn disabled_cache_keeps_headers_only() {
        let mut cache = GopCache::new(GopLimits {
            enabled: false,
            ..LIMITS
        });
        for h in headers() {
            cache.push(&h);
        }
        cache.push(&video(0, true));
        cache.push(&audio(3));
        assert_eq!(cache.burst().len(), 3);
        assert_eq!(timestamps(&cache.burst()), [0, 0, 0]);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = GopCache::new(LIMITS);
        for h in headers() {
            cache.push(&h);
        }
        cache.push(&video(0, true));
        cache.clear();
        assert!(cache.burst().is_empty());
        assert!(!cache.has_video());
    }

    #[test]
    fn frames_are_shared_not_copied() {
        let mut cache = GopCache::new(LIMITS);
        let key = video(0, true);
        cache.push(&key);
        assert!(Arc::ptr_eq(&cache.burst()[0], &key));
    }
}
