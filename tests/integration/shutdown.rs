//! Graceful stop (issue 9 §2). A stop ends every stream the way a publisher's stop
//! ends it: RTMP players get StreamEOF + `NetStream.Play.UnpublishNotify` and a
//! close, waiting players the same, HTTP-FLV its last chunk, WebSocket-FLV a close
//! frame 1000, publishers an error status saying the server is shutting down; the
//! server then returns (in-process) or exits 0 (the real binary on SIGTERM). A
//! connection that cannot end (a player that never reads) is cut at
//! `--shutdown-timeout`, and a second signal exits at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::client::{Client, ClientError, ClientEvent};
use rtmpd::media::flv;
use rtmpd::rtmp::message::{UserControl, AUDIO, VIDEO};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::client_support::*;
use crate::http_support::{get_json, parse_response, read_to_close};
use crate::process::ServerProcess;
use crate::support::*;

/// A bound on hangs only, generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Everything an RTMP client receives until the server closes the connection.
fn events_until_closed(mut client: Client) -> Vec<ClientEvent> {
    client.set_timeout(TIMEOUT).unwrap();
    let mut events = Vec::new();
    loop {
        match client.next_event() {
            Ok(event) => events.push(event),
            Err(e) => {
                assert!(e.is_disconnect(), "the server closed, not {e}");
                return events;
            }
        }
    }
}

/// Status codes and StreamEOFs among `events`, in order, as short strings.
fn endings(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status(s) => Some(format!("{} {}", s.level, s.code)),
            ClientEvent::UserControl(UserControl::StreamEof(id)) => Some(format!("eof {id}")),
            _ => None,
        })
        .collect()
}

/// The last things a player got before the close: StreamEOF on its stream, then
/// UnpublishNotify, as when a publisher stops.
fn assert_ended_like_an_unpublish(events: &[ClientEvent], stream_id: u32, who: &str) {
    let end = endings(events);
    let want = [
        format!("eof {stream_id}"),
        "status NetStream.Play.UnpublishNotify".to_owned(),
    ];
    assert!(end.ends_with(&want), "{who} ended with {end:?}");
}

#[test]
fn a_stop_ends_every_stream_like_a_publisher_stop_and_run_returns() {
    let server = start_server();
    let mut publisher = new_publisher(&server, "live/stop");
    publisher
        .send_media(VIDEO, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3])
        .unwrap();
    publisher
        .send_media(VIDEO, 0, &[0x17, 1, 0, 0, 0, 9])
        .unwrap();
    publisher.send_media(AUDIO, 0, &[0xaf, 1, 7]).unwrap();
    server.wait_for_frames("live/stop", TIMEOUT);

    let mut player = Client::connect(&url(&server, "live/stop"), &options()).unwrap();
    let player_stream = player.play("stop").unwrap();
    let mut waiting = Client::connect(&url(&server, "live/none"), &options()).unwrap();
    let waiting_stream = waiting.play("none").unwrap();
    let mut http = TcpStream::connect(server.http_addr()).unwrap();
    http.write_all(b"GET /live/stop.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let ws_socket = TcpStream::connect(server.http_addr()).unwrap();
    ws_socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let ws_url = format!("ws://{}/live/stop.flv", server.http_addr());
    let (mut ws, _) = tungstenite::client(ws_url.as_str(), ws_socket).expect("WebSocket");
    server.wait_for_players("live/stop", 3, TIMEOUT);
    server.wait_for_players("live/none", 1, TIMEOUT);

    let readers = [player, waiting].map(|c| thread::spawn(move || events_until_closed(c)));
    let http_reader = thread::spawn(move || read_to_close(&mut http, TIMEOUT));
    let ws_reader = thread::spawn(move || loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame,
            Ok(_) => {}
            Err(e) => panic!("no close frame before {e}"),
        }
    });

    assert!(server.handle.shutdown("test"));
    assert!(!server.handle.shutdown("test again"), "a stop begins once");

    let publisher_events = events_until_closed(publisher);
    let [player_events, waiting_events] = readers.map(|r| r.join().unwrap());
    assert_ended_like_an_unpublish(&player_events, player_stream, "the player");
    assert!(
        player_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Media { type_id: VIDEO, .. })),
        "the player had the stream before its end"
    );
    assert_ended_like_an_unpublish(&waiting_events, waiting_stream, "the waiting player");
    let publisher_end = endings(&publisher_events);
    assert_eq!(
        publisher_end.last().map(String::as_str),
        Some("error NetConnection.Connect.Closed"),
        "{publisher_events:?}"
    );
    let response = parse_response(&http_reader.join().unwrap());
    assert_eq!(response.status, 200);
    assert!(
        response.complete,
        "the chunked body ends with its last chunk"
    );
    let (_, tags) = flv::parse(&response.body).expect("whole FLV tags only");
    assert!(!tags.is_empty());
    let close = ws_reader
        .join()
        .unwrap()
        .expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(
        close.reason.as_str(),
        "the server is stopping",
        "not the publisher"
    );

    wait_for("Server::run to return", TIMEOUT, || {
        server.stopped.load(Ordering::SeqCst)
    });
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "the listener is closed"
    );
    assert!(server.registry.streams().is_empty());
}

#[test]
fn a_stop_closes_pending_connections_and_refuses_to_establish_new_ones() {
    let server = start_server();
    // Pending: shaken hands and connected, but neither publishing nor playing.
    let mut pending = Client::connect(&url(&server, "live/p"), &options()).unwrap();
    pending.set_timeout(TIMEOUT).unwrap();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(TIMEOUT)).unwrap();
    wait_for("both to be accepted", TIMEOUT, || {
        server.handle.open_connections() == 2
    });
    assert!(server.handle.shutdown("test"));
    match pending.play("p") {
        Err(ClientError::Status(s)) => assert!(s.description.contains("shutting down")),
        Err(e) => assert!(e.is_disconnect(), "{e}"),
        Ok(_) => panic!("a pending connection started playing during a stop"),
    }
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap_or(0), 0, "closed");
    wait_for("Server::run to return", TIMEOUT, || {
        server.stopped.load(Ordering::SeqCst)
    });
}

/// The real binary with real clients: ffmpeg publishing; rtmpdump, ffmpeg and curl
/// playing; rtmpdump waiting for a stream that never starts. On SIGTERM every
/// player exits 0 with whole FLV tags, the publisher is told why, and the server
/// exits 0.
#[test]
fn on_sigterm_real_players_exit_0_and_the_server_exits_0() {
    let mut server = ServerProcess::start("shutdown-sigterm", true, &[]);
    let dir = TempDir::new("shutdown-sigterm-players");
    let path = "live/shut";
    let url = server.url(path);
    let publisher = publish_forever(&url, true);
    server.wait_for_log("publish", path);
    let rtmpdump_out = dir.join("rtmpdump.flv");
    let ffmpeg_out = dir.join("ffmpeg.flv");
    let curl_out = dir.join("curl.flv");
    let rtmpdump = play_rtmpdump(&url, &rtmpdump_out);
    let ffmpeg = play_ffmpeg(&url, &ffmpeg_out);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-o"])
        .arg(&curl_out)
        .arg(format!("http://{}/{path}.flv", server.http.unwrap()));
    let curl = spawn(cmd);
    let waiting = play_rtmpdump(&server.url("live/never"), &dir.join("never.flv"));
    server.wait_for_log("play", "live/never (waiting for a publisher)");
    for out in [&rtmpdump_out, &ffmpeg_out, &curl_out] {
        wait_for(&format!("{} to grow", out.display()), TIMEOUT, || {
            file_len(out) > 4096
        });
    }

    server.signal("TERM");
    for (player, what) in [
        (rtmpdump, "rtmpdump"),
        (ffmpeg, "ffmpeg player"),
        (curl, "curl"),
        (waiting, "waiting rtmpdump"),
    ] {
        wait_success(player, TIMEOUT, what);
    }
    let (_, stderr) = wait_with_stderr(publisher, TIMEOUT);
    assert!(
        stderr.contains("Server error: The server is shutting down."),
        "the publisher is told why: {stderr}"
    );
    let status = server.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    for out in [&rtmpdump_out, &curl_out] {
        let bytes = std::fs::read(out).unwrap();
        let (_, tags) = flv::parse(&bytes)
            .unwrap_or_else(|e| panic!("{}: whole FLV tags only: {e}", out.display()));
        assert!(tags.iter().any(is_keyframe), "{}", out.display());
    }
    let log = server.log();
    assert_eq!(log.matches("SIGTERM: stopping").count(), 1, "{log}");
    assert!(log.contains("stopped: every connection closed"), "{log}");
    server.assert_no_panic();
}

/// ffmpeg publishing the fixture over and over: in real time, or as fast as the
/// server takes it.
fn publish_forever(url: &str, realtime: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args(["-stream_loop", "-1", "-i"])
        .arg(fixture("av.flv"))
        .args(["-c", "copy", "-f", "flv", url]);
    spawn(cmd)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A server with an HTTP-FLV player that never reads, fed as fast as ffmpeg can
/// publish until its writer is stuck in a write (its queue overflows: dropped
/// frames), so it cannot end by itself within the shutdown timeout. The publisher
/// is stopped then (the stuck write stays stuck), so the test costs the machine a
/// second or two of full-speed publishing. Returns the server and the stuck socket.
fn server_with_a_stuck_player(label: &str, shutdown_timeout: &str) -> (ServerProcess, TcpStream) {
    let server = ServerProcess::start(
        label,
        true,
        &[
            "--shutdown-timeout",
            shutdown_timeout,
            "--play-timeout",
            "120",
            "--player-queue",
            "16",
        ],
    );
    let http = server.http.unwrap();
    let path = "live/stuck";
    let publisher = publish_forever(&server.url(path), false);
    server.wait_for_log("publish", path);
    let mut stuck = TcpStream::connect(http).unwrap();
    stuck
        .write_all(b"GET /live/stuck.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let me = stuck.local_addr().unwrap().to_string();
    wait_for("the stuck player to drop frames", TIMEOUT, || {
        let (_, doc) = get_json(http, &format!("/api/streams/{path}"));
        doc["players"].as_array().is_some_and(|players| {
            players
                .iter()
                .any(|p| p["address"] == me.as_str() && p["dropped_frames"].as_u64() > Some(0))
        })
    });
    stop(publisher, TIMEOUT);
    (server, stuck)
}

#[test]
fn connections_still_open_at_the_shutdown_timeout_are_cut_and_logged() {
    let (mut server, stuck) = server_with_a_stuck_player("shutdown-cut", "1");
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(TIMEOUT);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the shutdown timeout: the stuck player cannot have ended"
    );
    let log = server.log();
    let me = stuck.local_addr().unwrap().to_string();
    let cut = log
        .lines()
        .find(|l| l.contains("--shutdown-timeout) cut:"))
        .unwrap_or_else(|| panic!("no cut line in\n{log}"));
    assert!(cut.contains(&me), "the stuck player {me} is named: {cut}");
    server.assert_no_panic();
}

#[test]
fn a_second_sigterm_exits_at_once_with_status_143() {
    let (mut server, _stuck) = server_with_a_stuck_player("shutdown-twice", "600");
    server.signal("TERM");
    wait_for("the stop to begin", TIMEOUT, || {
        server.log().contains("SIGTERM: stopping")
    });
    server.signal("TERM");
    // Far less than the 600 s the graceful stop would wait for the stuck player.
    let status = server.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(128 + 15), "{}", server.log());
    assert!(server.log().contains("SIGTERM again: exiting now"));
}
