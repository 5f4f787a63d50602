//! HTTP-FLV: raw HTTP clients, ffmpeg and ffprobe play `http://HOST/APP/KEY.flv`
//! while a fixture is published over RTMP; what they receive is compared with the
//! fixture tag by tag, byte for byte. Also: the refusals (404, 405, 400, 431, 408,
//! 505), HEAD, CORS preflight, and a viewer too slow to keep up.
//!
//! A viewer can only join a live stream, so the publisher is our client, which
//! pauses part of the way into the fixture until the viewers have joined and then
//! sends the rest: they join at that point however long they take to start.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::media::flv::{self, FlvTag, TAG_SCRIPT, TAG_VIDEO};

use crate::client_support::{new_publisher, send_tags, SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::http_support::{
    exchange, get, get_json, parse_response, read_to_close, request, HttpResponse, LiveFlv,
};
use crate::support::*;

/// A bound on hangs only, generous for a busy machine (a fixture is 3–4 s long).
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the publisher pauses for the viewers to join: in the first GOP.
const JOIN_AT_MS: u32 = 500;

/// A server that holds a publisher of ours while it pauses.
fn server() -> TestServer {
    start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT)
}

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
    let server = server();
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&server, "live/hflv", published.clone());
    publisher.send_until(JOIN_AT_MS);
    let addr = server.http_addr();
    // HTTP/1.1 gets a chunked body, HTTP/1.0 a close-delimited one.
    let http10 = thread::spawn(move || play_raw(addr, "/live/hflv.flv", "1.0"));
    let http11 = thread::spawn(move || play_raw(addr, "/live/hflv.flv?token=ignored", "1.1"));
    server.wait_for_plays(2, STREAM_TIMEOUT);
    publisher.finish();

    let http11 = http11.join().unwrap();
    assert_eq!(http11.header("transfer-encoding"), Some("chunked"));
    check_flv_response(&http11, &published);
    let http10 = http10.join().unwrap();
    assert_eq!(http10.header("transfer-encoding"), None);
    assert_eq!(http10.header("content-length"), None);
    check_flv_response(&http10, &published);
}

#[test]
fn ffmpeg_and_ffprobe_play_http_flv() {
    let server = server();
    let published = fixture_tags("av.flv");
    let dir = TempDir::new("http-flv-ffmpeg");
    let mut publisher = SteppedPublisher::start(&server, "live/ff", published.clone());
    publisher.send_until(JOIN_AT_MS);
    let url = server.http_url("live/ff.flv");
    let out = dir.join("ffmpeg.flv");
    // ffmpeg exits by itself when the response ends with the publisher.
    let player = play_ffmpeg(&url, &out);
    let probe = spawn_ffprobe_streams(&url);
    server.wait_for_plays(2, STREAM_TIMEOUT);
    publisher.finish();
    let streams = ffprobe_report(probe, &url, STREAM_TIMEOUT);
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
    wait_success(player, STREAM_TIMEOUT, "ffmpeg playing HTTP-FLV");
    assert_received_matches(&published, &read_flv(&out), false);
}

#[test]
fn unknown_streams_and_bad_requests_get_clear_errors() {
    // The default request deadline (10 s): the whole requests below arrive at once,
    // however slowly a busy machine runs the server's side.
    let server = start_server();
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

    // Bounds on hangs only.
    let timeout = Duration::from_secs(30);
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

    // A client that never finishes its request is answered 408 at the deadline: a
    // short one, on a server of its own.
    let impatient = start_server_with(|c| c.setup_timeout = Duration::from_millis(500));
    let resp = exchange(
        impatient.http_addr(),
        b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\n",
        timeout,
    );
    assert_eq!(resp.status, 408);

    // Connecting and leaving costs nothing and breaks nothing.
    drop(TcpStream::connect(addr).unwrap());
    let (status, doc) = get_json(addr, "/api/server");
    assert_eq!(status, 200);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn head_reports_a_live_stream_without_a_body() {
    let server = server();
    let mut publisher = SteppedPublisher::start(&server, "live/head", fixture_tags("audio.flv"));
    publisher.send_until(JOIN_AT_MS);
    let resp = request(server.http_addr(), "HEAD", "/live/head.flv");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("video/x-flv"));
    assert!(resp.body.is_empty());
    assert_eq!(server.players("live/head"), 0, "HEAD does not subscribe");
    publisher.finish();
}

#[test]
fn audio_only_stream_has_an_audio_only_flv_header() {
    let server = server();
    let published = fixture_tags("audio.flv");
    let mut publisher = SteppedPublisher::start(&server, "live/aud", published.clone());
    publisher.send_until(JOIN_AT_MS);
    let addr = server.http_addr();
    let viewer = thread::spawn(move || play_raw(addr, "/live/aud.flv", "1.1"));
    server.wait_for_plays(1, STREAM_TIMEOUT);
    publisher.finish();
    let resp = viewer.join().unwrap();
    let (header, tags) = flv::parse(&resp.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.has_audio && !header.has_video, "{header:?}");
    assert_received_matches(&published, &tags, false);
}

/// av.flv with its media looped `loops` times, each loop's timestamps going on from
/// the last's (its metadata and sequence headers once, at the start).
fn looped_av(loops: u32) -> Vec<FlvTag> {
    let tags = fixture_tags("av.flv");
    let head = tags
        .iter()
        .take_while(|t| t.tag_type == TAG_SCRIPT || is_sequence_header(t))
        .count();
    let (head, media) = tags.split_at(head);
    let period = media.iter().map(|t| t.timestamp).max().unwrap() + 40;
    let mut looped = head.to_vec();
    for n in 0..loops {
        looped.extend(media.iter().map(|t| FlvTag {
            timestamp: t.timestamp + n * period,
            ..t.clone()
        }));
    }
    looped
}

/// Frames the HTTP-FLV viewer at `peer` has skipped, from /api/streams.
fn dropped_frames(addr: SocketAddr, path: &str, peer: SocketAddr) -> u64 {
    let (_, doc) = get_json(addr, &format!("/api/streams/{path}"));
    let players = doc["players"].as_array().cloned().unwrap_or_default();
    let player = players
        .iter()
        .find(|p| p["address"] == peer.to_string().as_str())
        .unwrap_or_else(|| panic!("{peer} is not subscribed: {doc}"));
    player["dropped_frames"].as_u64().expect("dropped_frames")
}

/// A viewer that stops reading, next to one that reads everything: the stalled one
/// skips to keyframes (it is not sent what it cannot take in time, and it holds up
/// neither the other viewer nor the publisher), the other gets every tag. Made
/// deterministic: the publisher never runs more than half a queue ahead of the
/// reading viewer, so that one cannot be made to skip however slow the machine; it
/// publishes until the server reports the stalled viewer skipping, waits until
/// that one has read all the server kept for it, then publishes on to the next
/// keyframes, where the stalled viewer must resume.
#[test]
fn a_viewer_that_stops_reading_skips_to_keyframes_without_holding_anyone_up() {
    const QUEUE: usize = 16;
    /// A bound on a server that never skips: ~32 MB, far more than socket buffers hold.
    const MAX_LOOPS: u32 = 200;
    let server = start_server_with(|c| {
        c.player_queue_frames = QUEUE;
        c.publish_timeout = HELD_PUBLISH_TIMEOUT;
        // The stall lasts as long as the test needs, however slow the machine: this
        // is about skipping, not about the stall timeout.
        c.write_stall_timeout = Duration::from_secs(600);
        // Every frame written as it comes: the publisher waits for the fast viewer,
        // which a merge window would hand half a queue per tick, slowly.
        c.merge_writes = Duration::ZERO;
    });
    let addr = server.http_addr();
    let path = "live/slow";
    let published = looped_av(MAX_LOOPS);
    let mut publisher = new_publisher(&server, path);
    // The first GOP, so that both viewers join with the same fast-start burst.
    let head = published.iter().take_while(|t| t.timestamp < 500).count();
    send_tags(&mut publisher, &published[..head]);
    server.wait_for_taken_in(path, &published[..head]);
    let mut sent = head;

    // The stalled viewer asks, and reads nothing until told.
    let mut stalled = LiveFlv::get(addr, &format!("/{path}.flv"));
    let stalled_peer = stalled.local_addr();
    // The other reads everything as it comes.
    let fast_tags = Arc::new(Mutex::new(Vec::<FlvTag>::new()));
    let fast_count = Arc::new(AtomicUsize::new(0));
    let mut fast = LiveFlv::get(addr, &format!("/{path}.flv"));
    let fast_peer = fast.local_addr();
    let fast_reader = {
        let (tags, count) = (fast_tags.clone(), fast_count.clone());
        thread::spawn(move || {
            while let Some(tag) = fast.next_tag(STREAM_TIMEOUT) {
                tags.lock().unwrap().push(tag);
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    server.wait_for_players(path, 2, STREAM_TIMEOUT);

    // Sends the next tag once the fast viewer is within half a queue of it.
    let mut publish_next = |sent: &mut usize| {
        let deadline = Instant::now() + STREAM_TIMEOUT;
        while fast_count.load(Ordering::SeqCst) + QUEUE / 2 < *sent {
            assert!(
                Instant::now() < deadline,
                "the fast viewer is stuck at {} of {} tags (the stalled one holds it back?)",
                fast_count.load(Ordering::SeqCst),
                *sent
            );
            thread::sleep(Duration::from_micros(200));
        }
        assert!(*sent < published.len(), "the stalled viewer never skipped");
        send_tags(&mut publisher, &published[*sent..*sent + 1]);
        *sent += 1;
    };
    while !(sent % 50 == 0 && dropped_frames(addr, path, stalled_peer) > 0) {
        publish_next(&mut sent);
    }

    // The stalled viewer reads again. Once the fast one has every tag published so
    // far, and the stalled one, each tag either received or counted dropped, the
    // stalled one is skipping with nothing queued.
    let stalled_tags = Arc::new(Mutex::new(Vec::<FlvTag>::new()));
    let stalled_reader = {
        let tags = stalled_tags.clone();
        thread::spawn(move || {
            while let Some(tag) = stalled.next_tag(STREAM_TIMEOUT) {
                tags.lock().unwrap().push(tag);
            }
        })
    };
    let caught_up = |sent: usize| {
        let fast_last = fast_tags.lock().unwrap().last().map(|t| t.data.clone());
        fast_last.as_ref() == Some(&published[sent - 1].data)
            && stalled_tags.lock().unwrap().len() as u64 + dropped_frames(addr, path, stalled_peer)
                == fast_count.load(Ordering::SeqCst) as u64
    };
    wait_for(
        "both viewers to take what was kept for them",
        STREAM_TIMEOUT,
        || caught_up(sent),
    );
    // Up to and past the next keyframe: inter frames up to it are skipped, then
    // the stalled viewer resumes there.
    let keyframes_ahead = |sent: usize| {
        published[sent..]
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && is_keyframe(t))
            .count()
    };
    let until = keyframes_ahead(sent).saturating_sub(2);
    while keyframes_ahead(sent) > until {
        publish_next(&mut sent);
    }
    wait_for("both viewers to take the rest", STREAM_TIMEOUT, || {
        caught_up(sent)
    });
    let stalled_dropped = dropped_frames(addr, path, stalled_peer);
    assert_eq!(
        dropped_frames(addr, path, fast_peer),
        0,
        "the fast viewer skipped"
    );
    let metrics = get(addr, "/metrics").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("rtmpd_dropped_frames_total "))
        .expect("dropped frames metric");
    let total: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(total as u64, stalled_dropped, "{line}");
    publisher.close();
    fast_reader.join().expect("the fast viewer's reader");
    stalled_reader.join().expect("the stalled viewer's reader");

    // The fast viewer got every tag from its join on, byte for byte.
    let fast = fast_tags.lock().unwrap().clone();
    let published = &published[..sent];
    assert_received_matches(published, &fast, false);
    assert_eq!(
        fast.last().map(|t| &t.data),
        published.last().map(|t| &t.data),
        "the fast viewer got up to the last tag published"
    );
    // The stalled one: whole tags (LiveFlv checks), each one the fast viewer got
    // too, in order; every tag it did not get counted as dropped; and video that
    // resumes only at keyframes after every gap.
    let stalled = stalled_tags.lock().unwrap().clone();
    assert!(stalled_dropped > 0);
    assert_eq!(
        stalled.len() as u64 + stalled_dropped,
        fast.len() as u64,
        "the stalled viewer got {} tags and the server counted {stalled_dropped} dropped; \
         the fast one got {}",
        stalled.len(),
        fast.len()
    );
    let first_video = stalled
        .iter()
        .find(|t| t.tag_type == TAG_VIDEO && !is_sequence_header(t));
    assert!(
        first_video.is_some_and(is_keyframe),
        "video starts at a keyframe"
    );
    // Where each stalled tag is among the fast viewer's, in order. Payloads are
    // unique within a loop of the fixture, and every gap here is far shorter than a
    // loop, so the first match after the previous one is the tag.
    let mut next = 0;
    let mut gaps = 0;
    let mut after_gap = false;
    for (i, tag) in stalled.iter().enumerate() {
        let at = next
            + fast[next..]
                .iter()
                .position(|t| t.tag_type == tag.tag_type && t.data == tag.data)
                .unwrap_or_else(|| {
                    panic!(
                        "the stalled viewer's tag {i} (type {}, ts {}) is not among the fast \
                         viewer's, in order",
                        tag.tag_type, tag.timestamp
                    )
                });
        if at > next {
            gaps += 1;
            after_gap = true;
        }
        if after_gap && tag.tag_type == TAG_VIDEO {
            assert!(
                is_keyframe(tag),
                "after a gap video resumes at a keyframe; the stalled viewer's tag {i} (ts {}) \
                 is not one",
                tag.timestamp
            );
            after_gap = false;
        }
        next = at + 1;
    }
    assert!(gaps > 0, "the stalled viewer's stream has no gap");
}
