//! A frame is one audio, video or data message as a publisher sent it, with its
//! payload untouched. `classify` is the one place that knows codec layouts: it
//! decides whether a payload is a sequence header, a keyframe or an ordinary frame,
//! for legacy FLV codecs and Enhanced RTMP alike. How a frame travels (RTMP chunk
//! stream and message type, FLV tag type) is the business of `rtmp` and `media::flv`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Audio,
    Video,
    Data,
}

/// What a frame means to a player joining or resynchronising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRole {
    /// Decoder configuration (AVC/HEVC/AV1 configuration record, AAC AudioSpecificConfig).
    SequenceHeader,
    /// A video frame a decoder can start from.
    Keyframe,
    /// Any other media frame.
    Frame,
    /// `onMetaData`, stripped of `@setDataFrame`.
    Metadata,
    /// Other data messages (onTextData, onCuePoint): passed through.
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub role: FrameRole,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// An audio or video frame, classified from its payload.
    pub fn media(kind: FrameKind, timestamp: u32, payload: Vec<u8>) -> Frame {
        Frame::new(kind, classify(kind, &payload), timestamp, payload)
    }

    pub fn metadata(timestamp: u32, payload: Vec<u8>) -> Frame {
        Frame::new(FrameKind::Data, FrameRole::Metadata, timestamp, payload)
    }

    pub fn data(timestamp: u32, payload: Vec<u8>) -> Frame {
        Frame::new(FrameKind::Data, FrameRole::Data, timestamp, payload)
    }

    fn new(kind: FrameKind, role: FrameRole, timestamp: u32, payload: Vec<u8>) -> Frame {
        Frame {
            kind,
            role,
            timestamp,
            payload,
        }
    }

    pub fn is_keyframe(&self) -> bool {
        self.role == FrameRole::Keyframe
    }

    /// Frames a player must never miss: without them nothing after decodes.
    pub fn is_essential(&self) -> bool {
        matches!(self.role, FrameRole::SequenceHeader | FrameRole::Metadata)
    }

    /// The same frame at another timestamp (for the fast-start burst).
    pub fn restamped(&self, timestamp: u32) -> Frame {
        Frame {
            timestamp,
            ..self.clone()
        }
    }
}

// Legacy FLV video codec ids that carry a packet-type byte after the flags byte.
const CODEC_AVC: u8 = 7;
// Not in the FLV spec, but widely used before Enhanced RTMP (SRS, nginx forks, OBS
// plugins) with the same layout as AVC.
const CODEC_HEVC_LEGACY: u8 = 12;
const CODEC_AV1_LEGACY: u8 = 13;

const SOUND_AAC: u8 = 10;
const SOUND_EX_HEADER: u8 = 9;

const VIDEO_FRAME_KEY: u8 = 1;

// Enhanced RTMP video packet types (audio shares 0-2); the fMP4 muxer reads them too.
pub(crate) const EX_SEQUENCE_START: u8 = 0;
pub(crate) const EX_CODED_FRAMES: u8 = 1;
pub(crate) const EX_SEQUENCE_END: u8 = 2;
pub(crate) const EX_CODED_FRAMES_X: u8 = 3;
const EX_MPEG2TS_SEQUENCE_START: u8 = 5;
const EX_MULTITRACK: u8 = 6;

/// Decides what a media payload is. Unknown codecs still pass through: they are
/// ordinary frames, or keyframes when the FLV frame type says so.
pub fn classify(kind: FrameKind, payload: &[u8]) -> FrameRole {
    match kind {
        FrameKind::Video => classify_video(payload),
        FrameKind::Audio => classify_audio(payload),
        FrameKind::Data => FrameRole::Data,
    }
}

fn classify_video(payload: &[u8]) -> FrameRole {
    let Some(&flags) = payload.first() else {
        return FrameRole::Frame;
    };
    if flags & 0x80 != 0 {
        // Enhanced RTMP: [1 bit ex][3 bits frame type][4 bits packet type][FourCC]...
        let frame_type = (flags >> 4) & 0x07;
        let mut packet_type = flags & 0x0f;
        if packet_type == EX_MULTITRACK {
            // The first track's packet type sits in the low nibble after the FourCC
            // region's multitrack byte.
            match payload.get(1) {
                Some(b) => packet_type = b & 0x0f,
                None => return FrameRole::Frame,
            }
        }
        return match packet_type {
            EX_SEQUENCE_START | EX_MPEG2TS_SEQUENCE_START => FrameRole::SequenceHeader,
            EX_CODED_FRAMES | EX_CODED_FRAMES_X if frame_type == VIDEO_FRAME_KEY => {
                FrameRole::Keyframe
            }
            _ => FrameRole::Frame,
        };
    }
    let frame_type = flags >> 4;
    let codec = flags & 0x0f;
    if matches!(codec, CODEC_AVC | CODEC_HEVC_LEGACY | CODEC_AV1_LEGACY) {
        return match payload.get(1) {
            Some(0) => FrameRole::SequenceHeader,
            Some(1) if frame_type == VIDEO_FRAME_KEY => FrameRole::Keyframe,
            _ => FrameRole::Frame,
        };
    }
    if frame_type == VIDEO_FRAME_KEY {
        FrameRole::Keyframe
    } else {
        FrameRole::Frame
    }
}

fn classify_audio(payload: &[u8]) -> FrameRole {
    let Some(&flags) = payload.first() else {
        return FrameRole::Frame;
    };
    match flags >> 4 {
        SOUND_AAC if payload.get(1) == Some(&0) => FrameRole::SequenceHeader,
        // Enhanced RTMP audio: the low nibble is the packet type, 0 = SequenceStart.
        SOUND_EX_HEADER if flags & 0x0f == 0 => FrameRole::SequenceHeader,
        _ => FrameRole::Frame,
    }
}

/// The end-of-sequence marker of a video track (AVC/HEVC packet type 2, Enhanced
/// RTMP SequenceEnd): an encoder's last word, which ffmpeg flags as a keyframe
/// although no decoder can start there.
pub fn is_end_of_sequence(kind: FrameKind, payload: &[u8]) -> bool {
    match (kind, payload) {
        (FrameKind::Video, [flags, ..]) if flags & 0x80 != 0 => flags & 0x0f == EX_SEQUENCE_END,
        (FrameKind::Video, [flags, packet, ..]) => {
            *packet == 2
                && matches!(
                    flags & 0x0f,
                    CODEC_AVC | CODEC_HEVC_LEGACY | CODEC_AV1_LEGACY
                )
        }
        _ => false,
    }
}

/// Frames for unit tests elsewhere: an AVC video frame (a keyframe or not) and an
/// AAC audio frame.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Frame, FrameKind};

    pub fn video(ts: u32, key: bool) -> Frame {
        Frame::media(
            FrameKind::Video,
            ts,
            vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0],
        )
    }

    pub fn audio(ts: u32) -> Frame {
        Frame::media(FrameKind::Audio, ts, vec![0xaf, 1, 0x21])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_packets() {
        let v = FrameKind::Video;
        assert_eq!(
            classify(v, &[0x17, 0, 0, 0, 0, 1]),
            FrameRole::SequenceHeader
        );
        assert_eq!(classify(v, &[0x17, 1, 0, 0, 0]), FrameRole::Keyframe);
        assert_eq!(classify(v, &[0x27, 1, 0, 0, 0]), FrameRole::Frame);
        // End of sequence is not a keyframe even with the key flag.
        assert_eq!(classify(v, &[0x17, 2, 0, 0, 0]), FrameRole::Frame);
        assert!(is_end_of_sequence(v, &[0x17, 2, 0, 0, 0]));
        assert!(!is_end_of_sequence(v, &[0x17, 1, 0, 0, 0]));
        assert!(!is_end_of_sequence(FrameKind::Audio, &[0xaf, 2]));
        // A video info/command frame (type 5) never starts decoding.
        assert_eq!(classify(v, &[0x57, 1]), FrameRole::Frame);
    }

    #[test]
    fn legacy_hevc_like_avc() {
        assert_eq!(
            classify(FrameKind::Video, &[0x1c, 0]),
            FrameRole::SequenceHeader
        );
        assert_eq!(classify(FrameKind::Video, &[0x1c, 1]), FrameRole::Keyframe);
    }

    #[test]
    fn other_legacy_codecs_use_frame_type() {
        // Sorenson H.263 (2) and VP6 (4) have no sequence header.
        assert_eq!(classify(FrameKind::Video, &[0x12, 0]), FrameRole::Keyframe);
        assert_eq!(classify(FrameKind::Video, &[0x24]), FrameRole::Frame);
    }

    #[test]
    fn enhanced_rtmp_video() {
        let hvc1 = *b"hvc1";
        let ex = |b0: u8| {
            let mut p = vec![b0];
            p.extend_from_slice(&hvc1);
            p
        };
        // key frame type (1), SequenceStart
        assert_eq!(
            classify(FrameKind::Video, &ex(0x90)),
            FrameRole::SequenceHeader
        );
        // key, CodedFrames / CodedFramesX
        assert_eq!(classify(FrameKind::Video, &ex(0x91)), FrameRole::Keyframe);
        assert_eq!(classify(FrameKind::Video, &ex(0x93)), FrameRole::Keyframe);
        // inter frame, CodedFramesX
        assert_eq!(classify(FrameKind::Video, &ex(0xa3)), FrameRole::Frame);
        // SequenceEnd and Metadata are never keyframes
        assert_eq!(classify(FrameKind::Video, &ex(0x92)), FrameRole::Frame);
        assert_eq!(classify(FrameKind::Video, &ex(0x94)), FrameRole::Frame);
        // multitrack whose track packet type is SequenceStart
        assert_eq!(
            classify(FrameKind::Video, &[0x96, 0x00]),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(FrameKind::Video, &[0x96, 0x01]),
            FrameRole::Keyframe
        );
        assert_eq!(classify(FrameKind::Video, &[0x96]), FrameRole::Frame);
    }

    #[test]
    fn aac_and_other_audio() {
        let a = FrameKind::Audio;
        assert_eq!(
            classify(a, &[0xaf, 0, 0x12, 0x10]),
            FrameRole::SequenceHeader
        );
        assert_eq!(classify(a, &[0xaf, 1, 0x21]), FrameRole::Frame);
        assert_eq!(classify(a, &[0x2f, 0xff]), FrameRole::Frame, "MP3");
        assert_eq!(
            classify(a, &[0x90, b'O', b'p', b'u', b's']),
            FrameRole::SequenceHeader
        );
        assert_eq!(
            classify(a, &[0x91, b'O', b'p', b'u', b's']),
            FrameRole::Frame
        );
    }

    #[test]
    fn empty_and_short_payloads_are_plain_frames() {
        assert_eq!(classify(FrameKind::Video, &[]), FrameRole::Frame);
        assert_eq!(classify(FrameKind::Video, &[0x17]), FrameRole::Frame);
        assert_eq!(classify(FrameKind::Audio, &[]), FrameRole::Frame);
        assert_eq!(classify(FrameKind::Audio, &[0xaf]), FrameRole::Frame);
    }

    #[test]
    fn payload_is_kept_verbatim() {
        let f = Frame::media(FrameKind::Audio, 40, vec![0xaf, 1, 2, 3]);
        assert_eq!(f.payload, [0xaf, 1, 2, 3]);
        assert_eq!(f.restamped(7).payload, f.payload);
        assert_eq!(f.restamped(7).timestamp, 7);
    }
}
