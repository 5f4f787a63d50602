//! Players that are waiting before the publisher starts: they must get the whole
//! stream, byte for byte, and end by themselves when the publisher leaves.

use std::time::Duration;

use crate::support::*;

/// Bounds on hangs only: a 4 s fixture published as fast as possible takes well
/// under a second, but the tests share two cores with each other and, on a busy
/// machine, with much else (ffmpeg alone may then take seconds to start).
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);

/// Starts a player on `path`, waits until the server has subscribed it, publishes
/// `fixture_name` (not realtime) and waits for both to finish by themselves.
fn play_from_before_publish(
    server: &TestServer,
    path: &str,
    fixture_name: &str,
    player: impl FnOnce(&str) -> std::process::Child,
    what: &str,
) {
    let player = player(&server.url(path));
    server.wait_for_players(path, 1, SUBSCRIBE);
    assert!(!server.is_live(path), "nobody publishes {path} yet");
    let publisher = publish_ffmpeg(&server.url(path), &fixture(fixture_name), false);
    wait_success(publisher, FINISH, "publisher");
    // The player was not stopped: it must notice the unpublish and exit 0 itself.
    wait_success(player, FINISH, what);
    wait_for("the player to unsubscribe", SUBSCRIBE, || {
        server.stream_info(path).is_none()
    });
}

#[test]
fn rtmpdump_waiting_before_publisher_gets_everything() {
    let server = start_server();
    let dir = TempDir::new("before-rtmpdump");
    let out = dir.join("rtmpdump.flv");
    play_from_before_publish(
        &server,
        "live/before",
        "av.flv",
        |url| play_rtmpdump(url, &out),
        "rtmpdump",
    );
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

#[test]
fn ffmpeg_waiting_before_publisher_gets_everything() {
    let server = start_server();
    let dir = TempDir::new("before-ffmpeg");
    let out = dir.join("ffmpeg.flv");
    play_from_before_publish(
        &server,
        "live/before",
        "av.flv",
        |url| play_ffmpeg(url, &out),
        "ffmpeg player",
    );
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

#[test]
fn audio_only_player_waiting_before_publisher_gets_everything() {
    let server = start_server();
    let dir = TempDir::new("before-audio");
    let out = dir.join("rtmpdump.flv");
    play_from_before_publish(
        &server,
        "live/radio",
        "audio.flv",
        |url| play_rtmpdump(url, &out),
        "rtmpdump",
    );
    let published = fixture_tags("audio.flv");
    let received = read_flv(&out);
    assert!(
        media_tracks(&published).1.is_empty(),
        "audio.flv is audio-only"
    );
    // The comparison also checks that no video track appeared.
    assert_received_matches(&published, &received, true);
}
