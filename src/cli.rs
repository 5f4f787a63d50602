//! Command line → validated `Config` (`crate::config`). Parsing never exits the
//! process itself: it returns what `main` should do, so the rules are unit-testable.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use getopts::Options;

use std::time::Duration;

use crate::config::{Config, DEFAULT_HTTP};
use crate::rtmp::chunk::{MAX_CHUNK_SIZE, MAX_MESSAGE_LEN};

/// What `main` should do after reading the command line.
#[derive(Debug)]
pub enum Command {
    Run(Config),
    Help(String),
    Version,
}

/// A command line we refuse; `main` prints it with the usage and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn options() -> Options {
    let mut opts = Options::new();
    opts.optopt(
        "l",
        "listen",
        "address to accept RTMP clients on (default 0.0.0.0:1935)",
        "ADDR",
    );
    opts.optopt(
        "",
        "http",
        "address for HTTP-FLV, WebSocket-FLV, /api and /metrics, or off (default 0.0.0.0:8080)",
        "ADDR|off",
    );
    opts.optopt(
        "",
        "gop-cache",
        "cache the current GOP for fast start (default on)",
        "on|off",
    );
    for (name, hint, help) in NUMERIC_FLAGS {
        opts.optopt("", name, help, hint);
    }
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    opts
}

/// The usage text shown by `--help` and after a bad command line.
pub fn usage() -> String {
    options().usage("Usage: rtmpd [options]\n\nA live-streaming server: publish with RTMP to rtmp://HOST:1935/APP/KEY, play the same URL,\nor http://HOST:8080/APP/KEY.flv (HTTP-FLV and WebSocket-FLV); stats on /api/streams and /metrics.\nLogging is set with RUST_LOG (default info).")
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let matches = options()
        .parse(args)
        .map_err(|e| UsageError(e.to_string()))?;
    if matches.opt_present("h") {
        return Ok(Command::Help(usage()));
    }
    if matches.opt_present("V") {
        return Ok(Command::Version);
    }
    if let Some(extra) = matches.free.first() {
        return Err(UsageError(format!("unexpected argument '{extra}'")));
    }
    let mut config = Config {
        http: Some(DEFAULT_HTTP),
        ..Config::default()
    };
    if let Some(addr) = matches.opt_str("listen") {
        config.listen = parse_addr("--listen", &addr)?;
    }
    if let Some(addr) = matches.opt_str("http") {
        config.http = match addr.as_str() {
            "off" => None,
            _ => Some(parse_addr("--http", &addr)?),
        };
    }
    if let Some(v) = matches.opt_str("gop-cache") {
        config.gop_cache = parse_on_off("--gop-cache", &v)?;
    }
    let c = &mut config;
    set(
        &matches,
        "chunk-size",
        128,
        u64::from(MAX_CHUNK_SIZE),
        &mut c.chunk_size,
    )?;
    set(
        &matches,
        "player-queue",
        16,
        1 << 20,
        &mut c.player_queue_frames,
    )?;
    set(
        &matches,
        "max-connections",
        1,
        1 << 20,
        &mut c.max_connections,
    )?;
    set(
        &matches,
        "max-message-size",
        1024,
        u64::from(MAX_MESSAGE_LEN),
        &mut c.chunk_limits.max_message_len,
    )?;
    set(
        &matches,
        "max-chunk-streams",
        2,
        65600,
        &mut c.chunk_limits.max_chunk_streams,
    )?;
    set(
        &matches,
        "amf-max-depth",
        1,
        1024,
        &mut c.amf_limits.max_depth,
    )?;
    set(
        &matches,
        "amf-max-values",
        16,
        1 << 24,
        &mut c.amf_limits.max_elements,
    )?;
    set(&matches, "max-name-length", 1, 4096, &mut c.max_name_len)?;
    let mut merge_ms = c.merge_writes.as_millis() as u64;
    set(&matches, "merge-writes-ms", 0, 1000, &mut merge_ms)?;
    c.merge_writes = Duration::from_millis(merge_ms);
    seconds(&matches, "handshake-timeout", &mut c.setup_timeout)?;
    seconds(&matches, "publish-timeout", &mut c.publish_timeout)?;
    seconds(&matches, "play-timeout", &mut c.write_stall_timeout)?;
    Ok(Command::Run(config))
}

/// Flags that take a number: (name, value hint, help). Defaults come from `Config`.
const NUMERIC_FLAGS: [(&str, &str, &str); 12] = [
    (
        "chunk-size",
        "N",
        "outgoing RTMP chunk size, 128..=2147483647 (default 4096)",
    ),
    (
        "player-queue",
        "FRAMES",
        "frames a player may fall behind before skipping to the next keyframe (default 1024)",
    ),
    (
        "max-connections",
        "N",
        "connections served at once; more are refused at accept (default 2000)",
    ),
    (
        "max-message-size",
        "BYTES",
        "longest RTMP message a client may send (default 8388608)",
    ),
    (
        "max-chunk-streams",
        "N",
        "chunk streams one client may open (default 64)",
    ),
    (
        "amf-max-depth",
        "N",
        "deepest AMF nesting accepted (default 32)",
    ),
    (
        "amf-max-values",
        "N",
        "most AMF values in one message (default 65536)",
    ),
    (
        "max-name-length",
        "BYTES",
        "longest app or stream name (default 256)",
    ),
    (
        "merge-writes-ms",
        "MS",
        "send a busy player's queued frames at most once per MS milliseconds; 0 writes each frame at once (default 60)",
    ),
    (
        "handshake-timeout",
        "SECS",
        "time allowed from accept (or the end of a stream) to publish/play, and for a whole HTTP request (default 10)",
    ),
    (
        "publish-timeout",
        "SECS",
        "silence after which a publisher is dropped (default 10)",
    ),
    (
        "play-timeout",
        "SECS",
        "time any client's socket may accept nothing we send before it is dropped (default 30)",
    ),
];

/// Reads a whole-number flag into `slot` if given, within `min..=max`.
fn set<T>(
    matches: &getopts::Matches,
    flag: &str,
    min: u64,
    max: u64,
    slot: &mut T,
) -> Result<(), UsageError>
where
    T: TryFrom<u64>,
{
    let Some(text) = matches.opt_str(flag) else {
        return Ok(());
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .map(|v| *slot = v)
        .ok_or_else(|| {
            UsageError(format!(
                "--{flag} {text}: must be a whole number from {min} to {max}"
            ))
        })
}

/// Reads a duration in (possibly fractional) seconds, 0.1 s to one day.
fn seconds(matches: &getopts::Matches, flag: &str, slot: &mut Duration) -> Result<(), UsageError> {
    let Some(text) = matches.opt_str(flag) else {
        return Ok(());
    };
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.1..=86_400.0).contains(s))
        .map(|s| *slot = Duration::from_secs_f64(s))
        .ok_or_else(|| {
            UsageError(format!(
                "--{flag} {text}: must be a number of seconds from 0.1 to 86400"
            ))
        })
}

fn parse_addr(flag: &str, addr: &str) -> Result<SocketAddr, UsageError> {
    // A bare port is the common shorthand ("-l 1936").
    let with_host;
    let addr = if addr.parse::<u16>().is_ok() {
        with_host = format!("0.0.0.0:{addr}");
        &with_host
    } else {
        addr
    };
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| UsageError(format!("{flag} {addr}: not an address like 0.0.0.0:1935")))
}

fn parse_on_off(flag: &str, v: &str) -> Result<bool, UsageError> {
    match v {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(UsageError(format!("{flag} {v}: expected on or off"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args).expect("valid command line") {
            Command::Run(c) => c,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_listen_on_1935() {
        let c = run(&[]);
        assert_eq!(c.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(c.chunk_size, 4096);
        assert!(c.gop_cache);
        assert_eq!(c.http, Some("0.0.0.0:8080".parse().unwrap()));
    }

    #[test]
    fn http_address_or_off() {
        assert_eq!(
            run(&["--http", "127.0.0.1:8081"]).http,
            Some("127.0.0.1:8081".parse().unwrap())
        );
        assert_eq!(
            run(&["--http", "9000"]).http,
            Some("0.0.0.0:9000".parse().unwrap())
        );
        assert_eq!(run(&["--http", "off"]).http, None);
        let err = parse(["--http", "nowhere"]).unwrap_err();
        assert!(err.to_string().starts_with("--http nowhere:"), "{err}");
    }

    #[test]
    fn flags_are_applied() {
        let c = run(&[
            "-l",
            "127.0.0.1:1999",
            "--chunk-size",
            "60000",
            "--gop-cache",
            "off",
        ]);
        assert_eq!(c.listen, "127.0.0.1:1999".parse().unwrap());
        assert_eq!(c.chunk_size, 60000);
        assert!(!c.gop_cache);
    }

    #[test]
    fn limits_and_timeouts_are_flags() {
        let c = run(&[
            "--max-connections",
            "10",
            "--max-message-size",
            "65536",
            "--max-chunk-streams",
            "8",
            "--amf-max-depth",
            "4",
            "--amf-max-values",
            "100",
            "--max-name-length",
            "32",
            "--player-queue",
            "64",
            "--handshake-timeout",
            "2.5",
            "--publish-timeout",
            "3",
            "--play-timeout",
            "60",
            "--merge-writes-ms",
            "0",
        ]);
        assert_eq!(c.merge_writes, Duration::ZERO);
        assert_eq!(c.max_connections, 10);
        assert_eq!(c.chunk_limits.max_message_len, 65536);
        assert_eq!(c.chunk_limits.max_chunk_streams, 8);
        assert_eq!(
            (c.amf_limits.max_depth, c.amf_limits.max_elements),
            (4, 100)
        );
        assert_eq!(c.max_name_len, 32);
        assert_eq!(c.player_queue_frames, 64);
        assert_eq!(c.setup_timeout, Duration::from_millis(2500));
        assert_eq!(c.publish_timeout, Duration::from_secs(3));
        assert_eq!(c.write_stall_timeout, Duration::from_secs(60));
    }

    #[test]
    fn out_of_range_limits_name_the_flag() {
        let err = parse(["--max-message-size", "20000000"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-message-size 20000000: must be a whole number from 1024 to 16777215"
        );
        let err = parse(["--publish-timeout", "0"]).unwrap_err();
        assert!(err.to_string().starts_with("--publish-timeout 0:"), "{err}");
    }

    #[test]
    fn bare_port_listens_on_all_interfaces() {
        assert_eq!(
            run(&["--listen", "1936"]).listen,
            "0.0.0.0:1936".parse().unwrap()
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--chunk-size", "0"][..],
            &["--chunk-size", "100"],
            &["--chunk-size", "x"],
            &["--gop-cache", "maybe"],
            &["--listen", "nowhere:port"],
            &["--bogus"],
            &["stray"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["-h"]), Ok(Command::Help(_))));
        assert!(matches!(parse(["--version"]), Ok(Command::Version)));
    }
}
