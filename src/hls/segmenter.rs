//! One live stream cut into fMP4 segments and parts, without I/O: frames go in
//! as the publisher sends them, complete parts (`moof` + `mdat`) come out, and
//! the last few segments are kept for the playlists and the viewers.
//!
//! Each sample is held back until the next one of its track arrives, which
//! gives its duration. Parts close on the clock track (video, or audio when there
//! is no video) when the next sample would take them past the part target;
//! segments close at a keyframe once they are at least the segment target long.
//! A segment is its parts back to back, so its bytes are never copied twice and
//! every viewer shares the same `Arc`s. A new decoder configuration mid-stream
//! (a new sequence header that differs from the last) starts a new segment at
//! the next keyframe with a new init segment, marked as a discontinuity.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use crate::media::codec::parse_metadata;
use crate::media::fmp4::{
    self, audio_packet, video_packet, Codec, Packet, Sample, TrackConfig, TrackRun,
    NON_SYNC_SAMPLE, SYNC_SAMPLE,
};
use crate::media::frame::{Frame, FrameKind, FrameRole};
use crate::media::timestamp::TimestampMapper;

/// How a stream is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Longest part, in milliseconds (`hls_part_seconds`).
    pub part_target_ms: u32,
    /// Shortest segment before a keyframe may end it (`hls_segment_seconds`).
    pub segment_target_ms: u32,
    /// Complete segments kept (`hls_segments`).
    pub segments: usize,
}

/// An init segment and what it describes.
#[derive(Debug)]
pub struct Init {
    /// Counts from 0 for each stream; names the URL (`init-N.mp4`).
    pub id: u32,
    pub bytes: Arc<Vec<u8>>,
    /// Video first, then audio, as numbered in the init segment.
    pub tracks: Vec<TrackConfig>,
}

/// A part: one `moof` + `mdat`.
#[derive(Debug)]
pub struct Part {
    pub duration_ms: u32,
    /// Holds a frame a decoder can start from.
    pub independent: bool,
    pub bytes: Vec<u8>,
}

/// A segment: its parts, complete or still growing.
#[derive(Debug)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    pub init: Arc<Init>,
    /// The init changed from the previous segment's.
    pub discontinuity: bool,
    /// When its first frame reached the server.
    pub program_date_time: SystemTime,
    pub parts: Vec<Arc<Part>>,
    pub duration_ms: u32,
    pub complete: bool,
}

impl Segment {
    /// Bytes of the whole segment.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// What a push changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// A part (and maybe a segment) was completed.
    pub new_part: bool,
    /// Something worth a log line (an unsupported codec, a bad configuration),
    /// said once per stream.
    pub note: Option<String>,
}

#[derive(Debug)]
struct Track {
    config: TrackConfig,
    /// The sample waiting for its successor (which gives its duration).
    pending: Option<Pending>,
    /// The last duration seen, for the final sample when the stream ends.
    last_duration_ms: i64,
}

#[derive(Debug)]
struct Pending {
    dts_ms: i64,
    cts_ms: i32,
    key: bool,
    data: Vec<u8>,
    arrived: SystemTime,
}

/// The part being filled: per track (index as in the init) samples and data.
#[derive(Debug, Default)]
struct OpenPart {
    samples: [Vec<Sample>; 2],
    data: [Vec<u8>; 2],
    /// Decode time of each track's first sample here, in its timescale.
    base: [Option<u64>; 2],
    start_ms: Option<i64>,
    end_ms: i64,
    independent: bool,
}

pub struct Segmenter {
    config: SegmenterConfig,
    timestamps: TimestampMapper,
    /// The unwrapped timeline: the last mapped timestamp, and it extended to 64 bits.
    last_ts: Option<(u32, i64)>,
    /// Picture size from onMetaData, for codecs whose configuration is not parsed.
    size_hint: (u32, u32),
    /// [video, audio].
    tracks: [Option<Track>; 2],
    /// The configurations changed since the current init was made.
    reconfigured: bool,
    /// Samples of the other track whose successor came before the first
    /// keyframe's: they may belong after it (a sample is held back until the next
    /// of its track, so tracks commit out of step).
    preroll: Vec<(usize, Pending, i64)>,
    init: Option<Arc<Init>>,
    /// Milliseconds on the timeline that are decode time 0.
    origin_ms: Option<i64>,
    open: OpenPart,
    segments: VecDeque<Segment>,
    next_msn: u64,
    next_init: u32,
    fragments: u32,
    /// Discontinuities that left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// The longest segment so far, rounded to whole seconds.
    target_duration: u32,
    ended: bool,
    noted: Vec<String>,
}

/// Samples kept while waiting for the first keyframe (a few seconds of audio).
const MAX_PREROLL: usize = 256;

const VIDEO: usize = 0;
const AUDIO: usize = 1;

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Segmenter {
        Segmenter {
            config,
            timestamps: TimestampMapper::new(),
            last_ts: None,
            size_hint: (0, 0),
            tracks: [None, None],
            reconfigured: false,
            preroll: Vec::new(),
            init: None,
            origin_ms: None,
            open: OpenPart::default(),
            segments: VecDeque::new(),
            next_msn: 0,
            next_init: 0,
            fragments: 0,
            discontinuity_sequence: 0,
            target_duration: config.segment_target_ms.div_ceil(1000).max(1),
            ended: false,
            noted: Vec::new(),
        }
    }

    pub fn config(&self) -> SegmenterConfig {
        self.config
    }

    /// Takes one published frame; `now` is when it arrived.
    pub fn push(&mut self, frame: &Frame, now: SystemTime) -> Pushed {
        let mut out = Pushed::default();
        if self.ended {
            return out;
        }
        let (index, packet) = match frame.kind {
            FrameKind::Data => {
                if frame.role == FrameRole::Metadata {
                    if let Some(video) = parse_metadata(&frame.payload).and_then(|c| c.video) {
                        self.size_hint = (video.width.unwrap_or(0), video.height.unwrap_or(0));
                    }
                }
                return out;
            }
            FrameKind::Video => (VIDEO, video_packet(&frame.payload)),
            FrameKind::Audio => (AUDIO, audio_packet(&frame.payload)),
        };
        match packet {
            Packet::Skip => {}
            Packet::Unsupported(what) => {
                out.note = self.note(format!("{what} cannot be carried in HLS: left out"));
            }
            Packet::Config { codec, record } => {
                if codec.configured_by_frames() && record.is_empty() {
                    // AC-3/E-AC-3: the first frame configures the track.
                    return out;
                }
                out.note = self.configure(index, codec, record);
            }
            Packet::Frame {
                codec,
                key,
                cts,
                data,
            } => {
                let known = self.tracks[index]
                    .as_ref()
                    .is_some_and(|t| t.config.codec == codec);
                if !known {
                    if !codec.configured_by_frames() {
                        out.note = self.note(format!(
                            "{codec} frames before its sequence header: waiting for one"
                        ));
                        return out;
                    }
                    out.note = self.configure(index, codec, data);
                    if self.tracks[index].is_none() {
                        return out;
                    }
                }
                let ts = self.timeline(frame.timestamp);
                let track = self.tracks[index].as_mut().expect("configured above");
                let data = track.config.sample_data(data).to_vec();
                let next = Pending {
                    dts_ms: ts,
                    cts_ms: cts,
                    key: key || index == AUDIO,
                    data,
                    arrived: now,
                };
                if let Some(prev) = track.pending.replace(next) {
                    let duration = (ts - prev.dts_ms).max(1);
                    track.last_duration_ms = duration;
                    out.new_part = self.commit(index, prev, duration);
                }
            }
        }
        out
    }

    /// The stream ended: the held-back samples go out and the last segment closes.
    pub fn end(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut new_part = false;
        for index in [VIDEO, AUDIO] {
            let Some(track) = self.tracks[index].as_mut() else {
                continue;
            };
            if let Some(last) = track.pending.take() {
                let duration = track.last_duration_ms.max(1);
                new_part |= self.commit(index, last, duration);
            }
        }
        new_part |= self.close_part();
        self.close_segment();
        // An open segment that never got a part is dropped.
        if self.segments.back().is_some_and(|s| s.parts.is_empty()) {
            self.segments.pop_back();
        }
        self.ended = true;
        new_part
    }

    fn note(&mut self, text: String) -> Option<String> {
        if self.noted.contains(&text) {
            return None;
        }
        self.noted.push(text.clone());
        Some(text)
    }

    fn configure(&mut self, index: usize, codec: Codec, record: &[u8]) -> Option<String> {
        if codec.is_video() != (index == VIDEO) {
            return None;
        }
        if let Some(t) = &self.tracks[index] {
            let same_source = if codec.configured_by_frames() {
                t.config.codec == codec
            } else {
                t.config.codec == codec && t.config.source == record
            };
            if same_source {
                // Encoders repeat sequence headers before keyframes: nothing new.
                return None;
            }
        }
        match TrackConfig::new(codec, record, self.size_hint) {
            Ok(config) => {
                let pending = self.tracks[index].take().and_then(|t| t.pending);
                self.tracks[index] = Some(Track {
                    config,
                    pending,
                    last_duration_ms: 0,
                });
                if self.init.is_some() {
                    self.reconfigured = true;
                }
                None
            }
            Err(e) => self.note(format!("{e}: the track is left out of HLS")),
        }
    }

    /// Maps a publisher timestamp onto the stream's 64-bit millisecond timeline.
    fn timeline(&mut self, ts: u32) -> i64 {
        let mapped = self.timestamps.map(ts);
        let ext = match self.last_ts {
            Some((last, ext)) => ext + i64::from(mapped.wrapping_sub(last) as i32),
            None => i64::from(mapped),
        };
        self.last_ts = Some((mapped, ext));
        ext
    }

    /// Which track paces parts and segments: video if the init has it.
    fn clock(&self) -> usize {
        match &self.init {
            Some(init) if init.tracks[0].is_video() => VIDEO,
            Some(_) => AUDIO,
            None if self.tracks[VIDEO].is_some() => VIDEO,
            None => AUDIO,
        }
    }

    /// Adds a sample whose duration is now known; true if a part was completed.
    fn commit(&mut self, index: usize, s: Pending, duration_ms: i64) -> bool {
        let clock = self.clock();
        let mut new_part = false;
        let starts = self.init.is_none() || (self.reconfigured && index == clock && s.key);
        if starts {
            if index != clock || !s.key {
                // Nothing starts before the clock track's keyframe; the other
                // track's samples wait to see where it falls.
                if self.init.is_none() && index != clock {
                    if self.preroll.len() >= MAX_PREROLL {
                        self.preroll.remove(0);
                    }
                    self.preroll.push((index, s, duration_ms));
                }
                return false;
            }
            new_part |= self.close_part();
            self.close_segment();
            self.start_init();
            self.open_segment(s.arrived);
        } else if index == clock {
            let part_ms = self
                .open
                .start_ms
                .map_or(0, |start| self.open.end_ms - start);
            let segment_ms = self.segments.back().map_or(0, |seg| seg.duration_ms) as i64 + part_ms;
            if s.key && segment_ms >= i64::from(self.config.segment_target_ms) {
                new_part |= self.close_part();
                self.close_segment();
                self.open_segment(s.arrived);
            } else if part_ms > 0 && part_ms + duration_ms > i64::from(self.config.part_target_ms) {
                new_part |= self.close_part();
            }
        }
        self.append(index, s, duration_ms);
        if starts {
            for (index, s, duration_ms) in std::mem::take(&mut self.preroll) {
                self.append(index, s, duration_ms);
            }
        }
        new_part
    }

    /// Adds a sample to the open part (a sample before decode time 0 is dropped).
    fn append(&mut self, index: usize, s: Pending, duration_ms: i64) {
        let clock = self.clock();
        let Some(init) = &self.init else {
            return;
        };
        // The init may lack this track (configured after it was made).
        let Some(slot) = init
            .tracks
            .iter()
            .position(|t| t.is_video() == (index == VIDEO))
        else {
            return;
        };
        let config = &init.tracks[slot];
        let origin = *self.origin_ms.get_or_insert(s.dts_ms);
        if s.dts_ms < origin {
            return; // before the first keyframe
        }
        let ticks = |ms: i64| ((ms - origin) as i128 * i128::from(config.timescale) / 1000) as u64;
        let start = ticks(s.dts_ms);
        let end = ticks(s.dts_ms + duration_ms);
        let sample = Sample {
            duration: (end - start).max(1) as u32,
            size: s.data.len() as u32,
            flags: if s.key { SYNC_SAMPLE } else { NON_SYNC_SAMPLE },
            composition_offset: (i64::from(s.cts_ms) * i64::from(config.timescale) / 1000) as i32,
        };
        let open = &mut self.open;
        open.base[slot].get_or_insert(start);
        open.samples[slot].push(sample);
        open.data[slot].extend_from_slice(&s.data);
        if index == clock {
            open.start_ms.get_or_insert(s.dts_ms);
            open.end_ms = s.dts_ms + duration_ms;
            open.independent |= s.key;
        }
    }

    fn start_init(&mut self) {
        let tracks: Vec<TrackConfig> = self
            .tracks
            .iter()
            .flatten()
            .map(|t| t.config.clone())
            .collect();
        let refs: Vec<&TrackConfig> = tracks.iter().collect();
        let bytes = Arc::new(fmp4::init_segment(&refs));
        self.init = Some(Arc::new(Init {
            id: self.next_init,
            bytes,
            tracks,
        }));
        self.next_init += 1;
        self.reconfigured = false;
        self.origin_ms = None;
    }

    fn open_segment(&mut self, arrived: SystemTime) {
        let init = self.init.clone().expect("an init before any segment");
        let discontinuity = self
            .segments
            .back()
            .is_some_and(|prev| prev.init.id != init.id);
        self.segments.push_back(Segment {
            msn: self.next_msn,
            init,
            discontinuity,
            program_date_time: arrived,
            parts: Vec::new(),
            duration_ms: 0,
            complete: false,
        });
        self.next_msn += 1;
    }

    /// Turns the open part into a fragment of the open segment.
    fn close_part(&mut self) -> bool {
        let open = std::mem::take(&mut self.open);
        let Some(start) = open.start_ms else {
            return false;
        };
        let Some(segment) = self.segments.back_mut().filter(|s| !s.complete) else {
            return false;
        };
        let runs: Vec<TrackRun> = (0..2)
            .filter(|&i| !open.samples[i].is_empty())
            .map(|i| TrackRun {
                track_id: i as u32 + 1,
                base_decode_time: open.base[i].unwrap_or(0),
                samples: &open.samples[i],
                data: &open.data[i],
            })
            .collect();
        self.fragments += 1;
        let bytes = fmp4::fragment(self.fragments, &runs);
        let duration_ms = (open.end_ms - start).max(0) as u32;
        segment.duration_ms += duration_ms;
        segment.parts.push(Arc::new(Part {
            duration_ms,
            independent: open.independent,
            bytes,
        }));
        true
    }

    fn close_segment(&mut self) {
        let Some(segment) = self.segments.back_mut().filter(|s| !s.complete) else {
            return;
        };
        segment.complete = true;
        let rounded = (segment.duration_ms + 500) / 1000;
        self.target_duration = self.target_duration.max(rounded);
        while self.segments.iter().filter(|s| s.complete).count() > self.config.segments {
            if let Some(gone) = self.segments.pop_front() {
                if let Some(next) = self.segments.front() {
                    if next.discontinuity {
                        self.discontinuity_sequence += 1;
                    }
                }
                drop(gone);
            }
        }
    }

    // -----------------------------------------------------------------------------
    // What the playlists and viewers read.

    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    pub fn init(&self) -> Option<&Arc<Init>> {
        self.init.as_ref()
    }

    /// An init still referenced by a segment in the window.
    pub fn init_by_id(&self, id: u32) -> Option<Arc<Init>> {
        self.segments
            .iter()
            .map(|s| &s.init)
            .find(|i| i.id == id)
            .cloned()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn target_duration(&self) -> u32 {
        self.target_duration
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The newest part: (segment msn, part index).
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.segments
            .iter()
            .rev()
            .find(|s| !s.parts.is_empty())
            .map(|s| (s.msn, s.parts.len() - 1))
    }

    /// The part being filled (the preload hint), while the stream is live.
    pub fn next_part(&self) -> Option<(u64, usize)> {
        let open = self.segments.back().filter(|s| !s.complete)?;
        Some((open.msn, open.parts.len()))
    }

    /// Whether part `part` of segment `msn` exists (a part index past the end of
    /// a complete segment means the next segment's first part, RFC 8216bis §6.2.5.2).
    pub fn has_part(&self, msn: u64, part: usize) -> bool {
        let Some((last_msn, last_part)) = self.last_part() else {
            return false;
        };
        match self.segment(msn) {
            Some(s) if s.complete && part >= s.parts.len() => self.has_part(msn + 1, 0),
            _ => (msn, part) <= (last_msn, last_part),
        }
    }

    /// Whether segment `msn` is complete (or is gone from the window).
    pub fn has_segment(&self, msn: u64) -> bool {
        self.segments
            .iter()
            .rev()
            .find(|s| s.complete)
            .is_some_and(|s| s.msn >= msn)
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    pub fn part(&self, msn: u64, index: usize) -> Option<Arc<Part>> {
        self.segment(msn)?.parts.get(index).cloned()
    }

    /// The highest bitrate of a complete segment in the window, bits per second
    /// (the open segment's when none is complete yet).
    pub fn peak_bitrate(&self) -> u64 {
        let rate = |s: &Segment| s.len() as u64 * 8 * 1000 / u64::from(s.duration_ms.max(1));
        let complete = self.segments.iter().filter(|s| s.complete).map(rate).max();
        complete
            .or_else(|| self.segments.back().filter(|s| !s.is_empty()).map(rate))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const AVC_CONFIG: [u8; 37] = [
        0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x16, 0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07,
        0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
        0x01, 0x00, 0x04, 0x68, 0xcb, 0x83, 0xcb,
    ];

    fn video_header() -> Frame {
        let mut p = vec![0x17, 0, 0, 0, 0];
        p.extend_from_slice(&AVC_CONFIG);
        Frame::media(FrameKind::Video, 0, p)
    }

    fn video(ts: u32, key: bool) -> Frame {
        Frame::media(
            FrameKind::Video,
            ts,
            vec![
                if key { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
                ts as u8,
            ],
        )
    }

    fn audio(ts: u32) -> Frame {
        Frame::media(FrameKind::Audio, ts, vec![0xaf, 1, 0x21, ts as u8])
    }

    fn config() -> SegmenterConfig {
        SegmenterConfig {
            part_target_ms: 500,
            segment_target_ms: 2000,
            segments: 3,
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    /// 25 fps video with a keyframe every `gop` frames, AAC every ~23 ms, for `ms`.
    fn feed(s: &mut Segmenter, ms: u32, gop: u32) -> usize {
        let mut parts = 0;
        s.push(&video_header(), at(0));
        s.push(
            &Frame::media(FrameKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]),
            at(0),
        );
        let mut audio_ts = 0;
        for n in 0..ms / 40 {
            let ts = n * 40;
            while audio_ts <= ts {
                parts += usize::from(s.push(&audio(audio_ts), at(audio_ts.into())).new_part);
                audio_ts += 23;
            }
            parts += usize::from(s.push(&video(ts, n % gop == 0), at(ts.into())).new_part);
        }
        parts
    }

    #[test]
    fn parts_stay_within_the_target_and_segments_start_at_keyframes() {
        let mut s = Segmenter::new(config());
        let parts = feed(&mut s, 10_000, 25);
        assert!(parts > 15, "{parts} parts in 10 s");
        for seg in s.segments() {
            assert!(
                seg.parts[0].independent,
                "segment {} starts at a keyframe",
                seg.msn
            );
            for (i, part) in seg.parts.iter().enumerate() {
                assert!(
                    part.duration_ms <= 500,
                    "part {}.{i}: {} ms",
                    seg.msn,
                    part.duration_ms
                );
                let last = i + 1 == seg.parts.len();
                if !last && !part.independent {
                    assert!(part.duration_ms >= 425, "part {}.{i} below 85 %", seg.msn);
                }
            }
            if seg.complete {
                assert_eq!(seg.duration_ms, 2000, "segment {}", seg.msn);
                let sum: u32 = seg.parts.iter().map(|p| p.duration_ms).sum();
                assert_eq!(sum, seg.duration_ms);
            }
        }
        assert_eq!(
            s.segments().iter().filter(|x| x.complete).count(),
            3,
            "the window"
        );
        assert_eq!(s.target_duration(), 2);
        let (msn, _) = s.last_part().unwrap();
        assert_eq!(s.next_part().unwrap().0, msn);
    }

    #[test]
    fn every_sample_lands_in_exactly_one_part_in_order() {
        let mut s = Segmenter::new(SegmenterConfig {
            segments: 100,
            ..config()
        });
        feed(&mut s, 6000, 25);
        s.end();
        // Walk every trun: video payload bytes are the low byte of the timestamp.
        let mut video_ts = Vec::new();
        let mut decode_time = 0u64;
        for seg in s.segments() {
            for part in &seg.parts {
                let b = &part.bytes;
                let trun = b.windows(4).position(|w| w == b"trun").unwrap();
                let tfdt = b.windows(4).position(|w| w == b"tfdt").unwrap();
                let base = u64::from_be_bytes(b[tfdt + 8..tfdt + 16].try_into().unwrap());
                assert_eq!(base, decode_time, "video decode times are contiguous");
                let count = u32::from_be_bytes(b[trun + 8..trun + 12].try_into().unwrap());
                let offset =
                    u32::from_be_bytes(b[trun + 12..trun + 16].try_into().unwrap()) as usize;
                let mut at = offset;
                for i in 0..count as usize {
                    let entry = trun + 16 + i * 12;
                    let duration = u32::from_be_bytes(b[entry..entry + 4].try_into().unwrap());
                    let size =
                        u32::from_be_bytes(b[entry + 4..entry + 8].try_into().unwrap()) as usize;
                    video_ts.push(b[at + size - 1]);
                    at += size;
                    decode_time += u64::from(duration);
                }
            }
        }
        let expected: Vec<u8> = (0..150u32).map(|n| (n * 40) as u8).collect();
        assert_eq!(video_ts, expected, "every video frame, once, in order");
        assert_eq!(decode_time, 150 * 3600);
        assert!(s.is_ended());
        assert_eq!(s.next_part(), None);
    }

    #[test]
    fn repeated_headers_change_nothing_and_new_ones_start_a_discontinuity() {
        let mut s = Segmenter::new(config());
        feed(&mut s, 3000, 25);
        let init = s.init().unwrap().id;
        s.push(&video_header(), at(3000));
        assert!(!s.reconfigured, "the same header again");
        let mut other = vec![0x17, 0, 0, 0, 0];
        let mut changed = AVC_CONFIG;
        changed[3] = 0x1f;
        other.extend_from_slice(&changed);
        s.push(&Frame::media(FrameKind::Video, 3000, other), at(3000));
        for n in 0..30u32 {
            s.push(&video(3000 + n * 40, n == 10), at(3000 + u64::from(n) * 40));
        }
        let last = s.segments().back().unwrap();
        assert_ne!(last.init.id, init);
        assert!(last.discontinuity);
        assert_eq!(last.init.tracks[0].codec_string, "avc1.42c01f");
        assert!(
            s.init_by_id(init).is_some(),
            "older segments keep their init"
        );
    }

    #[test]
    fn blocking_positions() {
        let mut s = Segmenter::new(config());
        assert!(!s.has_part(0, 0));
        feed(&mut s, 2600, 25);
        let (msn, part) = s.last_part().unwrap();
        assert_eq!(msn, 1);
        assert!(s.has_part(0, 0) && s.has_part(msn, part));
        assert!(!s.has_part(msn, part + 1));
        assert!(
            s.has_part(0, 99),
            "past the end of a complete segment: the next one's first part"
        );
        assert!(s.has_segment(0) && !s.has_segment(1));
        assert!(s.peak_bitrate() > 0);
    }

    #[test]
    fn audio_only_streams_cut_on_audio() {
        let mut s = Segmenter::new(config());
        s.push(
            &Frame::media(FrameKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]),
            at(0),
        );
        for n in 0..300u32 {
            s.push(&audio(n * 23), at(u64::from(n) * 23));
        }
        assert!(s.segments().iter().filter(|x| x.complete).count() >= 2);
        assert!(s
            .segments()
            .iter()
            .all(|x| x.parts.iter().all(|p| p.independent)));
        assert!(!s.init().unwrap().tracks[0].is_video());
    }

    #[test]
    fn unsupported_codecs_are_noted_once() {
        let mut s = Segmenter::new(config());
        let mp3 = Frame::media(FrameKind::Audio, 0, vec![0x2f, 0xff]);
        assert!(s.push(&mp3, at(0)).note.unwrap().contains("MP3"));
        assert_eq!(s.push(&mp3, at(0)).note, None);
    }
}
