//! WebSocket-FLV: tungstenite's client, on a plain std `TcpStream`, plays
//! `ws://HOST/APP/KEY.flv` while a fixture is published; the binary messages put
//! together must be the published FLV tags, byte for byte, and the server must answer
//! pings and close properly when the publisher stops. The publisher is our client,
//! which pauses part of the way into the fixture until the player has joined (only a
//! live stream can be joined), however long that takes on a busy machine.

use std::net::TcpStream;
use std::time::Duration;

use rtmpd::media::flv;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use crate::client_support::{SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::http_support::websocket;
use crate::support::*;

/// A bound on hangs only, generous for a busy machine.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the publisher pauses for the player to join: in the first GOP.
const JOIN_AT_MS: u32 = 500;

fn connect(server: &TestServer, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    websocket(server.http_addr(), path, STREAM_TIMEOUT)
}

/// What a WebSocket-FLV player has received so far.
#[derive(Default)]
struct Received {
    flv: Vec<u8>,
    pongs: usize,
    close: Option<CloseFrame>,
}

impl Received {
    /// Reads one message; false once the connection is closed.
    fn read(&mut self, ws: &mut WebSocket<TcpStream>) -> bool {
        match ws.read() {
            Ok(Message::Binary(data)) => self.flv.extend_from_slice(&data),
            Ok(Message::Pong(data)) => {
                assert_eq!(&data[..], b"are you there");
                self.pongs += 1;
            }
            Ok(Message::Close(frame)) => self.close = frame,
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => return false,
            Err(e) => panic!("reading the WebSocket: {e}"),
        }
        true
    }
}

#[test]
fn websocket_flv_delivers_the_published_tags_byte_for_byte() {
    let server = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&server, "live/ws", published.clone());
    publisher.send_until(JOIN_AT_MS);
    let mut ws = connect(&server, "live/ws.flv").expect("WebSocket handshake");
    ws.send(Message::Ping("are you there".into())).unwrap();

    // The ping is answered while the stream is live (the publisher paused): not
    // only once it ends.
    let mut got = Received::default();
    while got.pongs == 0 {
        assert!(got.read(&mut ws), "the connection closed before the pong");
    }
    publisher.finish();
    while got.read(&mut ws) {}
    let Received {
        flv: flv_bytes,
        pongs,
        close,
    } = got;
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
    let server = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let mut publisher = SteppedPublisher::start(&server, "live/wsclose", fixture_tags("av.flv"));
    publisher.send_until(JOIN_AT_MS);
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
    publisher.finish();
}
