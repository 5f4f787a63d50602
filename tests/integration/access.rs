//! Access control (issue 11): secrets, signed URLs, nginx-rtmp-compatible hooks,
//! IP rules, the API token, brute-force blocking, with real clients: ffmpeg
//! publishing, rtmpdump and curl playing, and a small HTTP server in the test
//! playing the hook backend. The config file, `--check-config` and the SIGHUP
//! reload are in `config_file`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtmpd::admission::token;
use rtmpd::config::policy::{Seconds, Secret};
use rtmpd::config::Verb;

use crate::client_support::*;
use crate::http_support::{exchange, HttpResponse};
use crate::support::*;

// Bounds on a hang only, generous for a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);
const REFUSAL: Duration = Duration::from_secs(60);

/// A test server with the access rules of `toml` (a config file's text).
pub fn start_with_rules(toml: &str) -> TestServer {
    start_server_with(|c| {
        rtmpd::config::file::apply(toml, c).unwrap_or_else(|e| panic!("test config: {e}"));
        // Our hook backend answers at once, but a busy machine may take longer
        // than the 3 s default; the tests of the timeout set their own.
        let policy = Arc::make_mut(&mut c.policy);
        policy
            .global
            .hook_timeout
            .get_or_insert(Seconds(Duration::from_secs(60)));
    })
}

/// Publishes av.flv to `target` (`app/key?query`) with ffmpeg while rtmpdump
/// plays `key_path`: the publish must be admitted and the player get every tag.
fn publish_admitted(server: &TestServer, target: &str, key_path: &str, label: &str) {
    let dir = TempDir::new(label);
    let out = dir.join("played.flv");
    let player = play_rtmpdump(&server.url(key_path), &out);
    server.wait_for_players(key_path, 1, SUBSCRIBE);
    let publisher = publish_ffmpeg(&server.url(target), &fixture("av.flv"), false);
    wait_success(publisher, FINISH, &format!("{label}: publisher"));
    wait_success(player, FINISH, &format!("{label}: rtmpdump"));
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

/// Publishes with ffmpeg to `target`, which must be refused; returns ffmpeg's
/// stderr (it prints the server's reason).
fn publish_refused(server: &TestServer, target: &str) -> String {
    let publisher = publish_ffmpeg(&server.url(target), &fixture("av.flv"), false);
    let (status, stderr) = wait_with_stderr(publisher, REFUSAL);
    assert!(
        !status.success(),
        "publishing {target} must be refused; ffmpeg: {stderr}"
    );
    let key = target.split('?').next().unwrap();
    assert!(!server.is_live(key), "{key} must not be live");
    stderr
}

/// The RTMP status a refused publish gets, from our own client.
fn publish_status(server: &TestServer, target: &str) -> (String, String) {
    let mut client = connect_with(server, target, &options());
    let name = target.split_once('/').unwrap().1;
    match client.publish(name) {
        Ok(_) => ("NetStream.Publish.Start".into(), String::new()),
        Err(rtmpd::client::ClientError::Status(s)) => (s.code, s.description),
        Err(e) => panic!("publishing {target}: {e}"),
    }
}

/// A sequence header and a keyframe, so the stream has frames to play.
fn send_keyframe(publisher: &mut rtmpd::client::Client) {
    publisher
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3])
        .unwrap();
    publisher.send_media(9, 0, &[0x17, 1, 0, 0, 0, 9]).unwrap();
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `?expires=..&sig=..` for `verb` on `app/name`.
pub fn token(secret: &str, verb: Verb, path: &str, expires: u64) -> String {
    let (app, name) = path.split_once('/').unwrap();
    let key = rtmpd::stream_key::StreamKey::new(app, name).unwrap();
    let sig = token::signature(&Secret::new(secret).unwrap(), verb, &key, expires);
    format!("expires={expires}&sig={sig}")
}

/// curl plays `url` (HTTP-FLV) into a file; returns the HTTP status.
fn curl_status(url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "60",
            url,
        ])
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn an_open_app_and_a_protected_one_on_one_server() {
    let server = start_with_rules("[app.secure]\npublish_secret = \"s3cret\"\n");
    publish_admitted(&server, "live/open", "live/open", "open-app");
    let stderr = publish_refused(&server, "secure/cam");
    assert!(stderr.contains("needs a valid secret"), "{stderr}");
    let stderr = publish_refused(&server, "secure/cam?secret=wrong");
    assert!(stderr.contains("wrong secret"), "{stderr}");
    publish_admitted(
        &server,
        "secure/cam?secret=s3cret",
        "secure/cam",
        "right-secret",
    );
    // The status code an encoder sees, and the reason.
    let (code, why) = publish_status(&server, "secure/x?secret=nope");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(
        why.contains("wrong secret") && !why.contains("s3cret"),
        "{why}"
    );
}

#[test]
fn signed_urls_valid_expired_other_key_and_play_token_for_publish() {
    let server = start_with_rules("publish_secret = \"pub\"\nplay_secret = \"ply\"\n");
    let later = now() + 600;
    let valid = token("pub", Verb::Publish, "live/a", later);
    let expired = token("pub", Verb::Publish, "live/a", now() - 10);
    let other_key = token("pub", Verb::Publish, "live/b", later);
    let play_token = token("pub", Verb::Play, "live/a", later);
    // A publish secret never admits a player, nor a play token a publisher.
    let stderr = publish_refused(&server, &format!("live/a?{expired}"));
    assert!(stderr.contains("expired"), "{stderr}");
    let stderr = publish_refused(&server, &format!("live/a?{other_key}"));
    assert!(stderr.contains("signature does not match"), "{stderr}");
    publish_refused(&server, &format!("live/a?{play_token}"));
    publish_refused(&server, "live/a?secret=ply");

    // Players need the play secret or a play token; the publisher plays along
    // (looped, until the signed player has had enough, however slowly it came).
    let http = |q: &str| format!("{}?{q}", server.http_url("live/a.flv"));
    let dir = TempDir::new("signed-play");
    let (input, published) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(&server.url(&format!("live/a?{valid}")), &input, true);
    server.wait_for_frames("live/a", SUBSCRIBE);
    assert_eq!(curl_status(&server.http_url("live/a.flv")), 403);
    assert_eq!(
        curl_status(&http("secret=pub")),
        403,
        "a publish secret never plays"
    );
    assert_eq!(
        curl_status(&http(&token("ply", Verb::Play, "live/a", now() - 1))),
        403
    );
    assert_eq!(
        curl_status(&http(&token("ply", Verb::Play, "live/b", later))),
        403
    );
    let signed = token::sign_url(
        &server.http_url("live/a.flv"),
        &Secret::new("ply").unwrap(),
        Verb::Play,
        later,
    )
    .unwrap();
    let out = dir.join("curl.flv");
    let curl = curl_plays(&signed, &out);
    server.wait_for_players("live/a", 1, SUBSCRIBE);
    wait_for_received(&out, FINISH);
    stop(publisher, FINISH);
    wait_success(curl, FINISH, "curl with a signed URL");
    assert_received_matches(&published, &read_flv(&out), false);
}

/// curl playing HTTP-FLV from `url` into `out`, until the stream ends.
fn curl_plays(url: &str, out: &Path) -> Child {
    let mut curl = Command::new("curl");
    curl.args(["-s", "--max-time", "600", "-o"])
        .arg(out)
        .arg(url);
    spawn(curl)
}

/// `rtmpd sign ARGS` (the real binary): (success, stdout trimmed, stderr).
fn rtmpd_sign(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
        .arg("sign")
        .args(args)
        .output()
        .expect("running rtmpd sign");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The URL `rtmpd sign ARGS` prints for `url`: `url` with a token appended,
/// expiring `expires_in` seconds after the call. Returns it and its query.
fn signed_by_rtmpd(args: &[&str], url: &str, expires_in: u64) -> (String, String) {
    let before = now();
    let mut all = args.to_vec();
    all.push(url);
    let (ok, signed, stderr) = rtmpd_sign(&all);
    assert!(ok, "rtmpd sign {all:?}: {stderr}");
    let query = signed
        .strip_prefix(&format!("{url}?"))
        .unwrap_or_else(|| panic!("{signed:?} is not {url} with a query"))
        .to_owned();
    let expires: u64 = query
        .strip_prefix("expires=")
        .and_then(|q| q.split('&').next())
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no expires in {signed:?}"));
    assert!(
        (before + expires_in..=now() + expires_in).contains(&expires),
        "{signed:?}: expires {expires}, asked for {expires_in} s after {before}"
    );
    (signed, query)
}

/// `rtmpd sign` makes URLs the server admits: a publish URL with `--secret`, a
/// play URL from the config file's play secret (`--play` for RTMP, implied for
/// HTTP-FLV), each for its verb only, with the expiry asked for (3600 s unless
/// told); an app the file gives no such secret is an error, not a useless URL.
#[test]
fn rtmpd_sign_makes_urls_the_server_admits() {
    let rules = "publish_secret = \"pub\"\n[app.live]\nplay_secret = \"ply\"\n";
    let server = start_with_rules(rules);
    let dir = TempDir::new("sign");
    let config = dir.join("rtmpd.toml");
    std::fs::write(&config, rules).unwrap();
    let config = config.to_str().unwrap();

    let (publish_url, publish_query) = signed_by_rtmpd(
        &["--secret", "pub", "--expires-in", "120"],
        &server.url("live/s"),
        120,
    );
    let (play_rtmp, _) =
        signed_by_rtmpd(&["--config", config, "--play"], &server.url("live/s"), 3600);
    let (play_http, play_query) =
        signed_by_rtmpd(&["--config", config], &server.http_url("live/s.flv"), 3600);

    // A play token never publishes.
    let stderr = publish_refused(&server, &format!("live/s?{play_query}"));
    assert!(stderr.contains("signature does not match"), "{stderr}");

    let played = dir.join("rtmpdump.flv");
    let rtmp_player = play_rtmpdump(&play_rtmp, &played);
    server.wait_for_players("live/s", 1, SUBSCRIBE);
    // Looped, until both players have had enough, however slowly they came.
    let (input, published) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(&publish_url, &input, true);
    server.wait_for_frames("live/s", SUBSCRIBE);
    // A publish token never plays.
    let http = server.http_url("live/s.flv");
    assert_eq!(curl_status(&format!("{http}?{publish_query}")), 403);
    let curled = dir.join("curl.flv");
    let curl = curl_plays(&play_http, &curled);
    server.wait_for_players("live/s", 2, SUBSCRIBE);
    wait_for_received(&curled, FINISH);
    wait_for_received(&played, FINISH);
    stop(publisher, FINISH);
    wait_success(rtmp_player, FINISH, "rtmpdump with the signed play URL");
    wait_success(curl, FINISH, &format!("curl {play_http}"));
    assert_received_from_start(&published, &read_flv(&played));
    assert_received_matches(&published, &read_flv(&curled), false);

    let (ok, _, stderr) = rtmpd_sign(&["--config", config, "--play", &server.url("other/s")]);
    assert!(
        !ok && stderr.contains("sets no play_secret for app \"other\""),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------
// Hooks

/// One request the hook backend received.
#[derive(Debug, Clone)]
pub struct HookCall {
    pub path: String,
    pub fields: Vec<(String, String)>,
}

impl HookCall {
    pub fn field(&self, name: &str) -> &str {
        self.fields.iter().find(|(n, _)| n == name).map_or_else(
            || panic!("no field {name} in {self:?}"),
            |(_, v)| v.as_str(),
        )
    }
}

/// A hook backend on 127.0.0.1: records every call, and answers by path:
/// `/allow*` 200, `/deny*` 403, `/rename*` 302 to `renamed`, `/relay*` 302 to an
/// rtmp:// URL, `/moved*` 302 without a Location, `/slow*` 200 after 600 s.
pub struct HookServer {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<HookCall>>>,
    tls: bool,
}

impl HookServer {
    pub fn start() -> HookServer {
        Self::start_with(None)
    }

    /// A backend that speaks HTTPS with this certificate chain and key (PEM);
    /// its URLs name it `localhost`.
    pub fn start_tls(chain_pem: &str, key_pem: &str) -> HookServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Self::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let record = calls.clone();
        let is_tls = tls.is_some();
        // Ends with the test process; each call gets a thread of its own.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                let _ = stream.set_read_timeout(Some(FINISH));
                match &tls {
                    None => thread::spawn(move || answer(stream, &record)),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                        let stream = rustls::StreamOwned::new(conn, stream);
                        thread::spawn(move || answer(stream, &record))
                    }
                };
            }
        });
        HookServer {
            addr,
            calls,
            tls: is_tls,
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls {
            false => format!("http://{}/{path}", self.addr),
            true => format!("https://localhost:{}/{path}", self.addr.port()),
        }
    }

    pub fn calls(&self) -> Vec<HookCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits for a call whose `call` field is `call`, and returns it.
    pub fn wait_call(&self, call: &str) -> HookCall {
        let mut found = None;
        wait_for(&format!("a {call} hook call"), FINISH, || {
            found = self
                .calls()
                .into_iter()
                .find(|c| c.fields.iter().any(|(n, v)| n == "call" && v == call));
            found.is_some()
        });
        found.unwrap()
    }
}

fn answer(stream: impl Read + Write, record: &Mutex<Vec<HookCall>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let fields = String::from_utf8_lossy(&body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(n), form_decode(v))
        })
        .collect();
    record.lock().unwrap().push(HookCall {
        path: path.clone(),
        fields,
    });
    let reply = if path.starts_with("/deny") {
        "403 Forbidden\r\n".to_owned()
    } else if path.starts_with("/rename") {
        // %6E is "n": a Location names a stream by the rule clients follow.
        "302 Found\r\nLocation: re%6Eamed\r\n".to_owned()
    } else if path.starts_with("/relay") {
        "302 Found\r\nLocation: rtmp://elsewhere/live/x\r\n".to_owned()
    } else if path.starts_with("/moved") {
        "302 Found\r\n".to_owned()
    } else {
        if path.starts_with("/slow") {
            // Longer than any test: the server's hook_timeout ends the call.
            thread::sleep(Duration::from_secs(600));
        }
        "200 OK\r\n".to_owned()
    };
    let stream = reader.get_mut();
    let _ = stream.write_all(
        format!("HTTP/1.1 {reply}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let _ = stream.flush();
}

/// application/x-www-form-urlencoded decoding: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn hooks_allow_deny_rename_and_send_nginx_rtmp_fields() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "[app.allow]\non_publish = \"{}\"\n[app.deny]\non_publish = \"{}\"\n\
         [app.rename]\non_publish = \"{}\"\n[app.relay]\non_publish = \"{}\"\n",
        hooks.url("allow"),
        hooks.url("deny"),
        hooks.url("rename"),
        hooks.url("relay"),
    ));
    publish_admitted(
        &server,
        "allow/cam?token=abc&x=1%202",
        "allow/cam",
        "hook-allow",
    );
    let call = hooks.wait_call("publish");
    assert_eq!(call.path, "/allow");
    assert_eq!(call.field("addr"), "127.0.0.1");
    assert_eq!(call.field("app"), "allow");
    assert_eq!(call.field("name"), "cam");
    assert_eq!(call.field("type"), "live");
    assert_eq!(call.field("token"), "abc");
    assert_eq!(call.field("x"), "1 2");
    assert!(
        call.field("tcurl").starts_with("rtmp://127.0.0.1:"),
        "{call:?}"
    );
    assert!(
        call.field("flashver").contains("FMLE"),
        "ffmpeg's flashVer: {call:?}"
    );
    assert!(call.field("clientid").parse::<u64>().is_ok());
    for name in ["swfurl", "pageurl"] {
        call.field(name);
    }

    let stderr = publish_refused(&server, "deny/cam");
    assert!(
        stderr.contains("refused by the server's on_publish check"),
        "{stderr}"
    );
    // 3xx with Location: the stream is published under that name.
    publish_admitted(&server, "rename/cam", "rename/renamed", "hook-rename");
    // nginx-rtmp relays to an rtmp:// Location; rtmpd relays only as its config says.
    publish_refused(&server, "relay/cam");
}

/// The checks run in their order and stop at the first refusal: a client the IP
/// rules or the secret turn away never reaches the hook.
#[test]
fn ip_rules_then_secret_then_hook() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "[app.ip]\ndeny_publish = [\"127.0.0.1\"]\non_publish = \"{}\"\n\
         [app.sec]\npublish_secret = \"s\"\non_publish = \"{}\"\n",
        hooks.url("allow/ip"),
        hooks.url("allow/sec"),
    ));
    let (code, why) = publish_status(&server, "ip/cam?secret=s");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(why.contains("not allowed from your address"), "{why}");
    let (_, why) = publish_status(&server, "sec/cam?secret=wrong");
    assert!(why.contains("wrong secret"), "{why}");
    publish_admitted(&server, "sec/cam?secret=s", "sec/cam", "all-checks-pass");
    let paths: Vec<String> = hooks.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(
        paths,
        ["/allow/sec"],
        "only the admitted publish was asked about"
    );
}

/// `_done` hooks go out in the background: a backend that takes its time (here
/// longer than the test) neither holds a connection's teardown nor the key, so
/// the next publisher gets in while the call is still waiting for its answer.
#[test]
fn done_hooks_never_delay_teardown_or_the_next_publisher() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "hook_timeout = 300\non_publish_done = \"{}\"\n",
        hooks.url("slow/publish_done"),
    ));
    let mut first = new_publisher(&server, "live/cam");
    send_keyframe(&mut first);
    server.wait_for_frames("live/cam", SUBSCRIBE);
    drop(first);
    // The hook answers after 600 s and may take 300: a key released within the
    // (60 s) bound was not waiting for it.
    wait_for("the key released", REFUSAL, || !server.is_live("live/cam"));
    wait_for("the connection's end", REFUSAL, || {
        server.handle.open_connections() == 0
    });
    // Arrived at the backend, which will not answer for 600 s.
    hooks.wait_call("publish_done");
    let mut second = new_publisher(&server, "live/cam");
    send_keyframe(&mut second);
    server.wait_for_frames("live/cam", SUBSCRIBE);
}

/// `on_play` answers as `on_publish` does: a 3xx with Location plays that
/// stream of the app instead (RTMP and HTTP-FLV players alike), and a 3xx
/// without Location admits (either verb).
#[test]
fn on_play_redirects_and_a_3xx_without_location_admits() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "[app.pr]\non_play = \"{}\"\n\
         [app.moved]\non_publish = \"{}\"\non_play = \"{}\"\n",
        hooks.url("rename/play"),
        hooks.url("moved/publish"),
        hooks.url("moved/play"),
    ));
    let dir = TempDir::new("play-redirect");
    let out = dir.join("played.flv");
    let player = play_rtmpdump(&server.url("pr/cam"), &out);
    server.wait_for_players("pr/renamed", 1, SUBSCRIBE);
    let publisher = publish_ffmpeg(&server.url("pr/renamed"), &fixture("av.flv"), false);
    wait_success(publisher, FINISH, "publisher of pr/renamed");
    wait_success(player, FINISH, "rtmpdump playing pr/cam");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);

    let mut publisher = new_publisher(&server, "pr/renamed");
    send_keyframe(&mut publisher);
    server.wait_for_frames("pr/renamed", SUBSCRIBE);
    let mut http_player = TcpStream::connect(server.http_addr()).unwrap();
    http_player
        .write_all(b"GET /pr/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    server.wait_for_players("pr/renamed", 1, SUBSCRIBE);
    assert!(!server.is_live("pr/cam"));

    publish_admitted(&server, "moved/cam", "moved/cam", "hook-3xx-no-location");
    let paths: Vec<String> = hooks.calls().into_iter().map(|c| c.path).collect();
    for path in ["/moved/publish", "/moved/play"] {
        assert!(paths.iter().any(|p| p == path), "{path}: {paths:?}");
    }
}

/// Each refusal is one warning in the log (the real binary's) that names the
/// client's address and port and the rule that refused it, and for a hook that
/// failed, why: its answer, its timeout or its error.
#[test]
fn the_log_names_the_address_and_the_rule_of_each_refusal() {
    let hooks = HookServer::start();
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = TempDir::new("refusal-log");
    let config = dir.join("rtmpd.toml");
    std::fs::write(
        &config,
        format!(
            "[app.ip]\ndeny_publish = [\"127.0.0.0/8\"]\n\
             [app.sec]\npublish_secret = \"s\"\n[app.deny]\non_publish = \"{}\"\n\
             [app.slow]\non_publish = \"{}\"\nhook_timeout = 0.5\n\
             [app.dead]\non_publish = \"http://{dead}/x\"\n",
            hooks.url("deny"),
            hooks.url("slow"),
        ),
    )
    .unwrap();
    let server = crate::process::ServerProcess::start(
        "refusal-log",
        false,
        &["--config", config.to_str().unwrap()],
    );
    for (target, rule, why) in [
        ("ip/cam", "deny_publish 127.0.0.0/8", ""),
        ("sec/cam?secret=no", "publish_secret", "wrong secret"),
        ("deny/cam", "on_publish", "403"),
        (
            "slow/cam",
            "on_publish",
            "no answer within 0.5 s (hook_timeout)",
        ),
        ("dead/cam", "on_publish", "Connection refused"),
    ] {
        let url = server.rtmp_url(target);
        let mut client = rtmpd::client::Client::connect(&url, &options())
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let local = client.local_addr().unwrap();
        let name = client.url().name.clone();
        assert!(client.publish(&name).is_err(), "{target} must be refused");
        let key = target.split('?').next().unwrap();
        let needle = format!("{local}: publish {key} refused by {rule}");
        let mut line = String::new();
        wait_for(&needle, REFUSAL, || {
            line = server
                .log()
                .lines()
                .find(|l| l.contains(&needle))
                .unwrap_or_default()
                .to_owned();
            !line.is_empty()
        });
        assert!(line.contains("WARN") && line.contains(why), "{line}");
        assert_eq!(server.log().matches(&needle).count(), 1, "once");
    }
}

#[test]
fn a_slow_or_unreachable_hook_refuses_unless_fail_open() {
    let hooks = HookServer::start();
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = start_with_rules(&format!(
        "hook_timeout = 0.5\n[app.slow]\non_publish = \"{}\"\n\
         [app.dead]\non_publish = \"http://{dead}/x\"\n\
         [app.open]\non_publish = \"http://{dead}/x\"\nhook_fail_open = true\n",
        hooks.url("slow"),
    ));
    // The hook answers 200 only after 600 s: a refusal within publish_refused's
    // 10 s can only come from the 0.5 s timeout.
    let stderr = publish_refused(&server, "slow/cam");
    assert!(stderr.contains("could not check it"), "{stderr}");
    publish_refused(&server, "dead/cam");
    publish_admitted(&server, "open/cam", "open/cam", "hook-fail-open");
}

#[test]
fn done_hooks_carry_byte_counts_and_players_go_through_on_play() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "on_publish_done = \"{}\"\non_play = \"{}\"\non_play_done = \"{}\"\n\
         [app.closed]\non_play = \"{}\"\n",
        hooks.url("allow/publish_done"),
        hooks.url("allow/play"),
        hooks.url("allow/play_done"),
        hooks.url("deny/play"),
    ));
    publish_admitted(&server, "live/done", "live/done", "done-hooks");
    let published = hooks.wait_call("publish_done");
    let bytes_in: u64 = published.field("bytes_in").parse().unwrap();
    let av_size = std::fs::metadata(fixture("av.flv")).unwrap().len();
    assert!(
        bytes_in > av_size / 2,
        "publish_done bytes_in {bytes_in} for a {av_size}-byte file"
    );
    assert_eq!(published.field("name"), "done");
    published.field("duration").parse::<u64>().unwrap();
    let play = hooks.wait_call("play");
    assert_eq!(play.field("name"), "done");
    let played = hooks.wait_call("play_done");
    let bytes_out: u64 = played.field("bytes_out").parse().unwrap();
    assert!(bytes_out > av_size / 2, "play_done bytes_out {bytes_out}");

    // An HTTP-FLV player's play_done counts what crossed its connection: the
    // request in, the whole response out.
    let mut publisher = new_publisher(&server, "live/http");
    send_keyframe(&mut publisher);
    server.wait_for_frames("live/http", SUBSCRIBE);
    let request = format!(
        "GET /live/http.flv?who=me HTTP/1.1\r\nHost: {}\r\nUser-Agent: test\r\n\r\n",
        server.http_addr()
    );
    let mut player = TcpStream::connect(server.http_addr()).unwrap();
    player.write_all(request.as_bytes()).unwrap();
    server.wait_for_players("live/http", 1, SUBSCRIBE);
    drop(publisher);
    player.set_read_timeout(Some(FINISH)).unwrap();
    let mut response = Vec::new();
    player.read_to_end(&mut response).unwrap();
    let mut http_done = None;
    wait_for("the HTTP player's play_done", FINISH, || {
        http_done = hooks.calls().into_iter().find(|c| {
            c.fields
                .iter()
                .any(|(n, v)| n == "call" && v == "play_done")
                && c.field("name") == "http"
        });
        http_done.is_some()
    });
    let http_done = http_done.unwrap();
    assert_eq!(http_done.field("who"), "me");
    assert_eq!(http_done.field("bytes_in"), request.len().to_string());
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    assert_eq!(http_done.field("bytes_out"), response.len().to_string());

    // HTTP-FLV players are asked too: the on_play refusal is a 403.
    let mut publisher = new_publisher(&server, "closed/cam");
    send_keyframe(&mut publisher);
    server.wait_for_frames("closed/cam", SUBSCRIBE);
    assert_eq!(curl_status(&server.http_url("closed/cam.flv")), 403);
    let mut player = connect_with(&server, "closed/cam", &options());
    let err = player.play("cam").unwrap_err();
    assert_eq!(err.status_code(), Some("NetStream.Play.Failed"), "{err}");
}

/// What a WebSocket-FLV player to `path` (with its query) gets: the HTTP status
/// of a refused upgrade, or 101 and the start of the FLV.
fn websocket_status(server: &TestServer, path: &str) -> u16 {
    match crate::http_support::websocket(server.http_addr(), path, SUBSCRIBE) {
        Ok(mut ws) => {
            match ws.read() {
                Ok(tungstenite::Message::Binary(data)) => {
                    assert!(data.starts_with(b"FLV"), "{path}: {data:?}")
                }
                other => panic!("{path}: admitted, then {other:?}"),
            }
            101
        }
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// WebSocket-FLV players are admitted as HTTP-FLV players are: the play secret
/// or a play token in the URL's query, then `on_play` (asked with the query's
/// arguments); a refusal is a 403 before the upgrade.
#[test]
fn websocket_flv_players_pass_the_same_checks() {
    let hooks = HookServer::start();
    let server = start_with_rules(&format!(
        "on_play = \"{}\"\n[app.closed]\non_play = \"{}\"\n\
         [app.sec]\nplay_secret = \"ply\"\npublish_secret = \"pub\"\n",
        hooks.url("allow/play"),
        hooks.url("deny/play"),
    ));
    let mut publishers = Vec::new();
    for path in ["closed/cam", "sec/cam?secret=pub"] {
        let mut publisher = new_publisher(&server, path);
        send_keyframe(&mut publisher);
        let key = path.split('?').next().unwrap();
        server.wait_for_frames(key, SUBSCRIBE);
        publishers.push(publisher);
    }
    assert_eq!(websocket_status(&server, "closed/cam.flv?who=ws"), 403);
    let asked = hooks.wait_call("play");
    assert_eq!(
        (asked.path.as_str(), asked.field("app"), asked.field("name")),
        ("/deny/play", "closed", "cam")
    );
    assert_eq!(asked.field("who"), "ws", "the query's arguments");

    let later = now() + 600;
    assert_eq!(websocket_status(&server, "sec/cam.flv"), 403);
    assert_eq!(websocket_status(&server, "sec/cam.flv?secret=pub"), 403);
    let publish_token = token("pub", Verb::Publish, "sec/cam", later);
    assert_eq!(
        websocket_status(&server, &format!("sec/cam.flv?{publish_token}")),
        403
    );
    let expired = token("ply", Verb::Play, "sec/cam", now() - 1);
    assert_eq!(
        websocket_status(&server, &format!("sec/cam.flv?{expired}")),
        403
    );
    assert_eq!(websocket_status(&server, "sec/cam.flv?secret=ply"), 101);
    let play_token = token("ply", Verb::Play, "sec/cam", later);
    assert_eq!(
        websocket_status(&server, &format!("sec/cam.flv?{play_token}")),
        101
    );
    // Admitted by the secret, then asked: the global on_play allowed both.
    let allowed = hooks
        .calls()
        .into_iter()
        .filter(|c| c.path == "/allow/play" && c.field("app") == "sec")
        .count();
    assert_eq!(allowed, 2, "{:?}", hooks.calls());
}

// ---------------------------------------------------------------------------------
// IP rules, the API token, brute force

#[test]
fn ip_rules_allow_and_deny_like_nginx_rtmp() {
    let server = start_with_rules(
        "[app.local]\nallow_publish = [\"127.0.0.1\", \"192.168.0.0/16\"]\n\
         deny_publish = [\"all\"]\n\
         [app.lan]\nallow_publish = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
         [app.blocked]\ndeny_play = [\"127.0.0.0/8\"]\n\
         [app.carved]\nallow_publish = [\"127.0.0.0/8\"]\ndeny_publish = [\"127.0.0.1\"]\n\
         [app.mapped]\nallow_publish = [\"::ffff:127.0.0.1\"]\n",
    );
    publish_admitted(&server, "local/cam", "local/cam", "ip-allowed");
    let stderr = publish_refused(&server, "lan/cam");
    assert!(stderr.contains("not allowed from your address"), "{stderr}");
    // The most specific entry decides: one address denied inside an allowed
    // range (nginx-rtmp's `deny 127.0.0.1; allow 127.0.0.0/8; deny all;`) ...
    publish_refused(&server, "carved/cam");
    // ... and an IPv4 address written mapped is that IPv4 address.
    publish_admitted(&server, "mapped/cam", "mapped/cam", "ip-mapped-entry");
    let mut publisher = new_publisher(&server, "blocked/cam");
    send_keyframe(&mut publisher);
    server.wait_for_frames("blocked/cam", SUBSCRIBE);
    assert_eq!(curl_status(&server.http_url("blocked/cam.flv")), 403);
    let mut player = connect_with(&server, "blocked/cam", &options());
    let err = player.play("cam").unwrap_err();
    assert_eq!(err.status_code(), Some("NetStream.Play.Failed"), "{err}");
}

/// IPv6 clients reach the hooks and the IP rules with their IPv6 address; an IPv4
/// client arriving mapped (`::ffff:127.0.0.1`, on a listener bound to a mapped
/// address) is matched as the plain IPv4 address it is.
#[test]
fn ipv6_and_mapped_peers_meet_hooks_and_ip_rules_as_themselves() {
    if !ipv6_loopback("IPv6 hooks and IP rules") {
        return;
    }
    let hooks = HookServer::start();
    let rules = format!(
        "[app.v6]\nallow_publish = [\"::1\"]\ndeny_publish = [\"all\"]\non_publish = \"{}\"\n\
         [app.v4]\nallow_publish = [\"127.0.0.1\"]\ndeny_publish = [\"all\"]\n",
        hooks.url("allow"),
    );
    let server = start_server_with(|c| {
        c.listen = ["[::1]:0", "[::ffff:127.0.0.1]:0"]
            .map(|a| rtmpd::config::ListenAddr::Addr(a.parse().unwrap()))
            .to_vec();
        rtmpd::config::file::apply(&rules, c).unwrap();
    });
    assert!(server.addr.is_ipv6(), "the first listener is [::1]");
    ffmpeg_plays_every_tag(&server, &server.url("v6/cam"), "v6/cam");
    let call = hooks.wait_call("publish");
    assert_eq!(call.field("addr"), "::1");
    assert!(call.field("tcurl").starts_with("rtmp://[::1]:"), "{call:?}");
    publish_refused(&server, "v4/cam");

    // The mapped listener: ffmpeg connects to 127.0.0.1 on its port.
    let (_, mapped) = server.listeners[1];
    let v4 = format!("rtmp://127.0.0.1:{}/v4/cam", mapped.port());
    let dir = TempDir::new("mapped-rules");
    let out = dir.join("played.flv");
    let player = play_rtmpdump(&v4, &out);
    server.wait_for_players("v4/cam", 1, SUBSCRIBE);
    let publisher = publish_ffmpeg(&v4, &fixture("av.flv"), false);
    wait_success(
        publisher,
        FINISH,
        "ffmpeg publishing to the mapped listener",
    );
    wait_success(player, FINISH, "rtmpdump");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

fn api_get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpResponse {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    exchange(addr, req.as_bytes(), FINISH)
}

#[test]
fn the_api_needs_its_token_and_can_have_its_own_listener() {
    let server = start_server_with(|c| {
        rtmpd::config::file::apply("api_token = \"t0ken\"\n", c).unwrap();
        c.api_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    });
    let api = server.api.expect("an API listener");
    for path in ["/api/streams", "/api/server", "/metrics"] {
        let r = api_get(api, path, None);
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(api_get(api, path, Some("wrong")).status, 401, "{path}");
        assert_eq!(api_get(api, path, Some("t0ken")).status, 200, "{path}");
        // The players' listener no longer serves the API.
        assert_eq!(api_get(server.http_addr(), path, Some("t0ken")).status, 404);
    }
    // The API never shows secrets or query strings.
    let mut publisher = new_publisher(&server, "live/cam?secret=hidden");
    send_keyframe(&mut publisher);
    server.wait_for_frames("live/cam", SUBSCRIBE);
    let body = api_get(api, "/api/streams", Some("t0ken")).text();
    assert!(
        body.contains("\"cam\"") && !body.contains("hidden"),
        "{body}"
    );
}

#[test]
fn ten_failures_in_a_minute_close_new_connections_at_accept() {
    let server = start_with_rules("api_token = \"t0ken\"\n");
    for _ in 0..10 {
        assert_eq!(
            api_get(server.http_addr(), "/metrics", Some("guess")).status,
            401
        );
    }
    // Closed at accept: no answer at all, even to the right token, and on the
    // RTMP port too.
    let mut socket = TcpStream::connect(server.http_addr()).unwrap();
    let _ = socket.write_all(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(socket.read(&mut buf), Ok(0) | Err(_)),
        "a blocked address gets no answer"
    );
    let mut rtmp = TcpStream::connect(server.addr).unwrap();
    rtmp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = rtmp.write_all(&[3u8; 1537]);
    assert!(matches!(rtmp.read(&mut buf), Ok(0) | Err(_)), "nor on RTMP");
    wait_for("nothing held open", SUBSCRIBE, || {
        server.handle.open_connections() == 0
    });
}

/// Secrets, tokens and query strings reach the checks and the hooks, never the
/// log: a server logging at debug level, shown each kind of them right and
/// wrong, over RTMP and HTTP, in a well-formed request and a malformed one,
/// writes none of them.
#[test]
fn no_secret_token_or_query_reaches_the_log() {
    let hooks = HookServer::start();
    let dir = TempDir::new("secret-log");
    let config = dir.join("rtmpd.toml");
    std::fs::write(
        &config,
        format!(
            "api_token = \"ApiToken3\"\nhook_timeout = 60\n[app.sec]\npublish_secret = \"PubSecret1\"\n\
             play_secret = \"PlaySecret2\"\non_play = \"{}\"\non_play_done = \"{}\"\n",
            hooks.url("allow/play"),
            hooks.url("allow/play_done"),
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let server = crate::process::ServerProcess::start_with("secret-log", true, &args, |cmd, _| {
        cmd.env("RUST_LOG", "debug");
    });
    let http = server.http.unwrap();
    let signed = token("PlaySecret2", Verb::Play, "sec/cam", now() + 600);
    let sig = signed.split_once("sig=").unwrap().1.to_owned();

    // Looped: live until both players are on, however slowly they come.
    let (input, _) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(
        &server.url("sec/cam?secret=PubSecret1&token=Token4"),
        &input,
        true,
    );
    let publisher = ChildGuard::new(publisher);
    server.wait_for_log("publish", "sec/cam");
    let refused = publish_ffmpeg(
        &server.url("sec/x?secret=Wrong5"),
        &fixture("av.flv"),
        false,
    );
    assert!(!wait_with_stderr(refused, REFUSAL).0.success());

    let played = dir.join("played.flv");
    let rtmp_player = play_rtmpdump(&server.url("sec/cam?secret=PlaySecret2"), &played);
    let http_player = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "600"])
        .arg(format!("http://{http}/sec/cam.flv?{signed}"))
        .spawn()
        .expect("running curl");
    let http_player = ChildGuard::new(http_player);
    let head = |query: &str| {
        let req = format!("HEAD /sec/cam.flv?{query} HTTP/1.1\r\nHost: {http}\r\n\r\n");
        exchange(http, req.as_bytes(), FINISH).status
    };
    assert_eq!(head("secret=PlaySecret2"), 200);
    assert_eq!(head("secret=Wrong7"), 403);
    let malformed = b"GET /sec/my cam.flv?secret=PlaySecret2 HTTP/1.1\r\n\r\n";
    assert_eq!(exchange(http, malformed, FINISH).status, 400);
    assert_eq!(api_get(http, "/api/streams", Some("ApiToken3")).status, 200);
    assert_eq!(api_get(http, "/api/streams", Some("Wrong6")).status, 401);

    wait_for("both players", SUBSCRIBE, || {
        let doc = api_get(http, "/api/streams/sec/cam", Some("ApiToken3")).json();
        doc["players"].as_array().is_some_and(|p| p.len() == 2)
    });
    stop(publisher.take(), FINISH);
    wait_success(rtmp_player, FINISH, "rtmpdump");
    wait_success(http_player.take(), FINISH, "curl");
    let done = hooks.wait_call("play_done");
    // The hooks are the backend: they get the query (a control for the check).
    assert!(
        hooks.calls().iter().any(|c| c
            .fields
            .iter()
            .any(|(n, v)| n == "secret" && v == "PlaySecret2")),
        "{done:?}"
    );

    let log = server.log();
    assert!(
        log.contains(" DEBUG ")
            && log.contains(": publish sec/cam")
            && log.contains("malformed request line"),
        "{log}"
    );
    for secret in [
        "PubSecret1",
        "PlaySecret2",
        "ApiToken3",
        "Token4",
        "Wrong5",
        "Wrong6",
        "Wrong7",
        &sig,
        "secret=",
        "sig=",
        "expires=",
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret:?} in the log: {lines:#?}");
    }
    server.assert_no_panic();
}
