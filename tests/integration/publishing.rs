//! Who may publish: one publisher per key at a time, the key free again once it
//! leaves, and names the server refuses.

use std::process::Command;
use std::time::Duration;

use crate::client_support::{SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::support::*;

/// Bounds on hangs only, generous for a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);
/// A refused publisher is told at once and ffmpeg then exits; on a busy machine
/// ffmpeg alone may take seconds to get going. A server that never answers keeps
/// ffmpeg waiting for good, which this still catches; that the refusal is an
/// answer, not a timeout, `refused_clients_are_told_why` checks.
const REFUSAL: Duration = Duration::from_secs(60);

#[test]
fn second_publisher_on_a_live_key_is_refused() {
    let server = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let dir = TempDir::new("dup-publish");
    let path = "live/dup";
    let out = dir.join("rtmpdump.flv");
    let player = play_rtmpdump(&server.url(path), &out);
    server.wait_for_players(path, 1, SUBSCRIBE);

    // The first publisher holds the key, halfway through its stream, until the
    // second has been turned away: however long ffmpeg takes to start.
    let mut first = SteppedPublisher::start(&server, path, fixture_tags("av.flv"));
    first.send_until(2000);
    server.wait_for_frames(path, SUBSCRIBE);
    let owner = server.stream_info(path).and_then(|i| i.publisher);
    assert!(owner.is_some());

    let second = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
    let (status, stderr) = wait_with_stderr(second, REFUSAL);
    assert!(
        !status.success(),
        "the second publisher must fail, it exited with {status}; stderr:\n{stderr}"
    );
    assert_eq!(
        server.stream_info(path).and_then(|i| i.publisher),
        owner,
        "the key still belongs to the first publisher"
    );

    first.finish();
    wait_success(player, FINISH, "rtmpdump");
    // Nothing of the refused publisher's stream got through.
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

#[test]
fn key_can_be_published_again_after_the_publisher_left() {
    let server = start_server();
    let dir = TempDir::new("republish");
    let path = "live/again";
    let published = fixture_tags("av.flv");

    for round in ["first", "second"] {
        let out = dir.join(&format!("{round}.flv"));
        let player = play_rtmpdump(&server.url(path), &out);
        server.wait_for_players(path, 1, SUBSCRIBE);
        assert!(!server.is_live(path), "{round}: the key is free");
        let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
        wait_success(publisher, FINISH, &format!("{round} publisher"));
        wait_success(player, FINISH, &format!("{round} player"));
        wait_for("the key to be released", SUBSCRIBE, || {
            server.stream_info(path).is_none()
        });
        let received = read_flv(&out);
        assert_received_matches(&published, &received, true);
    }
}

#[test]
fn refused_names_fail_the_publisher_and_others_keep_working() {
    let server = start_server();
    let dir = TempDir::new("bad-names");
    let good = "live/good";
    let out = dir.join("rtmpdump.flv");
    let player = play_rtmpdump(&server.url(good), &out);
    server.wait_for_players(good, 1, SUBSCRIBE);

    // ffmpeg sends these as they are: app "live" with stream ".." or "" (both with
    // and without the trailing slash), and app ".." with stream "x".
    for bad in ["live/..", "live/", "live", "../x", "live/a..b"] {
        let publisher = publish_ffmpeg(&server.url(bad), &fixture("av.flv"), false);
        let (status, stderr) = wait_with_stderr(publisher, REFUSAL);
        assert!(
            !status.success(),
            "publishing to {bad:?} must fail, ffmpeg exited with {status}; stderr:\n{stderr}"
        );
    }
    let keys: Vec<String> = server
        .registry
        .streams()
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(
        keys,
        ["live/good"],
        "refused publishers left no streams behind"
    );

    let publisher = publish_ffmpeg(&server.url(good), &fixture("av.flv"), false);
    wait_success(publisher, FINISH, "publisher");
    wait_success(player, FINISH, "rtmpdump");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

/// A refused client gets the server's reason as an error onStatus before the
/// connection closes: ffmpeg logs it as "Server error: <description>", rtmpdump as
/// "Closing connection: <code>".
#[test]
fn refused_clients_are_told_why() {
    let server = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let publish_quietly = |path: &str| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "warning", "-i"])
            .arg(fixture("av.flv"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(server.url(path));
        spawn(cmd)
    };

    let (status, stderr) = wait_with_stderr(publish_quietly("live/a..b"), REFUSAL);
    assert!(!status.success(), "publishing to a..b must fail");
    assert!(
        stderr.contains("Server error: stream name is '.' or contains '..'"),
        "ffmpeg was not told why its publish to live/a..b was refused; stderr:\n{stderr}"
    );

    // Holds the key until the second publisher has been turned away.
    let mut owner = SteppedPublisher::start(&server, "live/held", fixture_tags("av.flv"));
    owner.send_until(1000);
    server.wait_for_frames("live/held", SUBSCRIBE);
    let holder = server
        .stream_info("live/held")
        .and_then(|i| i.publisher)
        .expect("live/held has a publisher");
    let (status, stderr) = wait_with_stderr(publish_quietly("live/held"), REFUSAL);
    owner.finish();
    assert!(!status.success(), "publishing to a held key must fail");
    assert!(
        stderr.contains("Server error: stream live/held is already being published"),
        "ffmpeg was not told that live/held is taken; stderr:\n{stderr}"
    );
    // Only that: who holds the key is the operator's business.
    assert!(
        !stderr.contains(&holder.to_string()) && !stderr.contains(&format!(":{}", holder.port())),
        "the refused publisher was told who holds the key ({holder}); stderr:\n{stderr}"
    );

    let mut cmd = Command::new("rtmpdump");
    cmd.args(["--live", "-r", &server.url("live/a..b"), "-o", "/dev/null"]);
    let (status, stderr) = wait_with_stderr(spawn(cmd), REFUSAL);
    assert!(!status.success(), "playing a..b must fail");
    assert!(
        stderr.contains("NetStream.Play.StreamNotFound"),
        "rtmpdump was not told that live/a..b cannot be played; stderr:\n{stderr}"
    );
}
