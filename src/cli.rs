//! Command line → validated `Config`. Parsing never exits the process itself: it
//! returns what `main` should do, so the rules are unit-testable.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use getopts::Options;

use crate::rtmp::chunk::MAX_CHUNK_SIZE;

/// Everything the server needs to run, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Chunk size we announce and send with; larger chunks mean fewer headers.
    pub chunk_size: u32,
    /// Keep the current GOP so players joining mid-stream start at once.
    pub gop_cache: bool,
    /// Upper bounds of the cached GOP; past either, the cache waits for the next keyframe.
    pub gop_max_frames: usize,
    pub gop_max_bytes: usize,
    /// Frames a player may have queued before it starts skipping to the next keyframe.
    pub player_queue_frames: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            chunk_size: 4096,
            gop_cache: true,
            gop_max_frames: 2048,
            gop_max_bytes: 32 * 1024 * 1024,
            player_queue_frames: 1024,
        }
    }
}

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
        "chunk-size",
        "outgoing RTMP chunk size, 128..=2147483647 (default 4096)",
        "N",
    );
    opts.optopt(
        "",
        "gop-cache",
        "cache the current GOP for fast start (default on)",
        "on|off",
    );
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    opts
}

/// The usage text shown by `--help` and after a bad command line.
pub fn usage() -> String {
    options().usage("Usage: rtmpd [options]\n\nA live-streaming server: publish with RTMP to rtmp://HOST:1935/APP/KEY, play the same URL.\nLogging is set with RUST_LOG (default info).")
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
    let mut config = Config::default();
    if let Some(addr) = matches.opt_str("listen") {
        config.listen = parse_addr(&addr)?;
    }
    if let Some(n) = matches.opt_str("chunk-size") {
        config.chunk_size = n
            .parse::<u32>()
            .ok()
            .filter(|n| (128..=MAX_CHUNK_SIZE).contains(n))
            .ok_or_else(|| {
                UsageError(format!(
                    "--chunk-size {n}: must be a whole number from 128 to {MAX_CHUNK_SIZE}"
                ))
            })?;
    }
    if let Some(v) = matches.opt_str("gop-cache") {
        config.gop_cache = parse_on_off("--gop-cache", &v)?;
    }
    Ok(Command::Run(config))
}

fn parse_addr(addr: &str) -> Result<SocketAddr, UsageError> {
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
        .ok_or_else(|| UsageError(format!("--listen {addr}: not an address like 0.0.0.0:1935")))
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
