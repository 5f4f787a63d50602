//! Running rtmpd for good (issue 16): what `--version` says; log lines for
//! people, for journald and for log shippers; readiness and stop notifications to
//! systemd (a fake `NOTIFY_SOCKET` in the test).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;
use crate::support::{wait_for, TempDir};

/// How long to wait for what the server does at once: a bound on hangs only,
/// generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

fn rtmpd_output(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
        .args(args)
        .output()
        .expect("running rtmpd");
    assert!(out.status.success(), "rtmpd {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `git ARGS` in the source tree, if it is a git checkout of its own.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[test]
fn version_names_the_git_commit_and_the_build_date() {
    let line = rtmpd_output(&["--version"]);
    assert_eq!(rtmpd_output(&["-V"]), line, "-V is --version");
    let line = line.trim_end();
    let rest = line
        .strip_prefix(&format!("rtmpd {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `rtmpd VERSION (...)`: {line:?}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("no build date: {line:?}"));

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let checkout = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| Path::new(&top).canonicalize().ok() == Some(manifest.clone()));
    if checkout {
        let head = git(&["rev-parse", "HEAD"]).expect("HEAD of the checkout");
        let hash = commit
            .strip_prefix("commit ")
            .unwrap_or_else(|| panic!("a checkout's build names its commit: {line:?}"));
        assert!(
            hash.len() >= 7 && head.starts_with(hash),
            "{hash} is not HEAD ({head})"
        );
    } else {
        eprintln!("not a git checkout: expecting an unknown commit");
        assert_eq!(commit, "unknown commit", "{line:?}");
    }

    let fields: Vec<u32> = date.split('-').filter_map(|f| f.parse().ok()).collect();
    assert!(
        date.len() == 10 && matches!(fields[..], [_, 1..=12, 1..=31]),
        "not YYYY-MM-DD: {date:?}"
    );
    // Built at some point since this project began, and not in the future.
    let out = Command::new("date").args(["-u", "+%F"]).output().unwrap();
    let today = String::from_utf8(out.stdout).unwrap();
    assert!(
        ("2024-01-01"..=today.trim()).contains(&date),
        "build date {date} is not between 2024-01-01 and today ({})",
        today.trim()
    );
}

/// Tells `cmd` that its stderr, `log`, is the journal, as systemd does.
fn journal_stream(cmd: &mut Command, log: &File) {
    let meta = log.metadata().expect("the log's metadata");
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
}

/// Runs rtmpd with `args`, has a client break the handshake (a warning), stops it
/// with SIGTERM and returns its whole log. `configure` adds to its environment.
fn log_of_a_run(
    label: &str,
    args: &[&str],
    configure: impl FnOnce(&mut Command, &File),
) -> (ServerProcess, String) {
    let mut server = ServerProcess::start_with(label, false, args, configure);
    let mut not_rtmp = TcpStream::connect(server.addr).unwrap();
    not_rtmp.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    not_rtmp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = not_rtmp.read_to_end(&mut Vec::new());
    wait_for("the close in the log", TIMEOUT, || {
        server.log().contains("closed after")
    });
    server.signal("TERM");
    assert!(server.wait_exit(TIMEOUT).success());
    let log = server.log();
    (server, log)
}

#[test]
fn text_logs_keep_their_timestamps_where_stderr_is_not_the_journal() {
    // A service's child inherits JOURNAL_STREAM even where its stderr goes
    // elsewhere: the variable must name our stderr to count.
    let (_server, log) = log_of_a_run("log-text", &[], |cmd, _| {
        cmd.env("JOURNAL_STREAM", "1:1");
    });
    let mut levels = BTreeSet::new();
    for line in log.lines() {
        // [2026-11-30T00:53:30Z INFO  rtmpd::server] listening ...
        let (time, rest) = line[1..]
            .split_once(' ')
            .unwrap_or_else(|| panic!("not a text log line: {line:?}"));
        assert!(
            line.starts_with('[') && time.len() == 20 && time.ends_with('Z'),
            "no timestamp: {line:?}"
        );
        levels.insert(rest.split_whitespace().next().unwrap().to_owned());
    }
    assert_eq!(
        levels,
        BTreeSet::from(["INFO".to_owned(), "WARN".to_owned()]),
        "{log}"
    );
}

#[test]
fn under_journald_lines_carry_syslog_priorities_instead_of_timestamps() {
    let (server, log) = log_of_a_run("log-journal", &[], |cmd, log| {
        journal_stream(cmd, log);
        cmd.env("RUST_LOG", "debug");
    });

    // Our own failure is an error: a second server on the same port cannot start.
    let dir = TempDir::new("log-journal-error");
    let error_log = dir.join("rtmpd.log");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let stderr = File::create(&error_log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtmpd"));
    cmd.args(["--listen", &busy.local_addr().unwrap().to_string()])
        .args(["--http", "off"])
        .stderr(stderr.try_clone().unwrap());
    journal_stream(&mut cmd, &stderr);
    let status = cmd.status().unwrap();
    assert!(!status.success(), "rtmpd started on a port in use");
    let error_log = std::fs::read_to_string(&error_log).unwrap();
    drop(server);

    let mut priorities = BTreeSet::new();
    for line in log.lines().chain(error_log.lines()) {
        // <6>[INFO  rtmpd::server] listening ...
        let (priority, rest) = line
            .strip_prefix('<')
            .and_then(|l| l.split_once(">["))
            .unwrap_or_else(|| panic!("no priority prefix: {line:?}"));
        let level = rest.split_whitespace().next().unwrap();
        let want = match level {
            "ERROR" => "3",
            "WARN" => "4",
            "INFO" => "6",
            "DEBUG" | "TRACE" => "7",
            _ => panic!("no level (a timestamp?) after the prefix: {line:?}"),
        };
        assert_eq!(priority, want, "{line:?}");
        priorities.insert(priority.to_owned());
    }
    assert_eq!(
        priorities,
        BTreeSet::from(["3", "4", "6", "7"].map(String::from)),
        "{log}{error_log}"
    );
    // One line: what could not start, as an error.
    assert!(
        error_log.starts_with("<3>[ERROR rtmpd] cannot listen for RTMP on ")
            && error_log.lines().count() == 1,
        "{error_log}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (server, log) = log_of_a_run("log-json", &["--log-format", "json"], |_, _| {});
    let mut levels = BTreeSet::new();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let object = value.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{line}");
        for key in ["time", "level", "target", "message"] {
            assert!(object[key].is_string(), "{key} in {line}");
        }
        // RFC 3339 UTC with microseconds: 2026-11-30T00:53:29.805801Z
        let time = object["time"].as_str().unwrap();
        assert!(
            time.len() == 27 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{time}"
        );
        assert!(object["target"].as_str().unwrap().starts_with("rtmpd"));
        levels.insert(object["level"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        levels,
        BTreeSet::from(["info".to_owned(), "warn".to_owned()]),
        "{log}"
    );
    let listening = format!("\"message\":\"listening for RTMP on {}\"", server.addr);
    assert!(log.contains(&listening), "{log}");
}

/// The next sd_notify message on `socket`, as its `KEY=VALUE` lines.
fn notification(socket: &UnixDatagram) -> Vec<(String, String)> {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("an sd_notify message");
    let text = std::str::from_utf8(&buf[..n]).expect("UTF-8");
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{text:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn field<'a>(message: &'a [(String, String)], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Asserts that nothing was sent to `socket` (so far).
fn assert_no_notification(socket: &UnixDatagram, after: &str) {
    socket.set_nonblocking(true).unwrap();
    let got = socket.recv(&mut [0u8; 4096]);
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "unexpected notification after {after}: {got:?}"
    );
    socket.set_nonblocking(false).unwrap();
}

#[test]
fn systemd_hears_ready_once_every_listener_accepts_reloading_on_sighup_and_stopping_on_sigterm() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(TIMEOUT)).unwrap();
    let config = dir.join("rtmpd.toml");
    std::fs::write(&config, "hook_timeout = 3\n").unwrap();
    let config_arg = ["--config", config.to_str().unwrap()];
    let mut server = ServerProcess::spawn("notify", true, &config_arg, |cmd, _| {
        cmd.env("NOTIFY_SOCKET", &path);
    });

    // The first message is READY, and by then every listener it names accepts.
    let ready = notification(&systemd);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    let status = field(&ready, "STATUS").expect("a STATUS line");
    let listeners: Vec<(&str, SocketAddr)> = status
        .strip_prefix("serving ")
        .unwrap_or_else(|| panic!("{status:?}"))
        .split(", ")
        .map(|l| {
            let (kind, addr) = l.split_once(" on ").unwrap();
            (kind, addr.parse().unwrap())
        })
        .collect();
    for (kind, addr) in &listeners {
        TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("READY=1, but {kind} on {addr} refuses: {e}"));
    }
    server.wait_listening(true);
    let mut named: Vec<_> = listeners.iter().map(|(k, a)| (k.to_string(), *a)).collect();
    named.sort();
    assert_eq!(
        named,
        [
            ("HTTP".to_owned(), server.http.unwrap()),
            ("RTMP".to_owned(), server.addr)
        ]
    );

    // SIGHUP reloads the config file: RELOADING=1 with the monotonic time systemd
    // pairs it by, then READY=1 once the reload is done.
    server.signal("HUP");
    let reloading = notification(&systemd);
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let usec = field(&reloading, "MONOTONIC_USEC").expect("MONOTONIC_USEC");
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading:?}");
    let ready = notification(&systemd);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert!(
        server.log().contains("SIGHUP: configuration reloaded from"),
        "READY=1 before the reload was done:\n{}",
        server.log()
    );
    assert_no_notification(&systemd, "the reload");

    server.signal("TERM");
    let stopping = notification(&systemd);
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    assert!(server.wait_exit(TIMEOUT).success());
    assert_no_notification(&systemd, "the exit");
}

#[test]
fn a_notify_socket_that_fails_is_logged_and_the_server_runs_on() {
    // NOTIFY_SOCKET naming nothing: the failure is logged, the server runs on.
    let mut server = ServerProcess::start_with("notify-missing", false, &[], |cmd, _| {
        cmd.env("NOTIFY_SOCKET", "/nonexistent/rtmpd-test/notify");
    });
    wait_for("the failed READY=1 in the log", TIMEOUT, || {
        server.log().contains("cannot tell systemd READY=1")
    });
    TcpStream::connect(server.addr).expect("still serving");
    server.signal("TERM");
    assert!(server.wait_exit(TIMEOUT).success());
}
