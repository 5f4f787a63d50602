//! The config file with the real binary: `--check-config` on good and bad files
//! (the shipped example included), and a SIGHUP reload that changes who may
//! publish while a stream keeps playing byte-exact.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rtmpd::config::Verb;

use crate::process::ServerProcess;
use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `rtmpd --check-config FILE`: (success, stdout + stderr).
fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
        .arg("--check-config")
        .arg(path)
        .output()
        .expect("running rtmpd --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_passes_the_example_and_reports_errors_with_line_numbers() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtmpd.example.toml");
    let (ok, text) = check_config(&example);
    assert!(ok, "the shipped example must pass: {text}");

    let dir = TempDir::new("check-config");
    let cases = [
        (
            "max_connections = 10\n\nmax_conections = 5\n",
            "line 3",
            "unknown key `max_conections`",
        ),
        (
            "[app.live]\npublish_secret = \"x\"\nrecording = 1\n",
            "line 3",
            "unknown field `recording`",
        ),
        (
            "[app.live]\nrecord_path = \"/abs/{key}.flv\"\n",
            "line 2",
            "must be relative to record_dir",
        ),
        (
            "record = true\n",
            "",
            "record = true at the top needs record_dir (or --record DIR)",
        ),
        (
            "gop_cache = true\nchunk_size = 100\n",
            "line 2",
            "chunk_size: must be a whole number",
        ),
        (
            "deny_play = [\"10.0.0.0/40\"]\n",
            "line 1",
            "not an address",
        ),
        ("listen = \n", "line 1", ""),
    ];
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let path = dir.join(&format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, out) = check_config(&path);
        assert!(!ok, "{text:?} must be refused");
        assert!(out.contains(line) && out.contains(what), "{text:?}: {out}");
        assert!(
            out.contains(&path.display().to_string()),
            "names the file: {out}"
        );
    }
    let (ok, out) = check_config(&dir.join("missing.toml"));
    assert!(!ok && out.contains("cannot read"), "{out}");
}

/// The example is what the .deb installs as /etc/rtmpd/rtmpd.toml and the unit
/// starts the server with: a fresh install must share no known secret and let
/// no one else publish, and still serve: players from anywhere, publishers on
/// the machine itself.
#[test]
fn the_shipped_config_sets_no_secret_and_lets_only_this_machine_publish() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtmpd.example.toml");
    let config = rtmpd::config::file::check(&example).expect("the example loads");
    let policy = &config.policy;
    let apps = std::iter::once("live").chain(policy.apps.keys().map(String::as_str));
    for name in apps {
        let app = policy.app(name);
        for verb in [Verb::Publish, Verb::Play] {
            assert!(app.secret(verb).is_none(), "app {name}: a {verb:?} secret");
        }
        let (publish, play) = (app.ip_rules(Verb::Publish), app.ip_rules(Verb::Play));
        for outside in [
            "203.0.113.5",
            "192.168.1.2",
            "2001:db8::5",
            "::ffff:10.0.0.1",
        ] {
            let ip = outside.parse().unwrap();
            assert!(
                publish.check(ip).is_err(),
                "app {name}: {outside} publishes"
            );
            assert!(play.check(ip).is_ok(), "app {name}: {outside} cannot play");
        }
        for local in ["127.0.0.1", "::1"] {
            assert!(
                publish.check(local.parse().unwrap()).is_ok(),
                "{name}: {local}"
            );
        }
    }

    // Run with it (on test ports): ffmpeg here publishes, rtmpdump plays it all.
    let server = ServerProcess::start("shipped", false, &["--config", example.to_str().unwrap()]);
    let dir = TempDir::new("shipped-play");
    let played = dir.join("played.flv");
    let player = play_rtmpdump(&server.url("live/cam"), &played);
    server.wait_for_log("play", "live/cam");
    let publisher = publish_ffmpeg(&server.url("live/cam"), &fixture("av.flv"), false);
    wait_success(publisher, TIMEOUT, "ffmpeg publishing from 127.0.0.1");
    wait_success(player, TIMEOUT, "rtmpdump");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&played), true);
    server.assert_no_panic();
}

#[test]
fn sighup_reload_changes_who_may_publish_while_a_stream_keeps_playing() {
    let dir = TempDir::new("reload");
    let config = dir.join("rtmpd.toml");
    std::fs::write(&config, "[app.live]\npublish_secret = \"old\"\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let server = ServerProcess::start("reload", false, &["--config", config_arg]);

    // A stream that plays through the reloads.
    let played = dir.join("played.flv");
    let player = play_rtmpdump(&server.url("live/keep"), &played);
    server.wait_for_log("play", "live/keep");
    let keep = publish_ffmpeg(
        &server.url("live/keep?secret=old"),
        &fixture("av.flv"),
        true,
    );
    let keep = ChildGuard::new(keep);
    server.wait_for_log("publish", "live/keep");

    let publish = |path: &str| {
        let child = publish_ffmpeg(&server.url(path), &fixture("audio.flv"), false);
        wait_with_stderr(child, TIMEOUT)
    };
    let (status, stderr) = publish("live/new?secret=new");
    assert!(!status.success(), "refused before the reload: {stderr}");

    std::fs::write(
        &config,
        "max_connections = 77\n[app.live]\npublish_secret = \"new\"\n",
    )
    .unwrap();
    server.signal("HUP");
    wait_for("the reload", TIMEOUT, || {
        server.log().contains("configuration reloaded")
    });
    let log = server.log();
    assert!(
        log.contains("max_connections changed to 77") && log.contains("needs a restart"),
        "{log}"
    );
    let (status, stderr) = publish("live/new?secret=new");
    assert!(status.success(), "admitted after the reload: {stderr}");
    server.wait_for_log("publish", "live/new");
    let (status, _) = publish("live/other?secret=old");
    assert!(!status.success(), "the old secret no longer works");

    // A file with errors changes nothing.
    std::fs::write(
        &config,
        "[app.live]\npublish_secret = \"newer\"\nbogus = 1\n",
    )
    .unwrap();
    server.signal("HUP");
    wait_for("the refused reload", TIMEOUT, || {
        server.log().contains("configuration not reloaded")
    });
    let (status, stderr) = publish("live/again?secret=new");
    assert!(status.success(), "the rules in force stay: {stderr}");

    // The first stream played on, untouched: every tag, byte for byte.
    wait_success(keep.take(), TIMEOUT, "the first publisher");
    wait_success(player, TIMEOUT, "rtmpdump");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&played), true);
    server.assert_no_panic();
}
