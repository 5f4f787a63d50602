//! The FLV container, without I/O. An FLV file (or HTTP-FLV stream) starts with a
//! 9-byte header (`"FLV"`, version 1, a flags byte saying whether audio and/or video
//! are present, and a 32-bit offset to the body, normally 9). The body is a
//! PreviousTagSize field (4 bytes, big-endian; 0 before the first tag) followed by
//! tags, each of which is an 11-byte header (type, 24-bit data size, 24-bit timestamp
//! plus an 8-bit extended timestamp holding bits 24..32, 24-bit stream id = 0), the
//! tag data (the body of the RTMP audio/video/data message, byte for byte) and
//! another PreviousTagSize equal to 11 + data size.
//!
//! [`parse`] takes a whole file; [`FlvReader`] takes a stream as it arrives.

use std::fmt;

use crate::media::frame::{self, FrameKind, FrameRole};

/// Tag type of an audio tag (same as the RTMP audio message type id).
pub const TAG_AUDIO: u8 = 8;
/// Tag type of a video tag (same as the RTMP video message type id).
pub const TAG_VIDEO: u8 = 9;
/// Tag type of a script data tag (`onMetaData`, AMF0; same as RTMP data message 18).
pub const TAG_SCRIPT: u8 = 18;

/// The kind of frame a tag type carries; `None` for types FLV does not define.
pub fn frame_kind(tag_type: u8) -> Option<FrameKind> {
    match tag_type {
        TAG_AUDIO => Some(FrameKind::Audio),
        TAG_VIDEO => Some(FrameKind::Video),
        TAG_SCRIPT => Some(FrameKind::Data),
        _ => None,
    }
}

/// The tag type that carries a frame of this kind.
pub fn tag_type(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Audio => TAG_AUDIO,
        FrameKind::Video => TAG_VIDEO,
        FrameKind::Data => TAG_SCRIPT,
    }
}

/// Length of the FLV file header.
pub const HEADER_LEN: usize = 9;
/// Length of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of a PreviousTagSize field.
const PREV_SIZE_LEN: usize = 4;
/// Largest data size an FLV tag header can express (24 bits).
pub const MAX_TAG_DATA_LEN: usize = 0x00ff_ffff;

const FLAG_AUDIO: u8 = 0x04;
const FLAG_VIDEO: u8 = 0x01;

/// One FLV tag: its type, full 32-bit timestamp in milliseconds (the extended byte
/// already folded in as bits 24..32) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl FlvTag {
    /// The kind of frame the tag carries; `None` for an unknown tag type.
    pub fn frame_kind(&self) -> Option<FrameKind> {
        frame_kind(self.tag_type)
    }

    /// What an audio or video tag is to a player ([`frame::classify`]); script
    /// data tags are [`FrameRole::Data`], unknown tag types `None`.
    pub fn role(&self) -> Option<FrameRole> {
        Some(frame::classify(self.frame_kind()?, &self.data))
    }

    /// Whether the tag is a video track's end-of-sequence marker.
    pub fn is_end_of_sequence(&self) -> bool {
        self.frame_kind()
            .is_some_and(|kind| frame::is_end_of_sequence(kind, &self.data))
    }
}

/// The flags of the FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    pub has_audio: bool,
    pub has_video: bool,
}

/// Why a buffer is not a well-formed FLV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvError {
    /// The buffer ends before the header and PreviousTagSize0 are complete.
    TruncatedHeader { len: usize, needed: usize },
    /// The file does not start with `"FLV"`.
    BadSignature { found: Vec<u8> },
    /// The header's version byte is not 1.
    UnsupportedVersion { version: u8 },
    /// The header's data offset is smaller than the header itself.
    BadDataOffset { data_offset: u32 },
    /// The tag starting at `offset` needs `needed` bytes (header, data and its
    /// PreviousTagSize) but only `available` remain.
    TruncatedTag {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The PreviousTagSize at `offset` does not match the size of the tag before it.
    PreviousTagSizeMismatch {
        offset: usize,
        expected: u32,
        found: u32,
    },
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::TruncatedHeader { len, needed } => write!(
                f,
                "FLV data is {len} bytes long but the header and first PreviousTagSize need {needed}"
            ),
            FlvError::BadSignature { found } => write!(
                f,
                "FLV data starts with {found:02x?} instead of the signature \"FLV\""
            ),
            FlvError::UnsupportedVersion { version } => {
                write!(f, "FLV header has version {version}, only version 1 is supported")
            }
            FlvError::BadDataOffset { data_offset } => write!(
                f,
                "FLV header gives data offset {data_offset}, which is inside the {HEADER_LEN}-byte header"
            ),
            FlvError::TruncatedTag {
                offset,
                needed,
                available,
            } => write!(
                f,
                "FLV tag at offset {offset} is truncated: it needs {needed} bytes but only {available} remain"
            ),
            FlvError::PreviousTagSizeMismatch {
                offset,
                expected,
                found,
            } => write!(
                f,
                "FLV PreviousTagSize at offset {offset} is {found} but the tag before it is {expected} bytes"
            ),
        }
    }
}

impl std::error::Error for FlvError {}

/// Appends the 9-byte file header and PreviousTagSize0 (4 zero bytes).
pub fn write_header(out: &mut Vec<u8>, header: FlvHeader) {
    let mut flags = 0;
    if header.has_audio {
        flags |= FLAG_AUDIO;
    }
    if header.has_video {
        flags |= FLAG_VIDEO;
    }
    out.extend_from_slice(b"FLV");
    out.push(1);
    out.push(flags);
    out.extend_from_slice(&(HEADER_LEN as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// Appends one complete tag: tag header, `data` and the trailing PreviousTagSize.
///
/// # Panics
/// If `data` is longer than [`MAX_TAG_DATA_LEN`] (see [`tag_header`]).
pub fn write_tag(out: &mut Vec<u8>, tag_type: u8, timestamp: u32, data: &[u8]) {
    out.reserve(TAG_HEADER_LEN + data.len() + PREV_SIZE_LEN);
    out.extend_from_slice(&tag_header(tag_type, timestamp, data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(&previous_tag_size(data.len()).to_be_bytes());
}

/// The 11-byte tag header for a tag of `data_len` bytes, for writers that send the
/// data separately. After the data they must send `(11 + data_len) as u32` as a
/// big-endian PreviousTagSize.
///
/// # Panics
/// If `data_len` exceeds [`MAX_TAG_DATA_LEN`]; RTMP message lengths are 24-bit too,
/// so a larger tag can only come from a bug.
pub fn tag_header(tag_type: u8, timestamp: u32, data_len: usize) -> [u8; 11] {
    assert!(
        data_len <= MAX_TAG_DATA_LEN,
        "FLV tag data of {data_len} bytes exceeds the 24-bit maximum {MAX_TAG_DATA_LEN}"
    );
    let size = (data_len as u32).to_be_bytes();
    let ts = timestamp.to_be_bytes();
    [
        tag_type, size[1], size[2], size[3], // type, 24-bit data size
        ts[1], ts[2], ts[3], ts[0], // 24-bit timestamp, then the extended (upper) byte
        0, 0, 0, // stream id, always 0
    ]
}

/// The PreviousTagSize that follows a tag of `data_len` bytes.
pub fn previous_tag_size(data_len: usize) -> u32 {
    (TAG_HEADER_LEN + data_len) as u32
}

/// Parses a whole FLV file. Any truncation or inconsistency is an error; a buffer that
/// ends exactly after a tag's PreviousTagSize is a complete file.
pub fn parse(buf: &[u8]) -> Result<(FlvHeader, Vec<FlvTag>), FlvError> {
    let (header, body) = parse_header(buf)?;
    let mut tags = Vec::new();
    match parse_tags(buf, body, &mut tags) {
        None => Ok((header, tags)),
        Some(err) => Err(err),
    }
}

/// Parses as much of an FLV file as is intact: the header (if valid) and every tag
/// whose header and data are complete before the first truncation or inconsistency.
/// Meant for recordings of players that were killed in the middle of a tag.
pub fn parse_lenient(buf: &[u8]) -> (Option<FlvHeader>, Vec<FlvTag>) {
    match parse_header(buf) {
        Err(_) => (None, Vec::new()),
        Ok((header, body)) => {
            let mut tags = Vec::new();
            let _ = parse_tags(buf, body, &mut tags);
            (Some(header), tags)
        }
    }
}

/// Validates the header and PreviousTagSize0; returns the header and the offset of the
/// first tag.
fn parse_header(buf: &[u8]) -> Result<(FlvHeader, usize), FlvError> {
    if buf.len() < HEADER_LEN {
        // Report a wrong signature before a short buffer: it is the likelier problem.
        let sig_len = buf.len().min(3);
        if buf[..sig_len] != b"FLV"[..sig_len] {
            return Err(FlvError::BadSignature {
                found: buf[..sig_len].to_vec(),
            });
        }
        return Err(FlvError::TruncatedHeader {
            len: buf.len(),
            needed: HEADER_LEN + PREV_SIZE_LEN,
        });
    }
    if &buf[..3] != b"FLV" {
        return Err(FlvError::BadSignature {
            found: buf[..3].to_vec(),
        });
    }
    if buf[3] != 1 {
        return Err(FlvError::UnsupportedVersion { version: buf[3] });
    }
    let flags = buf[4];
    let data_offset = read_u32(buf, 5);
    if (data_offset as usize) < HEADER_LEN {
        return Err(FlvError::BadDataOffset { data_offset });
    }
    let needed = (data_offset as usize).saturating_add(PREV_SIZE_LEN);
    if buf.len() < needed {
        return Err(FlvError::TruncatedHeader {
            len: buf.len(),
            needed,
        });
    }
    let prev0 = read_u32(buf, data_offset as usize);
    if prev0 != 0 {
        return Err(FlvError::PreviousTagSizeMismatch {
            offset: data_offset as usize,
            expected: 0,
            found: prev0,
        });
    }
    let header = FlvHeader {
        has_audio: flags & FLAG_AUDIO != 0,
        has_video: flags & FLAG_VIDEO != 0,
    };
    Ok((header, needed))
}

/// What an FLV body holds at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagAt<'a> {
    /// A whole tag (header, data, matching PreviousTagSize) and the offset after it.
    Whole(TagRef<'a>, usize),
    /// The buffer ends inside the tag, which needs `needed` bytes in all (15 while
    /// even its header is incomplete); `data_complete` is the tag when only its
    /// PreviousTagSize is missing.
    Partial {
        needed: usize,
        data_complete: Option<TagRef<'a>>,
    },
}

/// One tag borrowed from the buffer it was parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagRef<'a> {
    pub tag_type: u8,
    pub timestamp: u32,
    pub data: &'a [u8],
}

impl TagRef<'_> {
    pub fn to_tag(&self) -> FlvTag {
        FlvTag {
            tag_type: self.tag_type,
            timestamp: self.timestamp,
            data: self.data.to_vec(),
        }
    }
}

/// The tag that starts at `pos` of `buf` (a position after the file header). The
/// only error is a PreviousTagSize that does not match its tag.
fn tag_at(buf: &[u8], pos: usize) -> Result<TagAt<'_>, FlvError> {
    let available = buf.len().saturating_sub(pos);
    if available < TAG_HEADER_LEN {
        return Ok(TagAt::Partial {
            needed: TAG_HEADER_LEN + PREV_SIZE_LEN,
            data_complete: None,
        });
    }
    let h = &buf[pos..pos + TAG_HEADER_LEN];
    let data_len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
    let needed = TAG_HEADER_LEN + data_len + PREV_SIZE_LEN;
    let data_end = pos + TAG_HEADER_LEN + data_len;
    let tag = (data_end <= buf.len()).then(|| TagRef {
        tag_type: h[0],
        timestamp: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
        data: &buf[pos + TAG_HEADER_LEN..data_end],
    });
    match tag {
        Some(tag) if available >= needed => {
            let expected = previous_tag_size(data_len);
            let found = read_u32(buf, data_end);
            if found != expected {
                return Err(FlvError::PreviousTagSizeMismatch {
                    offset: data_end,
                    expected,
                    found,
                });
            }
            Ok(TagAt::Whole(tag, pos + needed))
        }
        data_complete => Ok(TagAt::Partial {
            needed,
            data_complete,
        }),
    }
}

/// Appends the tags from `pos` on to `tags`; returns the first error, if any. A tag
/// whose data is complete but whose PreviousTagSize is cut off is still pushed (so
/// the lenient parser keeps it) before the truncation error is returned.
fn parse_tags(buf: &[u8], mut pos: usize, tags: &mut Vec<FlvTag>) -> Option<FlvError> {
    while pos < buf.len() {
        match tag_at(buf, pos) {
            Err(e) => return Some(e),
            Ok(TagAt::Whole(tag, next)) => {
                tags.push(tag.to_tag());
                pos = next;
            }
            Ok(TagAt::Partial {
                needed,
                data_complete,
            }) => {
                tags.extend(data_complete.map(|t| t.to_tag()));
                return Some(FlvError::TruncatedTag {
                    offset: pos,
                    needed,
                    available: buf.len() - pos,
                });
            }
        }
    }
    None
}

/// The largest file header (data offset plus PreviousTagSize0) [`FlvReader`] waits for.
const MAX_STREAM_HEADER: usize = 64 * 1024;

/// An FLV byte stream parsed as it arrives (an HTTP-FLV response body, the binary
/// messages of WebSocket-FLV): bytes go in as they are read, whole tags come out,
/// borrowed from the reader's buffer. Holds at most one tag's worth of unparsed
/// bytes beyond what was pushed last (a tag is at most 16 MiB).
#[derive(Debug, Default)]
pub struct FlvReader {
    buf: Vec<u8>,
    /// Where the next unparsed byte of `buf` is.
    pos: usize,
    /// Bytes dropped from the front of `buf` so far, for offsets in errors.
    dropped: usize,
    header: Option<FlvHeader>,
}

impl FlvReader {
    pub fn new() -> FlvReader {
        FlvReader::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.dropped += self.pos;
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 64 * 1024 && self.pos * 2 >= self.buf.len() {
            // Keep the copying rare: compact once the parsed part is most of it.
            self.dropped += self.pos;
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The file header, once it has arrived.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// The next whole tag; `Ok(None)` until more bytes arrive. An error (no FLV
    /// signature, a PreviousTagSize that does not match) means the stream is broken
    /// and stays so; offsets in it count from the stream's first byte.
    pub fn next_tag(&mut self) -> Result<Option<TagRef<'_>>, FlvError> {
        if self.header.is_none() {
            match parse_header(&self.buf[self.pos..]) {
                Ok((header, body)) => {
                    self.header = Some(header);
                    self.pos += body;
                }
                // A data offset past what any writer uses would only make us buffer.
                Err(FlvError::TruncatedHeader { needed, .. }) if needed <= MAX_STREAM_HEADER => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        match tag_at(&self.buf, self.pos) {
            Ok(TagAt::Whole(tag, next)) => {
                self.pos = next;
                Ok(Some(tag))
            }
            Ok(TagAt::Partial { .. }) => Ok(None),
            Err(FlvError::PreviousTagSizeMismatch {
                offset,
                expected,
                found,
            }) => Err(FlvError::PreviousTagSizeMismatch {
                offset: offset + self.dropped,
                expected,
                found,
            }),
            Err(e) => Err(e),
        }
    }
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const AV: FlvHeader = FlvHeader {
        has_audio: true,
        has_video: true,
    };

    fn sample_tags() -> Vec<FlvTag> {
        vec![
            FlvTag {
                tag_type: TAG_SCRIPT,
                timestamp: 0,
                data: vec![0x02, 0x00, 0x0a, b'o', b'n'],
            },
            FlvTag {
                tag_type: TAG_VIDEO,
                timestamp: 0,
                data: vec![0x17, 0x00, 0, 0, 0, 1, 2, 3],
            },
            FlvTag {
                tag_type: TAG_AUDIO,
                timestamp: 23,
                data: vec![0xaf, 0x01, 0x21, 0x10],
            },
            FlvTag {
                tag_type: TAG_AUDIO,
                timestamp: 46,
                data: vec![],
            },
            FlvTag {
                tag_type: TAG_VIDEO,
                timestamp: 0x0123_4567,
                data: (0..=255).collect(),
            },
        ]
    }

    fn encode(header: FlvHeader, tags: &[FlvTag]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, header);
        for tag in tags {
            write_tag(&mut out, tag.tag_type, tag.timestamp, &tag.data);
        }
        out
    }

    #[test]
    fn header_bytes_match_the_spec() {
        let mut out = Vec::new();
        write_header(&mut out, AV);
        assert_eq!(out, [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]);
        for (has_audio, has_video, flags) in [
            (true, false, 0x04),
            (false, true, 0x01),
            (false, false, 0x00),
        ] {
            let header = FlvHeader {
                has_audio,
                has_video,
            };
            let mut out = Vec::new();
            write_header(&mut out, header);
            assert_eq!(out[4], flags);
            assert_eq!(parse(&out), Ok((header, vec![])));
        }
    }

    #[test]
    fn tag_bytes_match_the_spec() {
        let mut out = Vec::new();
        write_tag(&mut out, TAG_AUDIO, 0x0002_0304, &[0xaf, 0x01, 0x55]);
        assert_eq!(
            out,
            [
                8, 0, 0, 3, // type, data size
                0x02, 0x03, 0x04, 0x00, // timestamp, extended byte
                0, 0, 0, // stream id
                0xaf, 0x01, 0x55, // data
                0, 0, 0, 14, // PreviousTagSize = 11 + 3
            ]
        );
        assert_eq!(
            tag_header(TAG_VIDEO, 0x1234_5678, 0x0a_0b0c),
            [9, 0x0a, 0x0b, 0x0c, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]
        );
        assert_eq!(
            tag_header(TAG_SCRIPT, 0, MAX_TAG_DATA_LEN),
            [18, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    #[should_panic(expected = "exceeds the 24-bit maximum")]
    fn oversized_tag_panics_with_a_message() {
        tag_header(TAG_VIDEO, 0, MAX_TAG_DATA_LEN + 1);
    }

    #[test]
    fn round_trip() {
        let tags = sample_tags();
        let buf = encode(AV, &tags);
        assert_eq!(parse(&buf), Ok((AV, tags.clone())));
        assert_eq!(parse_lenient(&buf), (Some(AV), tags));
    }

    #[test]
    fn extended_timestamp_byte_holds_the_upper_bits() {
        let mut out = Vec::new();
        write_tag(&mut out, TAG_VIDEO, 0x0100_0000, &[0x27, 1]);
        assert_eq!(&out[4..8], &[0, 0, 0, 0x01]);
        write_tag(&mut out, TAG_VIDEO, u32::MAX, &[0x27, 1]);
        let second = &out[TAG_HEADER_LEN + 2 + 4..];
        assert_eq!(&second[4..8], &[0xff, 0xff, 0xff, 0xff]);

        // Hand-made tag with only the extended byte set: 0x7f << 24.
        let mut buf = encode(AV, &[]);
        buf.extend_from_slice(&[9, 0, 0, 1, 0, 0, 0, 0x7f, 0, 0, 0, 0x17, 0, 0, 0, 12]);
        let (_, tags) = parse(&buf).unwrap();
        assert_eq!(tags[0].timestamp, 0x7f00_0000);
    }

    #[test]
    fn every_cut_point_is_an_error_or_a_tag_boundary() {
        let tags = sample_tags();
        let buf = encode(AV, &tags);
        // Offsets where a complete file may end, with how many tags precede them.
        let mut boundaries = vec![(HEADER_LEN + PREV_SIZE_LEN, 0)];
        let mut tag_starts = vec![];
        for (i, tag) in tags.iter().enumerate() {
            let start = boundaries.last().unwrap().0;
            tag_starts.push(start);
            boundaries.push((
                start + TAG_HEADER_LEN + tag.data.len() + PREV_SIZE_LEN,
                i + 1,
            ));
        }
        assert_eq!(boundaries.last().unwrap().0, buf.len());

        for cut in 0..=buf.len() {
            let part = &buf[..cut];
            let (header, lenient) = parse_lenient(part);
            match parse(part) {
                Ok((h, parsed)) => {
                    let &(_, n) = boundaries
                        .iter()
                        .find(|(b, _)| *b == cut)
                        .unwrap_or_else(|| panic!("cut at {cut} parsed without error"));
                    assert_eq!(h, AV);
                    assert_eq!(parsed, tags[..n]);
                    assert_eq!((header, &lenient), (Some(AV), &parsed));
                }
                Err(FlvError::TruncatedHeader { len, needed }) => {
                    assert!(cut < HEADER_LEN + PREV_SIZE_LEN);
                    assert_eq!((len, needed), (cut, HEADER_LEN + PREV_SIZE_LEN));
                    assert_eq!((header, lenient.len()), (None, 0));
                }
                Err(FlvError::TruncatedTag {
                    offset,
                    needed,
                    available,
                }) => {
                    // The error names the start of the tag the cut falls in.
                    let i = tag_starts.iter().rposition(|&s| s <= cut).unwrap();
                    assert_eq!(offset, tag_starts[i], "cut at {cut}");
                    assert_eq!(available, cut - offset);
                    // Before the whole tag header is there, the data size is unknown.
                    let expected_needed = if available < TAG_HEADER_LEN {
                        TAG_HEADER_LEN + PREV_SIZE_LEN
                    } else {
                        TAG_HEADER_LEN + tags[i].data.len() + PREV_SIZE_LEN
                    };
                    assert_eq!(needed, expected_needed, "cut at {cut}");
                    // Lenient keeps every complete tag, including one whose data is
                    // whole but whose PreviousTagSize was cut off.
                    let data_complete = cut >= offset + TAG_HEADER_LEN + tags[i].data.len();
                    let n = i + usize::from(data_complete);
                    assert_eq!(header, Some(AV));
                    assert_eq!(lenient, tags[..n], "cut at {cut}");
                }
                Err(other) => panic!("cut at {cut}: unexpected error {other}"),
            }
        }
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let good = encode(AV, &sample_tags());

        let mut bad = good.clone();
        bad[0] = b'G';
        assert_eq!(
            parse(&bad),
            Err(FlvError::BadSignature {
                found: b"GLV".to_vec()
            })
        );
        assert_eq!(
            parse(b"XY"),
            Err(FlvError::BadSignature {
                found: b"XY".to_vec()
            })
        );
        assert_eq!(parse_lenient(&bad), (None, vec![]));

        let mut bad = good.clone();
        bad[3] = 2;
        assert_eq!(
            parse(&bad),
            Err(FlvError::UnsupportedVersion { version: 2 })
        );

        let mut bad = good.clone();
        bad[8] = 8;
        assert_eq!(parse(&bad), Err(FlvError::BadDataOffset { data_offset: 8 }));

        let mut bad = good.clone();
        bad[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&bad), Err(FlvError::TruncatedHeader { .. })));

        let mut bad = good.clone();
        bad[12] = 1;
        assert_eq!(
            parse(&bad),
            Err(FlvError::PreviousTagSizeMismatch {
                offset: 9,
                expected: 0,
                found: 1
            })
        );
    }

    #[test]
    fn data_offset_past_nine_skips_the_extra_bytes() {
        let tags = sample_tags();
        let plain = encode(AV, &tags);
        let mut buf = plain[..HEADER_LEN].to_vec();
        buf[8] = 12;
        buf.extend_from_slice(&[0xee; 3]);
        buf.extend_from_slice(&plain[HEADER_LEN..]);
        assert_eq!(parse(&buf), Ok((AV, tags)));
    }

    #[test]
    fn wrong_previous_tag_size_is_an_error_and_ends_lenient_parsing() {
        let tags = sample_tags();
        let mut buf = encode(AV, &tags);
        // PreviousTagSize after the second tag.
        let at = HEADER_LEN
            + PREV_SIZE_LEN
            + (TAG_HEADER_LEN + tags[0].data.len() + PREV_SIZE_LEN)
            + TAG_HEADER_LEN
            + tags[1].data.len();
        assert_eq!(read_u32(&buf, at), 19);
        buf[at + 3] = 20;
        let err = parse(&buf).unwrap_err();
        assert_eq!(
            err,
            FlvError::PreviousTagSizeMismatch {
                offset: at,
                expected: 19,
                found: 20
            }
        );
        assert_eq!(
            err.to_string(),
            format!("FLV PreviousTagSize at offset {at} is 20 but the tag before it is 19 bytes")
        );
        assert_eq!(parse_lenient(&buf), (Some(AV), tags[..1].to_vec()));
    }

    /// Feeds `buf` to a reader in pieces of `step` bytes, taking tags as they come.
    fn read_in_pieces(
        buf: &[u8],
        step: usize,
    ) -> Result<(Option<FlvHeader>, Vec<FlvTag>), FlvError> {
        let mut reader = FlvReader::new();
        let mut tags = Vec::new();
        for piece in buf.chunks(step) {
            reader.push(piece);
            while let Some(tag) = reader.next_tag()? {
                tags.push(tag.to_tag());
            }
        }
        Ok((reader.header(), tags))
    }

    #[test]
    fn the_reader_parses_a_stream_cut_anywhere() {
        let tags = sample_tags();
        let buf = encode(AV, &tags);
        for step in [1, 2, 3, 7, 11, 15, 64, 300, buf.len()] {
            assert_eq!(
                read_in_pieces(&buf, step),
                Ok((Some(AV), tags.clone())),
                "pieces of {step}"
            );
        }
        // A stream that stops inside a tag has handed out the tags before it.
        let cut = buf.len() - 3;
        assert_eq!(
            read_in_pieces(&buf[..cut], 5),
            Ok((Some(AV), tags[..tags.len() - 1].to_vec()))
        );
        assert_eq!(read_in_pieces(&buf[..5], 1), Ok((None, vec![])));
        // Far more than the compaction threshold passes through a bounded buffer.
        let big: Vec<FlvTag> = (0..40)
            .map(|i| FlvTag {
                tag_type: TAG_VIDEO,
                timestamp: i * 40,
                data: vec![i as u8; 10_000],
            })
            .collect();
        let buf = encode(AV, &big);
        let mut reader = FlvReader::new();
        let mut n = 0;
        for piece in buf.chunks(4096) {
            reader.push(piece);
            while let Some(tag) = reader.next_tag().unwrap() {
                assert_eq!(tag.to_tag(), big[n]);
                n += 1;
            }
            assert!(reader.buf.len() < 200 * 1024, "{}", reader.buf.len());
        }
        assert_eq!(n, big.len());
    }

    #[test]
    fn the_reader_reports_broken_streams_with_stream_offsets() {
        assert_eq!(
            read_in_pieces(b"GIF89a", 2),
            Err(FlvError::BadSignature {
                found: b"GI".to_vec()
            })
        );
        let tags = sample_tags();
        let mut buf = encode(AV, &tags);
        let at = HEADER_LEN + PREV_SIZE_LEN + TAG_HEADER_LEN + tags[0].data.len();
        buf[at + 3] ^= 1;
        // Whatever the pieces, the offset is the stream's, not the buffer's.
        for step in [1, 4, 100] {
            assert_eq!(
                read_in_pieces(&buf, step),
                Err(FlvError::PreviousTagSizeMismatch {
                    offset: at,
                    expected: 16,
                    found: 17
                }),
                "pieces of {step}"
            );
        }
        let mut huge_offset = encode(AV, &[]);
        huge_offset[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_in_pieces(&huge_offset, 3),
            Err(FlvError::TruncatedHeader { .. })
        ));
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = FlvError::TruncatedTag {
            offset: 1234,
            needed: 100,
            available: 7,
        };
        assert_eq!(
            e.to_string(),
            "FLV tag at offset 1234 is truncated: it needs 100 bytes but only 7 remain"
        );
        let e: Box<dyn std::error::Error> = Box::new(FlvError::BadSignature {
            found: b"GIF".to_vec(),
        });
        assert_eq!(
            e.to_string(),
            "FLV data starts with [47, 49, 46] instead of the signature \"FLV\""
        );
    }

    #[test]
    fn fixture_parses_and_rewrites_identically() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/av.flv");
        let buf = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let (header, tags) = parse(&buf).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(header, AV);
        assert_eq!(tags[0].tag_type, TAG_SCRIPT);
        let video: Vec<_> = tags.iter().filter(|t| t.tag_type == TAG_VIDEO).collect();
        let audio: Vec<_> = tags.iter().filter(|t| t.tag_type == TAG_AUDIO).collect();
        assert!(
            video.len() >= 90 && audio.len() >= 150,
            "{} video, {} audio",
            video.len(),
            audio.len()
        );
        // First video tag: AVC keyframe sequence header; first audio: AAC sequence header.
        assert_eq!(&video[0].data[..2], &[0x17, 0x00]);
        assert_eq!(audio[0].data[0] >> 4, 10);
        assert_eq!(audio[0].data[1], 0);
        assert_eq!(encode(header, &tags), buf);
    }
}
