//! Publishing a real FLV file in a loop, and recognising its tags at the players
//! without touching their bytes (which real decoders would choke on): every media
//! tag gets a fingerprint of its type, length and edges; the publisher notes, per
//! stream and tag, the sequence number and send time of the last time it sent it;
//! a player fingerprints what it receives and looks those up. Tags whose
//! fingerprints collide (identical silent audio frames, say) are not measured.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::synthetic::{classify, Stamp, TagKind, Track};
use rtmpd::media::flv::{self, FlvTag};
use rtmpd::rtmp::message as msg;

/// Bytes hashed at each end of a payload.
const EDGE: usize = 64;

/// The loaded file: its tags in order and what identifies them.
#[derive(Debug)]
pub struct FlvFile {
    pub tags: Vec<FlvTag>,
    /// Fingerprint → index into `tags`; `None` when several tags share it.
    index: HashMap<u64, Option<usize>>,
    /// Per tag: a measured frame whose fingerprint is its own. Only these get
    /// sequence numbers, so gaps at the players mean frames really missed.
    pub unique: Vec<bool>,
    /// Timestamp span of the file plus one frame, what each loop adds.
    pub loop_ms: u32,
}

/// One tag's fingerprint.
pub fn fingerprint(type_id: u8, payload: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(type_id);
    h.write_usize(payload.len());
    let head = &payload[..payload.len().min(EDGE)];
    let tail = &payload[payload.len().saturating_sub(EDGE)..];
    h.write(head);
    h.write(tail);
    h.finish()
}

/// Whether a tag is a media frame the players measure (not a sequence header,
/// not script data).
pub fn is_measured(tag: &FlvTag) -> bool {
    matches!(tag.tag_type, msg::AUDIO | msg::VIDEO)
        && !matches!(
            classify(tag.tag_type, &tag.data),
            TagKind::SequenceHeader(_) | TagKind::Other
        )
}

impl FlvFile {
    pub fn parse(bytes: &[u8]) -> Result<FlvFile, String> {
        let (header, tags) = flv::parse_lenient(bytes);
        if header.is_none() {
            return Err("not an FLV file".into());
        }
        if !tags.iter().any(is_measured) {
            return Err("the FLV file has no audio or video frames".into());
        }
        let mut index = HashMap::new();
        for (i, tag) in tags.iter().enumerate() {
            if !is_measured(tag) {
                continue;
            }
            match index.entry(fingerprint(tag.tag_type, &tag.data)) {
                Entry::Vacant(v) => {
                    v.insert(Some(i));
                }
                Entry::Occupied(mut o) => {
                    o.insert(None);
                }
            }
        }
        let unique = (0..tags.len())
            .map(|i| {
                is_measured(&tags[i])
                    && index.get(&fingerprint(tags[i].tag_type, &tags[i].data)) == Some(&Some(i))
            })
            .collect();
        let first = tags.iter().map(|t| t.timestamp).min().unwrap_or(0);
        let last = tags.iter().map(|t| t.timestamp).max().unwrap_or(0);
        // One video frame period (or 40 ms) after the last tag, the loop restarts.
        let mut video_ts: Vec<u32> = tags
            .iter()
            .filter(|t| t.tag_type == msg::VIDEO && is_measured(t))
            .map(|t| t.timestamp)
            .collect();
        video_ts.dedup();
        let frame_ms = match video_ts.as_slice() {
            [.., a, b] if b > a => b - a,
            _ => 40,
        };
        Ok(FlvFile {
            tags,
            index,
            unique,
            loop_ms: last - first + frame_ms,
        })
    }

    /// The tag a received payload is, if it is recognisably one.
    pub fn lookup(&self, type_id: u8, payload: &[u8]) -> Option<usize> {
        let i = (*self.index.get(&fingerprint(type_id, payload))?)?;
        (self.tags[i].data == payload).then_some(i)
    }

    /// Number of distinct measurable tags.
    pub fn measured(&self) -> usize {
        self.index.values().filter(|v| v.is_some()).count()
    }
}

/// Per stream, per tag: the sequence number and send time of its latest send.
#[derive(Debug)]
pub struct SendLog {
    /// `[stream][tag]` → (seq + 1, sent_ns); seq + 1 so 0 means never sent.
    slots: Vec<Vec<(AtomicU64, AtomicU64)>>,
}

impl SendLog {
    pub fn new(streams: usize, tags: usize) -> SendLog {
        SendLog {
            slots: (0..streams)
                .map(|_| {
                    (0..tags)
                        .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                        .collect()
                })
                .collect(),
        }
    }

    /// Called by the publisher just before it sends tag `tag`.
    pub fn note(&self, stream: usize, tag: usize, seq: u64, sent_ns: u64) {
        let (s, t) = &self.slots[stream][tag];
        t.store(sent_ns, Ordering::Relaxed);
        s.store(seq + 1, Ordering::Release);
    }

    /// What a player that received `tag` on `stream` learns from it.
    pub fn stamp(&self, stream: usize, tag: usize) -> Option<Stamp> {
        let (s, t) = self.slots.get(stream)?.get(tag)?;
        let seq = s.load(Ordering::Acquire).checked_sub(1)?;
        Some(Stamp {
            stream: stream as u32,
            seq,
            sent_ns: t.load(Ordering::Relaxed),
        })
    }
}

/// The track of a measured tag.
pub fn track_of(tag: &FlvTag) -> Track {
    if tag.tag_type == msg::VIDEO {
        Track::Video
    } else {
        Track::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        let mut out = Vec::new();
        flv::write_header(
            &mut out,
            flv::FlvHeader {
                has_audio: true,
                has_video: true,
            },
        );
        flv::write_tag(&mut out, msg::DATA_AMF0, 0, &[2, 0, 1, b'x']);
        flv::write_tag(&mut out, msg::VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]);
        flv::write_tag(&mut out, msg::AUDIO, 0, &[0xaf, 0, 0x12, 0x10]);
        flv::write_tag(&mut out, msg::VIDEO, 0, &[0x17, 1, 0, 0, 0, 9, 9]);
        flv::write_tag(&mut out, msg::AUDIO, 10, &[0xaf, 1, 5]);
        flv::write_tag(&mut out, msg::VIDEO, 40, &[0x27, 1, 0, 0, 0, 8]);
        flv::write_tag(&mut out, msg::AUDIO, 33, &[0xaf, 1, 5]);
        out
    }

    #[test]
    fn tags_are_recognised_and_duplicates_are_not() {
        let f = FlvFile::parse(&file()).unwrap();
        assert_eq!(f.tags.len(), 7);
        assert_eq!(f.loop_ms, 80, "40 ms span plus one 40 ms frame");
        assert_eq!(
            f.measured(),
            2,
            "keyframe and inter frame; the audio pair collides"
        );
        assert_eq!(f.lookup(msg::VIDEO, &[0x17, 1, 0, 0, 0, 9, 9]), Some(3));
        assert_eq!(f.lookup(msg::VIDEO, &[0x27, 1, 0, 0, 0, 8]), Some(5));
        assert_eq!(f.lookup(msg::AUDIO, &[0xaf, 1, 5]), None);
        assert_eq!(f.lookup(msg::VIDEO, &[0x17, 0, 0, 0, 0, 1]), None);
        assert_eq!(f.lookup(msg::AUDIO, &[0x27, 1, 0, 0, 0, 8]), None);
        assert_eq!(track_of(&f.tags[3]), Track::Video);
        assert_eq!(f.unique, [false, false, false, true, false, true, false]);
        assert!(FlvFile::parse(b"not flv").is_err());
    }

    #[test]
    fn the_send_log_hands_out_the_latest_send() {
        let log = SendLog::new(2, 4);
        assert_eq!(log.stamp(1, 3), None);
        log.note(1, 3, 0, 500);
        log.note(1, 3, 17, 900);
        assert_eq!(
            log.stamp(1, 3),
            Some(Stamp {
                stream: 1,
                seq: 17,
                sent_ns: 900
            })
        );
        assert_eq!(log.stamp(0, 3), None);
        assert_eq!(log.stamp(5, 0), None);
    }

    #[test]
    fn the_fixture_file_loads() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/av.flv"
        ))
        .expect("fixture");
        let f = FlvFile::parse(&bytes).unwrap();
        assert!(f.measured() > 100, "{}", f.measured());
        assert!((3900..=4200).contains(&f.loop_ms), "{}", f.loop_ms);
    }
}
