//! Synthetic H.264 + AAC tags for the load generator, each carrying a stamp that
//! players read back: a magic, the publisher's stream index, a per-track sequence
//! number and the send time (nanoseconds since the bench's shared epoch).
//!
//! To a server the tags look like a real encoder's: an `onMetaData`, an AVC
//! sequence header with a valid 1280x720 Main-profile SPS, an AAC-LC
//! AudioSpecificConfig, then keyframes (`0x17 0x01`, an IDR NAL unit) every GOP,
//! inter frames (`0x27 0x01`, a non-IDR NAL unit) between them and raw AAC frames
//! (`0xAF 0x01`). The stamp sits inside the NAL unit (video) or the AAC frame
//! (audio), so servers forward it untouched.

use rtmpd::amf::amf0::{encode_all_to_vec, Amf0Value};
use rtmpd::media::flv;
use rtmpd::media::frame::{self, FrameKind, FrameRole};
use rtmpd::rtmp::message as msg;

/// Marks a stamped payload.
pub const MAGIC: [u8; 4] = *b"RTBN";
/// magic + stream index (u32) + sequence (u64) + send time (u64), big-endian.
pub const STAMP_LEN: usize = 4 + 4 + 8 + 8;
/// FLV AVC header (frame type/codec, packet type, composition time), the NAL
/// unit's 4-byte length and its header byte.
const VIDEO_PREFIX: usize = 5 + 4 + 1;
/// FLV audio flags + AAC packet type.
const AUDIO_PREFIX: usize = 2;
/// Smallest synthetic tags: prefix + stamp.
pub const MIN_VIDEO_FRAME: usize = VIDEO_PREFIX + STAMP_LEN;
pub const MIN_AUDIO_FRAME: usize = AUDIO_PREFIX + STAMP_LEN;

/// AAC at 48 kHz: 1024 samples per frame.
pub const AUDIO_SAMPLE_RATE: u64 = 48_000;
pub const AUDIO_FRAME_SAMPLES: u64 = 1024;
/// How much bigger a keyframe is than an inter frame, roughly what x264 does on
/// talking-head content.
pub const KEYFRAME_RATIO: usize = 8;

/// SPS of a Main-profile 1280x720 stream at 30000/1001 fps (x264).
const SPS_1280X720: [u8; 23] = [
    0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x28, 0x02, 0xdd, 0x80, 0x88, 0x00, 0x00, 0x1f, 0x48, 0x00,
    0x07, 0x53, 0x00, 0x78, 0xc1, 0x8c, 0xb0,
];
const PPS: [u8; 4] = [0x68, 0xee, 0x3c, 0x80];
/// AAC-LC, 48 kHz, stereo.
const AAC_CONFIG: [u8; 4] = [0xaf, 0x00, 0x11, 0x90];

/// What one received stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher (stream) that sent it.
    pub stream: u32,
    /// Per track (audio, video) sequence number, from 0.
    pub seq: u64,
    /// Send time, nanoseconds since the shared epoch.
    pub sent_ns: u64,
}

/// Which track a tag belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Audio,
    Video,
}

impl Track {
    pub fn index(self) -> usize {
        match self {
            Track::Audio => 0,
            Track::Video => 1,
        }
    }

    pub fn type_id(self) -> u8 {
        match self {
            Track::Audio => msg::AUDIO,
            Track::Video => msg::VIDEO,
        }
    }
}

/// What a received audio/video payload is, from its FLV header bytes alone
/// (works for real FLV content too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// AVC/HEVC sequence header or AAC AudioSpecificConfig.
    SequenceHeader(Track),
    Keyframe,
    InterFrame,
    AudioFrame,
    Other,
}

/// Classifies an RTMP audio (8) or video (9) payload with the server's rules
/// (`rtmpd::media::frame`); end-of-sequence markers and other types are `Other`.
pub fn classify(type_id: u8, payload: &[u8]) -> TagKind {
    let Some(kind) = flv::frame_kind(type_id) else {
        return TagKind::Other;
    };
    if frame::is_end_of_sequence(kind, payload) {
        return TagKind::Other;
    }
    match (kind, frame::classify(kind, payload)) {
        (FrameKind::Audio, FrameRole::SequenceHeader) => TagKind::SequenceHeader(Track::Audio),
        (FrameKind::Video, FrameRole::SequenceHeader) => TagKind::SequenceHeader(Track::Video),
        (FrameKind::Video, FrameRole::Keyframe) => TagKind::Keyframe,
        (FrameKind::Video, _) => TagKind::InterFrame,
        (FrameKind::Audio, _) => TagKind::AudioFrame,
        (FrameKind::Data, _) => TagKind::Other,
    }
}

fn put_stamp(out: &mut Vec<u8>, stamp: Stamp) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&stamp.stream.to_be_bytes());
    out.extend_from_slice(&stamp.seq.to_be_bytes());
    out.extend_from_slice(&stamp.sent_ns.to_be_bytes());
}

fn read_stamp(bytes: &[u8]) -> Option<Stamp> {
    let b = bytes.get(..STAMP_LEN)?;
    if b[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some(Stamp {
        stream: u32_at(4),
        seq: u64_at(8),
        sent_ns: u64_at(16),
    })
}

/// Fills `out` with a stamped video tag of `size` bytes (at least
/// [`MIN_VIDEO_FRAME`]): an IDR NAL unit for keyframes, a non-IDR one otherwise.
pub fn video_frame(out: &mut Vec<u8>, keyframe: bool, size: usize, stamp: Stamp) {
    let size = size.max(MIN_VIDEO_FRAME);
    out.clear();
    out.extend_from_slice(&[if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
    out.extend_from_slice(&((size - 9) as u32).to_be_bytes());
    // nal_ref_idc 3, type 5 (IDR) / nal_ref_idc 2, type 1 (non-IDR slice).
    out.push(if keyframe { 0x65 } else { 0x41 });
    put_stamp(out, stamp);
    out.resize(size, 0x5a);
}

/// Fills `out` with a stamped raw AAC tag of `size` bytes (at least
/// [`MIN_AUDIO_FRAME`]).
pub fn audio_frame(out: &mut Vec<u8>, size: usize, stamp: Stamp) {
    let size = size.max(MIN_AUDIO_FRAME);
    out.clear();
    out.extend_from_slice(&[0xaf, 0x01]);
    put_stamp(out, stamp);
    out.resize(size, 0x21);
}

/// The stamp of a synthetic audio or video tag, if it carries one.
pub fn parse_stamp(type_id: u8, payload: &[u8]) -> Option<Stamp> {
    match type_id {
        msg::VIDEO if payload.get(1) == Some(&1) => read_stamp(payload.get(VIDEO_PREFIX..)?),
        msg::AUDIO if payload.get(1) == Some(&1) => read_stamp(payload.get(AUDIO_PREFIX..)?),
        _ => None,
    }
}

/// `0x17 0x00` + AVCDecoderConfigurationRecord with one SPS and one PPS.
pub fn avc_sequence_header() -> Vec<u8> {
    let sps = &SPS_1280X720;
    let mut p = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    p.extend_from_slice(sps);
    p.push(1);
    p.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    p.extend_from_slice(&PPS);
    p
}

/// `0xAF 0x00` + AudioSpecificConfig.
pub fn aac_sequence_header() -> Vec<u8> {
    AAC_CONFIG.to_vec()
}

/// How the synthetic stream is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticConfig {
    /// Total bitrate, audio included, in kbit/s.
    pub bitrate_kbit: u32,
    /// Audio share of it; 0 sends no audio.
    pub audio_kbit: u32,
    pub fps: u32,
    /// Frames per GOP (keyframe interval).
    pub gop: u32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            bitrate_kbit: 2500,
            audio_kbit: 128,
            fps: 30,
            gop: 60,
        }
    }
}

impl SyntheticConfig {
    pub fn audio_frames_per_sec(&self) -> f64 {
        AUDIO_SAMPLE_RATE as f64 / AUDIO_FRAME_SAMPLES as f64
    }

    /// Bytes of one audio tag.
    pub fn audio_frame_size(&self) -> usize {
        let bytes = f64::from(self.audio_kbit) * 1000.0 / 8.0 / self.audio_frames_per_sec();
        (bytes.round() as usize).max(MIN_AUDIO_FRAME)
    }

    /// Bytes of a keyframe and of an inter frame: a GOP holds one keyframe of
    /// [`KEYFRAME_RATIO`] inter frames' size and `gop - 1` inter frames, and the
    /// video bitrate is what the audio leaves of the total.
    pub fn video_frame_sizes(&self) -> (usize, usize) {
        let video_bps = f64::from(self.bitrate_kbit.saturating_sub(self.audio_kbit)) * 1000.0;
        let gop_bytes = video_bps / 8.0 * f64::from(self.gop) / f64::from(self.fps.max(1));
        let units = (KEYFRAME_RATIO + self.gop.max(1) as usize - 1) as f64;
        let inter = ((gop_bytes / units).round() as usize).max(MIN_VIDEO_FRAME);
        ((inter * KEYFRAME_RATIO).max(MIN_VIDEO_FRAME), inter)
    }

    /// The `onMetaData` script data an encoder would send.
    pub fn metadata(&self) -> Vec<u8> {
        let num = |k: &str, v: f64| (k.to_owned(), Amf0Value::Number(v));
        let mut props = vec![
            num("width", 1280.0),
            num("height", 720.0),
            num("framerate", f64::from(self.fps)),
            num("videocodecid", 7.0),
            num(
                "videodatarate",
                f64::from(self.bitrate_kbit - self.audio_kbit.min(self.bitrate_kbit)),
            ),
        ];
        if self.audio_kbit > 0 {
            props.extend([
                num("audiocodecid", 10.0),
                num("audiodatarate", f64::from(self.audio_kbit)),
                num("audiosamplerate", AUDIO_SAMPLE_RATE as f64),
                num("audiosamplesize", 16.0),
                ("stereo".to_owned(), Amf0Value::Boolean(true)),
            ]);
        }
        props.push(("encoder".to_owned(), "rtmpd-bench".into()));
        encode_all_to_vec(&["onMetaData".into(), Amf0Value::EcmaArray(props)])
    }
}

/// One tag the synthetic publisher owes: which track, its index in that track
/// and when (nanoseconds after the stream started) it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub track: Track,
    pub index: u64,
    pub at_ns: u64,
}

/// Interleaves video frames (every 1/fps s) and AAC frames (every 1024/48000 s)
/// in time order; video first on ties.
#[derive(Debug, Clone)]
pub struct Schedule {
    fps: u64,
    audio: bool,
    next_video: u64,
    next_audio: u64,
}

impl Schedule {
    pub fn new(config: &SyntheticConfig) -> Schedule {
        Schedule {
            fps: u64::from(config.fps.max(1)),
            audio: config.audio_kbit > 0,
            next_video: 0,
            next_audio: 0,
        }
    }

    fn video_at(&self, i: u64) -> u64 {
        i * 1_000_000_000 / self.fps
    }

    fn audio_at(i: u64) -> u64 {
        i * AUDIO_FRAME_SAMPLES * 1_000_000_000 / AUDIO_SAMPLE_RATE
    }

    pub fn next_due(&mut self) -> Due {
        let video_at = self.video_at(self.next_video);
        let audio_at = Self::audio_at(self.next_audio);
        if !self.audio || video_at <= audio_at {
            self.next_video += 1;
            Due {
                track: Track::Video,
                index: self.next_video - 1,
                at_ns: video_at,
            }
        } else {
            self.next_audio += 1;
            Due {
                track: Track::Audio,
                index: self.next_audio - 1,
                at_ns: audio_at,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmpd::media::codec::parse_h264_sps;
    use rtmpd::media::frame::{classify as server_classify, FrameKind, FrameRole};

    const STAMP: Stamp = Stamp {
        stream: 7,
        seq: 0x0102_0304_0506_0708,
        sent_ns: 123_456_789_012,
    };

    #[test]
    fn stamps_round_trip_through_video_and_audio_tags() {
        let mut buf = Vec::new();
        video_frame(&mut buf, true, 5000, STAMP);
        assert_eq!(buf.len(), 5000);
        assert_eq!(&buf[..2], &[0x17, 0x01]);
        assert_eq!(u32::from_be_bytes(buf[5..9].try_into().unwrap()), 4991);
        assert_eq!(buf[9], 0x65);
        assert_eq!(parse_stamp(msg::VIDEO, &buf), Some(STAMP));
        assert_eq!(classify(msg::VIDEO, &buf), TagKind::Keyframe);

        video_frame(&mut buf, false, 1, STAMP);
        assert_eq!(buf.len(), MIN_VIDEO_FRAME, "never smaller than the stamp");
        assert_eq!(&buf[..2], &[0x27, 0x01]);
        assert_eq!(parse_stamp(msg::VIDEO, &buf), Some(STAMP));
        assert_eq!(classify(msg::VIDEO, &buf), TagKind::InterFrame);

        audio_frame(&mut buf, 341, STAMP);
        assert_eq!(buf.len(), 341);
        assert_eq!(&buf[..2], &[0xaf, 0x01]);
        assert_eq!(parse_stamp(msg::AUDIO, &buf), Some(STAMP));
        assert_eq!(classify(msg::AUDIO, &buf), TagKind::AudioFrame);
        // The wrong type, a truncated stamp or a foreign payload carry none.
        assert_eq!(parse_stamp(msg::VIDEO, &buf), None);
        assert_eq!(parse_stamp(msg::AUDIO, &buf[..20]), None);
        assert_eq!(parse_stamp(msg::AUDIO, &[0xaf, 0x01, 1, 2, 3]), None);
        assert_eq!(parse_stamp(msg::DATA_AMF0, &buf), None);
    }

    #[test]
    fn the_server_sees_h264_and_aac() {
        let seq = avc_sequence_header();
        assert_eq!(&seq[..2], &[0x17, 0x00]);
        assert_eq!(
            classify(msg::VIDEO, &seq),
            TagKind::SequenceHeader(Track::Video)
        );
        assert_eq!(
            server_classify(FrameKind::Video, &seq),
            FrameRole::SequenceHeader
        );
        let sps = parse_h264_sps(&seq[13..36]).expect("valid SPS");
        assert_eq!((sps.width, sps.height), (1280, 720));
        let aac = aac_sequence_header();
        assert_eq!(
            server_classify(FrameKind::Audio, &aac),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(msg::AUDIO, &aac),
            TagKind::SequenceHeader(Track::Audio)
        );

        let mut buf = Vec::new();
        video_frame(&mut buf, true, 100, STAMP);
        assert_eq!(server_classify(FrameKind::Video, &buf), FrameRole::Keyframe);
        video_frame(&mut buf, false, 100, STAMP);
        assert_eq!(server_classify(FrameKind::Video, &buf), FrameRole::Frame);
    }

    #[test]
    fn frame_sizes_add_up_to_the_bitrate() {
        for config in [
            SyntheticConfig::default(),
            SyntheticConfig {
                bitrate_kbit: 500,
                audio_kbit: 64,
                fps: 25,
                gop: 50,
            },
        ] {
            let (key, inter) = config.video_frame_sizes();
            assert_eq!(key, inter * KEYFRAME_RATIO);
            let gops_per_sec = f64::from(config.fps) / f64::from(config.gop);
            let video = (key + inter * (config.gop as usize - 1)) as f64 * gops_per_sec;
            let audio = config.audio_frame_size() as f64 * config.audio_frames_per_sec();
            let kbit = (video + audio) * 8.0 / 1000.0;
            let want = f64::from(config.bitrate_kbit);
            assert!((kbit - want).abs() / want < 0.01, "{kbit} vs {want}");
        }
        // A tiny bitrate still leaves room for the stamp.
        let tiny = SyntheticConfig {
            bitrate_kbit: 1,
            audio_kbit: 1,
            fps: 30,
            gop: 30,
        };
        assert_eq!(tiny.video_frame_sizes().1, MIN_VIDEO_FRAME);
        assert_eq!(tiny.audio_frame_size(), MIN_AUDIO_FRAME);
    }

    #[test]
    fn schedule_interleaves_in_time_order() {
        let mut s = Schedule::new(&SyntheticConfig::default());
        let due: Vec<Due> = (0..200).map(|_| s.next_due()).collect();
        assert!(due.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        assert_eq!(due[0].track, Track::Video);
        assert_eq!(due[1].track, Track::Audio);
        // Over one second: 30 video frames (0..=29 start before 1 s) and 47 AAC frames.
        let mut s = Schedule::new(&SyntheticConfig::default());
        let (mut video, mut audio) = (0, 0);
        loop {
            let d = s.next_due();
            if d.at_ns >= 1_000_000_000 {
                break;
            }
            match d.track {
                Track::Video => video += 1,
                Track::Audio => audio += 1,
            }
        }
        assert_eq!((video, audio), (30, 47));
        let mut silent = Schedule::new(&SyntheticConfig {
            audio_kbit: 0,
            ..SyntheticConfig::default()
        });
        assert!((0..10).all(|_| silent.next_due().track == Track::Video));
    }

    #[test]
    fn metadata_is_on_metadata() {
        let m = SyntheticConfig::default().metadata();
        let values = rtmpd::amf::amf0::decode_all(&m).unwrap();
        assert_eq!(values[0].as_str(), Some("onMetaData"));
    }
}
