//! What a stream carries, for the stats API: video codec, size and frame rate; audio
//! codec, sample rate and channels. Two sources feed it: the publisher's `onMetaData`
//! (what the encoder says) and the bitstream itself (the FLV flags byte, the H.264
//! SPS inside the AVC sequence header, the AAC AudioSpecificConfig, the OpusHead).
//! Where both know a value the bitstream wins: encoders' metadata is sometimes stale
//! or rounded. Every parser here takes untrusted bytes and gives up quietly (a field
//! stays unknown) on anything short or odd; none of this affects what players get.

use super::frame::{Frame, FrameKind, FrameRole};
use crate::amf::amf0::{self, Amf0Value, AmfLimits};

/// The video track as far as it is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoInfo {
    /// Short lower-case name: `h264`, `hevc`, `av1`, `vp9`, `vp6`, ...
    pub codec: Option<String>,
    pub profile: Option<String>,
    pub level: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
}

/// The audio track as far as it is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioInfo {
    /// Short lower-case name: `aac`, `mp3`, `opus`, `pcm`, ...
    pub codec: Option<String>,
    pub profile: Option<String>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
}

/// Both tracks; `None` for a track nothing has been seen of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Codecs {
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
}

/// Collects codec facts from a publisher's frames.
#[derive(Debug, Clone, Default)]
pub struct CodecTracker {
    from_metadata: Codecs,
    from_stream: Codecs,
}

/// Metadata is small; these bounds keep a hostile one cheap to look at.
const METADATA_LIMITS: AmfLimits = AmfLimits {
    max_depth: 8,
    max_elements: 4096,
};

impl CodecTracker {
    pub fn new() -> CodecTracker {
        CodecTracker::default()
    }

    /// Looks at one published frame. Only metadata, sequence headers and the first
    /// frame of a track cost more than a comparison.
    pub fn observe(&mut self, frame: &Frame) {
        match (frame.kind, frame.role) {
            (FrameKind::Data, FrameRole::Metadata) => {
                if let Some(info) = parse_metadata(&frame.payload) {
                    self.from_metadata = info;
                }
            }
            (FrameKind::Video, role) => {
                let known = self.from_stream.video.is_some();
                if role == FrameRole::SequenceHeader || !known {
                    let info = parse_video(&frame.payload, role == FrameRole::SequenceHeader);
                    let slot = self
                        .from_stream
                        .video
                        .get_or_insert_with(VideoInfo::default);
                    if role == FrameRole::SequenceHeader {
                        *slot = info;
                    } else {
                        slot.codec = slot.codec.take().or(info.codec);
                    }
                }
            }
            (FrameKind::Audio, role) => {
                let known = self.from_stream.audio.is_some();
                if role == FrameRole::SequenceHeader || !known {
                    let info = parse_audio(&frame.payload, role == FrameRole::SequenceHeader);
                    let slot = self
                        .from_stream
                        .audio
                        .get_or_insert_with(AudioInfo::default);
                    if role == FrameRole::SequenceHeader || slot.codec.is_none() {
                        *slot = merge_audio(Some(info), Some(slot.clone())).unwrap_or_default();
                    }
                }
            }
            (FrameKind::Data, _) => {}
        }
    }

    /// The merged view: bitstream facts first, metadata for the rest.
    pub fn codecs(&self) -> Codecs {
        Codecs {
            video: merge_video(
                self.from_stream.video.clone(),
                self.from_metadata.video.clone(),
            ),
            audio: merge_audio(
                self.from_stream.audio.clone(),
                self.from_metadata.audio.clone(),
            ),
        }
    }
}

fn merge_video(first: Option<VideoInfo>, second: Option<VideoInfo>) -> Option<VideoInfo> {
    match (first, second) {
        (Some(a), Some(b)) => Some(VideoInfo {
            codec: a.codec.or(b.codec),
            profile: a.profile.or(b.profile),
            level: a.level.or(b.level),
            width: a.width.or(b.width),
            height: a.height.or(b.height),
            fps: a.fps.or(b.fps),
        }),
        (a, b) => a.or(b),
    }
}

fn merge_audio(first: Option<AudioInfo>, second: Option<AudioInfo>) -> Option<AudioInfo> {
    match (first, second) {
        (Some(a), Some(b)) => Some(AudioInfo {
            codec: a.codec.or(b.codec),
            profile: a.profile.or(b.profile),
            sample_rate: a.sample_rate.or(b.sample_rate),
            channels: a.channels.or(b.channels),
        }),
        (a, b) => a.or(b),
    }
}

// ---------------------------------------------------------------------------------
// onMetaData

/// Reads `onMetaData` (name, then an object or ECMA array). Tracks the metadata
/// does not mention stay `None`.
pub fn parse_metadata(payload: &[u8]) -> Option<Codecs> {
    let values = amf0::decode_all_with(payload, METADATA_LIMITS).ok()?;
    let props = values.iter().find(|v| {
        matches!(
            v,
            Amf0Value::Object(_) | Amf0Value::EcmaArray(_) | Amf0Value::TypedObject { .. }
        )
    })?;
    let number = |key: &str| props.get(key).and_then(Amf0Value::as_f64);
    let positive = |key: &str| {
        number(key)
            .filter(|n| n.is_finite() && *n > 0.0 && *n < f64::from(u32::MAX))
            .map(|n| n.round() as u32)
    };
    let video_codec = props.get("videocodecid").and_then(|v| match v.as_f64() {
        Some(id) if (0.0..16.0).contains(&id) => legacy_video_codec(id as u8).map(str::to_owned),
        Some(_) => None,
        None => v.as_str().map(fourcc_name),
    });
    let fps = number("framerate")
        .or_else(|| number("videoframerate"))
        .filter(|n| n.is_finite() && *n > 0.0 && *n < 1000.0);
    let video = VideoInfo {
        codec: video_codec,
        profile: None,
        level: None,
        width: positive("width"),
        height: positive("height"),
        fps,
    };
    let audio_codec = props.get("audiocodecid").and_then(|v| match v.as_f64() {
        Some(id) if (0.0..16.0).contains(&id) => legacy_audio_codec(id as u8).map(str::to_owned),
        Some(_) => None,
        None => v.as_str().map(fourcc_name),
    });
    let channels = positive("audiochannels").or_else(|| {
        props
            .get("stereo")
            .and_then(Amf0Value::as_bool)
            .map(|stereo| if stereo { 2 } else { 1 })
    });
    let audio = AudioInfo {
        codec: audio_codec,
        profile: None,
        sample_rate: positive("audiosamplerate"),
        channels,
    };
    Some(Codecs {
        video: (video != VideoInfo::default()).then_some(video),
        audio: (audio != AudioInfo::default()).then_some(audio),
    })
}

// ---------------------------------------------------------------------------------
// Video

fn legacy_video_codec(id: u8) -> Option<&'static str> {
    Some(match id {
        2 => "h263",
        3 => "screenvideo",
        4 => "vp6",
        5 => "vp6a",
        6 => "screenvideo2",
        7 => "h264",
        12 => "hevc",
        13 => "av1",
        _ => return None,
    })
}

/// Enhanced RTMP FourCCs (and the strings some encoders put in metadata) to names.
fn fourcc_name(fourcc: &str) -> String {
    match fourcc {
        "avc1" => "h264",
        "hvc1" => "hevc",
        "av01" => "av1",
        "vp09" => "vp9",
        "vp08" => "vp8",
        "mp4a" => "aac",
        "Opus" => "opus",
        ".mp3" => "mp3",
        "fLaC" => "flac",
        "ac-3" => "ac3",
        "ec-3" => "eac3",
        other => return other.trim().to_ascii_lowercase(),
    }
    .to_owned()
}

fn parse_video(payload: &[u8], is_header: bool) -> VideoInfo {
    let mut info = VideoInfo::default();
    let Some(&flags) = payload.first() else {
        return info;
    };
    if flags & 0x80 != 0 {
        // Enhanced RTMP: the FourCC follows the flags byte (not for multitrack, whose
        // layout carries one per track; left unknown).
        if flags & 0x0f == 6 {
            return info;
        }
        let Some(fourcc) = payload.get(1..5) else {
            return info;
        };
        let fourcc = String::from_utf8_lossy(fourcc);
        info.codec = Some(fourcc_name(&fourcc));
        if is_header && fourcc == "avc1" {
            if let Some(record) = payload.get(5..) {
                fill_from_avc_record(record, &mut info);
            }
        }
        return info;
    }
    let codec = flags & 0x0f;
    info.codec = legacy_video_codec(codec).map(str::to_owned);
    if is_header && codec == 7 {
        // AVCVIDEOPACKET: packet type, 24-bit composition time, then the record.
        if let Some(record) = payload.get(5..) {
            fill_from_avc_record(record, &mut info);
        }
    }
    info
}

/// AVCDecoderConfigurationRecord (ISO 14496-15): the first SPS holds the size.
fn fill_from_avc_record(record: &[u8], info: &mut VideoInfo) {
    if record.len() < 8 || record[0] != 1 {
        return;
    }
    let sps_count = record[5] & 0x1f;
    if sps_count == 0 {
        return;
    }
    let len = usize::from(u16::from_be_bytes([record[6], record[7]]));
    let Some(sps) = record.get(8..8 + len) else {
        return;
    };
    if let Some(sps) = parse_h264_sps(sps) {
        info.profile = Some(h264_profile_name(sps.profile_idc, sps.constraint_flags).to_owned());
        info.level = Some(f64::from(sps.level_idc) / 10.0);
        info.width = Some(sps.width);
        info.height = Some(sps.height);
        info.fps = sps.fps;
    }
}

/// The parts of an H.264 sequence parameter set the stats API reports.
#[derive(Debug, Clone, PartialEq)]
pub struct H264Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    /// From the VUI timing info, when the encoder wrote it.
    pub fps: Option<f64>,
}

fn h264_profile_name(profile_idc: u8, constraints: u8) -> &'static str {
    match profile_idc {
        66 if constraints & 0x40 != 0 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        _ => "unknown",
    }
}

/// Parses an SPS NAL unit (with its one-byte NAL header) far enough for the picture
/// size (cropping applied) and the VUI frame rate. `None` if it is not an SPS or is
/// cut short.
pub fn parse_h264_sps(nal: &[u8]) -> Option<H264Sps> {
    if nal.first()? & 0x1f != 7 {
        return None;
    }
    let rbsp = unescape_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_mbs.checked_mul(16)?;
    let mut height = height_map_units
        .checked_mul(16)?
        .checked_mul(field_factor)?;
    if r.bit()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        // ChromaArrayType 0 (monochrome or separate planes) crops in luma samples.
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (0, _) | (3, true) => (1, 1),
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let crop_x = left.checked_add(right)?.checked_mul(sub_w)?;
        let crop_y = top
            .checked_add(bottom)?
            .checked_mul(sub_h)?
            .checked_mul(field_factor)?;
        width = width.checked_sub(crop_x)?;
        height = height.checked_sub(crop_y)?;
    }
    let fps = if r.bit().unwrap_or(false) {
        vui_frame_rate(&mut r)
    } else {
        None
    };
    Some(H264Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        width,
        height,
        fps,
    })
}

/// Walks the VUI up to timing_info; the frame rate is time_scale / (2 × ticks).
fn vui_frame_rate(r: &mut BitReader) -> Option<f64> {
    if r.bit()? {
        // aspect_ratio_info_present_flag
        if r.bits(8)? == 255 {
            r.bits(32)?; // sar_width, sar_height
        }
    }
    if r.bit()? {
        r.bit()?; // overscan_appropriate_flag
    }
    if r.bit()? {
        r.bits(4)?; // video_format, video_full_range_flag
        if r.bit()? {
            r.bits(24)?; // colour primaries, transfer, matrix
        }
    }
    if r.bit()? {
        r.ue()?; // chroma_sample_loc_type_top_field
        r.ue()?; // chroma_sample_loc_type_bottom_field
    }
    if !r.bit()? {
        return None;
    }
    let ticks = r.bits(32)?;
    let time_scale = r.bits(32)?;
    if ticks == 0 || time_scale == 0 {
        return None;
    }
    let fps = f64::from(time_scale) / (2.0 * f64::from(ticks));
    // Round to 3 decimals: 30000/1001 → 29.97.
    Some((fps * 1000.0).round() / 1000.0)
}

fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            next = (last + i64::from(r.se()?)).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation-prevention bytes (00 00 03 → 00 00).
fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with Exp-Golomb codes; `None` past the end.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        let v = (1u64 << zeros) - 1 + u64::from(rest);
        u32::try_from(v).ok()
    }

    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

// ---------------------------------------------------------------------------------
// Audio

fn legacy_audio_codec(id: u8) -> Option<&'static str> {
    Some(match id {
        0 | 3 => "pcm",
        1 => "adpcm",
        2 | 14 => "mp3",
        4..=6 => "nellymoser",
        7 => "g711a",
        8 => "g711u",
        10 => "aac",
        11 => "speex",
        _ => return None,
    })
}

pub(crate) const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

fn parse_audio(payload: &[u8], is_header: bool) -> AudioInfo {
    let mut info = AudioInfo::default();
    let Some(&flags) = payload.first() else {
        return info;
    };
    let format = flags >> 4;
    if format == 9 {
        // Enhanced RTMP audio: FourCC after the flags byte (multitrack, 5, left unknown).
        if flags & 0x0f == 5 {
            return info;
        }
        let Some(fourcc) = payload.get(1..5) else {
            return info;
        };
        let fourcc = String::from_utf8_lossy(fourcc);
        info.codec = Some(fourcc_name(&fourcc));
        if is_header {
            let config = payload.get(5..).unwrap_or_default();
            match &*fourcc {
                "mp4a" => fill_from_aac_config(config, &mut info),
                "Opus" => fill_from_opus_head(config, &mut info),
                _ => {}
            }
        }
        return info;
    }
    info.codec = legacy_audio_codec(format).map(str::to_owned);
    if format == 10 {
        // The flags' rate and channel bits are fixed for AAC; the config is the truth.
        if is_header {
            fill_from_aac_config(payload.get(2..).unwrap_or_default(), &mut info);
        }
        return info;
    }
    info.sample_rate = Some(match format {
        // Nellymoser 16/8 kHz and G.711 variants ignore the rate bits.
        4 => 16000,
        5 | 7 | 8 | 14 => 8000,
        11 => 16000,
        _ => [5512, 11025, 22050, 44100][usize::from(flags >> 2 & 3)],
    });
    info.channels = Some(if flags & 1 == 1 { 2 } else { 1 });
    info
}

/// AudioSpecificConfig (ISO 14496-3): object type, sampling frequency, channels.
fn fill_from_aac_config(config: &[u8], info: &mut AudioInfo) {
    let mut r = BitReader::new(config);
    let Some(mut object_type) = r.bits(5) else {
        return;
    };
    if object_type == 31 {
        let Some(ext) = r.bits(6) else { return };
        object_type = 32 + ext;
    }
    info.profile = Some(
        match object_type {
            1 => "Main",
            2 => "LC",
            3 => "SSR",
            4 => "LTP",
            5 => "HE-AAC",
            29 => "HE-AACv2",
            23 => "LD",
            39 => "ELD",
            _ => "unknown",
        }
        .to_owned(),
    );
    let rate = match r.bits(4) {
        Some(15) => r.bits(24),
        Some(i) => AAC_SAMPLE_RATES.get(i as usize).copied(),
        None => None,
    };
    info.sample_rate = rate.filter(|&r| r > 0);
    // Channel configuration 0 means "described in the program config": unknown here.
    info.channels = r
        .bits(4)
        .filter(|&c| (1..=7).contains(&c))
        .map(|c| match c {
            7 => 8,
            c => c,
        });
}

/// OpusHead: "OpusHead", version, channel count, pre-skip, input rate. Opus always
/// decodes at 48 kHz, which is what players get.
fn fill_from_opus_head(head: &[u8], info: &mut AudioInfo) {
    if head.len() >= 10 && &head[..8] == b"OpusHead" {
        info.channels = Some(u32::from(head[9])).filter(|&c| c > 0);
        info.sample_rate = Some(48000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0::encode_all_to_vec;

    /// SPS of x264 Constrained Baseline 320x240 at 25 fps (tests/fixtures/av.flv).
    const SPS_320X240: [u8; 22] = [
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
    ];

    fn avc_sequence_header(sps: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        p.extend_from_slice(sps);
        p.extend_from_slice(&[1, 0, 4, 0x68, 0xcb, 0x83, 0xcb]);
        p
    }

    fn metadata(props: Vec<(&str, Amf0Value)>) -> Frame {
        let props = props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Frame::metadata(
            0,
            encode_all_to_vec(&["onMetaData".into(), Amf0Value::EcmaArray(props)]),
        )
    }

    #[test]
    fn sps_size_and_profile() {
        let sps = parse_h264_sps(&SPS_320X240).expect("valid SPS");
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!((sps.profile_idc, sps.level_idc), (66, 13));
        assert_eq!(sps.fps, Some(25.0));
    }

    #[test]
    fn sps_with_cropping_and_timing() {
        // High profile 1920x1080 (1088 coded, cropped by 8), VUI timing 50/2 → 25 fps.
        let sps = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
        ];
        let sps = parse_h264_sps(&sps).expect("valid SPS");
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.fps, Some(25.0));
        // Main profile 1280x720 at 30000/1001.
        let sps = [
            0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x28, 0x02, 0xdd, 0x80, 0x88, 0x00, 0x00, 0x1f,
            0x48, 0x00, 0x07, 0x53, 0x00, 0x78, 0xc1, 0x8c, 0xb0,
        ];
        let sps = parse_h264_sps(&sps).expect("valid SPS");
        assert_eq!((sps.width, sps.height, sps.fps), (1280, 720, Some(29.97)));
    }

    #[test]
    fn garbage_sps_is_none_not_a_panic() {
        assert_eq!(parse_h264_sps(&[]), None);
        assert_eq!(parse_h264_sps(&[0x67]), None);
        assert_eq!(parse_h264_sps(&[0x68, 1, 2, 3]), None);
        for n in 0..SPS_320X240.len() {
            let _ = parse_h264_sps(&SPS_320X240[..n]);
        }
        let _ = parse_h264_sps(&[0x67, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let _ = parse_h264_sps(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn avc_header_and_aac_config() {
        let mut t = CodecTracker::new();
        t.observe(&Frame::media(
            FrameKind::Video,
            0,
            avc_sequence_header(&SPS_320X240),
        ));
        t.observe(&Frame::media(
            FrameKind::Audio,
            0,
            vec![0xaf, 0, 0x12, 0x10],
        ));
        let c = t.codecs();
        let v = c.video.unwrap();
        assert_eq!(v.codec.as_deref(), Some("h264"));
        assert_eq!(v.profile.as_deref(), Some("Constrained Baseline"));
        assert_eq!((v.width, v.height), (Some(320), Some(240)));
        let a = c.audio.unwrap();
        assert_eq!(a.codec.as_deref(), Some("aac"));
        assert_eq!(a.profile.as_deref(), Some("LC"));
        assert_eq!((a.sample_rate, a.channels), (Some(44100), Some(2)));
    }

    #[test]
    fn metadata_fills_what_the_bitstream_does_not_say() {
        let mut t = CodecTracker::new();
        t.observe(&metadata(vec![
            ("width", 640.0.into()),
            ("height", 360.0.into()),
            ("framerate", 29.97.into()),
            ("videocodecid", 7.0.into()),
            ("audiocodecid", 10.0.into()),
            ("audiosamplerate", 48000.0.into()),
            ("stereo", true.into()),
        ]));
        let c = t.codecs();
        let v = c.video.clone().unwrap();
        assert_eq!(
            (v.width, v.height, v.fps),
            (Some(640), Some(360), Some(29.97))
        );
        assert_eq!(c.audio.clone().unwrap().channels, Some(2));
        // The SPS says 320x240 at 25 fps: the bitstream wins.
        t.observe(&Frame::media(
            FrameKind::Video,
            0,
            avc_sequence_header(&SPS_320X240),
        ));
        let v = t.codecs().video.unwrap();
        assert_eq!(
            (v.width, v.height, v.fps),
            (Some(320), Some(240), Some(25.0))
        );
        assert_eq!(t.codecs().audio.unwrap().sample_rate, Some(48000));
    }

    #[test]
    fn enhanced_rtmp_fourccs() {
        let mut t = CodecTracker::new();
        let mut hevc = vec![0x90];
        hevc.extend_from_slice(b"hvc1");
        t.observe(&Frame::media(FrameKind::Video, 0, hevc));
        let mut opus = vec![0x90];
        opus.extend_from_slice(b"Opus");
        opus.extend_from_slice(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00");
        t.observe(&Frame::media(FrameKind::Audio, 0, opus));
        let c = t.codecs();
        assert_eq!(c.video.unwrap().codec.as_deref(), Some("hevc"));
        let a = c.audio.unwrap();
        assert_eq!(
            (a.codec.as_deref(), a.sample_rate, a.channels),
            (Some("opus"), Some(48000), Some(2))
        );
        let m = parse_metadata(&encode_all_to_vec(&[
            "onMetaData".into(),
            Amf0Value::EcmaArray(vec![("videocodecid".into(), "av01".into())]),
        ]))
        .unwrap();
        assert_eq!(m.video.unwrap().codec.as_deref(), Some("av1"));
        assert_eq!(m.audio, None);
    }

    #[test]
    fn legacy_audio_flags() {
        let mut t = CodecTracker::new();
        // MP3, 44 kHz, 16-bit, mono.
        t.observe(&Frame::media(FrameKind::Audio, 0, vec![0x2e, 0xff]));
        let a = t.codecs().audio.unwrap();
        assert_eq!(
            (a.codec.as_deref(), a.sample_rate, a.channels),
            (Some("mp3"), Some(44100), Some(1))
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut t = CodecTracker::new();
        for payload in [
            vec![],
            vec![0x17, 0],
            vec![0x17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 0xe1, 0xff, 0xff],
            vec![0x90, b'a'],
            vec![0xaf, 0],
            vec![0xaf, 0, 0xff, 0xff, 0xff, 0xff],
            vec![0x9f],
        ] {
            t.observe(&Frame::media(FrameKind::Video, 0, payload.clone()));
            t.observe(&Frame::media(FrameKind::Audio, 0, payload.clone()));
            t.observe(&Frame::metadata(0, payload));
        }
        let _ = t.codecs();
    }
}
