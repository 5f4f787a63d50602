//! TLS: RTMPS publishing and playing with real clients (ffmpeg, which speaks TLS
//! itself, and rtmpdump through librtmp's GnuTLS), byte for byte; the
//! certificate replaced under a running stream (a reload, and a renewal that
//! changes the files); what is not TLS, or stalls, on the TLS port, closed
//! without harm to the streams next to it; handshakes inside the connection
//! budgets; failures logged once per address; startup errors that name the file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::rng::Rng;
use rtmpd::server::Service;

use crate::client_support::SteppedPublisher;
use crate::hostile::{
    c0_c1, closed_by_server, raw_connect, read_until_closed, HealthyStream, CLOSE_WITHIN,
};
use crate::http_support::{get_json, publish_looped};
use crate::process::ServerProcess;
use crate::relay_support::free_port;
use crate::support::*;
use crate::tls_support::*;

/// A bound on a hang only, generous for a busy machine.
const WAIT: Duration = Duration::from_secs(60);

/// A server with an RTMPS listener serving a leaf of a fresh CA.
fn rtmps_server(
    dir: &TempDir,
    configure: impl FnOnce(&mut rtmpd::config::Config),
) -> (TestServer, TestCa) {
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let server = start_server_with(|c| {
        with_rtmps(c, dir.path(), &leaf);
        configure(c);
    });
    (server, ca)
}

/// ffmpeg publishes over RTMPS (verifying the server's chain against the test
/// CA, by name); rtmpdump plays it over RTMPS and over plain RTMP at once, and
/// ffmpeg plays it over RTMPS: every player gets every tag, byte for byte.
#[test]
fn ffmpeg_and_rtmpdump_publish_and_play_over_rtmps_byte_for_byte() {
    let dir = TempDir::new("rtmps-play");
    let (server, ca) = rtmps_server(&dir, |_| {});
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file);
    let path = "live/secure";
    let rtmps = server.rtmps_url(path);
    let (tls_out, plain_out) = (dir.join("rtmps.flv"), dir.join("rtmp.flv"));
    let tls_player = play_rtmpdump(&rtmps, &tls_out);
    let plain_player = play_rtmpdump(&server.url(path), &plain_out);
    server.wait_for_players(path, 2, WAIT);

    // By name, so the certificate's name is checked too.
    let port = server.listener(Service::Rtmps).port();
    let mut publish = Command::new("ffmpeg");
    publish
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(fixture("av.flv"))
        .args(["-c", "copy", "-f", "flv", "-tls_verify", "1", "-ca_file"])
        .arg(&ca_file)
        .arg(format!("rtmps://localhost:{port}/{path}"));
    wait_success(spawn(publish), WAIT, "ffmpeg publishing over RTMPS");
    wait_success(tls_player, WAIT, "rtmpdump playing over RTMPS");
    wait_success(plain_player, WAIT, "rtmpdump playing over RTMP");
    let published = fixture_tags("av.flv");
    assert_received_matches(&published, &read_flv(&tls_out), true);
    assert_received_matches(&published, &read_flv(&plain_out), true);

    ffmpeg_plays_every_tag(&server, &server.rtmps_url("live/ffmpeg"), "live/ffmpeg");
    let (_, doc) = get_json(server.http_addr(), "/api/server");
    assert_eq!(doc["tls"]["handshake_failures"], 0, "{doc}");
    assert_eq!(
        doc["listen"]["rtmps"],
        server.listener(Service::Rtmps).to_string()
    );
}

/// A reload (SIGHUP's path) serves a renewed certificate to new connections while
/// a stream published and played over RTMPS goes on untouched; a broken
/// renewal keeps the certificate in use; and a renewal that only changes the
/// files (no signal) is picked up by itself.
#[test]
fn a_renewed_certificate_reaches_new_connections_and_running_streams_go_on() {
    let dir = TempDir::new("rtmps-reload");
    let ca = TestCa::new();
    let (first, second, third) = (ca.leaf(), ca.leaf(), ca.leaf());
    let server = start_server_with(|c| with_rtmps(c, dir.path(), &first));
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let tls_addr = server.listener(Service::Rtmps);
    assert_eq!(served_certificate(tls_addr), first.der);

    let path = "live/renewal";
    let healthy = HealthyStream::on(&server, &server.rtmps_url(path), path);

    second.write_to(&cert, &key);
    assert!(server.handle.reload("test"), "the reload took");
    assert_eq!(served_certificate(tls_addr), second.der, "new connections");
    // A trusting client accepts the new chain.
    tls_connect(tls_addr, ca.client_config()).expect("the renewed chain verifies");

    // Half a renewal: a key that is not the certificate's. Refused; the
    // certificate in use stays.
    std::fs::write(&key, &third.key_pem).unwrap();
    assert!(!server.handle.reload("test"));
    assert_eq!(served_certificate(tls_addr), second.der);
    let (_, doc) = get_json(server.http_addr(), "/api/server");
    assert_eq!(
        doc["tls"]["fingerprint_sha256"],
        fingerprint(&second.der),
        "{doc}"
    );

    assert_eq!(server.players(path), 1);
    healthy.finish("the renewals");

    // A renewal that only replaces the files is loaded once they hold still.
    third.write_to(&cert, &key);
    wait_for(
        "the changed files to be loaded",
        Duration::from_secs(30),
        || served_certificate(tls_addr) == third.der,
    );
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hex: Vec<String> = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

/// What a client of ours says before a TLS handshake: rustls' ClientHello.
fn client_hello() -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        rtmpd::tls::client::config(false),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Asserts that the server answered with at most TLS alerts.
fn assert_alerts_only(answer: &[u8], what: &str) {
    let mut rest = answer;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 5 && rest[0] == 0x15,
            "{what}: the server answered {} bytes that are not a TLS alert: {:02x?}",
            answer.len(),
            &answer[..answer.len().min(16)]
        );
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = &rest[(5 + len).min(rest.len())..];
    }
}

/// Bytes that are not TLS on the RTMPS port (plain RTMP, HTTP, noise, absurd
/// record lengths, a cut ClientHello) are closed at once with at most an
/// alert, and so is a TLS session whose records go bad after its handshake,
/// while a stream published and played over RTMPS on the same server arrives
/// byte for byte.
#[test]
fn what_is_not_tls_on_the_rtmps_port_is_closed_and_streams_go_on() {
    let dir = TempDir::new("rtmps-garbage");
    // A long handshake timeout: every close below is a reaction to the bytes.
    let (server, ca) = rtmps_server(&dir, |c| c.setup_timeout = Duration::from_secs(60));
    let addr = server.listener(Service::Rtmps);
    let path = "live/healthy";
    let healthy = HealthyStream::on(&server, &server.rtmps_url(path), path);

    let mut noise = vec![0u8; 64 * 1024];
    Rng::new(13).fill(&mut noise);
    let hello = client_hello();
    // Record header (5), handshake header (4), version (2), random (32): then
    // the session ID's length, at most 32.
    let mut corrupt_hello = hello.clone();
    corrupt_hello[43] = 0xff;
    let garbage: [(&str, Vec<u8>); 6] = [
        ("plain RTMP (C0 C1)", c0_c1(3)),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("64 KiB of noise", noise),
        (
            "a handshake record claiming 64 KiB",
            vec![0x16, 3, 1, 0xff, 0xff, 1, 0, 0xff, 0xfb],
        ),
        (
            "an application record before any handshake",
            vec![0x17, 3, 3, 0, 4, 1, 2, 3, 4],
        ),
        ("a ClientHello with a 255-byte session ID", corrupt_hello),
    ];
    for (what, bytes) in garbage {
        let mut socket = raw_connect(addr);
        let _ = socket.write_all(&bytes);
        let answer = read_until_closed(&mut socket, CLOSE_WITHIN, what);
        assert_alerts_only(&answer, what);
    }

    // A TLS session that completes, then sends a record that does not decrypt.
    let mut session = tls_connect(addr, ca.client_config()).unwrap();
    session
        .sock
        .write_all(&[
            0x17, 3, 3, 0, 20, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ])
        .unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + CLOSE_WITHIN;
    loop {
        match session.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "a bad record left the session open"
            ),
        }
    }
    // A TLS session that speaks something other than RTMP inside.
    let mut session = tls_connect(addr, ca.client_config()).unwrap();
    session.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = session.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "answered {} bytes to HTTP inside TLS",
        got.len()
    );

    let (_, doc) = get_json(server.http_addr(), "/api/server");
    let failures = doc["tls"]["handshake_failures"].as_u64().unwrap();
    assert_eq!(failures, 6, "each bad handshake counted once: {doc}");
    assert!(server.is_live(path) && server.players(path) == 1);
    healthy.finish("the bad-bytes cases");
}

/// A client silent after connecting, one that stops halfway through its
/// ClientHello, and one that sends a whole ClientHello but never finishes the
/// handshake, on the RTMPS port and on the HTTPS port: each is closed once
/// `--handshake-timeout` has passed, not before.
#[test]
fn stalled_tls_handshakes_are_closed_at_the_handshake_timeout() {
    let dir = TempDir::new("rtmps-stall");
    let timeout = Duration::from_secs(1);
    let (server, _ca) = rtmps_server(&dir, |c| {
        c.setup_timeout = timeout;
        c.https = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    });
    let (addr, https) = (
        server.listener(Service::Rtmps),
        server.listener(Service::Https),
    );
    let hello = client_hello();
    let cases: [(&str, SocketAddr, Vec<u8>); 5] = [
        ("a silent client", addr, Vec::new()),
        (
            "half a ClientHello",
            addr,
            hello[..hello.len() / 2].to_vec(),
        ),
        ("a ClientHello and nothing more", addr, hello.clone()),
        ("a silent client on the HTTPS port", https, Vec::new()),
        (
            "half a ClientHello on the HTTPS port",
            https,
            hello[..hello.len() / 2].to_vec(),
        ),
    ];
    let threads: Vec<_> = cases
        .into_iter()
        .map(|(what, addr, bytes)| {
            thread::spawn(move || {
                let started = Instant::now();
                let mut socket = raw_connect(addr);
                socket.write_all(&bytes).unwrap();
                read_until_closed(&mut socket, CLOSE_WITHIN, what);
                let after = started.elapsed();
                assert!(
                    after + Duration::from_millis(50) >= timeout,
                    "{what}: closed after {after:?}, before the timeout"
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (_, doc) = get_json(server.http_addr(), "/api/server");
    assert_eq!(doc["tls"]["handshake_failures"], 5, "{doc}");
}

/// TLS handshakes are pending connections like any other: a flood of silent
/// ones is evicted for newcomers (`--max-pending`) so a real RTMPS client still
/// gets in, and established RTMPS connections count against
/// `--max-connections` with plain RTMP ones.
#[test]
fn tls_handshakes_count_against_the_connection_budgets() {
    let dir = TempDir::new("rtmps-budgets");
    let (server, _ca) = rtmps_server(&dir, |c| {
        c.max_pending = 4;
        c.max_connections = 2;
        c.setup_timeout = Duration::from_secs(60);
    });
    let addr = server.listener(Service::Rtmps);
    let flood: Vec<TcpStream> = (0..12).map(|_| raw_connect(addr)).collect();
    // The server closes the oldest for the newest (the API, itself a pending
    // connection from the same address, would be one of them: not asked here).
    wait_for("the flood to be evicted", WAIT, || {
        flood.iter().filter(|s| closed_by_server(s)).count() >= 8
    });

    // A publisher and a player over RTMPS get in through the flood.
    let path = "live/budget";
    let out = dir.join("played.flv");
    let player = play_ffmpeg(&server.rtmps_url(path), &out);
    server.wait_for_players(path, 1, WAIT);
    // Looped, so it is still live when the third connection comes however slowly
    // that is; stopped once the player has had enough.
    let (input, published) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_looped(&server.rtmps_url(path), &input, 0);
    server.wait_for_frames(path, WAIT);

    // Two RTMPS connections are established: a third is one too many.
    let mut rtmp = rtmpd::client::Client::connect(
        &rtmpd::client::RtmpUrl::parse(&server.url(path)).unwrap(),
        &crate::client_support::options(),
    )
    .unwrap();
    match rtmp.play("budget") {
        Err(rtmpd::client::ClientError::Status(status)) => {
            assert!(
                status.description.contains("--max-connections"),
                "{status:?}"
            )
        }
        other => panic!("a third player was not refused: {other:?}"),
    }
    drop(flood);
    assert_eq!(server.players(path), 1);
    wait_for_received(&out, WAIT);
    stop(publisher, WAIT);
    wait_success(player, WAIT, "ffmpeg playing over RTMPS");
    assert_received_from_start(&published, &read_flv(&out));
}

/// A client that fails its handshakes over and over costs one warning line
/// (each failure is counted; port checks that send nothing are not failures);
/// the server stays up and serves RTMPS, and a SIGHUP to the real binary
/// serves renewed certificate files.
#[test]
fn handshake_failures_are_logged_once_per_address_and_counted() {
    let dir = TempDir::new("rtmps-log");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf().write(dir.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    // A bare port: every interface, as for -l.
    let port = free_port();
    let bare = port.to_string();
    let args = [
        "--rtmps-listen",
        &bare,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let server = ServerProcess::start("rtmps-log", true, &args);
    let log = server.log();
    assert!(
        log.contains(&format!("listening for RTMPS on 0.0.0.0:{port}\n")),
        "{log}"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(log.contains("TLS certificate from"), "{log}");
    // Port checks (connected, closed, not a byte sent) are no failures.
    for _ in 0..3 {
        drop(raw_connect(addr));
    }
    for _ in 0..5 {
        let mut socket = raw_connect(addr);
        let _ = socket.write_all(&c0_c1(3));
        read_until_closed(&mut socket, CLOSE_WITHIN, "plain RTMP");
    }
    let http = server.http.expect("HTTP");
    wait_for("five failures counted", WAIT, || {
        let metrics = crate::http_support::get(http, "/metrics").text();
        metrics.contains("rtmpd_tls_handshake_failures_total 5")
    });
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("plain RTMP on a TLS port"),
        "{}",
        lines[0]
    );
    let metrics = crate::http_support::get(http, "/metrics").text();
    assert!(
        metrics.contains("rtmpd_tls_certificate_expiry_timestamp_seconds{fingerprint_sha256=\""),
        "{metrics}"
    );
    let mut stream = tls_connect(addr, ca.client_config()).expect("still serving TLS");
    stream.write_all(&c0_c1(3)).unwrap();
    let mut s0 = [0u8; 1];
    stream.read_exact(&mut s0).unwrap();
    assert_eq!(s0[0], 3, "an RTMP S0 over TLS");
    // SIGHUP (systemctl reload) reads the renewed files at once.
    let renewed = ca.leaf();
    renewed.write(dir.path());
    server.signal("HUP");
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        served_certificate(addr) == renewed.der
    });
    assert!(
        server
            .log()
            .contains("SIGHUP: TLS certificate reloaded from"),
        "{}",
        server.log()
    );
    server.assert_no_panic();
}

/// A TLS listener without a certificate, or a certificate that does not load,
/// stops the start with a line that says what to fix.
#[test]
fn tls_startup_errors_name_the_setting_or_the_file() {
    let dir = TempDir::new("rtmps-start");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
            .args(["--listen", "127.0.0.1:0", "--http", "off"])
            .args(args)
            .output()
            .expect("running rtmpd");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--rtmps-listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("rtmps_listen (--rtmps-listen) needs a certificate"),
        "{err}"
    );
    let missing = dir.join("missing.pem").display().to_string();
    let (code, err) = run(&[
        "--rtmps-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &missing,
        "--tls-key",
        &missing,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS certificate: cannot read") && err.contains("missing.pem"),
        "{err}"
    );
    let ca = TestCa::new();
    let (cert, _) = ca.leaf().write(dir.path());
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, ca.leaf().key_pem).unwrap();
    let (code, err) = run(&[
        "--rtmps-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert.display().to_string(),
        "--tls-key",
        &other_key.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not belong to the certificate"), "{err}");
}

/// Short RTMPS sessions (a handshake, an RTMP S0, gone) are each closed and
/// leave the connection table.
#[test]
fn short_rtmps_sessions_are_all_closed() {
    let dir = TempDir::new("rtmps-churn");
    let (server, ca) = rtmps_server(&dir, |_| {});
    let addr = server.listener(Service::Rtmps);
    let config = ca.client_config();
    for _ in 0..50 {
        let mut s = tls_connect(addr, config.clone()).unwrap();
        s.write_all(&c0_c1(3)).unwrap();
        let mut s0 = [0u8; 1];
        s.read_exact(&mut s0).unwrap();
    }
    wait_for("every session to end", WAIT, || {
        let (_, doc) = get_json(server.http_addr(), "/api/server");
        doc["connections"]["rtmp"]["open"] == 0
    });
}

/// An https:// hook: rtmpd verifies the backend's certificate against the
/// system's roots (here `SSL_CERT_FILE`, the test CA), names it by the URL's
/// host, and admits the publish it approves; a server that does not trust the
/// backend's CA refuses the publish and says why.
#[test]
fn https_hooks_verify_the_backend_against_the_system_roots() {
    let dir = TempDir::new("https-hook");
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let hooks = crate::access::HookServer::start_tls(&leaf.chain_pem, &leaf.key_pem);
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file);
    let config = dir.join("rtmpd.toml");
    std::fs::write(
        &config,
        format!("on_publish = \"{}\"\n", hooks.url("allow")),
    )
    .unwrap();
    let config = config.display().to_string();

    let trusting =
        ServerProcess::start_with("https-hook", false, &["--config", &config], |cmd, _| {
            cmd.env("SSL_CERT_FILE", &ca_file)
                .env_remove("SSL_CERT_DIR");
        });
    let publisher = publish_ffmpeg(&trusting.url("live/hooked"), &fixture("av.flv"), false);
    wait_success(publisher, WAIT, "publishing with an https hook");
    let call = hooks.wait_call("publish");
    assert_eq!(
        (call.path.as_str(), call.field("name")),
        ("/allow", "hooked")
    );

    // Without the CA among its roots, the same hook cannot be verified.
    let empty = dir.join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    let doubting =
        ServerProcess::start_with("https-hook-2", false, &["--config", &config], |cmd, _| {
            cmd.env("SSL_CERT_FILE", &empty).env_remove("SSL_CERT_DIR");
        });
    let publisher = publish_ffmpeg(&doubting.url("live/doubted"), &fixture("av.flv"), false);
    let (status, _) = wait_with_stderr(publisher, WAIT);
    assert!(!status.success(), "published without an approved hook");
    let log = doubting.log();
    assert!(
        log.lines()
            .any(|l| l.contains("live/doubted") && l.contains("UnknownIssuer")),
        "{log}"
    );
    assert_eq!(hooks.calls().len(), 1, "the doubting server sent nothing");
}

/// Over `--https`, with the same certificate: curl reads HTTP-FLV (`-k`), the API
/// and the metrics (verifying against the test CA by name), a WSS client
/// (tungstenite over a rustls stream) reads WebSocket-FLV and has its ping
/// answered; both players get the published tags byte for byte, as over plain
/// HTTP; the page, the HLS playlist and its segments are the same bytes over
/// HTTPS as over HTTP. Plain HTTP on the HTTPS port is closed with at most an
/// alert.
#[test]
fn https_flv_wss_flv_and_the_api_over_tls() {
    let dir = TempDir::new("https");
    let (server, ca) = rtmps_server(&dir, |c| {
        c.https = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    });
    let https = server.listener(Service::Https);
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file);
    let path = "live/web";
    // Looped, and stopped once both readers have had enough of it: a real-time
    // stream could end before a busy machine has them going.
    let (input, published) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(&server.rtmps_url(path), &input, true);
    server.wait_for_frames(path, WAIT);

    let out = dir.join("curl.flv");
    let mut curl = Command::new("curl");
    curl.args(["-sSk", "--max-time", "600", "-o"])
        .arg(&out)
        .arg(format!("https://127.0.0.1:{}/{path}.flv", https.port()));
    let curl = spawn(curl);

    let stream = tls_connect(https, ca.client_config()).unwrap();
    let url = format!("wss://localhost:{}/{path}.flv", https.port());
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("WSS handshake");
    assert_eq!(response.status(), 101);
    ws.send(tungstenite::Message::Ping("over TLS".into()))
        .unwrap();
    let (mut flv_bytes, mut pongs) = (Vec::new(), 0);
    let mut publisher = Some(publisher);
    loop {
        if publisher.is_some()
            && pongs == 1
            && holds_enough(&rtmpd::media::flv::parse_lenient(&flv_bytes).1)
        {
            wait_for_received(&out, WAIT);
            stop(publisher.take().unwrap(), WAIT);
        }
        match ws.read() {
            Ok(tungstenite::Message::Binary(data)) => flv_bytes.extend_from_slice(&data),
            Ok(tungstenite::Message::Pong(data)) => {
                assert_eq!(&data[..], b"over TLS");
                pongs += 1;
            }
            Ok(tungstenite::Message::Close(_)) => {}
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("reading the WSS stream: {e}"),
        }
    }
    assert!(
        publisher.is_none(),
        "the WSS stream ended before the publisher"
    );
    wait_success(curl, WAIT, "curl -k reading HTTPS-FLV");
    assert_eq!(pongs, 1, "the ping is answered");
    let (_, tags) = rtmpd::media::flv::parse(&flv_bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_received_matches(&published, &tags, false);
    assert_received_matches(&published, &read_flv(&out), false);

    // curl, verifying the server by name against the test CA: the body.
    let curl_https = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "60", "--cacert"])
            .arg(&ca_file)
            .arg(format!("https://localhost:{}{path}", https.port()))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "GET {path} over HTTPS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let doc: serde_json::Value = serde_json::from_slice(&curl_https("/api/server")).unwrap();
    assert_eq!(doc["listen"]["https"], https.to_string(), "{doc}");
    assert_eq!(doc["tls"]["handshake_failures"], 0, "{doc}");
    let metrics = String::from_utf8(curl_https("/metrics")).unwrap();
    assert!(
        metrics.contains("rtmpd_tls_certificate_expiry_timestamp_seconds{"),
        "/metrics over HTTPS: {metrics}"
    );

    // The page and HLS: what HTTPS serves is what HTTP does.
    let both = |path: &str| {
        let plain = crate::http_support::get(server.http_addr(), path);
        assert_eq!(plain.status, 200, "GET {path} over HTTP");
        (curl_https(path), plain.body)
    };
    let (page, _) = both("/");
    assert!(String::from_utf8_lossy(&page).contains("<title>rtmpd"));
    let media = format!("/{path}/media.m3u8");
    wait_for("the playlist to end", WAIT, || {
        let plain = crate::http_support::get(server.http_addr(), &media);
        plain.status == 200 && plain.text().contains("#EXT-X-ENDLIST")
    });
    let (playlist, plain) = both(&media);
    assert_eq!(playlist, plain, "the playlist");
    let playlist = String::from_utf8(playlist).unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let segment = playlist
        .lines()
        .find(|l| l.starts_with("seg-"))
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    for uri in ["init-0.mp4", segment] {
        let (tls, plain) = both(&format!("/{path}/{uri}"));
        assert!(!tls.is_empty() && tls == plain, "{uri} over HTTPS and HTTP");
    }

    let mut socket = raw_connect(https);
    socket
        .write_all(b"GET /api/server HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut socket, CLOSE_WITHIN, "plain HTTP on the HTTPS port");
    assert_alerts_only(&answer, "plain HTTP on the HTTPS port");
}

/// A push to another rtmpd's RTMPS listener arrives byte for byte (its
/// self-signed certificate taken with `tls_verify = false`), while a push to the
/// same listener that verifies the certificate fails, says why in the API and
/// backs off; an edge pulls from an RTMPS origin (`origin = { url, tls_verify =
/// false }`) for its players, byte for byte.
#[test]
fn pushes_and_edge_pulls_go_over_rtmps() {
    use crate::relay_support::{push_status, relays, upstream, wait_push_state, with_app};
    use rtmpd::config::policy::{AppKeys, Seconds};
    use rtmpd::config::relay::{Origin, PushEntry};

    let dir = TempDir::new("rtmps-relay");
    let (destination, _ca) = rtmps_server(&dir, |_| {});
    let tls_port = destination.listener(Service::Rtmps).port();
    let trusting = PushEntry {
        tls_verify: Some(false),
        ..PushEntry::new(upstream(&format!(
            "rtmps://localhost:{tls_port}/dest/{{key}}"
        )))
    };
    let verifying = PushEntry::new(upstream(&format!(
        "rtmps://localhost:{tls_port}/checked/{{key}}"
    )));
    let source = start_server_with(|c| {
        let mut keys = AppKeys {
            push: Some(vec![trusting, verifying]),
            ..AppKeys::default()
        };
        keys.push_backoff_min = Some(Seconds(Duration::from_millis(200)));
        with_app(c, "live", keys);
    });
    let out = dir.join("pushed.flv");
    let player = play_rtmpdump(&destination.url("dest/cam"), &out);
    destination.wait_for_players("dest/cam", 1, WAIT);
    // Held halfway while the pushes are looked at: both are there until it ends.
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&source, "live/cam", published.clone());
    publisher.send_until(2000);
    wait_push_state(&source, "live/cam", "dest/", "live", WAIT);
    wait_push_state(&source, "live/cam", "checked/", "backing_off", WAIT);
    let checked = push_status(&source, "live/cam", "checked/").unwrap();
    let why = checked["last_error"].as_str().unwrap();
    assert!(why.contains("UnknownIssuer"), "{checked}");
    assert!(checked["url"].as_str().unwrap().starts_with("rtmps://"));
    publisher.finish();
    wait_success(player, WAIT, "player on the destination");
    assert_received_matches(&published, &read_flv(&out), true);
    wait_for("the pushes to end", WAIT, || {
        relays(&source)["pushes"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    });

    // An edge of the same server, over RTMPS.
    let edge = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                origin: Some(Origin {
                    url: upstream(&format!("rtmps://127.0.0.1:{tls_port}")),
                    tls_verify: Some(false),
                }),
                ..AppKeys::default()
            },
        )
    });
    let path = "live/edge";
    let out = dir.join("edge.flv");
    let player = play_rtmpdump(&edge.url(path), &out);
    destination.wait_for_players(path, 1, WAIT);
    let publisher = publish_ffmpeg(&destination.url(path), &fixture("av.flv"), true);
    wait_success(publisher, WAIT, "publisher at the origin");
    wait_success(player, WAIT, "player on the edge");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), false);
}

/// A push that verifies: rtmpd (a child process whose system roots are the
/// test CA, through `SSL_CERT_FILE`) pushes to `rtmps://localhost:PORT`, checks
/// the chain and the name (sent as SNI), and the stream arrives byte for byte.
#[test]
fn a_verifying_rtmps_push_checks_the_chain_by_name() {
    let dir = TempDir::new("rtmps-verify");
    let (destination, ca) = rtmps_server(&dir, |_| {});
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file);
    let tls_port = destination.listener(Service::Rtmps).port();
    let config = dir.join("source.toml");
    std::fs::write(
        &config,
        format!("push = [\"rtmps://localhost:{tls_port}/dest/{{key}}\"]\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let source = ServerProcess::start_with("rtmps-push", true, &["--config", &config], |cmd, _| {
        // The test CA alone: no directory of roots besides.
        cmd.env("SSL_CERT_FILE", &ca_file)
            .env_remove("SSL_CERT_DIR");
    });
    let out = dir.join("pushed.flv");
    let player = play_rtmpdump(&destination.url("dest/cam"), &out);
    destination.wait_for_players("dest/cam", 1, WAIT);
    let publisher = publish_ffmpeg(&source.url("live/cam"), &fixture("av.flv"), false);
    wait_success(publisher, WAIT, "publisher");
    wait_success(player, WAIT, "player on the destination");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
    let log = source.log();
    assert!(log.contains("push live/cam to rtmps://localhost"), "{log}");
    assert!(log.contains("system's 1 root certificates"), "{log}");
}

/// What RTMP does, RTMPS does the same way: a publisher needs its signed URL
/// and a player the play secret or a play token (refused without, with the
/// same status codes), the hooks are asked (their `tcurl` says `rtmps://`), a
/// player waiting before the publisher gets the whole stream and one joining
/// late starts at the cached keyframe, byte for byte (rtmpdump, over TLS).
#[test]
fn secrets_hooks_waiting_players_and_the_gop_cache_work_over_rtmps() {
    use crate::access::{now, token, HookServer};
    use crate::client_support::{
        assert_player_receives, av_tags, options, play_preamble, send_tags,
    };
    use rtmpd::client::{Client, ClientError, RtmpUrl};
    use rtmpd::config::Verb;

    let dir = TempDir::new("rtmps-same");
    let hooks = HookServer::start();
    let rules = format!(
        "publish_secret = \"pub\"\nplay_secret = \"ply\"\n\
         on_publish = \"{}\"\non_play = \"{}\"\n",
        hooks.url("allow/publish"),
        hooks.url("allow/play"),
    );
    let (server, _ca) = rtmps_server(&dir, |c| {
        rtmpd::config::file::apply(&rules, c).unwrap_or_else(|e| panic!("test config: {e}"))
    });
    let path = "live/same";
    let url = |query: &str| RtmpUrl::parse(&format!("{}?{query}", server.rtmps_url(path)));
    let later = now() + 600;
    let connect = |query: &str| Client::connect(&url(query).unwrap(), &options()).unwrap();
    let status = |result: Result<u32, ClientError>| match result {
        Err(ClientError::Status(s)) => (s.code, s.description),
        other => panic!("not refused with a status: {other:?}"),
    };

    // Refusals, as over RTMP.
    let (code, why) = status(connect("").publish("same"));
    assert_eq!(code, "NetStream.Publish.Unauthorized", "{why}");
    let (code, why) = status(connect("").play("same?secret=pub"));
    assert_eq!(
        code, "NetStream.Play.Failed",
        "a publish secret never plays: {why}"
    );

    // A player waits (the play secret) before the stream exists.
    let mut waiting = connect("secret=ply");
    waiting.play("same?secret=ply").unwrap();
    play_preamble(&mut waiting);
    server.wait_for_players(path, 1, WAIT);

    // Without the file's onMetaData: its duration would make rtmpdump call a
    // live stream joined late incomplete (a live encoder sends none).
    let published: Vec<_> = fixture_tags("av.flv")
        .into_iter()
        .filter(|t| t.tag_type != rtmpd::media::flv::TAG_SCRIPT)
        .collect();
    let mut publisher = connect("");
    let signed = token("pub", Verb::Publish, path, later);
    publisher.publish(&format!("same?{signed}")).unwrap();
    let call = hooks.wait_call("publish");
    assert!(call.field("tcurl").starts_with("rtmps://"), "{call:?}");
    assert_eq!(call.field("name"), "same");

    // Half the stream, up to a few frames past its second keyframe; the waiting
    // player has had all of it when the late one comes.
    let keyframes: Vec<usize> = (0..published.len())
        .filter(|&i| {
            let t = &published[i];
            t.tag_type == rtmpd::media::flv::TAG_VIDEO && is_keyframe(t) && !is_sequence_header(t)
        })
        .collect();
    assert!(keyframes.len() >= 3, "av.flv has keyframes every second");
    let split = keyframes[1] + 5;
    send_tags(&mut publisher, &published[..split]);
    let all = av_tags(&published);
    let sent = av_tags(&published[..split]);
    assert_player_receives(&mut waiting, &sent, "the waiting RTMPS player, first half");

    let late_out = dir.join("late.flv");
    let play_token = token("ply", Verb::Play, path, later);
    let late = play_rtmpdump(
        &format!("{}?{play_token}", server.rtmps_url(path)),
        &late_out,
    );
    server.wait_for_players(path, 2, WAIT);
    let plays = || {
        let calls = hooks.calls();
        calls
            .into_iter()
            .filter(|c| c.fields.iter().any(|(n, v)| n == "call" && v == "play"))
            .collect::<Vec<_>>()
    };
    wait_for("both players' play hooks", WAIT, || plays().len() >= 2);
    for call in plays() {
        assert!(call.field("tcurl").starts_with("rtmps://"), "{call:?}");
    }

    send_tags(&mut publisher, &published[split..]);
    assert_player_receives(
        &mut waiting,
        &all[sent.len()..],
        "the waiting RTMPS player, second half",
    );
    publisher.close();
    wait_success(late, WAIT, "rtmpdump joining late over RTMPS");
    let received = read_flv(&late_out);
    assert_received_matches(&published, &received, false);
    let (_, video) = media_tracks(&received);
    let cached = &published[keyframes[1]];
    assert!(
        video
            .first()
            .is_some_and(|first| first.data == cached.data && first.timestamp == cached.timestamp),
        "the late player starts at the cached keyframe (ts {}), not at {:?}",
        cached.timestamp,
        video.first().map(|t| t.timestamp)
    );
    assert_eq!(
        video.len(),
        media_tracks(&published[keyframes[1]..]).1.len(),
        "every video frame from the cached keyframe on"
    );
}
