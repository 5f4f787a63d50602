//! Which tags go into which file, without I/O: the recorder's state machine.
//! Frames come in as the publisher sent them; out come "begin a file with this
//! head", "append this tag", "end the file" ([`Output`]).
//!
//! A file holds what an FLV player receives: the FLV header, our `onMetaData`
//! (`metadata`), the sequence headers, then every tag byte for byte from the
//! publish's first keyframe (an audio-only stream's first audio frame), with
//! timestamps from 0 mapped as HTTP-FLV players' are (`PlayerFilter`). Frames
//! before that start would not decode and are left out. A segment limit cuts at
//! the first keyframe past it; the next file starts with the metadata and the
//! sequence headers in force and its own timestamps from 0, so each plays alone.
//!
//! A publish that continues the previous one's file (`record_append`) keeps this
//! state: [`Segments::new_publish`] starts a new epoch one frame step after the
//! file's last tag, so timestamps stay continuous, and the new publisher's
//! sequence headers go in before its first keyframe.

use std::sync::Arc;

use super::metadata::{FieldOffsets, Metadata};
use crate::media::codec;
use crate::media::flv::{self, FlvHeader, TAG_SCRIPT};
use crate::media::frame::{Frame, FrameKind, FrameRole};
use crate::media::player::PlayerFilter;

/// Where a file is cut; `None`: never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub duration_ms: Option<u64>,
    pub bytes: Option<u64>,
}

/// What a recording does with its files; the recorder's file layer implements it.
pub trait Output {
    type Error;
    /// Begins a new file with `head` (FLV header, metadata, sequence headers);
    /// `fields` says where in it `duration` and `filesize` are.
    fn begin(&mut self, head: &[u8], fields: FieldOffsets) -> Result<(), Self::Error>;
    /// Opens again the file the last publish ended, to continue it.
    fn resume(&mut self) -> Result<(), Self::Error>;
    /// Appends `frame` as one tag at `timestamp` to the current file (its
    /// payload shared, not copied).
    fn tag(&mut self, frame: &Arc<Frame>, timestamp: u32) -> Result<(), Self::Error>;
    /// Ends the current file, which holds `duration_ms` of stream.
    fn end(&mut self, duration_ms: u64) -> Result<(), Self::Error>;
}

/// The file being written (or, between publishes, the one to continue).
#[derive(Debug, Clone, Copy)]
struct File {
    /// The timeline's time at the file's first tag: its 0.
    origin: u32,
    /// Bytes written to it.
    bytes: u64,
    /// Its latest tag time: the duration so far.
    last: u32,
    /// Whether it is open now (false between two publishes of an appended file).
    open: bool,
}

#[derive(Debug, Clone)]
pub struct Segments {
    limits: Limits,
    timeline: PlayerFilter,
    /// The publisher's latest `onMetaData` body.
    metadata: Option<Vec<u8>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    /// What the current publish carries, as far as seen or announced.
    has_video: bool,
    has_audio: bool,
    file: Option<File>,
    /// The current publish has written its first frame.
    started: bool,
    /// Started on audio: video waits for its first keyframe.
    video_needs_key: bool,
    /// The leading track's latest frame time, and the latest step between two
    /// of its frames, for the gap between two publishes in one file.
    last_media: Option<u32>,
    step: u32,
}

/// An appended publish starts this long after the file's last tag when no frame
/// step is known.
const DEFAULT_STEP_MS: u32 = 1;

impl Segments {
    pub fn new(limits: Limits) -> Segments {
        Segments {
            limits,
            timeline: PlayerFilter::zero_based(),
            metadata: None,
            video_header: None,
            audio_header: None,
            has_video: false,
            has_audio: false,
            file: None,
            started: false,
            video_needs_key: false,
            last_media: None,
            step: DEFAULT_STEP_MS,
        }
    }

    /// A new publish continues this recording's file: its frames go on after the
    /// last one, once its first keyframe comes.
    pub fn new_publish(&mut self, limits: Limits) {
        self.limits = limits;
        self.timeline.new_epoch_after(self.step);
        self.video_header = None;
        self.audio_header = None;
        self.has_video = false;
        self.has_audio = false;
        self.started = false;
        self.video_needs_key = false;
        self.last_media = None;
    }

    /// Whether a file is open (or waits to be continued).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// The current file's length of stream so far, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.file.map_or(0, |f| u64::from(f.last))
    }

    /// Bytes in the current file so far.
    pub fn bytes(&self) -> u64 {
        self.file.map_or(0, |f| f.bytes)
    }

    /// Takes one frame of the publish.
    pub fn push<O: Output>(&mut self, frame: &Arc<Frame>, out: &mut O) -> Result<(), O::Error> {
        match (frame.role, frame.kind) {
            (FrameRole::Metadata, _) => {
                if let Some(codecs) = codec::parse_metadata(&frame.payload) {
                    self.has_video |= codecs.video.is_some();
                    self.has_audio |= codecs.audio.is_some();
                }
                // The head of the next file says it; the file has its own.
                self.metadata = Some(frame.payload.clone());
                Ok(())
            }
            (FrameRole::SequenceHeader, kind) => {
                self.note_track(kind);
                let slot = match kind {
                    FrameKind::Video => &mut self.video_header,
                    _ => &mut self.audio_header,
                };
                *slot = Some(frame.clone());
                if self.started {
                    // A new decoder configuration mid-stream: players get it too.
                    self.write(frame, out)?;
                }
                Ok(())
            }
            (_, FrameKind::Data) => {
                if self.started {
                    self.write(frame, out)?;
                }
                Ok(())
            }
            (_, kind) => {
                self.note_track(kind);
                let resume = frame.is_keyframe() || (kind == FrameKind::Audio && !self.has_video);
                if !self.started {
                    return if resume {
                        self.start(frame, out)
                    } else {
                        Ok(())
                    };
                }
                if kind == FrameKind::Video && self.video_needs_key {
                    if !frame.is_keyframe() {
                        return Ok(());
                    }
                    self.video_needs_key = false;
                }
                let ts = self.map(frame);
                if resume && self.past_limits(ts) {
                    self.end_file(out)?;
                    self.begin_file(ts, out)?;
                }
                self.note_step(frame);
                self.append(frame, ts, out)
            }
        }
    }

    /// The publish ended: the file ends too (it may be continued by the next).
    pub fn end_publish<O: Output>(&mut self, out: &mut O) -> Result<(), O::Error> {
        if self.file.is_some_and(|f| f.open) {
            self.end_file(out)?;
        }
        Ok(())
    }

    fn note_track(&mut self, kind: FrameKind) {
        match kind {
            FrameKind::Video => self.has_video = true,
            FrameKind::Audio => self.has_audio = true,
            FrameKind::Data => {}
        }
    }

    fn note_step(&mut self, frame: &Frame) {
        let leading = if self.has_video {
            FrameKind::Video
        } else {
            FrameKind::Audio
        };
        if frame.kind != leading {
            return;
        }
        if let Some(last) = self.last_media {
            let step = frame.timestamp.wrapping_sub(last);
            if (1..=1000).contains(&step) {
                self.step = step;
            }
        }
        self.last_media = Some(frame.timestamp);
    }

    /// The publish's first frame: a new file, or the continued one.
    fn start<O: Output>(&mut self, frame: &Arc<Frame>, out: &mut O) -> Result<(), O::Error> {
        self.started = true;
        self.video_needs_key = frame.kind == FrameKind::Audio;
        // The first frame sets the timeline: a new file's 0, or right after the
        // continued file's last tag.
        let ts = self.map(frame);
        if self.file.is_some() {
            out.resume()?;
            if let Some(file) = self.file.as_mut() {
                file.open = true;
            }
            // The new publisher's decoder configuration goes first, at its time.
            for header in [self.video_header.clone(), self.audio_header.clone()]
                .into_iter()
                .flatten()
            {
                self.append(&header, ts, out)?;
            }
        } else {
            self.begin_file(ts, out)?;
        }
        self.note_step(frame);
        self.append(frame, ts, out)
    }

    /// Whether the current file is full when the next tag is at time `ts`.
    fn past_limits(&self, ts: u32) -> bool {
        let Some(file) = self.file else {
            return false;
        };
        let at = ts.wrapping_sub(file.origin);
        let duration = self
            .limits
            .duration_ms
            .is_some_and(|max| (at as i32) >= 0 && u64::from(at) >= max);
        duration || self.limits.bytes.is_some_and(|max| file.bytes >= max)
    }

    /// The frame's time on the recording's timeline (each frame exactly once).
    fn map(&mut self, frame: &Frame) -> u32 {
        self.timeline.admit(frame).unwrap_or(0)
    }

    fn write<O: Output>(&mut self, frame: &Arc<Frame>, out: &mut O) -> Result<(), O::Error> {
        let ts = self.map(frame);
        self.append(frame, ts, out)
    }

    /// Appends `frame` at timeline time `ts` to the current file.
    fn append<O: Output>(
        &mut self,
        frame: &Arc<Frame>,
        ts: u32,
        out: &mut O,
    ) -> Result<(), O::Error> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if frame.payload.len() > flv::MAX_TAG_DATA_LEN {
            // RTMP messages are 24-bit too: this cannot come from a publisher.
            return Ok(());
        }
        let rel = ts.wrapping_sub(file.origin);
        // Cross-track jitter right at a file's start may step back a little.
        let rel = if (rel as i32) < 0 { 0 } else { rel };
        out.tag(frame, rel)?;
        file.bytes += tag_len(&frame.payload);
        file.last = file.last.max(rel);
        Ok(())
    }

    /// A new file at timeline time `origin`: header, metadata, sequence headers.
    fn begin_file<O: Output>(&mut self, origin: u32, out: &mut O) -> Result<(), O::Error> {
        let metadata = Metadata::new(self.metadata.as_deref());
        let mut head = Vec::new();
        flv::write_header(
            &mut head,
            FlvHeader {
                has_audio: self.has_audio,
                has_video: self.has_video,
            },
        );
        flv::write_tag(&mut head, TAG_SCRIPT, 0, &metadata.body);
        for header in [&self.video_header, &self.audio_header]
            .into_iter()
            .flatten()
        {
            flv::write_tag(&mut head, flv::tag_type(header.kind), 0, &header.payload);
        }
        out.begin(&head, metadata.offsets())?;
        self.file = Some(File {
            origin,
            bytes: head.len() as u64,
            last: 0,
            open: true,
        });
        Ok(())
    }

    fn end_file<O: Output>(&mut self, out: &mut O) -> Result<(), O::Error> {
        if let Some(file) = self.file.as_mut() {
            file.open = false;
            out.end(u64::from(file.last))?;
        }
        Ok(())
    }
}

/// Bytes a tag of `data` takes in a file: header, data, PreviousTagSize.
fn tag_len(data: &[u8]) -> u64 {
    (flv::TAG_HEADER_LEN + data.len() + 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0;
    use crate::media::flv::{FlvTag, TAG_AUDIO, TAG_VIDEO};

    /// Files as an `Output` sees them, in memory.
    #[derive(Default)]
    struct Files {
        done: Vec<(Vec<u8>, u64)>,
        current: Option<Vec<u8>>,
        resumed: usize,
    }

    impl Output for Files {
        type Error = ();
        fn begin(&mut self, head: &[u8], _: FieldOffsets) -> Result<(), ()> {
            assert!(self.current.is_none(), "begin with a file open");
            self.current = Some(head.to_vec());
            Ok(())
        }
        fn resume(&mut self) -> Result<(), ()> {
            let (file, _) = self.done.pop().expect("a file to resume");
            self.current = Some(file);
            self.resumed += 1;
            Ok(())
        }
        fn tag(&mut self, frame: &Arc<Frame>, ts: u32) -> Result<(), ()> {
            let file = self.current.as_mut().expect("a tag with no file open");
            flv::write_tag(file, flv::tag_type(frame.kind), ts, &frame.payload);
            Ok(())
        }
        fn end(&mut self, duration_ms: u64) -> Result<(), ()> {
            let file = self.current.take().expect("end with no file open");
            self.done.push((file, duration_ms));
            Ok(())
        }
    }

    impl Files {
        fn tags(&self, i: usize) -> Vec<FlvTag> {
            flv::parse(&self.done[i].0).unwrap().1
        }
    }

    fn video(ts: u32, key: bool) -> Arc<Frame> {
        let flags = if key { 0x17 } else { 0x27 };
        Arc::new(Frame::media(
            FrameKind::Video,
            ts,
            vec![flags, 1, 0, 0, 0, ts as u8],
        ))
    }

    fn audio(ts: u32) -> Arc<Frame> {
        Arc::new(Frame::media(FrameKind::Audio, ts, vec![0xaf, 1, ts as u8]))
    }

    fn video_header(n: u8) -> Arc<Frame> {
        Arc::new(Frame::media(FrameKind::Video, 0, vec![0x17, 0, 0, 0, 0, n]))
    }

    fn audio_header() -> Arc<Frame> {
        Arc::new(Frame::media(FrameKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]))
    }

    fn metadata() -> Arc<Frame> {
        Arc::new(Frame::metadata(
            0,
            amf0::encode_all_to_vec(&[
                amf0::Amf0Value::String("onMetaData".into()),
                amf0::object(vec![("width", amf0::Amf0Value::Number(320.0))]),
            ]),
        ))
    }

    fn push_all(seg: &mut Segments, files: &mut Files, frames: &[Arc<Frame>]) {
        for f in frames {
            seg.push(f, files).unwrap();
        }
    }

    /// One publish of `frames`, start to end.
    fn recorded(frames: &[Arc<Frame>]) -> (Segments, Files) {
        let mut seg = Segments::new(Limits::default());
        let mut files = Files::default();
        push_all(&mut seg, &mut files, frames);
        seg.end_publish(&mut files).unwrap();
        (seg, files)
    }

    fn summary(tags: &[FlvTag]) -> Vec<(u8, u32, Option<FrameRole>)> {
        tags.iter()
            .map(|t| {
                let role = (t.tag_type != TAG_SCRIPT).then(|| t.role().unwrap());
                (t.tag_type, t.timestamp, role)
            })
            .collect()
    }

    #[test]
    fn a_file_starts_at_the_first_keyframe_with_metadata_and_headers_at_zero() {
        let mut seg = Segments::new(Limits::default());
        let mut files = Files::default();
        let frames = [
            metadata(),
            video_header(1),
            audio_header(),
            audio(4990),
            video(5000, false),
            video(5040, true),
            audio(5030),
            video(5080, false),
            audio(5100),
        ];
        push_all(&mut seg, &mut files, &frames);
        assert!(files.current.is_some(), "open until the publish ends");
        seg.end_publish(&mut files).unwrap();
        let tags = files.tags(0);
        use FrameRole::*;
        assert_eq!(
            summary(&tags),
            [
                (TAG_SCRIPT, 0, None),
                (TAG_VIDEO, 0, Some(SequenceHeader)),
                (TAG_AUDIO, 0, Some(SequenceHeader)),
                (TAG_VIDEO, 0, Some(Keyframe)),
                (TAG_AUDIO, 0, Some(Frame)),
                (TAG_VIDEO, 40, Some(Frame)),
                (TAG_AUDIO, 60, Some(Frame)),
            ]
        );
        // Tag data is what was published, byte for byte.
        assert_eq!(tags[3].data, video(5040, true).payload);
        assert_eq!(files.done[0].1, 60, "the duration is the last tag's time");
        assert_eq!(seg.bytes(), files.done[0].0.len() as u64);
        let header = &files.done[0].0[..5];
        assert_eq!(header[4], 0x05, "audio and video flags");
        let meta = amf0::decode_all(&tags[0].data).unwrap();
        assert_eq!(meta[1].get("width").unwrap().as_f64(), Some(320.0));
    }

    #[test]
    fn nothing_is_written_without_a_keyframe() {
        let (seg, files) = recorded(&[
            video_header(1),
            video(0, false),
            audio(10),
            video(40, false),
        ]);
        assert!(files.done.is_empty() && files.current.is_none());
        assert!(!seg.has_file());
    }

    #[test]
    fn audio_only_starts_at_the_first_audio_frame() {
        let (_, files) = recorded(&[audio_header(), audio(100), audio(123), audio(146)]);
        let tags = files.tags(0);
        let times: Vec<u32> = tags.iter().map(|t| t.timestamp).collect();
        assert_eq!(times, [0, 0, 0, 23, 46]);
        assert_eq!(files.done[0].0[4], 0x04, "audio only");
    }

    #[test]
    fn video_appearing_after_an_audio_start_waits_for_its_keyframe() {
        let (_, files) = recorded(&[audio(0), video(10, false), audio(23), video(50, true)]);
        let kinds: Vec<(u8, u32)> = files
            .tags(0)
            .iter()
            .map(|t| (t.tag_type, t.timestamp))
            .collect();
        assert_eq!(
            kinds,
            [
                (TAG_SCRIPT, 0),
                (TAG_AUDIO, 0),
                (TAG_AUDIO, 23),
                (TAG_VIDEO, 50)
            ]
        );
    }

    #[test]
    fn segments_cut_at_the_first_keyframe_past_the_limit_and_start_complete() {
        let mut seg = Segments::new(Limits {
            duration_ms: Some(1000),
            bytes: None,
        });
        let mut files = Files::default();
        push_all(
            &mut seg,
            &mut files,
            &[metadata(), video_header(1), audio_header()],
        );
        // Keyframes every 600 ms, 25 fps, audio in between.
        for i in 0..75u32 {
            let ts = 10_000 + i * 40;
            seg.push(&video(ts, i % 15 == 0), &mut files).unwrap();
            seg.push(&audio(ts + 5), &mut files).unwrap();
        }
        seg.end_publish(&mut files).unwrap();
        // Keyframes at 0, 600, 1200 (past 1000: cut), 1800, 2400 (past 1000 again: cut).
        assert_eq!(files.done.len(), 3);
        for (i, (file, duration)) in files.done.iter().enumerate() {
            let tags = flv::parse(file).unwrap().1;
            use FrameRole::*;
            assert_eq!(
                summary(&tags[..4]),
                [
                    (TAG_SCRIPT, 0, None),
                    (TAG_VIDEO, 0, Some(SequenceHeader)),
                    (TAG_AUDIO, 0, Some(SequenceHeader)),
                    (TAG_VIDEO, 0, Some(Keyframe)),
                ],
                "file {i}"
            );
            let keys: Vec<u32> = tags
                .iter()
                .filter(|t| t.role() == Some(Keyframe))
                .map(|t| t.timestamp)
                .collect();
            match i {
                0 | 1 => assert_eq!(keys, [0, 600], "file {i}"),
                _ => assert_eq!(keys, [0], "file {i}"),
            }
            assert_eq!(*duration, u64::from(tags.last().unwrap().timestamp));
        }
        // Every published media frame is in exactly one file.
        let media: usize = (0..3)
            .map(|i| {
                files
                    .tags(i)
                    .iter()
                    .filter(|t| {
                        t.tag_type != TAG_SCRIPT && t.role() != Some(FrameRole::SequenceHeader)
                    })
                    .count()
            })
            .sum();
        assert_eq!(media, 150);
    }

    #[test]
    fn a_byte_limit_cuts_at_the_next_keyframe() {
        let mut seg = Segments::new(Limits {
            duration_ms: None,
            bytes: Some(150),
        });
        let mut files = Files::default();
        for i in 0..10u32 {
            seg.push(&video(i * 40, i % 5 == 0), &mut files).unwrap();
        }
        seg.end_publish(&mut files).unwrap();
        assert_eq!(files.done.len(), 2);
        assert!(files.done[0].0.len() > 150);
        assert_eq!(files.tags(1)[1].role(), Some(FrameRole::Keyframe));
    }

    #[test]
    fn an_appended_publish_continues_the_timeline_with_its_own_headers() {
        let (mut seg, mut files) = recorded(&[
            video_header(1),
            video(0, true),
            video(40, false),
            video(80, false),
        ]);
        seg.new_publish(Limits::default());
        push_all(
            &mut seg,
            &mut files,
            &[
                video_header(2),
                video(0, false),
                video(20_000, true),
                video(20_040, false),
            ],
        );
        seg.end_publish(&mut files).unwrap();
        assert_eq!(files.resumed, 1);
        assert_eq!(files.done.len(), 1, "one file");
        let tags = files.tags(0);
        let times: Vec<(u32, Option<FrameRole>)> =
            tags[1..].iter().map(|t| (t.timestamp, t.role())).collect();
        use FrameRole::*;
        assert_eq!(
            times,
            [
                (0, Some(SequenceHeader)),
                (0, Some(Keyframe)),
                (40, Some(Frame)),
                (80, Some(Frame)),
                (120, Some(SequenceHeader)),
                (120, Some(Keyframe)),
                (160, Some(Frame)),
            ]
        );
        assert_eq!(tags[5].data, video_header(2).payload);
        assert_eq!(files.done[0].1, 160);
    }
}
