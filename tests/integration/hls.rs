//! HLS from memory: what ffprobe reads segment by segment is every published
//! frame, byte for byte and in order, with its timestamp; parts put together are
//! their segment; a blocking playlist reload is answered once the part it asks
//! for exists and not before; sessions are admitted once (one `on_play`), listed
//! in the API and metrics, carry a signed URL's authority to the segment URLs,
//! and end (`on_play_done`) after 30 s without a request; the HTTPS listener
//! serves the same bytes as the HTTP one; a stop answers a waiting reload with
//! the ended playlist.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use rtmpd::admission::token;
use rtmpd::config::policy::Secret;
use rtmpd::config::Verb;
use rtmpd::media::flv::{FlvTag, TAG_AUDIO, TAG_VIDEO};
use sha2::{Digest, Sha256};

use crate::client_support::*;
use crate::http_support::*;
use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `GET path` expecting 200; the body.
fn fetch(addr: SocketAddr, path: &str) -> Vec<u8> {
    let resp = get(addr, path);
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    resp.body
}

fn fetch_text(addr: SocketAddr, path: &str) -> String {
    String::from_utf8(fetch(addr, path)).expect("a playlist is text")
}

/// The URIs of a playlist's segments, in order (`seg-N.m4s`).
fn segment_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.starts_with("seg-"))
        .map(str::to_owned)
        .collect()
}

/// The part URIs listed for segment `msn`.
fn part_uris(playlist: &str, msn: u64) -> Vec<String> {
    let prefix = "#EXT-X-PART:DURATION=";
    playlist
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .filter(|uri| uri.starts_with(&format!("part-{msn}.")))
        .map(str::to_owned)
        .collect()
}

/// The preload hint's (msn, part).
fn preload_hint(playlist: &str) -> (u64, usize) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let uri = line
        .split("part-")
        .nth(1)
        .unwrap()
        .trim_end_matches(".m4s\"");
    let (msn, part) = uri.split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// Starts a session on `path`: the multivariant playlist, the session's base
/// (`/{path}/s-{token}/`) and its first media playlist.
fn start_session(addr: SocketAddr, path: &str) -> (String, String, String) {
    let multivariant = fetch_text(addr, &format!("/{path}/index.m3u8"));
    let session = multivariant
        .lines()
        .last()
        .unwrap()
        .trim_end_matches("media.m3u8");
    let base = format!("/{path}/{session}");
    let media = fetch_text(addr, &format!("{base}media.m3u8"));
    (multivariant, base, media)
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A frame as MP4 carries it: track, presentation time in ms, SHA-256 of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    track: &'static str,
    pts_ms: i64,
    key: bool,
    hash: String,
}

/// The media frames of an FLV fixture as HLS must carry them: from the first
/// video keyframe on (audio too), sequence headers and end-of-sequence left out,
/// timestamps counted from that keyframe.
pub fn expected_samples(tags: &[FlvTag]) -> Vec<Sample> {
    let start = tags
        .iter()
        .find(|t| is_keyframe(t))
        .expect("a keyframe")
        .timestamp;
    tags.iter()
        .filter(|t| !is_sequence_header(t) && !is_end_of_sequence(t))
        .filter(|t| t.timestamp >= start)
        .filter_map(|t| match t.tag_type {
            TAG_VIDEO => {
                let cts = i32::from_be_bytes([0, t.data[2], t.data[3], t.data[4]]) << 8 >> 8;
                Some(Sample {
                    track: "video",
                    pts_ms: i64::from(t.timestamp - start) + i64::from(cts),
                    key: is_keyframe(t),
                    hash: sha256(&t.data[5..]),
                })
            }
            TAG_AUDIO => Some(Sample {
                track: "audio",
                pts_ms: i64::from(t.timestamp - start),
                key: true,
                hash: sha256(&t.data[2..]),
            }),
            _ => None,
        })
        .collect()
}

/// What ffprobe reads from `init` + `segment`.
fn probe_segment(dir: &TempDir, name: &str, init: &[u8], segment: &[u8]) -> Vec<Sample> {
    let path = dir.join(name);
    fs::write(&path, [init, segment].concat()).unwrap();
    let packets = ffprobe_packet_hashes(path.to_str().unwrap(), TIMEOUT);
    packets
        .iter()
        .map(|p: &BTreeMap<String, String>| {
            let field = |k: &str| p.get(k).cloned().unwrap_or_default();
            let seconds: f64 = field("pts_time").parse().expect("a pts");
            Sample {
                track: if field("codec_type") == "video" {
                    "video"
                } else {
                    "audio"
                },
                pts_ms: (seconds * 1000.0).round() as i64,
                key: field("flags").starts_with('K'),
                hash: field("data_hash")
                    .strip_prefix("SHA256:")
                    .unwrap_or_default()
                    .to_owned(),
            }
        })
        .collect()
}

fn by_track(samples: &[Sample], track: &str) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.track == track)
        .cloned()
        .collect()
}

#[test]
fn every_published_frame_is_in_the_segments_byte_for_byte_in_order() {
    let server = start_server();
    let path = "live/hls-frames";
    let tags = fixture_tags("av.flv");
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &tags);
    publisher.close();
    let got = ended_stream_samples(server.http_addr(), path, "hls-frames");
    assert_samples_match(&expected_samples(&tags), &got);
}

/// Waits for the HLS of `path` to end, then reads every segment in its playlist
/// with ffprobe (checking that each starts with a keyframe and that the parts
/// still listed put together are their segment): every sample, in order.
pub fn ended_stream_samples(addr: SocketAddr, path: &str, label: &str) -> Vec<Sample> {
    let media = format!("/{path}/media.m3u8");
    wait_for("the playlist to end", TIMEOUT, || {
        let resp = get(addr, &media);
        resp.status == 200 && resp.text().contains("#EXT-X-ENDLIST")
    });
    let playlist = fetch_text(addr, &media);
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init-0.mp4\""),
        "{playlist}"
    );
    let init = fetch(addr, &format!("/{path}/init-0.mp4"));
    let dir = TempDir::new(label);
    let mut got = Vec::new();
    let segments = segment_uris(&playlist);
    assert!(segments.len() >= 2, "4 s in 2 s segments: {playlist}");
    for (i, uri) in segments.iter().enumerate() {
        let bytes = fetch(addr, &format!("/{path}/{uri}"));
        let samples = probe_segment(&dir, &format!("{i}.mp4"), &init, &bytes);
        let first_video = samples.iter().find(|s| s.track == "video");
        assert!(
            first_video.is_some_and(|s| s.key),
            "{uri} starts with a keyframe: {samples:?}"
        );
        got.extend(samples);
        let msn: u64 = uri[4..uri.len() - 4].parse().unwrap();
        let parts = part_uris(&playlist, msn);
        if !parts.is_empty() {
            let joined: Vec<u8> = parts
                .iter()
                .flat_map(|p| fetch(addr, &format!("/{path}/{p}")))
                .collect();
            assert!(joined == bytes, "the parts of {uri} are the segment");
        }
    }
    got
}

/// `got` is `want`, track by track, sample by sample.
pub fn assert_samples_match(want: &[Sample], got: &[Sample]) {
    for track in ["video", "audio"] {
        let (want, got) = (by_track(want, track), by_track(got, track));
        assert_eq!(
            want.len(),
            got.len(),
            "{track} frames; first {:?} / {:?}, last {:?} / {:?}",
            want.first(),
            got.first(),
            want.last(),
            got.last()
        );
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w, g, "{track} frame {i} of {}", want.len());
        }
    }
}

/// An HTTP/1.1 GET on its own connection whose answer the test waits for later.
fn get_later(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream
}

/// Whether any byte of an answer has arrived within `wait`.
fn answered_within(stream: &TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Ok(n) if n > 0)
}

#[test]
fn a_blocking_reload_is_answered_when_its_part_exists_and_not_before() {
    let server = start_server();
    let path = "live/hls-block";
    let tags = fixture_tags("video.flv");
    let mut publisher = new_publisher(&server, path);
    // The first second: two parts and the start of a third.
    let first_second: Vec<FlvTag> = tags
        .iter()
        .take_while(|t| t.timestamp < 1000)
        .cloned()
        .collect();
    send_tags(&mut publisher, &first_second);
    let addr = server.http_addr();
    let media = format!("/{path}/media.m3u8");
    // (A plain request would wait for a whole segment: clients that ignore
    // parts need one.)
    let playlist = fetch_text(addr, &format!("{media}?_HLS_msn=0&_HLS_part=0"));
    let (msn, part) = preload_hint(&playlist);
    let uri = format!("part-{msn}.{part}.m4s");
    let listed = |text: &str| {
        text.lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"{uri}\"")))
    };
    assert!(!listed(&playlist), "{playlist}");

    // Asked for before it exists: held while nothing is published ...
    let mut held = get_later(addr, &format!("{media}?_HLS_msn={msn}&_HLS_part={part}"));
    let mut preload = get_later(addr, &format!("/{path}/{uri}"));
    assert!(
        !answered_within(&held, Duration::from_millis(300)),
        "answered before the part existed"
    );
    assert!(
        !answered_within(&preload, Duration::from_millis(10)),
        "the part was served before it existed"
    );
    // ... and answered once the frames that complete the part arrive.
    let rest: Vec<FlvTag> = tags[first_second.len()..]
        .iter()
        .take(20)
        .cloned()
        .collect();
    send_tags(&mut publisher, &rest);
    let answer = parse_response(&read_to_close(&mut held, TIMEOUT));
    assert_eq!(answer.status, 200);
    let text = answer.text();
    assert!(listed(&text), "the answer lists the part:\n{text}");
    let part_bytes = parse_response(&read_to_close(&mut preload, TIMEOUT));
    assert_eq!(part_bytes.status, 200);
    assert_eq!(&part_bytes.body[4..8], b"moof");

    // Far beyond the live edge: refused at once.
    let resp = get(addr, &format!("{media}?_HLS_msn={}", msn + 5));
    assert_eq!(resp.status, 400, "{}", resp.text());
    publisher.close();
    // Once the stream ends, a reload waiting for what will never come is answered.
    let resp = get(addr, &format!("{media}?_HLS_msn={}&_HLS_part=0", msn + 1));
    assert!(
        resp.status == 200 && resp.text().contains("#EXT-X-ENDLIST"),
        "{} {}",
        resp.status,
        resp.text()
    );
}

#[test]
fn sessions_are_admitted_once_listed_and_carry_a_signed_urls_authority() {
    let server = crate::access::start_with_rules("play_secret = \"s3cret\"\n");
    let path = "live/hls-auth";
    let tags = fixture_tags("av.flv");
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &tags);
    let addr = server.http_addr();
    let index = format!("/{path}/index.m3u8");
    assert_eq!(get(addr, &index).status, 403, "no token");
    let signed = token::sign_url(
        &format!("http://x{index}"),
        &Secret::new("s3cret").unwrap(),
        Verb::Play,
        token::unix_now() + 3600,
    )
    .unwrap();
    let signed = &signed[signed.find(&index).unwrap()..];
    let multivariant = fetch_text(addr, signed);
    assert!(
        multivariant.contains("CODECS=\"avc1.42c00d,mp4a.40.2\""),
        "{multivariant}"
    );
    assert!(
        multivariant.contains("RESOLUTION=320x240"),
        "{multivariant}"
    );
    let media_uri = multivariant.lines().last().unwrap();
    assert!(media_uri.starts_with("s-"), "{media_uri}");
    // The session's token carries the authority to the media playlist and segments.
    let media = fetch_text(addr, &format!("/{path}/{media_uri}"));
    let session = media_uri.trim_end_matches("media.m3u8");
    let init = fetch(addr, &format!("/{path}/{session}init-0.mp4"));
    assert_eq!(&init[4..8], b"ftyp");
    assert!(media.contains("#EXT-X-PART:"), "{media}");
    // Without the token a client is matched by address and User-Agent: the
    // same client is the same session, another one needs its own admission.
    assert_eq!(get(addr, &format!("/{path}/media.m3u8")).status, 200);
    let other = format!(
        "GET /{path}/media.m3u8 HTTP/1.1\r\nHost: x\r\nUser-Agent: other\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        exchange(addr, other.as_bytes(), TIMEOUT).status,
        403,
        "another client"
    );

    // One session, listed as an hls player; the metrics count it.
    let (_, doc) = get_json(addr, &format!("/api/streams/{path}"));
    let players = doc["players"].as_array().unwrap();
    let hls: Vec<_> = players.iter().filter(|p| p["protocol"] == "hls").collect();
    assert_eq!(hls.len(), 1, "{doc}");
    assert!(hls[0]["bytes_out"].as_u64().unwrap() > init.len() as u64);
    let metrics = get(addr, "/metrics").text();
    assert!(
        metrics.contains("rtmpd_players{protocol=\"hls\"} 1"),
        "{metrics}"
    );
    publisher.close();
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = start_server();
    let path = "live/hls-keepalive";
    let tags = fixture_tags("av.flv");
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &tags);
    let addr = server.http_addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    for file in ["index.m3u8", "media.m3u8", "init-0.mp4", "part-0.0.m4s"] {
        let req = format!("GET /{path}/{file} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        let resp = read_length_delimited(&mut stream, TIMEOUT);
        assert_eq!(resp.status, 200, "{file}: {}", resp.text());
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{file}");
        assert!(!resp.body.is_empty(), "{file}");
    }
    publisher.close();
}

#[test]
fn the_page_is_served_at_the_root() {
    let server = start_server();
    let resp = get(server.http_addr(), "/");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(resp.text().contains("<title>rtmpd"));
    // With the API on a listener of its own, the page goes with it.
    let server =
        start_server_with(|c| c.api_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()]);
    assert_eq!(get(server.http_addr(), "/").status, 404);
    assert_eq!(get(server.api.unwrap(), "/").status, 200);
    thread::yield_now();
}

/// `on_play` is asked once per HLS session, at its first request, however many
/// playlist, init, part and segment requests follow; `on_play_done` goes out
/// when the session has made no request for 30 s (the stream still live), with
/// the bytes the session was sent.
#[test]
fn on_play_once_per_session_and_on_play_done_after_30_s_without_a_request() {
    use crate::access::HookServer;
    let hooks = HookServer::start();
    let server = crate::access::start_with_rules(&format!(
        "on_play = \"{}\"\non_play_done = \"{}\"\n",
        hooks.url("allow/play"),
        hooks.url("allow/play_done"),
    ));
    let path = "live/hls-hooks";
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &fixture_tags("av.flv"));
    let addr = server.http_addr();

    let (multivariant, base, media) = start_session(addr, path);
    let mut bodies = multivariant.len() + media.len();
    let first_segment = &segment_uris(&media)[0];
    let mut files = vec!["init-0.mp4".to_owned(), first_segment.clone()];
    files.extend(part_uris(&media, 0));
    for file in &files {
        bodies += fetch(addr, &format!("{base}{file}")).len();
    }
    // A blocking reload (for a part that exists: the publisher has sent all it
    // will), and a request without the token (matched by address and
    // User-Agent): the same session.
    let reload = format!("{base}media.m3u8?_HLS_msn=0&_HLS_part=0");
    bodies += fetch(addr, &reload).len();
    bodies += fetch(addr, &format!("/{path}/media.m3u8")).len();
    let last_request = std::time::Instant::now();
    let calls = |name: &str| {
        hooks
            .calls()
            .into_iter()
            .filter(|c| c.fields.iter().any(|(n, v)| n == "call" && v == name))
            .collect::<Vec<_>>()
    };
    let plays = calls("play");
    assert_eq!(
        plays.len(),
        1,
        "one on_play for {} requests: {plays:?}",
        files.len() + 4
    );
    assert_eq!(plays[0].field("name"), "hls-hooks");
    assert!(calls("play_done").is_empty(), "the session is live");

    let mut done = Vec::new();
    wait_for("on_play_done", Duration::from_secs(60), || {
        done = calls("play_done");
        !done.is_empty()
    });
    let idle = last_request.elapsed();
    // The server saw the last request before the test had its answer.
    assert!(
        idle >= Duration::from_secs(29),
        "on_play_done {idle:?} after the last request"
    );
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(server.is_live(path), "the stream is still live");
    let bytes_out: usize = done[0].field("bytes_out").parse().unwrap();
    // The bodies and a header (under 512 bytes) for each answer.
    let answers = files.len() + 4;
    assert!(
        (bodies..bodies + 512 * answers).contains(&bytes_out),
        "bytes_out {bytes_out} for {bodies} bytes of bodies in {answers} answers"
    );
    assert_eq!(calls("play").len(), 1, "{:?}", hooks.calls());
    publisher.close();
}

/// HLS over the HTTPS listener: curl, verifying the chain by name, reads the
/// playlists (the same tokens and relative URIs as over HTTP) and gets the same
/// segment bytes as a plain HTTP client; ffprobe finds the published tracks.
#[test]
fn hls_over_https_serves_what_http_serves() {
    use crate::tls_support::{with_rtmps, TestCa};
    use rtmpd::server::Service;
    let dir = TempDir::new("hls-https");
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let server = start_server_with(|c| {
        with_rtmps(c, dir.path(), &leaf);
        c.https = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    });
    let https = server.listener(Service::Https);
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file);
    let path = "live/hls-tls";
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &fixture_tags("av.flv"));
    publisher.close();
    let addr = server.http_addr();
    wait_for("the playlist to end", TIMEOUT, || {
        get(addr, &format!("/{path}/media.m3u8"))
            .text()
            .contains("#EXT-X-ENDLIST")
    });

    let curl = |file: &str| -> Vec<u8> {
        let url = format!("https://localhost:{}/{path}/{file}", https.port());
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "60", "--cacert"])
            .arg(&ca_file)
            .arg(&url)
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let multivariant = String::from_utf8(curl("index.m3u8")).unwrap();
    assert!(
        multivariant.contains("CODECS=\"avc1.42c00d,mp4a.40.2\""),
        "{multivariant}"
    );
    let media_uri = multivariant.lines().last().unwrap();
    let media = String::from_utf8(curl(media_uri)).unwrap();
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    let segments = segment_uris(&media);
    assert!(segments.len() >= 2, "{media}");
    let session = media_uri.trim_end_matches("media.m3u8");
    for file in ["init-0.mp4", segments[0].as_str(), segments[1].as_str()] {
        let over_tls = curl(&format!("{session}{file}"));
        assert!(
            over_tls == fetch(addr, &format!("/{path}/{file}")),
            "{file}: HTTPS and HTTP differ"
        );
    }

    let url = format!("https://127.0.0.1:{}/{path}/index.m3u8", https.port());
    let streams = ffprobe_streams(&url, TIMEOUT);
    let mut tracks: Vec<String> = streams
        .iter()
        .map(|s| format!("{}:{}", s["codec_type"], s["codec_name"]))
        .collect();
    tracks.sort();
    assert_eq!(tracks, ["audio:aac", "video:h264"], "{streams:?}");
}

/// A stop answers a viewer's waiting blocking reload at once with the ended
/// playlist (`EXT-X-ENDLIST`): not after the hold of three target durations,
/// which would answer 503, and not by cutting the connection.
#[test]
fn a_stop_answers_a_waiting_reload_with_the_ended_playlist() {
    let server = start_server();
    let path = "live/hls-stop";
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &fixture_tags("av.flv"));
    let addr = server.http_addr();
    let (_, base, media) = start_session(addr, path);
    // The segment after the hinted part's never comes: av.flv's keyframes are
    // 1 s apart and it ends before the one that would start it (the hint is
    // in segment 1 at the latest, as seg-0 is complete; the server may still
    // be taking in the last frames, so the hinted part itself may yet appear).
    let (msn, _) = preload_hint(&media);
    let next = msn + 1;
    let mut waiting = get_later(
        addr,
        &format!("{base}media.m3u8?_HLS_msn={next}&_HLS_part=0"),
    );
    // The server has read the reload when no HTTP connection is between
    // requests and two are open (the reload's and this API request's).
    wait_for("the reload to wait in the server", TIMEOUT, || {
        let (_, doc) = get_json(addr, "/api/server");
        let http = &doc["connections"]["http"];
        http["pending"] == 0 && http["open"].as_u64() >= Some(2)
    });
    assert!(server.handle.shutdown("test"));
    let answer = parse_response(&read_to_close(&mut waiting, TIMEOUT));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("#EXT-X-ENDLIST"),
        "{}",
        answer.text()
    );
    drop(publisher);
}
