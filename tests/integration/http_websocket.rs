//! WebSocket-FLV: tungstenite's client, on a plain std `TcpStream`, plays
//! `ws://HOST/APP/KEY.flv` while ffmpeg publishes; the binary messages put together
//! must be the published FLV tags, byte for byte, and the server must answer pings
//! and close properly when the publisher stops.

use std::net::TcpStream;
use std::time::Duration;

use rtmpd::media::flv;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::http_support::websocket;
use crate::support::*;

const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

fn connect(server: &TestServer, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    websocket(server.http_addr(), path, STREAM_TIMEOUT)
}

#[test]
fn websocket_flv_delivers_the_published_tags_byte_for_byte() {
    let server = start_server();
    let published = fixture_tags("av.flv");
    let publisher = publish_ffmpeg(&server.url("live/ws"), &fixture("av.flv"), true);
    server.wait_for_frames("live/ws", STREAM_TIMEOUT);
    let mut ws = connect(&server, "live/ws.flv").expect("WebSocket handshake");
    ws.send(Message::Ping("are you there".into())).unwrap();

    let mut flv_bytes = Vec::new();
    let mut pongs = 0;
    let mut close = None;
    loop {
        match ws.read() {
            Ok(Message::Binary(data)) => flv_bytes.extend_from_slice(&data),
            Ok(Message::Pong(data)) => {
                assert_eq!(&data[..], b"are you there");
                pongs += 1;
            }
            Ok(Message::Close(frame)) => close = frame,
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("reading the WebSocket: {e}"),
        }
    }
    wait_success(publisher, STREAM_TIMEOUT, "publisher");
    assert_eq!(pongs, 1, "the ping is answered");
    let close = close.expect("a close frame when the publisher stops");
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason.as_str(), "the publisher stopped");
    let (header, tags) = flv::parse(&flv_bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.has_audio && header.has_video);
    assert_received_matches(&published, &tags, false);
}

#[test]
fn websocket_to_a_stream_nobody_publishes_is_refused() {
    let server = start_server();
    match connect(&server, "live/none.flv") {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
            let body = response.body().as_deref().unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(body),
                "404 Not Found: no stream live/none is being published\n"
            );
        }
        Err(e) => panic!("expected a 404, got {e}"),
        Ok(_) => panic!("expected a 404, got a WebSocket"),
    }
}

#[test]
fn client_closing_the_websocket_ends_the_player() {
    let server = start_server();
    let publisher = publish_ffmpeg(&server.url("live/wsclose"), &fixture("av.flv"), true);
    server.wait_for_frames("live/wsclose", STREAM_TIMEOUT);
    let mut ws = connect(&server, "live/wsclose.flv").expect("WebSocket handshake");
    server.wait_for_players("live/wsclose", 1, STREAM_TIMEOUT);
    // Read the first message, then say goodbye; the server must reply and go.
    assert!(matches!(ws.read(), Ok(Message::Binary(_))));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing the WebSocket: {e}"),
        }
    }
    wait_for("the player to leave", STREAM_TIMEOUT, || {
        server.players("live/wsclose") == 0
    });
    stop(publisher, Duration::from_secs(5));
}
