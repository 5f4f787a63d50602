//! From FLV to fMP4, per codec: what an FLV audio or video payload is (decoder
//! configuration, a coded frame, or something fMP4 does not carry), and the
//! sample entry, timescale and RFC 6381 `CODECS` string a track gets from its
//! configuration. Covers the legacy FLV codecs rtmpd's players use (H.264 and
//! AAC, and the de-facto HEVC id 12) and the Enhanced RTMP FourCCs `avc1`,
//! `hvc1`, `av01`, `vp09`, `mp4a`, `Opus`, `fLaC`, `ac-3` and `ec-3`.
//!
//! The configuration records travel as the encoder wrote them: an FLV sequence
//! header carries the very `avcC`, `hvcC`, `av1C` or `vpcC` body that MP4 wants.
//! Opus (OpusHead, little-endian) and FLAC (STREAMINFO) are rewritten into
//! `dOps` and `dfLa`; AC-3 and E-AC-3 have no sequence header worth the name,
//! so `dac3`/`dec3` come from the first frame's sync frame header. Every parser
//! takes untrusted bytes and says what was wrong rather than panicking.

use std::fmt;

use super::boxes::BoxWriter;
use crate::media::codec::{parse_h264_sps, BitReader, AAC_SAMPLE_RATES};
use crate::media::frame::{EX_CODED_FRAMES, EX_CODED_FRAMES_X, EX_SEQUENCE_END, EX_SEQUENCE_START};

/// The codecs HLS carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Hevc,
    Av1,
    Vp9,
    Aac,
    Opus,
    Flac,
    Ac3,
    Eac3,
}

impl Codec {
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::Hevc | Codec::Av1 | Codec::Vp9)
    }

    /// Short lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Hevc => "hevc",
            Codec::Av1 => "av1",
            Codec::Vp9 => "vp9",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
            Codec::Flac => "flac",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
        }
    }

    /// Whether the decoder configuration comes from the first frame (the sync
    /// frame header) rather than from a sequence header.
    pub fn configured_by_frames(self) -> bool {
        matches!(self, Codec::Ac3 | Codec::Eac3)
    }

    fn from_video_fourcc(fourcc: &[u8]) -> Option<Codec> {
        Some(match fourcc {
            b"avc1" => Codec::H264,
            b"hvc1" => Codec::Hevc,
            b"av01" => Codec::Av1,
            b"vp09" => Codec::Vp9,
            _ => return None,
        })
    }

    fn from_audio_fourcc(fourcc: &[u8]) -> Option<Codec> {
        Some(match fourcc {
            b"mp4a" => Codec::Aac,
            b"Opus" => Codec::Opus,
            b"fLaC" => Codec::Flac,
            b"ac-3" => Codec::Ac3,
            b"ec-3" => Codec::Eac3,
            _ => return None,
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an FLV audio or video payload means to the muxer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Decoder configuration (the sequence header's record).
    Config { codec: Codec, record: &'a [u8] },
    /// One coded frame: `cts` is the composition time offset in milliseconds.
    Frame {
        codec: Codec,
        key: bool,
        cts: i32,
        data: &'a [u8],
    },
    /// Nothing to carry (end of sequence, metadata, an empty payload).
    Skip,
    /// A codec or packet layout fMP4 output does not support; says which.
    Unsupported(String),
}

// Enhanced RTMP packet types beyond those `frame` knows.
const EX_METADATA: u8 = 4;
const EX_AUDIO_MULTICHANNEL_CONFIG: u8 = 4;

/// Reads a signed 24-bit big-endian number.
fn si24(b: &[u8]) -> i32 {
    let v = i32::from(b[0]) << 16 | i32::from(b[1]) << 8 | i32::from(b[2]);
    (v << 8) >> 8
}

/// Classifies a video payload.
pub fn video_packet(payload: &[u8]) -> Packet<'_> {
    let Some(&flags) = payload.first() else {
        return Packet::Skip;
    };
    if flags & 0x80 != 0 {
        let frame_type = (flags >> 4) & 0x07;
        let packet_type = flags & 0x0f;
        let Some(fourcc) = payload.get(1..5) else {
            return Packet::Skip;
        };
        let Some(codec) = Codec::from_video_fourcc(fourcc) else {
            return Packet::Unsupported(format!(
                "video codec {:?}",
                String::from_utf8_lossy(fourcc)
            ));
        };
        // Frame type 5 is a command frame: no picture.
        if frame_type == 5 {
            return Packet::Skip;
        }
        let key = frame_type == 1;
        return match packet_type {
            EX_SEQUENCE_START => Packet::Config {
                codec,
                record: &payload[5..],
            },
            EX_CODED_FRAMES if matches!(codec, Codec::H264 | Codec::Hevc) => {
                match payload.get(5..8) {
                    Some(cts) => Packet::Frame {
                        codec,
                        key,
                        cts: si24(cts),
                        data: &payload[8..],
                    },
                    None => Packet::Skip,
                }
            }
            EX_CODED_FRAMES | EX_CODED_FRAMES_X => Packet::Frame {
                codec,
                key,
                cts: 0,
                data: &payload[5..],
            },
            EX_SEQUENCE_END | EX_METADATA => Packet::Skip,
            other => Packet::Unsupported(format!("Enhanced RTMP video packet type {other}")),
        };
    }
    let codec = match flags & 0x0f {
        7 => Codec::H264,
        12 => Codec::Hevc,
        other => return Packet::Unsupported(format!("FLV video codec id {other}")),
    };
    if flags >> 4 == 5 {
        return Packet::Skip;
    }
    match (payload.get(1), payload.get(2..5)) {
        (Some(0), Some(_)) => Packet::Config {
            codec,
            record: &payload[5..],
        },
        (Some(1), Some(cts)) => Packet::Frame {
            codec,
            key: flags >> 4 == 1,
            cts: si24(cts),
            data: &payload[5..],
        },
        _ => Packet::Skip,
    }
}

/// Classifies an audio payload.
pub fn audio_packet(payload: &[u8]) -> Packet<'_> {
    let Some(&flags) = payload.first() else {
        return Packet::Skip;
    };
    match flags >> 4 {
        10 => match payload.get(1) {
            Some(0) => Packet::Config {
                codec: Codec::Aac,
                record: &payload[2..],
            },
            Some(1) => Packet::Frame {
                codec: Codec::Aac,
                key: true,
                cts: 0,
                data: &payload[2..],
            },
            _ => Packet::Skip,
        },
        9 => {
            let Some(fourcc) = payload.get(1..5) else {
                return Packet::Skip;
            };
            let Some(codec) = Codec::from_audio_fourcc(fourcc) else {
                return Packet::Unsupported(format!(
                    "audio codec {:?}",
                    String::from_utf8_lossy(fourcc)
                ));
            };
            match flags & 0x0f {
                EX_SEQUENCE_START => Packet::Config {
                    codec,
                    record: &payload[5..],
                },
                EX_CODED_FRAMES => Packet::Frame {
                    codec,
                    key: true,
                    cts: 0,
                    data: &payload[5..],
                },
                EX_SEQUENCE_END | EX_AUDIO_MULTICHANNEL_CONFIG => Packet::Skip,
                other => Packet::Unsupported(format!("Enhanced RTMP audio packet type {other}")),
            }
        }
        other => Packet::Unsupported(format!(
            "FLV audio format {other} ({})",
            match other {
                2 | 14 => "MP3",
                0 | 3 => "PCM",
                11 => "Speex",
                4..=6 => "Nellymoser",
                7 | 8 => "G.711",
                _ => "other",
            }
        )),
    }
}

/// Why a configuration cannot make a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub codec: Codec,
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration: {}", self.codec, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// One track's setup: what goes into the init segment and the playlists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    pub codec: Codec,
    /// RFC 6381, for `CODECS`.
    pub codec_string: String,
    /// Ticks per second of the track's timestamps: 90 kHz for video, the
    /// sample rate for audio.
    pub timescale: u32,
    /// Video: picture size (0 when unknown).
    pub width: u32,
    pub height: u32,
    /// Audio.
    pub sample_rate: u32,
    pub channels: u16,
    /// The whole sample entry box (`avc1`, `mp4a`, ...).
    pub sample_entry: Vec<u8>,
    /// What it was made from, to tell a repeated sequence header from a new one.
    pub source: Vec<u8>,
}

impl TrackConfig {
    pub fn is_video(&self) -> bool {
        self.codec.is_video()
    }

    /// Builds a track from a sequence header's record (or, for AC-3 and E-AC-3,
    /// from a frame). `size` is the picture size known from elsewhere (onMetaData)
    /// for codecs whose configuration is not parsed for it here.
    pub fn new(codec: Codec, record: &[u8], size: (u32, u32)) -> Result<TrackConfig, ConfigError> {
        let err = |reason| ConfigError { codec, reason };
        let mut t = TrackConfig {
            codec,
            codec_string: String::new(),
            timescale: 90_000,
            width: size.0,
            height: size.1,
            sample_rate: 0,
            channels: 0,
            sample_entry: Vec::new(),
            source: record.to_vec(),
        };
        match codec {
            Codec::H264 => {
                if record.len() < 7 || record[0] != 1 {
                    return Err(err("not an AVCDecoderConfigurationRecord"));
                }
                t.codec_string =
                    format!("avc1.{:02x}{:02x}{:02x}", record[1], record[2], record[3]);
                if let Some((w, h)) = h264_size(record) {
                    (t.width, t.height) = (w, h);
                }
                t.sample_entry = visual_entry(b"avc1", &t, b"avcC", record);
            }
            Codec::Hevc => {
                if record.len() < 23 || record[0] != 1 {
                    return Err(err("not an HEVCDecoderConfigurationRecord"));
                }
                t.codec_string = hevc_codec_string(record);
                t.sample_entry = visual_entry(b"hvc1", &t, b"hvcC", record);
            }
            Codec::Av1 => {
                if record.len() < 4 || record[0] != 0x81 {
                    return Err(err("not an AV1CodecConfigurationRecord"));
                }
                t.codec_string = av1_codec_string(record);
                t.sample_entry = visual_entry(b"av01", &t, b"av1C", record);
            }
            Codec::Vp9 => {
                // The sequence header is the vpcC box's body, version and flags
                // included (version 1: 8 bytes of fields and the init data length).
                if record.len() < 12 || record[0] != 1 {
                    return Err(err("not a version 1 VPCodecConfigurationRecord"));
                }
                t.codec_string = vp9_codec_string(&record[4..]);
                t.sample_entry = visual_entry(b"vp09", &t, b"vpcC", record);
            }
            Codec::Aac => {
                let (object_type, rate, channels) =
                    aac_config(record).ok_or_else(|| err("bad AudioSpecificConfig"))?;
                t.codec_string = format!("mp4a.40.{object_type}");
                (t.sample_rate, t.channels) = (rate, channels);
                let esds = esds(record);
                t.sample_entry = audio_entry(b"mp4a", &t, b"esds", &esds);
            }
            Codec::Opus => {
                let dops = opus_dops(record).ok_or_else(|| err("bad OpusHead"))?;
                t.codec_string = "opus".into();
                (t.sample_rate, t.channels) = (48_000, u16::from(record[9]));
                t.sample_entry = audio_entry(b"Opus", &t, b"dOps", &dops);
            }
            Codec::Flac => {
                let info = record.strip_prefix(b"fLaC").unwrap_or(record);
                // With the marker, STREAMINFO follows its 4-byte block header.
                let info = if info.len() > 34 && info[0] & 0x7f == 0 {
                    &info[4..]
                } else {
                    info
                };
                if info.len() < 34 {
                    return Err(err("STREAMINFO shorter than 34 bytes"));
                }
                let rate =
                    u32::from(info[10]) << 12 | u32::from(info[11]) << 4 | u32::from(info[12]) >> 4;
                if rate == 0 {
                    return Err(err("sample rate 0 in STREAMINFO"));
                }
                t.codec_string = "fLaC".into();
                (t.sample_rate, t.channels) = (rate, u16::from((info[12] >> 1) & 7) + 1);
                let mut dfla = vec![0, 0, 0, 0, 0x80, 0, 0, 34];
                dfla.extend_from_slice(&info[..34]);
                t.sample_entry = audio_entry(b"fLaC", &t, b"dfLa", &dfla);
            }
            Codec::Ac3 => {
                let h = ac3_header(record).ok_or_else(|| err("no AC-3 sync frame header"))?;
                t.codec_string = "ac-3".into();
                (t.sample_rate, t.channels) = (h.sample_rate, h.channels);
                t.sample_entry = audio_entry(b"ac-3", &t, b"dac3", &h.dac3);
            }
            Codec::Eac3 => {
                let h = eac3_header(record).ok_or_else(|| err("no E-AC-3 sync frame header"))?;
                t.codec_string = "ec-3".into();
                (t.sample_rate, t.channels) = (h.sample_rate, h.channels);
                t.sample_entry = audio_entry(b"ec-3", &t, b"dec3", &h.dac3);
            }
        }
        if !codec.is_video() {
            t.timescale = t.sample_rate;
        }
        Ok(t)
    }

    /// The sample data of a frame as MP4 stores it: the FLV payload's data, except
    /// that AV1 temporal delimiters, which MP4 samples leave out, are dropped.
    pub fn sample_data<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        match self.codec {
            // OBU header 0x12 (temporal delimiter, has_size_field) and size 0.
            Codec::Av1 => data.strip_prefix(&[0x12, 0x00]).unwrap_or(data),
            _ => data,
        }
    }
}

fn h264_size(record: &[u8]) -> Option<(u32, u32)> {
    if record[5] & 0x1f == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*record.get(6)?, *record.get(7)?]));
    let sps = parse_h264_sps(record.get(8..8 + len)?)?;
    Some((sps.width, sps.height))
}

/// `hvc1.<space><profile>.<compatibility>.<tier><level>.<constraints>` (ISO
/// 14496-15 annex E): compatibility flags bit-reversed in hex, constraint bytes
/// in hex without the trailing zero ones.
fn hevc_codec_string(r: &[u8]) -> String {
    let space = ["", "A", "B", "C"][usize::from(r[1] >> 6)];
    let tier = if r[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = r[1] & 0x1f;
    let compat = u32::from_be_bytes([r[2], r[3], r[4], r[5]]).reverse_bits();
    let mut s = format!("hvc1.{space}{profile}.{compat:x}.{tier}{}", r[12]);
    let constraints = &r[6..12];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:x}"));
    }
    s
}

/// `vp09.<profile>.<level>.<bit depth>` and, where they are consistent, the
/// optional fields: chroma subsampling, colour primaries, transfer, matrix and
/// full range (VP9 ISOBMFF binding, codecs parameter string). They go together
/// or not at all, and matrix 0 (RGB) requires 4:4:4 (chroma 3); a record that
/// breaks that (ffmpeg publishes 4:2:0 with matrix 0) gets the short form,
/// which claims nothing it cannot back.
fn vp9_codec_string(r: &[u8]) -> String {
    let (depth, chroma, full_range) = (r[2] >> 4, (r[2] >> 1) & 7, r[2] & 1);
    let mut s = format!("vp09.{:02}.{:02}.{depth:02}", r[0], r[1]);
    let (primaries, transfer, matrix) = (r[3], r[4], r[5]);
    if matrix != 0 || chroma == 3 {
        s.push_str(&format!(
            ".{chroma:02}.{primaries:02}.{transfer:02}.{matrix:02}.{full_range:02}"
        ));
    }
    s
}

/// `av01.<profile>.<level><tier>.<bit depth>` (AV1 ISOBMFF binding, codecs
/// parameter string).
fn av1_codec_string(r: &[u8]) -> String {
    let profile = r[1] >> 5;
    let level = r[1] & 0x1f;
    let tier = if r[2] & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (r[2] & 0x40 != 0, r[2] & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    format!("av01.{profile}.{level:02}{tier}.{depth:02}")
}

/// AudioSpecificConfig: (audio object type, sampling rate, channels).
fn aac_config(asc: &[u8]) -> Option<(u32, u32, u16)> {
    let mut r = BitReader::new(asc);
    let mut object_type = r.bits(5)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6)?;
    }
    let rate = match r.bits(4)? {
        15 => r.bits(24)?,
        i => *AAC_SAMPLE_RATES.get(i as usize)?,
    };
    let channels = match r.bits(4)? {
        7 => 8,
        c => c as u16,
    };
    (rate > 0).then_some((object_type, rate, channels))
}

/// The `esds` body (ISO 14496-1 descriptors) for AAC with this AudioSpecificConfig.
fn esds(asc: &[u8]) -> Vec<u8> {
    fn descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        // Four-byte length form: what most muxers write, fine for any size here.
        let n = body.len() as u32;
        out.extend_from_slice(&[
            0x80 | (n >> 21) as u8 & 0x7f,
            0x80 | (n >> 14) as u8 & 0x7f,
            0x80 | (n >> 7) as u8 & 0x7f,
            n as u8 & 0x7f,
        ]);
        out.extend_from_slice(body);
    }
    let mut specific = Vec::new();
    descriptor(&mut specific, 0x05, asc);
    // objectTypeIndication 0x40 (MPEG-4 audio), streamType 5 (audio) << 2 | 1,
    // bufferSizeDB, maxBitrate, avgBitrate (0: unknown).
    let mut config = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    config.extend_from_slice(&specific);
    let mut es = vec![0, 1, 0]; // ES_ID 1, no flags
    descriptor(&mut es, 0x04, &config);
    descriptor(&mut es, 0x06, &[0x02]); // SLConfigDescriptor, predefined MP4
    let mut body = vec![0, 0, 0, 0]; // full box version 0, flags 0
    descriptor(&mut body, 0x03, &es);
    body
}

/// The `dOps` body from an OpusHead ("Opus in ISOBMFF" §4.3.2): the same fields,
/// big-endian, version 0.
fn opus_dops(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return None;
    }
    let channels = head[9];
    let family = head[18];
    let mut out = vec![0, channels];
    out.extend_from_slice(&u16::from_le_bytes([head[10], head[11]]).to_be_bytes());
    out.extend_from_slice(
        &u32::from_le_bytes([head[12], head[13], head[14], head[15]]).to_be_bytes(),
    );
    out.extend_from_slice(&i16::from_le_bytes([head[16], head[17]]).to_be_bytes());
    out.push(family);
    if family != 0 {
        // Stream count, coupled count, one mapping byte per channel.
        out.extend_from_slice(head.get(19..21 + usize::from(channels))?);
    }
    Some(out)
}

/// What a (E-)AC-3 sync frame header says, with the `dac3`/`dec3` body.
struct Ac3Header {
    sample_rate: u32,
    channels: u16,
    dac3: Vec<u8>,
}

/// Channels of each `acmod` (without the LFE).
const ACMOD_CHANNELS: [u16; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

fn ac3_header(frame: &[u8]) -> Option<Ac3Header> {
    if frame.len() < 7 || frame[..2] != [0x0b, 0x77] {
        return None;
    }
    let mut b = BitReader::new(&frame[4..]);
    let fscod = b.bits(2)?;
    let frmsizecod = b.bits(6)?;
    let bsid = b.bits(5)?;
    let bsmod = b.bits(3)?;
    let acmod = b.bits(3)?;
    if fscod == 3 || bsid > 10 {
        return None;
    }
    if acmod & 1 != 0 && acmod != 1 {
        b.bits(2)?; // cmixlev
    }
    if acmod & 4 != 0 {
        b.bits(2)?; // surmixlev
    }
    if acmod == 2 {
        b.bits(2)?; // dsurmod
    }
    let lfeon = b.bits(1)?;
    let dac3 =
        fscod << 22 | bsid << 17 | bsmod << 14 | acmod << 11 | lfeon << 10 | (frmsizecod >> 1) << 5;
    Some(Ac3Header {
        sample_rate: [48000, 44100, 32000][fscod as usize],
        channels: ACMOD_CHANNELS[acmod as usize] + lfeon as u16,
        dac3: dac3.to_be_bytes()[1..].to_vec(),
    })
}

fn eac3_header(frame: &[u8]) -> Option<Ac3Header> {
    if frame.len() < 6 || frame[..2] != [0x0b, 0x77] {
        return None;
    }
    let mut b = BitReader::new(&frame[2..]);
    let _strmtyp = b.bits(2)?;
    let _substreamid = b.bits(3)?;
    let frmsiz = b.bits(11)?;
    let fscod = b.bits(2)?;
    let fscod2_or_blocks = b.bits(2)?;
    let acmod = b.bits(3)?;
    let lfeon = b.bits(1)?;
    let bsid = b.bits(5)?;
    if !(11..=16).contains(&bsid) {
        return None;
    }
    let (sample_rate, blocks) = if fscod == 3 {
        (*[24000, 22050, 16000].get(fscod2_or_blocks as usize)?, 6)
    } else {
        (
            [48000, 44100, 32000][fscod as usize],
            [1, 2, 3, 6][fscod2_or_blocks as usize],
        )
    };
    let frame_bytes = u64::from(frmsiz + 1) * 2;
    let kbps = frame_bytes * 8 * u64::from(sample_rate) / (blocks * 256) / 1000;
    // data_rate(13) num_ind_sub(3) = 0; one independent substream: fscod(2)
    // bsid(5) reserved(1) asvc(1) bsmod(3) acmod(3) lfeon(1) reserved(3)
    // num_dep_sub(4) reserved(1).
    let first = (kbps.min(0x1fff) as u32) << 3;
    let sub = (fscod.min(2)) << 22 | bsid << 17 | acmod << 9 | lfeon << 8;
    let mut dec3 = (first as u16).to_be_bytes().to_vec();
    dec3.extend_from_slice(&sub.to_be_bytes()[1..]);
    Some(Ac3Header {
        sample_rate,
        channels: ACMOD_CHANNELS[acmod as usize] + lfeon as u16,
        dac3: dec3,
    })
}

/// A VisualSampleEntry with one configuration box.
fn visual_entry(kind: &[u8; 4], t: &TrackConfig, config_kind: &[u8; 4], config: &[u8]) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(128 + config.len());
    w.start(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved
    w.u16(t.width.min(0xffff) as u16);
    w.u16(t.height.min(0xffff) as u16);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
    w.leaf(config_kind, config);
    w.end();
    w.finish()
}

/// An AudioSampleEntry with one configuration box.
fn audio_entry(kind: &[u8; 4], t: &TrackConfig, config_kind: &[u8; 4], config: &[u8]) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(64 + config.len());
    w.start(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(t.channels.max(1));
    w.u16(16); // samplesize
    w.zeros(4);
    // 16.16 fixed point; rates above 65535 Hz do not fit and are written as 0.
    w.u32(if t.sample_rate <= 0xffff {
        t.sample_rate << 16
    } else {
        0
    });
    w.leaf(config_kind, config);
    w.end();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc_and_aac_packets() {
        assert_eq!(
            video_packet(&[0x17, 0, 0, 0, 0, 1, 2]),
            Packet::Config {
                codec: Codec::H264,
                record: &[1, 2]
            }
        );
        assert_eq!(
            video_packet(&[0x27, 1, 0xff, 0xff, 0xd8, 9]),
            Packet::Frame {
                codec: Codec::H264,
                key: false,
                cts: -40,
                data: &[9]
            }
        );
        assert_eq!(video_packet(&[0x17, 2, 0, 0, 0]), Packet::Skip);
        assert!(matches!(video_packet(&[0x22, 1]), Packet::Unsupported(_)));
        assert_eq!(
            audio_packet(&[0xaf, 0, 0x12, 0x10]),
            Packet::Config {
                codec: Codec::Aac,
                record: &[0x12, 0x10]
            }
        );
        assert!(matches!(audio_packet(&[0x2f, 1]), Packet::Unsupported(s) if s.contains("MP3")));
        assert_eq!(video_packet(&[]), Packet::Skip);
        assert_eq!(audio_packet(&[0xaf]), Packet::Skip);
    }

    #[test]
    fn enhanced_rtmp_packets() {
        let mut hevc = vec![0x91];
        hevc.extend_from_slice(b"hvc1");
        hevc.extend_from_slice(&[0, 0, 80, 7]);
        assert_eq!(
            video_packet(&hevc),
            Packet::Frame {
                codec: Codec::Hevc,
                key: true,
                cts: 80,
                data: &[7]
            }
        );
        let mut av1 = vec![0xa1];
        av1.extend_from_slice(b"av01");
        av1.extend_from_slice(&[0x12, 0]);
        assert_eq!(
            video_packet(&av1),
            Packet::Frame {
                codec: Codec::Av1,
                key: false,
                cts: 0,
                data: &[0x12, 0]
            }
        );
        let mut meta = vec![0xd4];
        meta.extend_from_slice(b"hvc1");
        assert_eq!(video_packet(&meta), Packet::Skip);
        let mut ac3 = vec![0x90];
        ac3.extend_from_slice(b"ac-3");
        assert_eq!(
            audio_packet(&ac3),
            Packet::Config {
                codec: Codec::Ac3,
                record: &[]
            }
        );
        let mut mp3 = vec![0x91];
        mp3.extend_from_slice(b".mp3");
        assert!(matches!(audio_packet(&mp3), Packet::Unsupported(_)));
    }

    #[test]
    fn codec_strings_from_configs() {
        // av.flv's avcC: Constrained Baseline level 1.3, 320x240.
        let avcc = [
            0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x16, 0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05,
            0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5,
            0x0a, 0xa8, 0x01, 0x00, 0x04, 0x68, 0xcb, 0x83, 0xcb,
        ];
        let t = TrackConfig::new(Codec::H264, &avcc, (0, 0)).unwrap();
        assert_eq!(t.codec_string, "avc1.42c00d");
        assert_eq!((t.width, t.height, t.timescale), (320, 240, 90_000));
        assert_eq!(&t.sample_entry[4..8], b"avc1");

        // HEVC Main, level 3.1 (93), main tier, progressive-source constraint.
        let mut hvcc = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.resize(23, 0);
        let t = TrackConfig::new(Codec::Hevc, &hvcc, (160, 120)).unwrap();
        assert_eq!(t.codec_string, "hvc1.1.6.L93.90");
        assert_eq!((t.width, t.height), (160, 120));

        // av1_flac.flv's av1C: main profile, level 0 (2.0), 8-bit.
        let t = TrackConfig::new(Codec::Av1, &[0x81, 0x00, 0x0c, 0x00], (0, 0)).unwrap();
        assert_eq!(t.codec_string, "av01.0.00M.08");

        // vp9_ac3.flv's vpcC: profile 0, level 1.0, 8-bit 4:2:0 colocated... BT.709.
        let vpcc = [1, 0, 0, 0, 0, 0x0a, 0x82, 2, 2, 2, 0, 0];
        let t = TrackConfig::new(Codec::Vp9, &vpcc, (0, 0)).unwrap();
        assert_eq!(t.codec_string, "vp09.00.10.08.01.02.02.02.00");
        // As ffmpeg publishes it: 4:2:0 with matrix 0 (RGB), which the long form
        // may not say; 4:4:4 RGB may.
        let rgb = [1, 0, 0, 0, 0, 0x0a, 0x82, 2, 2, 0, 0, 0];
        let t = TrackConfig::new(Codec::Vp9, &rgb, (0, 0)).unwrap();
        assert_eq!(t.codec_string, "vp09.00.10.08");
        let rgb444 = [1, 0, 0, 0, 1, 0x14, 0xa7, 1, 13, 0, 0, 0];
        let t = TrackConfig::new(Codec::Vp9, &rgb444, (0, 0)).unwrap();
        assert_eq!(t.codec_string, "vp09.01.20.10.03.01.13.00.01");

        let t = TrackConfig::new(Codec::Aac, &[0x12, 0x10], (0, 0)).unwrap();
        assert_eq!(t.codec_string, "mp4a.40.2");
        assert_eq!((t.sample_rate, t.channels, t.timescale), (44100, 2, 44100));
        let he = TrackConfig::new(Codec::Aac, &[0x2b, 0x92, 0x08, 0x00], (0, 0)).unwrap();
        assert_eq!(he.codec_string, "mp4a.40.5");
    }

    #[test]
    fn opus_flac_and_ac3_configs() {
        let head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
        let t = TrackConfig::new(Codec::Opus, head, (0, 0)).unwrap();
        assert_eq!(
            (t.codec_string.as_str(), t.channels, t.timescale),
            ("opus", 2, 48000)
        );
        let dops = &t.sample_entry[t.sample_entry.len() - 11..];
        assert_eq!(dops, [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);

        // av1_flac.flv's STREAMINFO: 48 kHz stereo.
        let mut info = vec![
            0x04, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0x10, 0x98, 0x0b, 0xb8, 0x02, 0xf0,
        ];
        info.resize(34, 0);
        let t = TrackConfig::new(Codec::Flac, &info, (0, 0)).unwrap();
        assert_eq!((t.sample_rate, t.channels), (48000, 2));
        assert_eq!(
            &t.sample_entry[t.sample_entry.len() - 42..][..8],
            b"\0\0\0\0\x80\0\0\x22"
        );
        let mut marked = b"fLaC\x80\0\0\x22".to_vec();
        marked.extend_from_slice(&info);
        assert_eq!(
            TrackConfig::new(Codec::Flac, &marked, (0, 0))
                .unwrap()
                .sample_rate,
            48000
        );

        // vp9_ac3.flv's first AC-3 frame: 48 kHz, bsid 8, stereo, 96 kbit/s.
        let frame = [0x0b, 0x77, 0x38, 0x90, 0x0c, 0x40, 0x43, 0xe1, 0x06];
        let t = TrackConfig::new(Codec::Ac3, &frame, (0, 0)).unwrap();
        assert_eq!(
            (t.sample_rate, t.channels, t.codec_string.as_str()),
            (48000, 2, "ac-3")
        );
        let dac3 = &t.sample_entry[t.sample_entry.len() - 3..];
        // fscod 0, bsid 8, bsmod 0, acmod 2, lfeon 0, bit_rate_code 6 (96 kbit/s).
        assert_eq!(dac3, [0x10, 0x10, 0xc0]);

        // E-AC-3: independent stream, 48 kHz, 6 blocks, acmod 7 + LFE, bsid 16,
        // 768-byte frames of 1536 samples = 192 kbit/s.
        let frmsiz = 768 / 2 - 1;
        let frame = [
            0x0b,
            0x77,
            (frmsiz >> 8) as u8 & 0x07,
            frmsiz as u8,
            0b0011_1111,
            16 << 3,
        ];
        let t = TrackConfig::new(Codec::Eac3, &frame, (0, 0)).unwrap();
        assert_eq!((t.sample_rate, t.channels), (48000, 6));
        let dec3 = &t.sample_entry[t.sample_entry.len() - 5..];
        assert_eq!(u16::from_be_bytes([dec3[0], dec3[1]]) >> 3, 192);
    }

    #[test]
    fn bad_configs_are_errors_not_panics() {
        for codec in [
            Codec::H264,
            Codec::Hevc,
            Codec::Av1,
            Codec::Vp9,
            Codec::Aac,
            Codec::Opus,
            Codec::Flac,
            Codec::Ac3,
            Codec::Eac3,
        ] {
            for bad in [
                &[][..],
                &[1],
                &[0x0b, 0x77, 0, 0, 0xff, 0xff, 0xff],
                &[0xff; 40],
            ] {
                let _ = TrackConfig::new(codec, bad, (0, 0));
            }
        }
        let e = TrackConfig::new(Codec::Opus, b"nope", (0, 0)).unwrap_err();
        assert_eq!(e.to_string(), "opus configuration: bad OpusHead");
    }

    #[test]
    fn av1_temporal_delimiters_are_dropped() {
        let t = TrackConfig::new(Codec::Av1, &[0x81, 0, 0x0c, 0], (0, 0)).unwrap();
        assert_eq!(t.sample_data(&[0x12, 0, 0x32, 1, 9]), [0x32, 1, 9]);
        assert_eq!(t.sample_data(&[0x32, 1, 9]), [0x32, 1, 9]);
    }
}
