//! Fragmented MP4 (ISO BMFF, CMAF-style) without I/O, for HLS: the init segment
//! (`ftyp` + `moov` with one track per medium and `mvex`) and media fragments
//! (`moof` + `mdat`, one `traf` per track that has samples). `codec` maps FLV and
//! Enhanced RTMP payloads to tracks and samples.
//!
//! Written here rather than taken from a crate: the maintained Rust MP4 writers
//! that cover our codecs need a newer Rust than ours (mp4-atom 0.16+ and
//! shiguredo_mp4 need 1.88; shiguredo_mp4 also has no AC-3/E-AC-3), the `mp4`
//! crate lacks AV1, Opus, FLAC and AC-3 and is not kept up, and none of them
//! does the part that needs care: turning FLV sequence headers into sample
//! entries and codec strings. What remains is a few hundred lines of box
//! writing, checked by ffprobe/ffmpeg and Chromium in the integration tests.

mod boxes;
pub mod codec;

pub use boxes::BoxWriter;
pub use codec::{audio_packet, video_packet, Codec, ConfigError, Packet, TrackConfig};

/// Sample flags (ISO 14496-12 §8.8.3.1) of a sync sample: depends on no other.
pub const SYNC_SAMPLE: u32 = 0x0200_0000;
/// Sample flags of a sample that depends on others and is not a sync sample.
pub const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// `ftyp` + `moov` for these tracks, numbered from 1 in order.
pub fn init_segment(tracks: &[&TrackConfig]) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(1024);
    w.start(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        w.bytes(brand);
    }
    w.end();
    w.start(b"moov");
    w.start_full(b"mvhd", 0, 0);
    w.zeros(8); // creation, modification time
    w.u32(1000); // timescale
    w.u32(0); // duration: unknown (live)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.unity_matrix();
    w.zeros(24); // pre_defined
    w.u32(tracks.len() as u32 + 1); // next_track_ID
    w.end();
    for (i, track) in tracks.iter().enumerate() {
        write_trak(&mut w, i as u32 + 1, track);
    }
    w.start(b"mvex");
    for i in 0..tracks.len() {
        w.start_full(b"trex", 0, 0);
        w.u32(i as u32 + 1);
        w.u32(1); // default_sample_description_index
        w.zeros(12); // default duration, size, flags
        w.end();
    }
    w.end();
    w.end();
    w.finish()
}

fn write_trak(w: &mut BoxWriter, id: u32, t: &TrackConfig) {
    let video = t.is_video();
    w.start(b"trak");
    w.start_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.zeros(8);
    w.u32(id);
    w.zeros(4);
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if video { 0 } else { 0x0100 }); // volume
    w.zeros(2);
    w.unity_matrix();
    w.u32(if video { t.width << 16 } else { 0 });
    w.u32(if video { t.height << 16 } else { 0 });
    w.end();
    w.start(b"mdia");
    w.start_full(b"mdhd", 0, 0);
    w.zeros(8);
    w.u32(t.timescale);
    w.u32(0);
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.end();
    w.start_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.end();
    w.start(b"minf");
    if video {
        w.start_full(b"vmhd", 0, 1);
        w.zeros(8);
    } else {
        w.start_full(b"smhd", 0, 0);
        w.zeros(4);
    }
    w.end();
    w.start(b"dinf");
    w.start_full(b"dref", 0, 0);
    w.u32(1);
    w.start_full(b"url ", 0, 1); // the media is in this file
    w.end();
    w.end();
    w.end();
    w.start(b"stbl");
    w.start_full(b"stsd", 0, 0);
    w.u32(1);
    w.bytes(&t.sample_entry);
    w.end();
    // Empty tables: the samples are in the fragments.
    for kind in [b"stts", b"stsc", b"stco"] {
        w.start_full(kind, 0, 0);
        w.u32(0);
        w.end();
    }
    w.start_full(b"stsz", 0, 0);
    w.zeros(8);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

/// One sample of a fragment: its duration and composition offset in the track's
/// timescale, its size and flags ([`SYNC_SAMPLE`], [`NON_SYNC_SAMPLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    pub composition_offset: i32,
}

/// One track's samples in a fragment: the samples and their data, back to back.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// 1-based, as in [`init_segment`].
    pub track_id: u32,
    /// The first sample's decode time, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
    pub data: &'a [u8],
}

/// `moof` + `mdat` for these runs (each with at least one sample). `sequence`
/// is the fragment's number, counting from 1.
pub fn fragment(sequence: u32, runs: &[TrackRun]) -> Vec<u8> {
    let data_len: usize = runs.iter().map(|r| r.data.len()).sum();
    let samples: usize = runs.iter().map(|r| r.samples.len()).sum();
    let mut w = BoxWriter::with_capacity(128 + samples * 16 + data_len);
    w.start(b"moof");
    w.start_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end();
    let mut offsets = Vec::with_capacity(runs.len());
    for run in runs {
        w.start(b"traf");
        w.start_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.u32(run.track_id);
        w.end();
        w.start_full(b"tfdt", 1, 0);
        w.u64(run.base_decode_time);
        w.end();
        let with_offsets = run.samples.iter().any(|s| s.composition_offset != 0);
        // data-offset, sample duration, size and flags, and composition offsets
        // (signed: version 1) when any is non-zero.
        let flags =
            0x000001 | 0x000100 | 0x000200 | 0x000400 | if with_offsets { 0x000800 } else { 0 };
        w.start_full(b"trun", 1, flags);
        w.u32(run.samples.len() as u32);
        offsets.push(w.position());
        w.u32(0); // data_offset, patched below
        for s in run.samples {
            w.u32(s.duration);
            w.u32(s.size);
            w.u32(s.flags);
            if with_offsets {
                w.i32(s.composition_offset);
            }
        }
        w.end();
        w.end();
    }
    w.end();
    // Each run's data offset counts from the start of the moof to its first byte
    // inside the mdat that follows.
    let mut at = w.position() + 8;
    for (run, offset) in runs.iter().zip(offsets) {
        w.patch_u32(offset, at as u32);
        at += run.data.len();
    }
    w.start(b"mdat");
    for run in runs {
        w.bytes(run.data);
    }
    w.end();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-level boxes as (type, body).
    fn boxes(mut b: &[u8]) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert!(
                size >= 8 && size <= b.len(),
                "box size {size} of {}",
                b.len()
            );
            out.push((String::from_utf8_lossy(&b[4..8]).into_owned(), &b[8..size]));
            b = &b[size..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    fn aac() -> TrackConfig {
        TrackConfig::new(Codec::Aac, &[0x12, 0x10], (0, 0)).unwrap()
    }

    #[test]
    fn init_segment_layout() {
        let audio = aac();
        let init = init_segment(&[&audio]);
        let top = boxes(&init);
        let names: Vec<&str> = top.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ftyp", "moov"]);
        let moov: Vec<String> = boxes(top[1].1).into_iter().map(|(n, _)| n).collect();
        assert_eq!(moov, ["mvhd", "trak", "mvex"]);
        let needle = b"esds";
        assert!(init.windows(4).any(|w| w == needle));
    }

    #[test]
    fn fragment_offsets_point_at_each_runs_data() {
        let video = [Sample {
            duration: 3600,
            size: 3,
            flags: SYNC_SAMPLE,
            composition_offset: 7200,
        }];
        let audio = [Sample {
            duration: 1024,
            size: 2,
            flags: SYNC_SAMPLE,
            composition_offset: 0,
        }; 2];
        let frag = fragment(
            5,
            &[
                TrackRun {
                    track_id: 1,
                    base_decode_time: 90_000,
                    samples: &video,
                    data: b"vvv",
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: 44_100,
                    samples: &audio,
                    data: b"aaaa",
                },
            ],
        );
        let top = boxes(&frag);
        assert_eq!(top[0].0, "moof");
        assert_eq!(top[1], ("mdat".to_owned(), &b"vvvaaaa"[..]));
        // The two trun data offsets, found by their position after sample_count.
        let truns: Vec<usize> = frag
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"trun")
            .map(|(i, _)| i)
            .collect();
        let offset = |trun: usize| {
            let at = trun + 4 + 4 + 4; // type, version+flags, sample_count
            u32::from_be_bytes(frag[at..at + 4].try_into().unwrap()) as usize
        };
        assert_eq!(&frag[offset(truns[0])..][..3], b"vvv");
        assert_eq!(&frag[offset(truns[1])..][..4], b"aaaa");
        // Version 1 (signed offsets) with the composition flag on video only.
        assert_eq!(frag[truns[0] + 4..truns[0] + 8], [1, 0, 0x0f, 0x01]);
        assert_eq!(frag[truns[1] + 4..truns[1] + 8], [1, 0, 0x07, 0x01]);
    }
}
