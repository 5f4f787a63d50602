//! Command line → where the config comes from (`crate::config::Source`: the
//! `--config` file and the flags that override it). Every flag that sets
//! something is an entry of `config::settings::SETTINGS`; this only adds
//! `--config`, `--check-config`, `--help`, `--version` and the `sign` command, and
//! reads the arguments with getopts. Parsing never exits the process itself: it
//! returns what `main` should do, so the rules are unit-testable.

use std::fmt;
use std::path::PathBuf;

use getopts::Options;

use crate::config::settings::{self, SETTINGS};
use crate::config::{Config, Source};

/// What `main` should do after reading the command line.
#[derive(Debug)]
pub enum Command {
    /// Run the server with the config from here (flags checked already).
    Run(Source),
    /// `--check-config FILE`: report whether the file is valid, and exit.
    CheckConfig(PathBuf),
    /// `rtmpd sign ...`: print a signed URL.
    Sign(SignArgs),
    Help(String),
    Version,
}

/// `rtmpd sign [--secret S | --config FILE] [--play] [--expires-in SECONDS] URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignArgs {
    pub secret: Option<String>,
    /// Where to find the secret when `--secret` is not given.
    pub config: Option<PathBuf>,
    pub play: bool,
    pub expires_in: u64,
    pub url: String,
}

/// How long a signed URL stays valid unless `--expires-in` says otherwise.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// A command line we refuse; `main` prints it with a pointer to `--help` and
/// exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn options() -> Options {
    let defaults = Config::rtmpd_defaults();
    let mut opts = Options::new();
    for s in SETTINGS {
        let help = format!("{} (default {})", s.help, s.value_text(&defaults));
        if s.repeatable() {
            opts.optmulti(s.short.unwrap_or(""), s.name, &help, s.hint);
        } else {
            opts.optopt(s.short.unwrap_or(""), s.name, &help, s.hint);
        }
    }
    opts.optopt(
        "",
        "config",
        "read settings and access rules from this TOML file (flags override it; SIGHUP reloads it)",
        "FILE",
    );
    opts.optopt(
        "",
        "check-config",
        "check a config file, report its errors with line numbers, and exit",
        "FILE",
    );
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag(
        "V",
        "version",
        "print the version, git commit and build date, and exit",
    );
    opts
}

/// The usage text shown by `--help` and after a bad command line.
pub fn usage() -> String {
    options().usage("Usage: rtmpd [options]\n       rtmpd sign [--secret S | --config FILE] [--play] [--expires-in SECONDS] URL\n\nA live-streaming server: publish with RTMP to rtmp://HOST:1935/APP/KEY, play the same URL,\nor http://HOST:8080/APP/KEY.flv (HTTP-FLV and WebSocket-FLV); stats on /api/streams and /metrics.\nLogging is set with RUST_LOG (default info).")
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    if args.first().is_some_and(|a| a == "sign") {
        return parse_sign(&args[1..]).map(Command::Sign);
    }
    let matches = options().parse(args).map_err(getopts_error)?;
    if matches.opt_present("h") {
        return Ok(Command::Help(usage()));
    }
    if matches.opt_present("V") {
        return Ok(Command::Version);
    }
    if let Some(extra) = matches.free.first() {
        return Err(UsageError(format!("unexpected argument '{extra}'")));
    }
    if let Some(file) = matches.opt_str("check-config") {
        return Ok(Command::CheckConfig(file.into()));
    }
    // Checked here, so a bad flag is a usage error; applied again over the file.
    let flags: Vec<(&'static str, String)> = SETTINGS
        .iter()
        .flat_map(|s| matches.opt_strs(s.name).into_iter().map(|t| (s.name, t)))
        .collect();
    settings::apply_flags(&mut Config::rtmpd_defaults(), &flags)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(Command::Run(Source {
        file: matches.opt_str("config").map(PathBuf::from),
        flags,
    }))
}

fn parse_sign(args: &[std::ffi::OsString]) -> Result<SignArgs, UsageError> {
    let mut opts = Options::new();
    opts.optopt("", "secret", "the publish or play secret", "S");
    opts.optopt(
        "",
        "config",
        "take the secret from this config file",
        "FILE",
    );
    opts.optflag("", "play", "sign for playing (default: publishing)");
    opts.optopt("", "expires-in", "seconds the URL stays valid", "SECONDS");
    let m = opts
        .parse(args)
        .map_err(|e| UsageError(format!("sign: {}", getopts_error(e))))?;
    let url = match m.free.as_slice() {
        [url] => url.clone(),
        [] => return Err(UsageError("sign: which URL? (rtmpd sign ... URL)".into())),
        [_, extra, ..] => return Err(UsageError(format!("sign: unexpected argument '{extra}'"))),
    };
    let expires_in = match m.opt_str("expires-in") {
        Some(text) => text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            UsageError(format!(
                "sign: --expires-in: '{text}' must be a whole number of seconds"
            ))
        })?,
        None => DEFAULT_EXPIRES_IN,
    };
    let secret = m.opt_str("secret");
    let config = m.opt_str("config").map(PathBuf::from);
    if secret.is_none() && config.is_none() {
        return Err(UsageError("sign: needs --secret S or --config FILE".into()));
    }
    Ok(SignArgs {
        secret,
        config,
        play: m.opt_present("play"),
        expires_in,
        url,
    })
}

/// getopts' refusal in our words, naming the flag as it is typed.
fn getopts_error(fail: getopts::Fail) -> UsageError {
    use getopts::Fail;
    let flag = |name: &str| {
        if name.chars().count() == 1 {
            format!("-{name}")
        } else {
            format!("--{name}")
        }
    };
    UsageError(match fail {
        Fail::UnrecognizedOption(name) => format!("unknown option '{}'", flag(&name)),
        Fail::ArgumentMissing(name) => format!("{} needs a value", flag(&name)),
        Fail::OptionDuplicated(name) => format!("{} is given more than once", flag(&name)),
        Fail::UnexpectedArgument(name) => format!("{} takes no value", flag(&name)),
        Fail::OptionMissing(name) => format!("{} is required", flag(&name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ListenAddr, LogFormat};
    use crate::player::MergeMode;
    use std::time::Duration;

    fn run(args: &[&str]) -> Config {
        match parse(args).expect("valid command line") {
            Command::Run(source) => source.load().expect("no config file"),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn config_and_check_config() {
        match parse(["--config", "/etc/rtmpd.toml", "--max-connections", "9"]).unwrap() {
            Command::Run(source) => {
                assert_eq!(source.file, Some("/etc/rtmpd.toml".into()));
                assert_eq!(source.flags, vec![("max-connections", "9".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(["--check-config", "x.toml"]),
            Ok(Command::CheckConfig(p)) if p == std::path::Path::new("x.toml")
        ));
    }

    #[test]
    fn sign_command() {
        let args = [
            "sign",
            "--secret",
            "s",
            "--play",
            "--expires-in",
            "60",
            "rtmp://h/live/k",
        ];
        match parse(args).unwrap() {
            Command::Sign(s) => assert_eq!(
                s,
                SignArgs {
                    secret: Some("s".into()),
                    config: None,
                    play: true,
                    expires_in: 60,
                    url: "rtmp://h/live/k".into(),
                }
            ),
            other => panic!("{other:?}"),
        }
        match parse(["sign", "--config", "c.toml", "rtmp://h/live/k"]).unwrap() {
            Command::Sign(s) => assert!(!s.play && s.expires_in == DEFAULT_EXPIRES_IN),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["sign", "rtmp://h/live/k"][..],
            &["sign", "--secret", "s"],
            &["sign", "--secret", "s", "--expires-in", "0", "u"],
            &["sign", "--secret", "s", "a", "b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    fn addr(text: &str) -> ListenAddr {
        ListenAddr::Addr(text.parse().unwrap())
    }

    #[test]
    fn push_is_repeatable_and_becomes_every_apps_push_list() {
        let c = run(&["--push", "rtmp://a/live/{key}", "--push", "rtmp://b:1936/x"]);
        let pushes = c.policy.app("any").pushes().to_vec();
        let urls: Vec<_> = pushes.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(urls, ["rtmp://a/live/{key}", "rtmp://b:1936/x"]);
        let e = parse(["--push", "http://x/y"]).unwrap_err().to_string();
        assert!(
            e.starts_with("--push: 'http://x/y' is not an rtmp:// or rtmps:// URL"),
            "{e}"
        );
        let e = parse(["--push", "rtmp://a/live/{foo}"])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--push: 'rtmp://a/live/{foo}' unknown placeholder {foo}"),
            "{e}"
        );
        assert!(run(&[]).policy.app("any").pushes().is_empty());
        assert!(run(&["--push", "off"])
            .policy
            .app("any")
            .pushes()
            .is_empty());
    }

    #[test]
    fn defaults_listen_on_1935_and_8080_on_every_interface() {
        let c = run(&[]);
        assert_eq!(c.listen, [ListenAddr::AnyInterface(1935)]);
        assert_eq!(c.chunk_size, 4096);
        assert!(c.gop_cache);
        assert_eq!(c.http, [ListenAddr::AnyInterface(8080)]);
        assert_eq!(c.api_listen, []);
        assert_eq!(c.listen_backlog, 1024);
    }

    #[test]
    fn http_address_or_off() {
        assert_eq!(
            run(&["--http", "127.0.0.1:8081"]).http,
            [addr("127.0.0.1:8081")]
        );
        assert_eq!(
            run(&["--http", "9000"]).http,
            [ListenAddr::AnyInterface(9000)]
        );
        assert_eq!(run(&["--http", "off"]).http, []);
        let err = parse(["--http", "nowhere"]).unwrap_err();
        assert!(err.to_string().starts_with("--http: 'nowhere' "), "{err}");
    }

    #[test]
    fn listeners_may_be_given_more_than_once() {
        let c = run(&[
            "-l",
            "127.0.0.1:1935",
            "--listen",
            "[::1]:1935",
            "--http",
            "127.0.0.1:8080,[::1]:8080",
            "--http",
            "8081",
            "--api-listen",
            "[::1]:8082",
            "--listen-backlog",
            "64",
        ]);
        assert_eq!(c.listen, [addr("127.0.0.1:1935"), addr("[::1]:1935")]);
        assert_eq!(
            c.http,
            [
                addr("127.0.0.1:8080"),
                addr("[::1]:8080"),
                ListenAddr::AnyInterface(8081)
            ]
        );
        assert_eq!(c.api_listen, [addr("[::1]:8082")]);
        assert_eq!(c.listen_backlog, 64);
        for bad in [
            &["--http", "off", "--http", "8080"][..],
            &["--http", "off,8080"],
            &["-l", "off"],
            &["-l", "1935,"],
            &["-l", "1935", "-l", "nowhere"],
            &["--listen-backlog", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse(["-l", "1935", "-l", "nowhere"])
                .unwrap_err()
                .to_string(),
            "--listen: 'nowhere' must be a port (1-65535) or an address like 0.0.0.0:1935"
        );
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
        assert_eq!(c.listen, [addr("127.0.0.1:1999")]);
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
            "--max-pending",
            "7",
            "--shutdown-timeout",
            "0.5",
        ]);
        assert_eq!(c.merge_writes, Duration::ZERO);
        assert_eq!(c.max_pending, 7);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
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
            "--max-message-size: '20000000' must be a whole number from 1024 to 16777215"
        );
        let err = parse(["--publish-timeout", "0"]).unwrap_err();
        assert!(
            err.to_string().starts_with("--publish-timeout: '0' "),
            "{err}"
        );
    }

    /// `--http 99999` once suggested 0.0.0.0:1935, the RTMP listener's address.
    #[test]
    fn address_errors_suggest_the_flags_own_kind_of_address() {
        assert_eq!(
            parse(["--http", "99999"]).unwrap_err().to_string(),
            "--http: '99999' must be a port (1-65535), an address like 0.0.0.0:8080, or off"
        );
        assert_eq!(
            parse(["-l", "99999"]).unwrap_err().to_string(),
            "--listen: '99999' must be a port (1-65535) or an address like 0.0.0.0:1935"
        );
    }

    #[test]
    fn getopts_refusals_name_the_flag() {
        let err = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert_eq!(err(&["--bogus"]), "unknown option '--bogus'");
        assert_eq!(err(&["-x"]), "unknown option '-x'");
        assert_eq!(err(&["--http"]), "--http needs a value");
        assert_eq!(err(&["-l"]), "-l needs a value");
        assert_eq!(err(&["--help=yes"]), "--help takes no value");
        assert_eq!(err(&["stray"]), "unexpected argument 'stray'");
    }

    #[test]
    fn merge_mode_is_adaptive_or_fixed() {
        assert_eq!(run(&[]).merge_mode, MergeMode::Adaptive);
        assert_eq!(run(&["--merge-mode", "fixed"]).merge_mode, MergeMode::Fixed);
        assert_eq!(
            parse(["--merge-mode", "fast"]).unwrap_err().to_string(),
            "--merge-mode: 'fast' must be adaptive or fixed"
        );
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(run(&[]).log_format, LogFormat::Text);
        assert_eq!(run(&["--log-format", "json"]).log_format, LogFormat::Json);
        assert_eq!(
            parse(["--log-format", "xml"]).unwrap_err().to_string(),
            "--log-format: 'xml' must be text or json"
        );
    }

    #[test]
    fn bare_port_listens_on_all_interfaces() {
        assert_eq!(
            run(&["--listen", "1936"]).listen,
            [ListenAddr::AnyInterface(1936)]
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

    /// The rows of README's flag tables (those headed `| flag | default | ...`):
    /// (first cell, default cell), `\|` unescaped.
    fn readme_flag_rows(readme: &str) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        let mut in_table = false;
        for line in readme.lines() {
            if line.starts_with("| flag | default |") {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
            }
            if !in_table || line.starts_with("| ---") {
                continue;
            }
            let cells: Vec<String> = line
                .replace("\\|", "\u{1}")
                .split('|')
                .map(|c| c.trim().replace('\u{1}', "|"))
                .collect();
            rows.push((cells[1].clone(), cells[2].clone()));
        }
        rows
    }

    /// The `--NAME`s a README cell names.
    fn long_flags(cell: &str) -> Vec<&str> {
        cell.match_indices("`--")
            .map(|(i, _)| {
                let name = &cell[i + 3..];
                let end = name
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(name.len());
                &name[..end]
            })
            .collect()
    }

    /// README's flag tables are a user's reference: every flag is there, once,
    /// written as `--help` writes it, with the default it really has, and
    /// nothing else is listed as a flag.
    #[test]
    fn the_readme_lists_every_flag_with_its_real_default() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("reading README.md");
        let rows = readme_flag_rows(&readme);
        assert!(rows.len() > 20, "the flag tables were not found: {rows:?}");
        let defaults = Config::rtmpd_defaults();
        for s in SETTINGS {
            let found: Vec<&(String, String)> = rows
                .iter()
                .filter(|(cell, _)| long_flags(cell).contains(&s.name))
                .collect();
            let [(cell, default)] = found[..] else {
                panic!("README lists --{} {} times", s.name, found.len());
            };
            let usage = format!("`--{} {}`", s.name, s.hint);
            assert!(cell.contains(&usage), "README writes {cell}, not {usage}");
            if let Some(short) = s.short {
                assert!(cell.contains(&format!("`-{short}`")), "{cell}: -{short}");
            }
            let want = format!("`{}`", s.value_text(&defaults));
            assert_eq!(default, &want, "README's default of --{}", s.name);
        }
        let ours = ["config", "check-config", "help", "version"];
        for (cell, _) in &rows {
            for name in long_flags(cell) {
                assert!(
                    ours.contains(&name) || SETTINGS.iter().any(|s| s.name == name),
                    "README lists --{name}, which rtmpd does not take"
                );
            }
        }
    }
}
