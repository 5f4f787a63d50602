//! HTTP-FLV: raw HTTP clients, ffmpeg and ffprobe play `http://HOST/APP/KEY.flv`
//! while ffmpeg publishes a fixture over RTMP; what they receive is compared with
//! the fixture tag by tag, byte for byte. Also: the refusals (404, 405, 400, 431,
//! 408, 505), HEAD, CORS preflight, and a viewer too slow to keep up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use rtmpd::media::flv::{self, TAG_SCRIPT, TAG_VIDEO};

use crate::http_support::{
    exchange, get, get_json, parse_response, read_to_close, request, HttpResponse,
};
use crate::support::*;

/// A fixture is 3–4 s long; everything here finishes well within this.
const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends a GET for `path` with `version` ("1.1" or "1.0") and reads until the server
/// ends the response.
fn play_raw(addr: std::net::SocketAddr, path: &str, version: &str) -> HttpResponse {
    let req =
        format!("GET {path} HTTP/{version}\r\nHost: {addr}\r\nUser-Agent: rtmpd-test\r\n\r\n");
    exchange(addr, req.as_bytes(), STREAM_TIMEOUT)
}

fn check_flv_response(resp: &HttpResponse, published: &[flv::FlvTag]) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("video/x-flv"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert!(resp.complete, "the chunked body ends with the last chunk");
    // Strict parse: the body is a whole FLV file, not one byte more or less.
    let (header, tags) = flv::parse(&resp.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.has_audio && header.has_video, "{header:?}");
    assert_eq!(tags[0].tag_type, TAG_SCRIPT, "onMetaData comes first");
    assert_eq!(tags[0].timestamp, 0, "the timeline starts at 0");
    let first_media = tags.iter().find(|t| t.tag_type != TAG_SCRIPT).unwrap();
    assert_eq!(first_media.timestamp, 0, "media starts at 0 too");
    assert_received_matches(published, &tags, false);
}

#[test]
fn http_flv_delivers_the_published_tags_byte_for_byte() {
    let server = start_server();
    let published = fixture_tags("av.flv");
    let publisher = publish_ffmpeg(&server.url("live/hflv"), &fixture("av.flv"), true);
    server.wait_for_frames("live/hflv", STREAM_TIMEOUT);
    let addr = server.http_addr();
    // HTTP/1.1 gets a chunked body, HTTP/1.0 a close-delimited one.
    let http10 = thread::spawn(move || play_raw(addr, "/live/hflv.flv", "1.0"));
    let http11 = play_raw(addr, "/live/hflv.flv?token=ignored", "1.1");
    wait_success(publisher, STREAM_TIMEOUT, "publisher");

    assert_eq!(http11.header("transfer-encoding"), Some("chunked"));
    check_flv_response(&http11, &published);
    let http10 = http10.join().unwrap();
    assert_eq!(http10.header("transfer-encoding"), None);
    assert_eq!(http10.header("content-length"), None);
    check_flv_response(&http10, &published);
}

#[test]
fn ffmpeg_and_ffprobe_play_http_flv() {
    let server = start_server();
    let published = fixture_tags("av.flv");
    let dir = TempDir::new("http-flv-ffmpeg");
    let publisher = publish_ffmpeg(&server.url("live/ff"), &fixture("av.flv"), true);
    server.wait_for_frames("live/ff", STREAM_TIMEOUT);
    let url = server.http_url("live/ff.flv");
    let out = dir.join("ffmpeg.flv");
    // ffmpeg exits by itself when the response ends with the publisher.
    let player = play_ffmpeg(&url, &out);
    let streams = ffprobe_streams(&url, STREAM_TIMEOUT);
    let kinds: Vec<_> = streams
        .iter()
        .map(|s| s.get("codec_type").map(String::as_str).unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["video", "audio"], "{streams:?}");
    let video = &streams[0];
    assert_eq!(video["codec_name"], "h264");
    assert_eq!((&*video["width"], &*video["height"]), ("320", "240"));
    let audio = &streams[1];
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(
        (&*audio["sample_rate"], &*audio["channels"]),
        ("44100", "2")
    );
    wait_success(publisher, STREAM_TIMEOUT, "publisher");
    wait_success(player, STREAM_TIMEOUT, "ffmpeg playing HTTP-FLV");
    assert_received_matches(&published, &read_flv(&out), false);
}

#[test]
fn unknown_streams_and_bad_requests_get_clear_errors() {
    let server = start_server_with(|c| c.setup_timeout = Duration::from_millis(500));
    let addr = server.http_addr();

    let resp = get(addr, "/live/nobody.flv");
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        "404 Not Found: no stream live/nobody is being published\n"
    );
    let resp = request(addr, "HEAD", "/live/nobody.flv");
    assert_eq!((resp.status, resp.body.len()), (404, 0));
    assert_eq!(get(addr, "/favicon.ico").status, 404);
    assert_eq!(
        get(addr, "/live/a%2Fb.flv").status,
        400,
        "names with a slash"
    );

    let resp = request(addr, "POST", "/api/streams");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert!(
        resp.text().contains("method POST is not allowed"),
        "{}",
        resp.text()
    );

    let resp = request(addr, "OPTIONS", "/live/x.flv");
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert!(resp
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));

    let timeout = Duration::from_secs(5);
    let resp = exchange(addr, b"\x03\x00\x00\x00\x00garbage\r\n\r\n", timeout);
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().contains("malformed request line"),
        "{}",
        resp.text()
    );

    let resp = exchange(addr, b"GET / HTTP/2.0\r\n\r\n", timeout);
    assert_eq!(resp.status, 505);

    let mut huge = b"GET /live/x.flv HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(64 * 1024, b'a');
    let mut stream = TcpStream::connect(addr).unwrap();
    // The server may close before reading all of it; that is the point.
    let _ = stream.write_all(&huge);
    let resp = parse_response(&read_to_close(&mut stream, timeout));
    assert_eq!(resp.status, 431);
    assert!(
        resp.text().contains("longer than 8192 bytes"),
        "{}",
        resp.text()
    );

    // A client that never finishes its request is answered 408 at the deadline.
    let resp = exchange(addr, b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\n", timeout);
    assert_eq!(resp.status, 408);

    // Connecting and leaving costs nothing and breaks nothing.
    drop(TcpStream::connect(addr).unwrap());
    let (status, doc) = get_json(addr, "/api/server");
    assert_eq!(status, 200);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn head_reports_a_live_stream_without_a_body() {
    let server = start_server();
    let publisher = publish_ffmpeg(&server.url("live/head"), &fixture("audio.flv"), true);
    server.wait_for_publisher("live/head", STREAM_TIMEOUT);
    let resp = request(server.http_addr(), "HEAD", "/live/head.flv");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("video/x-flv"));
    assert!(resp.body.is_empty());
    assert_eq!(server.players("live/head"), 0, "HEAD does not subscribe");
    stop(publisher, Duration::from_secs(5));
}

#[test]
fn audio_only_stream_has_an_audio_only_flv_header() {
    let server = start_server();
    let published = fixture_tags("audio.flv");
    let publisher = publish_ffmpeg(&server.url("live/aud"), &fixture("audio.flv"), true);
    server.wait_for_frames("live/aud", STREAM_TIMEOUT);
    let resp = play_raw(server.http_addr(), "/live/aud.flv", "1.1");
    wait_success(publisher, STREAM_TIMEOUT, "publisher");
    let (header, tags) = flv::parse(&resp.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.has_audio && !header.has_video, "{header:?}");
    assert_received_matches(&published, &tags, false);
}

#[test]
fn a_viewer_that_stops_reading_skips_to_keyframes_without_holding_anyone_up() {
    // Every frame written as it comes: with a merge window, a publisher this far
    // beyond real time outruns a queue of 16 between two ticks for every viewer,
    // and the fast one would skip too.
    let server = start_server_with(|c| {
        c.player_queue_frames = 16;
        c.merge_writes = Duration::ZERO;
    });
    let addr = server.http_addr();
    // Enough data, sent as fast as ffmpeg can, to fill any socket buffers: 100 loops
    // of the 4 s fixture (~16 MB).
    let dir = TempDir::new("http-flv-slow");
    let looped = dir.join("looped.flv");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-stream_loop",
            "100",
            "-i",
        ])
        .arg(fixture("av.flv"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&looped)
        .status()
        .expect("running ffmpeg");
    assert!(status.success());
    let publisher = publish_ffmpeg(&server.url("live/slow"), &looped, false);
    server.wait_for_publisher("live/slow", STREAM_TIMEOUT);

    // The stalled viewer asks and then reads nothing until the publisher is done.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .write_all(b"GET /live/slow.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let stalled_addr = stalled.local_addr().unwrap().to_string();
    let fast = thread::spawn(move || play_raw(addr, "/live/slow.flv", "1.1"));
    server.wait_for_players("live/slow", 2, STREAM_TIMEOUT);

    wait_for("the stalled viewer to drop frames", STREAM_TIMEOUT, || {
        let (_, doc) = get_json(addr, "/api/streams/live/slow");
        doc["players"].as_array().unwrap().iter().any(|p| {
            p["address"] == stalled_addr.as_str() && p["dropped_frames"].as_u64() > Some(0)
        })
    });
    let fast = fast.join().unwrap();
    wait_success(publisher, STREAM_TIMEOUT, "publisher");
    // The other viewer got its stream while this one stalled, and so did the
    // publisher, which finished at full speed.
    let (_, fast_tags) = flv::parse(&fast.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fast_tags.len() > 1000,
        "the other viewer got {}",
        fast_tags.len()
    );

    // The stalled one still gets a well-formed stream: whole tags, fewer than were
    // published, and video that resumes only at keyframes after every gap.
    let published = flv::parse(&std::fs::read(&looped).unwrap()).unwrap().1;
    let raw = read_to_close(&mut stalled, STREAM_TIMEOUT);
    let resp = parse_response(&raw);
    assert!(resp.complete);
    let (_, stalled_tags) = flv::parse(&resp.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stalled_tags.len() < published.len(),
        "the stalled viewer skipped nothing ({} of {} tags)",
        stalled_tags.len(),
        published.len()
    );
    let video: Vec<_> = stalled_tags
        .iter()
        .filter(|t| t.tag_type == TAG_VIDEO && !is_sequence_header(t))
        .collect();
    assert!(is_keyframe(video[0]), "video starts at a keyframe");
    let mut gaps = 0;
    for pair in video.windows(2) {
        // 25 fps: consecutive frames are 40 ms apart; more means frames were skipped.
        if i64::from(pair[1].timestamp) - i64::from(pair[0].timestamp) > 40 {
            gaps += 1;
            assert!(
                is_keyframe(pair[1]),
                "after a gap ({} → {} ms) video resumes at a keyframe",
                pair[0].timestamp,
                pair[1].timestamp
            );
        }
    }
    assert!(gaps > 0, "the stalled viewer's video has no gap");
    let metrics = get(addr, "/metrics").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("rtmpd_dropped_frames_total "))
        .expect("dropped frames metric");
    let n: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(n > 0.0, "{line}");
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
}
