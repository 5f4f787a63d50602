//! One stream, whichever protocol names it: RTMP names and HTTP paths are
//! percent-decoded by the same rule before the name rules apply, so OBS's
//! `my stream`, ffmpeg's `my%20stream` and `http://HOST/live/my%20stream.flv` are
//! the same key (once `%20` was kept literally over RTMP but decoded over HTTP, and
//! such a stream had no working HTTP-FLV URL). Refusals say what is wrong, with
//! the limit and the flag that sets it.

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use rtmpd::client::ClientError;
use rtmpd::media::flv::{self, FlvTag};
use tungstenite::{Message, WebSocket};

use crate::client_support::*;
use crate::http_support::{exchange, get, get_json, websocket};
use crate::support::*;

const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

fn http_flv(addr: SocketAddr, path: &str) -> Vec<FlvTag> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let resp = exchange(addr, req.as_bytes(), STREAM_TIMEOUT);
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    flv::parse(&resp.body)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .1
}

fn ws_flv(mut ws: WebSocket<TcpStream>) -> Vec<FlvTag> {
    let mut bytes = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Binary(data)) => bytes.extend_from_slice(&data),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("reading the WebSocket: {e}"),
        }
    }
    flv::parse(&bytes)
        .unwrap_or_else(|e| panic!("WS-FLV: {e}"))
        .1
}

#[test]
fn a_name_with_a_space_is_one_stream_over_rtmp_http_flv_ws_flv_and_the_api() {
    let server = start_server();
    let http = server.http_addr();
    let tags = fixture_tags("av.flv");
    let dir = TempDir::new("spaced-name");
    let out = dir.join("ffmpeg.flv");

    // Players first, each naming the stream its own way, so each gets it all.
    let ffmpeg = ChildGuard::new(play_ffmpeg(&server.url("live/my%20stream"), &out));
    let mut ours = connect_with(&server, "live/x", &options());
    ours.play("my%20stream").expect("play my%20stream");
    server.wait_for_players("live/my stream", 2, STREAM_TIMEOUT);
    // OBS sends the key field as typed: a space.
    let mut publisher = connect_with(&server, "live/x", &options());
    publisher.publish("my stream").expect("publish 'my stream'");
    let http_player = thread::spawn(move || http_flv(http, "/live/my%20stream.flv"));
    let ws = websocket(http, "/live/my%20stream.flv", STREAM_TIMEOUT).expect("WS-FLV handshake");
    let ws_player = thread::spawn(move || ws_flv(ws));
    server.wait_for_players("live/my stream", 4, STREAM_TIMEOUT);

    // The API lists one stream, under the decoded name, and finds it by its URL.
    let (_, doc) = get_json(http, "/api/streams");
    let streams = doc["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{doc}");
    assert_eq!(
        (
            &streams[0]["app"],
            &streams[0]["key"],
            &streams[0]["player_count"]
        ),
        (&"live".into(), &"my stream".into(), &4.into()),
        "{doc}"
    );
    let (status, one) = get_json(http, "/api/streams/live/my%20stream");
    assert_eq!((status, &one["live"]), (200, &true.into()), "{one}");
    // ... and it is taken, whichever spelling asks.
    let mut second = connect_with(&server, "live/x", &options());
    match second.publish("my%20stream") {
        Err(ClientError::Status(s)) => assert_eq!(
            (s.code.as_str(), s.description.as_str()),
            (
                "NetStream.Publish.BadName",
                "stream live/my stream is already being published"
            )
        ),
        other => panic!("a second publisher on my%20stream: {other:?}"),
    }

    send_tags(&mut publisher, &tags);
    publisher.close();
    let events = events_until(&mut ours, "the end of the stream", |e| {
        is_status(e, "NetStream.Play.UnpublishNotify")
    });
    assert_same_media(
        &av_tags(&tags),
        &media(&events),
        "RTMP my%20stream (our client)",
    );
    wait_success(ffmpeg.take(), STREAM_TIMEOUT, "ffmpeg playing my%20stream");
    assert_received_matches(&tags, &read_flv(&out), true);
    assert_received_matches(&tags, &http_player.join().unwrap(), true);
    assert_received_matches(&tags, &ws_player.join().unwrap(), true);
}

/// What a name decodes to is judged by the usual rules, on both protocols: an
/// escaped slash is still a slash, an escaped NUL a control character.
#[test]
fn escaped_names_are_refused_alike_over_rtmp_and_http() {
    let server = start_server();
    let http = server.http_addr();
    for (name, why) in [
        ("a%2Fb", "stream name contains '/' or '\\'"),
        ("%2e%2e", "stream name is '.' or contains '..'"),
        ("a%00b", "stream name contains a control character"),
        (
            "%ff",
            "stream name is not UTF-8 once its %-escapes are decoded",
        ),
        (
            "100%",
            "stream name has a '%' that does not start an escape like %20 (write a '%' as %25)",
        ),
    ] {
        let mut client = connect_with(&server, "live/x", &options());
        match client.publish(name) {
            Err(ClientError::Status(s)) => assert_eq!(
                (s.code.as_str(), s.description.as_str()),
                ("NetStream.Publish.BadName", why),
                "publish {name:?}"
            ),
            other => panic!("publish {name:?}: {other:?}"),
        }
        let resp = get(http, &format!("/live/{name}.flv"));
        assert_eq!(
            (resp.status, resp.text()),
            (400, format!("400 Bad Request: bad stream name: {why}\n")),
            "GET /live/{name}.flv"
        );
        let (status, doc) = get_json(http, &format!("/api/streams/live/{name}"));
        assert_eq!(status, 400, "{doc}");
    }
}

/// Once "too long", with neither the limit nor the flag, and the name twice in
/// the log; now the length, the limit and the flag.
#[test]
fn a_long_name_is_refused_with_the_limit_and_the_flag() {
    let server = start_server_with(|c| c.max_name_len = 40);
    let long = "n".repeat(41);
    let mut client = connect_with(&server, "live/x", &options());
    match client.publish(&long) {
        Err(ClientError::Status(s)) => assert_eq!(
            s.description,
            "stream name is 41 bytes, longer than --max-name-length 40"
        ),
        other => panic!("publish a 41-byte name: {other:?}"),
    }
    // The limit counts decoded bytes: 40 bytes sent as 120.
    let mut client = connect_with(&server, "live/x", &options());
    client
        .publish(&"%41".repeat(40))
        .expect("40 bytes once decoded");
    assert!(server.is_live(&format!("live/{}", "A".repeat(40))));
    let resp = get(server.http_addr(), &format!("/live/{long}.flv"));
    assert_eq!(
        resp.text(),
        "400 Bad Request: bad stream name: stream name is 41 bytes, longer than \
         --max-name-length 40\n"
    );
}
