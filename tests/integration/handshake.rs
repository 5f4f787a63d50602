//! The digest (Flash Player 9) handshake with a real client.
//!
//! ffmpeg, as publisher and as player, always sends a digest C1 and validates the
//! server's S1 digest whenever S1 announces a server version (ours does), so every
//! ffmpeg-based test already exercises the digest handshake. rtmpdump only uses it
//! when given SWF verification data, which this test supplies.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Any 32-byte SHA-256 and size will do: rtmpdump uses them in its digest
/// handshake (and would answer a SWF verification request with them) without
/// fetching anything.
const SWF_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SWF_SIZE: &str = "12345";
/// A bound on hangs only, generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn rtmpdump_digest_handshake_is_verified_and_plays() {
    let server = start_server();
    let dir = TempDir::new("digest");
    let path = "live/digest";
    let out = dir.join("rtmpdump.flv");
    let log_path = dir.join("rtmpdump.log");
    // -V logs the handshake; it goes to a file because it is too much for a pipe
    // nobody reads until the end.
    let mut cmd = Command::new("rtmpdump");
    cmd.args([
        "--live",
        "--timeout",
        RTMPDUMP_TIMEOUT,
        "-V",
        "-r",
        &server.url(path),
        "-w",
        SWF_HASH,
        "-x",
        SWF_SIZE,
    ])
    .arg("-o")
    .arg(&out)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(File::create(&log_path).expect("creating the log"));
    let player = cmd.spawn().expect("starting rtmpdump");
    server.wait_for_players(path, 1, TIMEOUT);

    let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
    wait_success(publisher, TIMEOUT, "publisher");
    let status = wait_with_timeout(player, TIMEOUT);
    let log = std::fs::read_to_string(&log_path).expect("reading the rtmpdump log");
    assert!(status.success(), "rtmpdump failed with {status}:\n{log}");

    let handshake: Vec<&str> = log.lines().filter(|l| l.contains("HandShake")).collect();
    let said = |text: &str| handshake.iter().any(|l| l.contains(text));
    // The client took the FP9 path: it placed a digest in C1...
    assert!(
        said("Client digest offset"),
        "rtmpdump did not use the digest handshake:\n{}",
        handshake.join("\n")
    );
    // ...found and checked the server's S1 digest (it gives up with "Couldn't verify
    // the server digest" otherwise), and S2 was signed over its own C1 digest.
    assert!(
        said("Genuine Adobe Flash Media Server") && !said("not genuine"),
        "rtmpdump did not verify the server's digest and signature:\n{}",
        handshake.join("\n")
    );
    assert!(
        !log.contains("Couldn't verify the server digest"),
        "rtmpdump rejected the server digest:\n{log}"
    );
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}
