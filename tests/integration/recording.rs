//! Recording (issue 14) with real publishers: what a file holds, byte for byte
//! against what was published; what ffprobe and ffmpeg make of it; segments; a
//! `kill -9` and a graceful stop of the real binary; a disk that fills, fails or
//! stalls, which must stop only the recording while the publisher and the
//! players carry on; `record_append`; `/api/recordings` and `on_record_done`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rtmpd::amf::amf0::{self, Amf0Value};
use rtmpd::config::policy::{AppKeys, HookUrl};
use rtmpd::config::record::{ByteSize, RecordDir};
use rtmpd::config::Config;
use rtmpd::media::flv::{self, FlvTag, TAG_SCRIPT};
use rtmpd::media::frame::FrameRole;
use rtmpd::record::file::{Disk, RecordFile, Storage};
use rtmpd::record::metadata;
use rtmpd::server::Server;

use crate::access::HookServer;
use crate::client_support::SteppedPublisher;
use crate::http_support::{get, get_json, publish_looped};
use crate::process::ServerProcess;
use crate::support::*;

/// A bound on a hang only, generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Records every app into `dir`, with `keys` set on top.
fn recording_into(dir: &Path, keys: impl FnOnce(&mut AppKeys)) -> impl FnOnce(&mut Config) {
    let dir = RecordDir(dir.to_owned());
    move |config: &mut Config| {
        let policy = Arc::make_mut(&mut config.policy);
        policy.set_record_everywhere(Some(dir));
        keys(&mut policy.global);
    }
}

/// The `.flv` files under `dir`, sorted.
fn flv_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "flv") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// A recording file, which must be a complete FLV.
fn read_complete(path: &Path) -> Vec<FlvTag> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match flv::parse(&bytes) {
        Ok((_, tags)) => tags,
        Err(e) => panic!("{} is not a complete FLV: {e}", path.display()),
    }
}

/// `duration` and `filesize` of a file's `onMetaData` (its first tag).
fn meta_numbers(tags: &[FlvTag]) -> (f64, f64) {
    assert_eq!(
        tags[0].tag_type, TAG_SCRIPT,
        "the file starts with metadata"
    );
    let values = amf0::decode_all(&tags[0].data).expect("onMetaData decodes");
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    let num = |k| values[1].get(k).and_then(Amf0Value::as_f64).unwrap();
    (num("duration"), num("filesize"))
}

/// The publisher's field `name` in a file's `onMetaData`.
fn meta_field(tags: &[FlvTag], name: &str) -> Option<Amf0Value> {
    let values = amf0::decode_all(&tags[0].data).unwrap();
    values[1].get(name).cloned()
}

/// An audio or video tag as (type, timestamp, data).
type Media = (u8, u32, Vec<u8>);

/// Audio and video tags (no script tags, no end-of-sequence marker).
fn media(tags: &[FlvTag]) -> Vec<Media> {
    tags.iter()
        .filter(|t| t.tag_type != TAG_SCRIPT && !t.is_end_of_sequence())
        .map(|t| (t.tag_type, t.timestamp, t.data.clone()))
        .collect()
}

/// What a recording of `published` holds after its metadata: the sequence
/// headers at 0, then every audio and video tag from the first keyframe on,
/// byte for byte, timed from that keyframe (av.flv has an audio frame before
/// it, which no player could use with the picture).
fn expected_recording(published: &[FlvTag]) -> Vec<Media> {
    let all = media(published);
    let key = published
        .iter()
        .filter(|t| t.tag_type != TAG_SCRIPT && !t.is_end_of_sequence())
        .position(|t| t.role() == Some(FrameRole::Keyframe))
        .expect("a keyframe");
    let origin = all[key].1;
    let headers = published
        .iter()
        .filter(|t| t.role() == Some(FrameRole::SequenceHeader))
        .map(|t| (t.tag_type, 0, t.data.clone()));
    let rest = all[key..]
        .iter()
        .map(|(kind, ts, data)| (*kind, ts.saturating_sub(origin), data.clone()));
    headers.chain(rest).collect()
}

/// Panics at the first tag where `recorded` and `expected` differ, briefly.
fn assert_same_media(recorded: &[Media], expected: &[Media], what: &str) {
    let brief = |m: &Media| format!("type {} at {} ms, {} bytes", m.0, m.1, m.2.len());
    for (i, (r, e)) in recorded.iter().zip(expected).enumerate() {
        assert!(
            r == e,
            "{what}: tag {i} is {} (data {:02x?}...), expected {} (data {:02x?}...)",
            brief(r),
            &r.2[..r.2.len().min(8)],
            brief(e),
            &e.2[..e.2.len().min(8)]
        );
    }
    assert_eq!(
        recorded.len(),
        expected.len(),
        "{what}: {} audio/video tags, expected {}",
        recorded.len(),
        expected.len()
    );
}

/// ffprobe's `format=duration` of a file, in seconds.
fn probe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(out.status.success(), "ffprobe {}: {out:?}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe duration of {}: {text:?}", path.display()))
}

/// The latest video packet time ffprobe reads in a file: how much of it plays.
fn probe_last_video_time(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// Decodes a whole file with ffmpeg: it must play alone, without a complaint.
fn assert_plays_alone(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "{} does not play alone: {}\n{errors}",
        path.display(),
        out.status
    );
}

/// The `recording` object of a stream in `/api/streams`.
fn stream_recording(server: &TestServer, path: &str) -> serde_json::Value {
    let (_, doc) = get_json(server.http_addr(), &format!("/api/streams/{path}"));
    doc["recording"].clone()
}

#[test]
fn the_file_holds_the_published_stream_byte_for_byte() {
    let dir = TempDir::new("rec-exact");
    let hooks = HookServer::start();
    let hook = HookUrl::new(&hooks.url("allow/record_done")).unwrap();
    let server = start_server_with(recording_into(dir.path(), |keys| {
        keys.on_record_done = Some(hook);
    }));
    let publisher = publish_ffmpeg(
        &server.url("live/exact?token=abc"),
        &fixture("av.flv"),
        false,
    );
    wait_success(publisher, TIMEOUT, "publisher");
    let call = hooks.wait_call("record_done");
    let path = PathBuf::from(call.field("path"));
    assert!(
        path.starts_with(dir.join("live/exact")),
        "{} is under record_dir/app/key",
        path.display()
    );
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(name.len(), "20260102-030405-006.flv".len(), "{name}");
    assert_eq!(
        (
            call.field("app"),
            call.field("name"),
            call.field("recorder")
        ),
        ("live", "exact", "")
    );
    assert_eq!(call.field("token"), "abc", "the publish's query arguments");

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(call.field("size"), bytes.len().to_string());
    assert_eq!(bytes[4], 0x05, "the FLV header says audio and video");
    let recorded = read_complete(&path);
    let published = fixture_tags("av.flv");
    // Every audio and video tag from the first keyframe, byte for byte, timed
    // from it.
    assert_same_media(
        &media(&recorded),
        &expected_recording(&published),
        "the recording",
    );
    assert_received_matches(&published, &recorded, false);
    let first = recorded.iter().find(|t| t.tag_type != TAG_SCRIPT).unwrap();
    assert_eq!(first.role(), Some(FrameRole::SequenceHeader));
    assert_eq!(
        recorded.iter().filter(|t| t.tag_type == TAG_SCRIPT).count(),
        1,
        "one onMetaData, ours"
    );

    // Our onMetaData: the publisher's fields, duration and size as recorded.
    let (duration, filesize) = meta_numbers(&recorded);
    let last = recorded.iter().map(|t| t.timestamp).max().unwrap();
    assert_eq!(duration, f64::from(last) / 1000.0);
    assert_eq!(filesize, bytes.len() as f64);
    assert_eq!(
        meta_field(&recorded, "width").and_then(|v| v.as_f64()),
        Some(320.0)
    );
    let probed = probe_duration(&path);
    let original = probe_duration(&fixture("av.flv"));
    assert!(
        (probed - original).abs() < 0.1,
        "ffprobe says {probed} s, the published file {original} s"
    );
    assert_plays_alone(&path);

    // Listed as finished, with what the hook said.
    let (status, doc) = get_json(server.http_addr(), "/api/recordings");
    assert_eq!(status, 200);
    let listed = &doc["recordings"][0];
    assert_eq!(listed["app"], "live");
    assert_eq!(listed["key"], "exact");
    assert_eq!(listed["path"], path.display().to_string());
    assert_eq!(listed["size"], bytes.len());
    assert_eq!(listed["duration"], duration);
    assert_eq!(doc["truncated"], false);
}

/// While a stream records, `/api/streams` shows the file it is writing and the
/// bytes so far, growing; once it ends, `/api/recordings` lists that file with
/// the size it has on disk.
#[test]
fn the_api_shows_the_recording_in_progress_then_the_finished_file() {
    let dir = TempDir::new("rec-api");
    let server = start_server_with(recording_into(dir.path(), |_| {}));
    // Looped: live until the test has seen the bytes grow, however long that
    // takes on a busy machine.
    let publisher = publish_looped(&server.url("live/api"), &fixture("av.flv"), 100);
    let mut recording = serde_json::Value::Null;
    wait_for("a recording with bytes", TIMEOUT, || {
        recording = stream_recording(&server, "live/api");
        recording["bytes"].as_u64().is_some_and(|b| b > 0)
    });
    let path = PathBuf::from(recording["path"].as_str().unwrap());
    assert!(
        path.starts_with(dir.join("live/api")) && path.is_file(),
        "{recording}"
    );
    assert_eq!(recording["failed"], false, "{recording}");
    let first = recording["bytes"].as_u64().unwrap();
    wait_for("the recorded bytes to grow", TIMEOUT, || {
        let now = stream_recording(&server, "live/api");
        assert_eq!(now["path"], recording["path"], "one file");
        now["bytes"].as_u64().is_some_and(|b| b > first)
    });
    stop(publisher, TIMEOUT);
    let mut listed = serde_json::Value::Null;
    wait_for("the file in /api/recordings", TIMEOUT, || {
        let (_, doc) = get_json(server.http_addr(), "/api/recordings");
        listed = doc["recordings"][0].clone();
        !listed.is_null()
    });
    assert_eq!(listed["path"], path.display().to_string());
    assert_eq!(listed["size"], std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        (&listed["app"], &listed["key"]),
        (&"live".into(), &"api".into())
    );
}

#[test]
fn segments_are_cut_at_keyframes_and_each_plays_alone() {
    let dir = TempDir::new("rec-segments");
    let server = start_server_with(recording_into(dir.path(), |keys| {
        keys.record_segment_seconds =
            Some(rtmpd::config::policy::Seconds(Duration::from_millis(1500)));
    }));
    let publisher = publish_ffmpeg(&server.url("live/seg"), &fixture("av.flv"), false);
    wait_success(publisher, TIMEOUT, "publisher");
    let mut files = Vec::new();
    wait_for("two finished segments", TIMEOUT, || {
        let (_, doc) = get_json(server.http_addr(), "/api/recordings");
        files = doc["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| PathBuf::from(r["path"].as_str().unwrap()))
            .collect();
        files.len() == 2
    });
    assert_eq!(flv_files(dir.path()), files, "one folder, two files");
    let expected = expected_recording(&fixture_tags("av.flv"));
    assert_eq!(expected[1].0, flv::TAG_AUDIO, "two sequence headers first");
    let mut joined = Vec::new();
    let mut starts = Vec::new();
    for path in &files {
        let tags = read_complete(path);
        // Metadata, both sequence headers, then a keyframe: all at 0.
        let head: Vec<_> = tags[..4]
            .iter()
            .map(|t| (t.tag_type, t.timestamp, t.role()))
            .collect();
        assert_eq!(
            head,
            [
                (TAG_SCRIPT, 0, Some(FrameRole::Data)),
                (flv::TAG_VIDEO, 0, Some(FrameRole::SequenceHeader)),
                (flv::TAG_AUDIO, 0, Some(FrameRole::SequenceHeader)),
                (flv::TAG_VIDEO, 0, Some(FrameRole::Keyframe)),
            ],
            "{}",
            path.display()
        );
        let (duration, filesize) = meta_numbers(&tags);
        assert_eq!(filesize, std::fs::metadata(path).unwrap().len() as f64);
        assert!(
            duration >= 1.5 || path == files.last().unwrap(),
            "{duration}"
        );
        assert_plays_alone(path);
        // Where in the recording this segment starts.
        let key = &tags[3].data;
        starts.push(expected.iter().find(|m| &m.2 == key).unwrap().1);
        joined.extend(
            media(&tags)
                .into_iter()
                .filter(|m| !expected[..2].iter().any(|h| h.2 == m.2)),
        );
    }
    // Keyframes every second: the first one at or past 1.5 s is the one at 2 s.
    assert_eq!(starts, [0, 2000]);
    // Together the segments hold every media tag once, in order.
    let data = |m: &[Media]| m.iter().map(|t| t.2.clone()).collect::<Vec<_>>();
    assert_eq!(data(&joined), data(&expected[2..]));
}

/// Waits for the only recording file under `dir` to appear; returns it.
fn wait_for_file(dir: &Path) -> PathBuf {
    let mut found = Vec::new();
    wait_for("the recording file", TIMEOUT, || {
        found = flv_files(dir);
        !found.is_empty()
    });
    found.remove(0)
}

/// The real binary recording (`--record DIR`) a looped real-time publish on
/// `path`, once the recording's file has appeared.
struct BinaryRecording {
    server: ServerProcess,
    publisher: ChildGuard,
    file: PathBuf,
    _dir: TempDir,
}

fn record_with_the_binary(label: &str, path: &str) -> BinaryRecording {
    let dir = TempDir::new(label);
    let record_dir = dir.join("rec");
    let server = ServerProcess::start(label, false, &["--record", record_dir.to_str().unwrap()]);
    let publisher = ChildGuard::new(publish_looped(&server.url(path), &fixture("av.flv"), 10));
    let file = wait_for_file(&record_dir);
    BinaryRecording {
        server,
        publisher,
        file,
        _dir: dir,
    }
}

#[test]
fn kill_9_leaves_a_file_that_plays_up_to_the_last_flush() {
    let mut rec = record_with_the_binary("rec-kill", "live/crash");
    // Until checkpoints made while the stream runs have put three seconds in
    // the file (its head says so): what the kill may not take away, however
    // slowly a busy machine got there.
    let mut flushed = 0.0;
    wait_for("three seconds recorded", TIMEOUT, || {
        let head = std::fs::read(&rec.file).unwrap_or_default();
        flushed = metadata::read_duration(&head).unwrap_or_default();
        flushed >= 3.0
    });
    rec.server.signal("KILL");
    rec.server.wait_exit(TIMEOUT);
    let path = rec.file.clone();
    drop(rec.publisher);

    // The last video frame may end up to a frame before the head's duration,
    // which counts the audio too.
    let played = probe_last_video_time(&path);
    assert!(
        played >= flushed - 0.1,
        "ffprobe reads {played:.2} s of video; a checkpoint had {flushed:.2} s in the file"
    );
    // The head was kept up to date at each flush, too.
    let bytes = std::fs::read(&path).unwrap();
    let (_, tags) = flv::parse_lenient(&bytes);
    let (duration, filesize) = meta_numbers(&tags);
    assert!(
        duration >= flushed,
        "duration {duration} after a checkpoint had {flushed} s"
    );
    assert!(filesize > 0.0 && filesize <= bytes.len() as f64);
    assert_plays_alone(&path);
}

#[test]
fn a_graceful_stop_closes_the_file_with_its_duration() {
    let mut rec = record_with_the_binary("rec-stop", "live/stopping");
    // Until a checkpoint says two seconds are in the file.
    wait_for("two seconds recorded", TIMEOUT, || {
        let head = std::fs::read(&rec.file).unwrap_or_default();
        metadata::read_duration(&head).is_some_and(|d| d >= 2.0)
    });
    rec.server.signal("TERM");
    assert!(rec.server.wait_exit(TIMEOUT).success());
    rec.server.assert_no_panic();
    let path = rec.file.clone();

    let tags = read_complete(&path);
    let (duration, filesize) = meta_numbers(&tags);
    let last = tags.iter().map(|t| t.timestamp).max().unwrap();
    assert_eq!(duration, f64::from(last) / 1000.0);
    assert_eq!(filesize, std::fs::metadata(&path).unwrap().len() as f64);
    assert!(duration >= 2.0, "{duration} s recorded");
    let probed = probe_duration(&path);
    assert!(
        (probed - duration).abs() < 0.1,
        "ffprobe says {probed} s, the file {duration} s"
    );
    let log = rec.server.log();
    assert!(log.contains(&format!("closed {}", path.display())), "{log}");
}

/// Plays `path` with rtmpdump from before the publish, publishes av.flv, and
/// checks the player got all of it; `during` runs while the stream is live, with
/// all but its last half second sent (a publisher of ours holds it there: a
/// real-time one could end before a busy machine has looked).
fn stream_goes_on(server: &TestServer, path: &str, during: impl FnOnce()) {
    let dir = TempDir::new("rec-player");
    let out = dir.join("player.flv");
    let player = ChildGuard::new(play_rtmpdump(&server.url(path), &out));
    server.wait_for_players(path, 1, TIMEOUT);
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(server, path, published.clone());
    publisher.send_until(3500);
    during();
    publisher.finish();
    wait_success(player.take(), TIMEOUT, "rtmpdump");
    assert_received_matches(&published, &read_flv(&out), true);
}

/// Waits until the stream's recording says it failed; returns its document.
fn wait_for_failure(server: &TestServer, path: &str) -> serde_json::Value {
    let mut recording = serde_json::Value::Null;
    wait_for("the recording to fail", TIMEOUT, || {
        recording = stream_recording(server, path);
        recording["failed"] == true
    });
    recording
}

/// A 96 KiB tmpfs under `dir`, unmounted when dropped; `None` (having said so)
/// where it cannot be mounted and RTMPD_TEST_SKIP_TMPFS is set.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(dir: &TempDir, test: &str) -> Option<TinyDisk> {
        let mount = dir.join("tiny");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
            .arg(&mount)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            // Root can mount a tmpfs (CI runs the tests as root); elsewhere say so.
            assert!(
                std::env::var_os("RTMPD_TEST_SKIP_TMPFS").is_some(),
                "cannot mount a tmpfs at {} (the full-disk tests need root); \
                 RTMPD_TEST_SKIP_TMPFS=1 skips them",
                mount.display()
            );
            eprintln!("{test}: skipped (RTMPD_TEST_SKIP_TMPFS)");
            return None;
        }
        Some(TinyDisk(mount))
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_only_the_recording() {
    let dir = TempDir::new("rec-full");
    let Some(tiny) = TinyDisk::mount(&dir, "a_full_disk_stops_only_the_recording") else {
        return;
    };
    let mount = tiny.0.clone();
    let server = start_server_with(recording_into(&mount, |_| {}));
    stream_goes_on(&server, "live/full", || {
        let recording = wait_for_failure(&server, "live/full");
        let error = recording["error"].as_str().unwrap();
        assert!(error.contains("No space left on device"), "{error}");
        let metrics = get(server.http_addr(), "/metrics").text();
        assert!(
            metrics.contains("rtmpd_stream_recording_failed{app=\"live\",key=\"full\"} 1"),
            "{metrics}"
        );
    });
    let (_, doc) = get_json(server.http_addr(), "/api/server");
    assert_eq!(doc["recordings"]["failed_total"], 1);
    // What made it to the disk is still a readable FLV.
    let files = flv_files(&mount);
    let (header, tags) = flv::parse_lenient(&std::fs::read(&files[0]).unwrap());
    assert!(header.is_some() && tags.len() > 10, "{} tags", tags.len());
}

/// The real binary's log when a disk fills: one error line that names the
/// stream, the file and the cause, and no other error or warning, while the
/// publisher goes on to its end.
#[test]
fn a_failed_recording_is_one_error_line() {
    let dir = TempDir::new("rec-full-log");
    let Some(tiny) = TinyDisk::mount(&dir, "a_failed_recording_is_one_error_line") else {
        return;
    };
    let record = tiny.0.to_str().unwrap();
    let server = ServerProcess::start("rec-full-log", false, &["--record", record]);
    let publisher = publish_ffmpeg(&server.url("live/full"), &fixture("av.flv"), true);
    wait_for("the recording's error", TIMEOUT, || {
        server.log().contains("recording live/full stopped")
    });
    wait_success(publisher, TIMEOUT, "the publisher, unaware of the disk");
    let log = server.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("ERROR")
            && errors[0].contains("No space left on device")
            && errors[0].contains(record),
        "{log}"
    );
}

/// A disk whose writes fail once `limit` bytes are written, or that hangs in
/// `create` until released.
#[derive(Clone)]
struct TroubledDisk {
    fail_after: Option<u64>,
    gate: Option<Arc<(Mutex<bool>, Condvar)>>,
}

struct TroubledFile {
    file: Box<dyn RecordFile>,
    written: u64,
    fail_after: Option<u64>,
}

impl Storage for TroubledDisk {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn RecordFile>> {
        if let Some(gate) = &self.gate {
            let (open, changed) = &**gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
        }
        Ok(Box::new(TroubledFile {
            file: Disk.create_new(path)?,
            written: 0,
            fail_after: self.fail_after,
        }))
    }

    fn reopen(&self, path: &Path) -> io::Result<Box<dyn RecordFile>> {
        Disk.reopen(path)
    }
}

impl Write for TroubledFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .fail_after
            .is_some_and(|limit| self.written + buf.len() as u64 > limit)
        {
            return Err(io::Error::other("injected I/O error"));
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl io::Seek for TroubledFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl RecordFile for TroubledFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn start_with_storage(
    dir: &Path,
    storage: TroubledDisk,
    keys: impl FnOnce(&mut AppKeys),
) -> TestServer {
    let config = test_config(recording_into(dir, keys));
    start_bound(Server::bind_with_storage(config, Arc::new(storage)).unwrap())
}

#[test]
fn a_failing_write_stops_only_the_recording() {
    let dir = TempDir::new("rec-fault");
    let storage = TroubledDisk {
        fail_after: Some(50_000),
        gate: None,
    };
    let server = start_with_storage(dir.path(), storage, |_| {});
    stream_goes_on(&server, "live/fault", || {
        let recording = wait_for_failure(&server, "live/fault");
        let error = recording["error"].as_str().unwrap();
        assert!(
            error.contains("cannot write") && error.contains("injected I/O error"),
            "{error}"
        );
    });
}

#[test]
fn a_stalled_disk_costs_no_more_memory_than_the_buffer() {
    let dir = TempDir::new("rec-stall");
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let storage = TroubledDisk {
        fail_after: None,
        gate: Some(gate.clone()),
    };
    let bound = ByteSize::MIN;
    let server = start_with_storage(dir.path(), storage, |keys| {
        keys.record_buffer_bytes = Some(ByteSize(bound));
    });
    stream_goes_on(&server, "live/stall", || {
        // The recorder hangs creating its file while the stream comes in: it
        // outgrows the buffer.
        let recording = wait_for_failure(&server, "live/stall");
        let error = recording["error"].as_str().unwrap();
        assert!(error.contains("fell behind"), "{error}");
        assert_eq!(recording["buffer_bytes"], bound);
        let peak = recording["backlog_peak_bytes"].as_u64().unwrap();
        assert!(peak > bound / 2 && peak <= bound, "peak {peak} of {bound}");
        assert!(recording["backlog_bytes"].as_u64().unwrap() <= bound);
    });
    // The published stream was well over twice the buffer: the bound held it.
    let published: usize = fixture_tags("av.flv").iter().map(|t| t.data.len()).sum();
    assert!(published as u64 > 2 * bound);
    // Released, the recorder writes what it holds, closes the file and is gone.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    wait_for("the recording to end", TIMEOUT, || {
        let (_, doc) = get_json(server.http_addr(), "/api/server");
        doc["recordings"]["active"] == 0
    });
    let files = flv_files(dir.path());
    let tags = read_complete(&files[0]);
    assert!(tags.len() > 10, "{} tags kept", tags.len());
}

#[test]
fn record_append_continues_the_file_and_its_timeline() {
    let dir = TempDir::new("rec-append");
    let hooks = HookServer::start();
    let hook = HookUrl::new(&hooks.url("allow/done")).unwrap();
    let server = start_server_with(recording_into(dir.path(), |keys| {
        keys.record_append = Some(true);
        keys.on_record_done = Some(hook);
    }));
    for round in 1..=2 {
        let publisher = publish_ffmpeg(&server.url("live/again"), &fixture("av.flv"), false);
        wait_success(publisher, TIMEOUT, "publisher");
        wait_for("the file to close", TIMEOUT, || {
            hooks.calls().len() == round
        });
    }
    let files = flv_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let tags = read_complete(&files[0]);
    let once = expected_recording(&fixture_tags("av.flv"));
    let twice = media(&tags);
    // The first publish as it was, then the second's, headers included.
    assert_same_media(
        &twice[..once.len().min(twice.len())],
        &once,
        "the first publish",
    );
    let second = &twice[once.len()..];
    let data = |m: &[Media]| m.iter().map(|t| t.2.clone()).collect::<Vec<_>>();
    assert_eq!(data(second), data(&once));
    // Its timeline goes on from the first: the same steps, one frame later.
    let end = once.iter().map(|t| t.1).max().unwrap();
    let shift = second[0].1;
    assert!(
        shift > end && shift <= end + 100,
        "shift {shift} after {end}"
    );
    for (a, b) in once.iter().zip(second).skip(2) {
        assert_eq!(b.1, a.1 + shift);
    }
    let (duration, filesize) = meta_numbers(&tags);
    assert_eq!(
        duration,
        f64::from(twice.iter().map(|t| t.1).max().unwrap()) / 1000.0
    );
    assert_eq!(filesize, std::fs::metadata(&files[0]).unwrap().len() as f64);
    let calls = hooks.calls();
    assert_eq!(calls[0].field("path"), calls[1].field("path"));
    assert_plays_alone(&files[0]);
}

#[test]
fn without_append_a_new_publish_starts_a_new_file() {
    let dir = TempDir::new("rec-new");
    let server = start_server_with(recording_into(dir.path(), |_| {}));
    for _ in 0..2 {
        let publisher = publish_ffmpeg(&server.url("live/twice"), &fixture("av.flv"), false);
        wait_success(publisher, TIMEOUT, "publisher");
    }
    wait_for("two files", TIMEOUT, || {
        let (_, doc) = get_json(server.http_addr(), "/api/recordings");
        doc["recordings"].as_array().unwrap().len() == 2
    });
    let expected = expected_recording(&fixture_tags("av.flv"));
    for path in flv_files(dir.path()) {
        assert_same_media(&media(&read_complete(&path)), &expected, "each file");
    }
}
