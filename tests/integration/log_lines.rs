//! The server's log, as an operator reads it at 3 a.m.: every line about a client
//! starts with the client's address (the RTMP session's debug lines once had none,
//! and printed Rust `Debug` values: `Some(Digest { schema: 0 }) handshake done`); a
//! refused second publisher is told only that the key is in use, while the log
//! names both; a refused long name appears once in the log, cut short. The real
//! binary at `RUST_LOG=debug`, driven by our client and a raw HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use rtmpd::client::{Client, ClientError, ClientOptions, RtmpUrl};

use crate::client_support::*;
use crate::http_support::get_json;
use crate::process::ServerProcess;
use crate::support::*;

/// Targets whose every line is about one client.
const CLIENT_TARGETS: &[&str] = &[
    "rtmpd::server::connection",
    "rtmpd::server::writer",
    "rtmpd::rtmp::session",
    "rtmpd::http",
    "rtmpd::http::flv_player",
    "rtmpd::registry::fanout",
];

fn client(server: &ServerProcess, digest: bool) -> (Client, SocketAddr) {
    let opts = ClientOptions {
        digest_handshake: digest,
        ..options()
    };
    let url = RtmpUrl::parse(&server.url("live/x")).unwrap();
    let client = Client::connect(&url, &opts).expect("connect");
    let addr = client.local_addr().unwrap();
    (client, addr)
}

fn refusal(result: Result<u32, ClientError>, what: &str) -> String {
    match result {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code, "NetStream.Publish.BadName", "{what}");
            s.description
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// `(target, message)` of each line of env_logger's format,
/// `[TIME LEVEL target] message`.
fn lines(log: &str) -> Vec<(&str, &str)> {
    log.lines()
        .filter_map(|l| {
            let (head, message) = l.split_once("] ")?;
            Some((head.rsplit(' ').next()?, message))
        })
        .collect()
}

#[test]
fn every_line_about_a_client_names_it_and_refusals_tell_no_one_else() {
    let server = ServerProcess::start_with("log-lines", true, &[], |cmd, _| {
        cmd.env("RUST_LOG", "debug");
    });

    let (mut first, first_addr) = client(&server, true);
    first.publish("held").expect("publish held");
    // Metadata, both sequence headers and the first frames.
    send_tags(&mut first, &fixture_tags("av.flv")[..8]);
    server.wait_for_log("publish", "live/held");

    let (mut player, player_addr) = client(&server, false);
    player.play("held").expect("play held");
    wait_event(&mut player, "the first frame", |e| {
        !media(std::slice::from_ref(e)).is_empty()
    });

    // A second publisher learns the key is taken, not who holds it.
    let (mut second, second_addr) = client(&server, false);
    let told = refusal(second.publish("held"), "a second publisher");
    assert_eq!(told, "stream live/held is already being published");
    assert!(
        !told.contains(&first_addr.ip().to_string()),
        "the refusal names the first publisher: {told}"
    );
    server.wait_for_warning(
        second_addr,
        &format!("refused: publish live/held: already being published by {first_addr}"),
    );

    // A name past the limit: told the limit and the flag; logged once, cut short.
    let (mut long, long_addr) = client(&server, false);
    let name = "n".repeat(300);
    assert_eq!(
        refusal(long.publish(&name), "a 300-byte name"),
        "stream name is 300 bytes, longer than --max-name-length 256"
    );
    server.wait_for_warning(
        long_addr,
        &format!(
            "refused: publish \"{}\"... (300 bytes): stream name is 300 bytes, longer than \
             --max-name-length 256",
            "n".repeat(64)
        ),
    );

    let http = server.http.expect("HTTP is on");
    let (status, _) = get_json(http, "/api/streams");
    assert_eq!(status, 200);
    drop((first, player, second, long));
    wait_for("the player's close", Duration::from_secs(60), || {
        server
            .log()
            .contains(&format!("{player_addr}: closed after"))
    });

    let log = server.log();
    let lines = lines(&log);
    let mut about_clients = 0;
    for (target, message) in &lines {
        if !CLIENT_TARGETS.contains(target) {
            continue;
        }
        about_clients += 1;
        let peer = message
            .split_once(": ")
            .map(|(p, _)| p.parse::<SocketAddr>());
        assert!(
            matches!(peer, Some(Ok(_))),
            "a {target} line does not start with the client's address: {message}"
        );
    }
    assert!(about_clients > 20, "too few client lines:\n{log}");
    for debug_output in ["Some(", "{ schema", "Digest {"] {
        assert!(
            !log.contains(debug_output),
            "Rust Debug output ({debug_output}) in the log:\n{log}"
        );
    }
    let has = |text: String| {
        assert!(
            lines.iter().any(|(_, m)| *m == text),
            "no line {text:?} in:\n{log}"
        )
    };
    // The handshake and the session's protocol detail, each with its client.
    has(format!("{player_addr}: simple handshake done"));
    assert!(
        lines.iter().any(|(_, m)| m
            .starts_with(&format!("{first_addr}: digest handshake (schema "))
            && m.ends_with(") done")),
        "no digest handshake line for {first_addr}:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|(_, m)| m.starts_with(&format!("{player_addr}: command \"play\" (transaction "))),
        "no session line for {player_addr}'s play:\n{log}"
    );
    // The long name is in the log once, and only the start of it.
    assert_eq!(log.matches(&"n".repeat(64)).count(), 1, "{log}");
    assert!(!log.contains(&"n".repeat(65)), "{log}");
    assert!(
        lines
            .iter()
            .any(|(t, m)| *t == "rtmpd::http" && m.ends_with("GET /api/streams: stream stats")),
        "no debug line for the API request:\n{log}"
    );
}
