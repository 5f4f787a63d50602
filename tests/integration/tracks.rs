//! Players find exactly the published tracks. Real players (Debian's ffprobe and
//! ffmpeg 5.1; ffmpeg 9 for the Enhanced RTMP codecs; VLC; GStreamer) play the server
//! over RTMP, HTTP-FLV, WebSocket-FLV and HLS (fMP4) and must see each published audio and video
//! track and nothing else; each HLS variant names its codecs (RFC 6381) and
//! resolution exactly. A stray data message in the answer to `play` once showed
//! up in ffmpeg and VLC as an extra "Data" stream (and broke `ffmpeg -map 0` into
//! Matroska) while every byte-level comparison passed.
//!
//! ffprobe and ffmpeg join streams that are already live, so they also check that the
//! cached onMetaData a late joiner gets does not become a subtitle stream (ffmpeg's FLV
//! demuxer makes one of a script tag that is not onMetaData at timestamp 0). The
//! clients of one test run side by side, and a test reports every client that
//! failed, not only the first.

use std::collections::BTreeMap;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::media::flv::FlvTag;
use tungstenite::{Message, WebSocket};

use crate::http_support::{publish_looped_with, websocket};
use crate::support::*;

/// Bound on each client, on a hang only. They need a few seconds: ffprobe reads 5 s
/// of a stream with one track before it is sure that no other track follows; on a
/// busy machine, with a dozen clients side by side, far more.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const PUBLISH_START: Duration = Duration::from_secs(60);
/// How often a publisher plays its 2–4 s fixture: the stream must stay live while
/// the clients run, however long that takes (the test stops the publishers as soon
/// as they are done).
const LOOPS: u32 = 1000;

/// A fixture, the key it is published on, the tracks players must find, as
/// "type:codec" with ffmpeg's codec names, sorted, and the HLS variant's CODECS
/// (RFC 6381, from the fixture's own configuration: profile, level, constraint
/// flags as ffmpeg's trace_headers reads them; ffmpeg's HLS muxer writes the same,
/// or a shorter form) and RESOLUTION.
struct Published {
    fixture: &'static str,
    path: &'static str,
    tracks: &'static [&'static str],
    codecs: &'static str,
    resolution: Option<&'static str>,
}

/// What Debian's ffmpeg 5.1 can publish and read.
static H264_AAC: [Published; 3] = [
    Published {
        fixture: "av.flv",
        path: "live/av",
        tracks: &["audio:aac", "video:h264"],
        codecs: "avc1.42c00d,mp4a.40.2",
        resolution: Some("320x240"),
    },
    Published {
        fixture: "video.flv",
        path: "live/video",
        tracks: &["video:h264"],
        codecs: "avc1.42c00d",
        resolution: Some("320x240"),
    },
    Published {
        fixture: "audio.flv",
        path: "live/audio",
        tracks: &["audio:aac"],
        codecs: "mp4a.40.2",
        resolution: None,
    },
];

/// The Enhanced RTMP codecs (FourCC signalling), which only ffmpeg 9 publishes.
static ENHANCED: [Published; 3] = [
    Published {
        fixture: "hevc_opus.flv",
        path: "live/hevc",
        tracks: &["audio:opus", "video:hevc"],
        // HEVC Main (1), compatible with Main and Main 10 (flags 1 and 2, reversed
        // 6), main tier, level 30 (1.0), progressive and frame-only (0x90).
        codecs: "hvc1.1.6.L30.90,opus",
        resolution: Some("160x120"),
    },
    Published {
        fixture: "av1_flac.flv",
        path: "live/av1",
        tracks: &["audio:flac", "video:av1"],
        codecs: "av01.0.00M.08,fLaC",
        resolution: Some("160x120"),
    },
    Published {
        fixture: "vp9_ac3.flv",
        path: "live/vp9",
        tracks: &["audio:ac3", "video:vp9"],
        // ffmpeg 9 publishes this VP9 as 4:2:0 with matrix 0 (RGB), which the
        // long form may not claim: the short one.
        codecs: "vp09.00.10.08,ac-3",
        resolution: Some("160x120"),
    },
];

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Rtmp,
    HttpFlv,
    WsFlv,
    /// The multivariant playlist (fMP4 segments).
    Hls,
}

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Rtmp,
    Protocol::HttpFlv,
    Protocol::WsFlv,
    Protocol::Hls,
];

// ---------------------------------------------------------------------------------
// Tests

#[test]
fn ffprobe_and_ffmpeg_find_exactly_the_published_tracks() {
    let ffmpeg = Path::new("ffmpeg");
    let live = LiveStreams::start(ffmpeg, &H264_AAC);
    let dir = TempDir::new("tracks");
    let mut checks: Vec<Check> = Vec::new();
    for published in &H264_AAC {
        for protocol in PROTOCOLS {
            let source = live.source(protocol, published.path);
            checks.push(check(format!("ffprobe {source}"), move || {
                let streams = source.ffprobe();
                assert_eq!(ffprobe_tracks(&streams), published.tracks, "{streams:?}");
            }));
        }
    }
    let remux = [Protocol::Rtmp, Protocol::HttpFlv, Protocol::Hls];
    checks.extend(live.remux_checks(ffmpeg, &H264_AAC, &remux, &dir));
    checks.extend(live.hls_variant_checks(&H264_AAC));
    run_checks(checks);
}

/// ffmpeg 9 publishes each Enhanced RTMP codec and plays it back over every protocol
/// into Matroska.
#[test]
fn ffmpeg_9_finds_exactly_the_published_enhanced_rtmp_tracks() {
    let Some(ffmpeg9) = ffmpeg9() else { return };
    let live = LiveStreams::start(ffmpeg9, &ENHANCED);
    let dir = TempDir::new("tracks-ertmp");
    let mut checks = live.remux_checks(ffmpeg9, &ENHANCED, &PROTOCOLS, &dir);
    checks.extend(live.hls_variant_checks(&ENHANCED));
    run_checks(checks);
}

/// VLC, waiting before the publisher, plays the whole stream into Matroska and ends
/// by itself when the publisher leaves. Its demuxer must create exactly the published
/// tracks (it warns "unsupported track type" for anything else) and pass on every
/// frame.
#[test]
fn vlc_plays_exactly_the_published_tracks() {
    let server = start_server();
    let path = "live/vlc";
    let dir = TempDir::new("vlc");
    // VLC may run as an unprivileged user: let it write here.
    fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).unwrap();
    let out = dir.join("vlc.mkv");
    let log = dir.join("vlc.log");
    let mut cmd = vlc_command(dir.path());
    cmd.args(["-vv", "--play-and-exit", "--sout"])
        .arg(format!("#std{{access=file,mux=mkv,dst={}}}", out.display()))
        .arg(server.url(path))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    let vlc =
        ChildGuard::new(cmd.spawn().unwrap_or_else(|e| {
            panic!("starting {cmd:?}: {e} (run scripts/test.sh to install VLC)")
        }));
    server.wait_for_players(path, 1, CLIENT_TIMEOUT);
    let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
    wait_success(publisher, CLIENT_TIMEOUT, "publisher");
    let status = wait_with_timeout(vlc.take(), CLIENT_TIMEOUT);
    let log_path = log;
    let log = fs::read_to_string(&log_path).unwrap();
    // The -vv log is long: show its warnings and errors, the rest is in the file
    // (kept when the test fails).
    let problems = || -> String {
        let lines = log
            .lines()
            .filter(|l| l.contains(" warning: ") || l.contains(" error: "));
        let lines: Vec<&str> = lines.collect();
        format!("{}\n(VLC's log: {})", lines.join("\n"), log_path.display())
    };
    assert!(
        status.success(),
        "VLC failed with {status}:\n{}",
        problems()
    );

    let mut es: Vec<String> = log
        .lines()
        .filter_map(|line| {
            line.split_once("avformat demux debug: adding es: ")?
                .1
                .split_once(" codec = ")
        })
        .map(|(kind, codec)| format!("{kind}:{}", codec.split(' ').next().unwrap_or("")))
        .collect();
    es.sort();
    assert_eq!(
        es,
        ["audio:mp4a", "video:h264"],
        "VLC's tracks:\n{}",
        problems()
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unsupported track type"))
        .collect();
    assert!(warnings.is_empty(), "VLC: {warnings:?}");

    let out = out.to_str().unwrap();
    let streams = ffprobe_streams(out, CLIENT_TIMEOUT);
    assert_eq!(
        ffprobe_tracks(&streams),
        ["audio:aac", "video:h264"],
        "{streams:?}"
    );
    // VLC stores each frame as one packet (with the SPS and PPS put in front of
    // keyframes) and stops its muxer when the video track ends, dropping the audio
    // frames published after the last video frame.
    let (audio, video) = media_tracks(&fixture_tags("av.flv"));
    let packets = ffprobe_packets(out, CLIENT_TIMEOUT);
    let sizes = |kind: &str| -> Vec<usize> {
        packets
            .iter()
            .filter(|p| p.get("codec_type").map(String::as_str) == Some(kind))
            .map(|p| p["size"].parse().unwrap())
            .collect()
    };
    assert_eq!(sizes("video").len(), video.len(), "video frames VLC stored");
    let want_audio: Vec<usize> = audio.iter().map(|t| t.data.len() - 2).collect();
    let got_audio = sizes("audio");
    let last_video = video.last().unwrap().timestamp;
    let at_least = audio.iter().filter(|t| t.timestamp <= last_video).count();
    assert!(
        got_audio.len() >= at_least && want_audio.starts_with(&got_audio),
        "VLC stored {} audio frames of sizes {got_audio:?}; published {} (at least {at_least} \
         up to the last video frame) of sizes {want_audio:?}",
        got_audio.len(),
        want_audio.len()
    );
}

/// GStreamer (rtmpsrc, i.e. librtmp, then flvdemux and the H.264 and AAC parsers),
/// waiting before the publisher, writes each track as its parser passes it on: that
/// must be every published frame's data (without the FLV tag's 5-byte AVC or 2-byte
/// AAC header), in order, byte for byte. rtmpsrc reconnects at the end of a stream
/// instead of ending, so the test stops it once the files are complete.
#[test]
fn gstreamer_receives_every_published_frame() {
    let server = start_server();
    let path = "live/gst";
    let dir = TempDir::new("gst");
    let (video_out, audio_out) = (dir.join("video.h264"), dir.join("audio.aac"));
    // Unbuffered: the files are complete when the test stops GStreamer.
    let sink = |out: &Path| {
        [
            "filesink".to_string(),
            "buffer-mode=unbuffered".to_string(),
            format!("location={}", out.display()),
        ]
    };
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q")
        .arg("rtmpsrc")
        // One argument: gst-launch keeps its space inside the property value.
        .arg(format!("location={} live=1", server.url(path)))
        .args(["!", "flvdemux", "name=demux"])
        .args(["demux.video", "!", "queue", "!", "h264parse", "!"])
        .args(sink(&video_out))
        .args(["demux.audio", "!", "queue", "!", "aacparse", "!"])
        .args(sink(&audio_out));
    let gst = ChildGuard::new(spawn(cmd));
    server.wait_for_players(path, 1, CLIENT_TIMEOUT);
    let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
    wait_success(publisher, CLIENT_TIMEOUT, "publisher");

    let (audio, video) = media_tracks(&fixture_tags("av.flv"));
    let payloads = |tags: &[FlvTag], header: usize| -> Vec<u8> {
        tags.iter()
            .flat_map(|t| &t.data[header..])
            .copied()
            .collect()
    };
    let (want_video, want_audio) = (payloads(&video, 5), payloads(&audio, 2));
    let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len() as usize);
    let complete = || size(&video_out) >= want_video.len() && size(&audio_out) >= want_audio.len();
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while !complete() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let mut gst = gst.take();
    let _ = gst.kill();
    let (_, stderr) = wait_with_stderr(gst, CLIENT_TIMEOUT);
    for (track, out, want) in [
        ("video", &video_out, &want_video),
        ("audio", &audio_out, &want_audio),
    ] {
        let got = fs::read(out).unwrap_or_default();
        assert!(
            got == *want,
            "GStreamer's {track} track: {} bytes, {} published; first difference at byte {:?}; \
             stderr:\n{stderr}",
            got.len(),
            want.len(),
            got.iter().zip(want.iter()).position(|(a, b)| a != b)
        );
    }
}

// ---------------------------------------------------------------------------------
// Streams and clients

/// A test server with fixtures published on it, each by an ffmpeg that loops it in
/// real time; the publishers stop when this is dropped.
struct LiveStreams {
    server: TestServer,
    publishers: Vec<Child>,
}

impl LiveStreams {
    fn start(ffmpeg: &Path, streams: &[Published]) -> LiveStreams {
        let server = start_server();
        let publishers = streams
            .iter()
            .map(|s| publish_looped_with(ffmpeg, &server.url(s.path), &fixture(s.fixture), LOOPS))
            .collect();
        let live = LiveStreams { server, publishers };
        for s in streams {
            live.server.wait_for_frames(s.path, PUBLISH_START);
        }
        live
    }

    fn source(&self, protocol: Protocol, path: &str) -> Source {
        let flv = format!("{path}.flv");
        match protocol {
            Protocol::Rtmp => Source::Url(self.server.url(path)),
            Protocol::HttpFlv => Source::Url(self.server.http_url(&flv)),
            Protocol::WsFlv => Source::WebSocket(self.server.http_addr(), flv),
            Protocol::Hls => Source::Url(self.server.http_url(&format!("{path}/index.m3u8"))),
        }
    }
}

impl LiveStreams {
    /// A check for each of `streams`: its HLS variant (`index.m3u8`) names its
    /// codecs and resolution exactly.
    fn hls_variant_checks<'a>(&self, streams: &'a [Published]) -> Vec<Check<'a>> {
        let addr = self.server.http_addr();
        streams
            .iter()
            .map(|published| {
                let path = format!("/{}/index.m3u8", published.path);
                check(format!("the HLS variant of {path}"), move || {
                    let resp = crate::http_support::get(addr, &path);
                    let text = resp.text();
                    assert_eq!(resp.status, 200, "{text}");
                    let inf = text
                        .lines()
                        .find_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
                        .unwrap_or_else(|| panic!("no EXT-X-STREAM-INF in {text}"));
                    let attr = |name: &str| {
                        let at = inf.find(&format!("{name}="))? + name.len() + 1;
                        let value = &inf[at..];
                        Some(match value.strip_prefix('"') {
                            Some(quoted) => quoted.split('"').next()?,
                            None => value.split(',').next()?,
                        })
                    };
                    assert_eq!(attr("CODECS"), Some(published.codecs), "{inf}");
                    assert_eq!(attr("RESOLUTION"), published.resolution, "{inf}");
                })
            })
            .collect()
    }

    /// A check for each of `streams` over each of `protocols`: `ffmpeg` plays it into
    /// Matroska (see [`remux_to_mkv`]) in `dir`.
    fn remux_checks<'a>(
        &self,
        ffmpeg: &'a Path,
        streams: &'a [Published],
        protocols: &[Protocol],
        dir: &TempDir,
    ) -> Vec<Check<'a>> {
        let mut checks = Vec::new();
        for published in streams {
            for &protocol in protocols {
                let source = self.source(protocol, published.path);
                let name = published.path.replace('/', "-");
                let out = dir.join(&format!("{name}-{protocol:?}.mkv"));
                checks.push(check(
                    format!(
                        "{} -map 0 {source}",
                        ffmpeg.file_name().unwrap_or_default().to_string_lossy()
                    ),
                    move || remux_to_mkv(ffmpeg, &source, &out, published.tracks),
                ));
            }
        }
        checks
    }
}

impl Drop for LiveStreams {
    fn drop(&mut self) {
        for publisher in self.publishers.drain(..) {
            stop(publisher, Duration::from_secs(5));
        }
    }
}

/// Where a client plays from: a URL it opens itself, or a WebSocket-FLV stream the
/// test reads with tungstenite and pipes into the client's stdin (neither ffmpeg
/// 5.1 nor ffmpeg 9 speaks WebSocket).
enum Source {
    Url(String),
    WebSocket(SocketAddr, String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(url) => f.write_str(url),
            Source::WebSocket(addr, path) => write!(f, "ws://{addr}/{path} (piped)"),
        }
    }
}

impl Source {
    /// The client's input argument, and what feeds its stdin, if anything.
    fn input(&self) -> (String, Option<impl FnOnce(ChildStdin) + Send + 'static>) {
        match self {
            Source::Url(url) => (url.clone(), None),
            Source::WebSocket(addr, path) => {
                let ws = websocket(*addr, path, CLIENT_TIMEOUT)
                    .unwrap_or_else(|e| panic!("WebSocket to {self}: {e}"));
                (
                    "-".to_string(),
                    Some(move |stdin| pipe_websocket(ws, stdin)),
                )
            }
        }
    }

    fn ffprobe(&self) -> Vec<BTreeMap<String, String>> {
        match self.input() {
            (url, None) => ffprobe_streams(&url, CLIENT_TIMEOUT),
            (_, Some(feed)) => ffprobe_stdin_streams(feed, CLIENT_TIMEOUT),
        }
    }
}

/// Copies a WebSocket-FLV stream into `out` until the reader closes it (it has seen
/// enough) or the stream ends.
fn pipe_websocket(mut ws: WebSocket<TcpStream>, mut out: ChildStdin) {
    loop {
        match ws.read() {
            Ok(Message::Binary(data)) => {
                if out.write_all(&data).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Plays `source` with `ffmpeg -map 0 -c copy` into Matroska (1 s of it), which
/// fails if the input has a track Matroska cannot hold. Checks that ffmpeg succeeds,
/// that its log lists exactly `tracks` as the input's streams and that ffprobe finds
/// them in the file.
fn remux_to_mkv(ffmpeg: &Path, source: &Source, out: &Path, tracks: &[&str]) {
    let log_path = out.with_extension("log");
    let (input, feed) = source.input();
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostats", "-y", "-i", &input])
        .args(["-map", "0", "-c", "copy", "-t", "1", "-f", "matroska"])
        .arg(out)
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let feeder = feed.map(|feed| feed_stdin(&mut child, feed));
    let status = wait_with_timeout(child, CLIENT_TIMEOUT);
    if let Some(feeder) = feeder {
        feeder.join().expect("the thread feeding ffmpeg panicked");
    }
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "ffmpeg failed with {status}; log:\n{log}");
    assert_eq!(
        input_tracks(&log),
        tracks,
        "the input's streams; log:\n{log}"
    );
    let streams = ffprobe_streams(out.to_str().unwrap(), CLIENT_TIMEOUT);
    assert_eq!(
        ffprobe_tracks(&streams),
        tracks,
        "the Matroska file: {streams:?}"
    );
}

/// "type:codec" of each stream in an ffprobe report, sorted.
fn ffprobe_tracks(streams: &[BTreeMap<String, String>]) -> Vec<String> {
    let field = |s: &BTreeMap<String, String>, k: &str| s.get(k).cloned().unwrap_or_default();
    let mut tracks: Vec<String> = streams
        .iter()
        .map(|s| format!("{}:{}", field(s, "codec_type"), field(s, "codec_name")))
        .collect();
    tracks.sort();
    tracks
}

/// "type:codec" of each stream ffmpeg's log lists for its first input
/// (`  Stream #0:1: Audio: opus, 48000 Hz, ...` is "audio:opus"), sorted.
fn input_tracks(log: &str) -> Vec<String> {
    let mut tracks: Vec<String> = log
        .lines()
        .skip_while(|l| !l.starts_with("Input #0"))
        .take_while(|l| !l.starts_with("Output #") && !l.starts_with("Stream mapping"))
        .filter_map(|l| l.trim_start().strip_prefix("Stream #0:"))
        .filter_map(|rest| {
            let (kind, codec) = rest.split_once(": ")?.1.split_once(": ")?;
            let codec = codec.split([' ', ',']).next()?;
            Some(format!("{}:{codec}", kind.to_lowercase()))
        })
        .collect();
    tracks.sort();
    tracks
}

// ---------------------------------------------------------------------------------
// Running clients side by side

type Check<'a> = (String, Box<dyn FnOnce() + Send + 'a>);

fn check<'a>(name: String, f: impl FnOnce() + Send + 'a) -> Check<'a> {
    (name, Box::new(f))
}

/// Runs each check on a thread of its own, all at once, and fails naming every check
/// that failed, with its message.
fn run_checks(checks: Vec<Check<'_>>) {
    let total = checks.len();
    let failures: Vec<String> = thread::scope(|scope| {
        let running: Vec<_> = checks
            .into_iter()
            .map(|(name, f)| {
                let handle = thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, f)
                    .expect("spawning a check");
                (name, handle)
            })
            .collect();
        running
            .into_iter()
            .filter_map(|(name, handle)| {
                let err = handle.join().err()?;
                let msg = err
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("--- {name}:\n{msg}"))
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {total} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Finding the players

/// The static ffmpeg 9 from PyPI's `imageio-ffmpeg` (scripts/test.sh installs it and
/// sets RTMPD_TEST_FFMPEG9 to its path; otherwise python3 is asked where it is).
/// Missing, it fails the test, unless RTMPD_TEST_SKIP_FFMPEG9=1 says to do without:
/// then the test says that it skipped and passes.
fn ffmpeg9() -> Option<&'static Path> {
    static FFMPEG9: OnceLock<Option<PathBuf>> = OnceLock::new();
    FFMPEG9
        .get_or_init(|| {
            let path = std::env::var_os("RTMPD_TEST_FFMPEG9")
                .map(PathBuf::from)
                .or_else(|| {
                    let out = Command::new("python3")
                        .args([
                            "-c",
                            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
                        ])
                        .stderr(Stdio::null())
                        .output()
                        .ok()?;
                    let path = String::from_utf8(out.stdout).ok()?;
                    out.status.success().then(|| PathBuf::from(path.trim()))
                })
                .filter(|p| p.is_file());
            if path.is_none() && std::env::var_os("RTMPD_TEST_SKIP_FFMPEG9").is_some() {
                eprintln!(
                    "SKIPPED: ffmpeg 9 is not installed and RTMPD_TEST_SKIP_FFMPEG9 is set: \
                     the Enhanced RTMP codecs were not checked"
                );
                return None;
            }
            let path = path.unwrap_or_else(|| {
                panic!(
                    "ffmpeg 9 is not installed: run scripts/test.sh (it runs pip install \
                     imageio-ffmpeg), or set RTMPD_TEST_FFMPEG9=/path/to/ffmpeg, or \
                     RTMPD_TEST_SKIP_FFMPEG9=1 to skip the Enhanced RTMP codec checks"
                )
            });
            Some(path)
        })
        .as_deref()
}

/// `cvlc` (VLC without an interface) with its home in `home`. VLC refuses to run as
/// root: as root, it runs as the unprivileged user scripts/test.sh creates
/// (`rtmpd-test`, or RTMPD_TEST_VLC_USER). setpriv, unlike runuser or su, execs VLC
/// in place, so killing the child kills VLC.
fn vlc_command(home: &Path) -> Command {
    let as_root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut cmd = if as_root {
        let user = std::env::var("RTMPD_TEST_VLC_USER").unwrap_or_else(|_| "rtmpd-test".into());
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, &user]).output().unwrap();
            assert!(
                out.status.success(),
                "VLC refuses to run as root and user {user} does not exist: run \
                 scripts/test.sh (it creates it) or set RTMPD_TEST_VLC_USER"
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &id("-u"), "--regid", &id("-g"), "--clear-groups"])
            .args(["--", "cvlc"]);
        cmd
    } else {
        Command::new("cvlc")
    };
    cmd.env("HOME", home);
    cmd
}
