//! `rtmpd-bench`: load generator and measuring tool for any RTMP server.
//!
//! ```text
//! rtmpd-bench run --url rtmp://127.0.0.1:1935/live/bench --players 500 --server-pid PID --json out.json
//! rtmpd-bench compare [--json merged.json] [--note TEXT]... RUN.json...
//! ```
//!
//! See `rtmpd-bench --help` and `scripts/bench.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use getopts::{Matches, Options};
use serde_json::{json, Value};

use rtmpd::client::RtmpUrl;
use rtmpd_bench::flvfile::FlvFile;
use rtmpd_bench::play::{PlayTarget, Protocol};
use rtmpd_bench::report;
use rtmpd_bench::run::{self, BenchConfig, Source};
use rtmpd_bench::synthetic::SyntheticConfig;
use rtmpd_bench::targets::{self, Target};

const USAGE_HEAD: &str = "\
Usage: rtmpd-bench [run] --url rtmp://HOST:PORT/APP/NAME [options]
       rtmpd-bench compare [--json FILE] [--note TEXT]... [--target SPEC]... RUN.json...

run: publishes synthetic H.264+AAC over RTMP (or --flv FILE, looping in real
time) and opens players (RTMP, RTMPS, HTTP-FLV, WebSocket-FLV or Low-Latency HLS:
--protocol) that verify order, gaps and keyframes, measuring server-added
latency (synthetic tags carry their send time), connect-to-first-keyframe time
and, with --server-pid, the
server's CPU seconds, RSS and threads from /proc. With --churn N, N workers
connect, play until the first media frame and disconnect in a loop instead. Only
the window of --duration seconds after all players have connected and --warmup
has passed is measured.

compare: prints runs of the same scenarios (--label) side by side, one column per
contender (--contender: a server, or one server's protocol or flags), with the
ratio of the first contender to the second, checks --target specs, and writes
them all (plus the ratios and the verdicts) into one JSON file.

A target is 'SCENARIO: [ratio] /JSON/POINTER OP NUMBER', e.g.
'7: ratio /server/cpu_s_per_gb <= 1.1' (first contender / second, in runs
whose --scenario is 7) or '7: /server/rss_per_player_kb <= 32' (the first
contender's value); OP is one of <= < >= > ==.";

fn run_options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "",
        "url",
        "server and stream: rtmp://HOST:PORT/APP/NAME (required)",
        "URL",
    );
    o.optopt(
        "",
        "protocol",
        "how players and churn workers play: rtmp, rtmps (over TLS, any certificate taken), http-flv (GET http://ADDR/APP/NAME.flv), ws-flv (ws://ADDR/APP/NAME.flv) or hls (http://ADDR/APP/NAME/index.m3u8, blocking reloads and parts) (default rtmp)",
        "NAME",
    );
    o.optopt(
        "",
        "play-addr",
        "server the players play from (default: --url's for rtmp, its host with port 443 for rtmps and 8080 for http-flv, ws-flv and hls)",
        "HOST:PORT",
    );
    o.optopt(
        "",
        "scenario",
        "short id of the scenario, for compare's --target (default: none)",
        "ID",
    );
    o.optopt(
        "",
        "contender",
        "this run's column in compare (default: --server-name, plus the protocol unless rtmp)",
        "NAME",
    );
    o.optopt(
        "",
        "label",
        "scenario name for the report (default: derived from the load)",
        "TEXT",
    );
    o.optopt(
        "",
        "server-name",
        "server name for the report (default: server)",
        "NAME",
    );
    o.optopt(
        "",
        "server-pid",
        "server process to sample in /proc (CPU, RSS, threads)",
        "PID",
    );
    o.optopt(
        "",
        "publishers",
        "streams published at once, NAME-0, NAME-1, ... when more than one (default 1)",
        "N",
    );
    o.optopt("", "players", "players per stream (default 10)", "N");
    o.optopt(
        "",
        "churn",
        "workers that connect, play to the first frame and leave, in a loop (default 0)",
        "N",
    );
    o.optopt(
        "",
        "bitrate",
        "synthetic stream bitrate, audio included, kbit/s (default 2500)",
        "KBIT",
    );
    o.optopt(
        "",
        "audio",
        "audio part of it, kbit/s; 0 for video only (default 128)",
        "KBIT",
    );
    o.optopt("", "fps", "video frames per second (default 30)", "N");
    o.optopt(
        "",
        "gop",
        "frames from keyframe to keyframe (default 60)",
        "FRAMES",
    );
    o.optopt(
        "",
        "flv",
        "publish this FLV file in real time, looping, instead of synthetic tags",
        "FILE",
    );
    o.optopt(
        "",
        "duration",
        "measured window, seconds (default 15)",
        "SECS",
    );
    o.optopt(
        "",
        "warmup",
        "wait after all players connected, seconds (default 3)",
        "SECS",
    );
    o.optopt(
        "",
        "ramp-rate",
        "players started per second (default 500)",
        "N",
    );
    o.optopt(
        "",
        "timeout",
        "connect and reply timeout of each client, seconds (default 10)",
        "SECS",
    );
    o.optopt(
        "",
        "stack",
        "stack of each player thread, KiB (default 128)",
        "KIB",
    );
    o.optopt(
        "",
        "chunk-size",
        "chunk size the clients send with (default 4096)",
        "N",
    );
    o.optopt("", "json", "write the report as JSON to FILE", "FILE");
    o.optflag("q", "quiet", "no progress lines on stderr");
    o.optflag("h", "help", "print this help");
    o
}

fn compare_options() -> Options {
    let mut o = Options::new();
    o.optopt("", "json", "write all runs and the ratios to FILE", "FILE");
    o.optmulti(
        "",
        "note",
        "a note to keep in the merged JSON and print (repeatable)",
        "TEXT",
    );
    o.optmulti(
        "",
        "target",
        "a target to check, 'SCENARIO: [ratio] /POINTER OP NUMBER' (repeatable)",
        "SPEC",
    );
    o.optflag("h", "help", "print this help");
    o
}

fn usage() -> String {
    format!(
        "{}\n{}\n{}",
        run_options().usage(USAGE_HEAD),
        "compare options:",
        compare_options().usage_with_format(|opts| opts.collect::<Vec<_>>().join("\n"))
    )
}

fn parse_num<T: std::str::FromStr>(m: &Matches, flag: &str, default: T) -> Result<T, String> {
    match m.opt_str(flag) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("--{flag} {s}: not a valid number")),
    }
}

fn secs(m: &Matches, flag: &str, default: f64) -> Result<Duration, String> {
    let s: f64 = parse_num(m, flag, default)?;
    if !(0.0..=86_400.0).contains(&s) {
        return Err(format!("--{flag} {s}: must be 0 to 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Where players play: `--protocol` at `--play-addr`, or the publishers' server.
fn play_target(m: &Matches, url: &RtmpUrl) -> Result<PlayTarget, String> {
    let protocol = match m.opt_str("protocol") {
        None => Protocol::Rtmp,
        Some(p) => Protocol::parse(&p).map_err(|e| format!("--protocol: {e}"))?,
    };
    let (host, port) = match m.opt_str("play-addr") {
        None if protocol == Protocol::Rtmp => (url.host.clone(), url.port),
        None if protocol == Protocol::Rtmps => (url.host.clone(), 443),
        None => (url.host.clone(), 8080),
        Some(addr) => {
            // The same host[:port] rules as the authority of an rtmp:// URL.
            let parsed = RtmpUrl::parse(&format!("rtmp://{addr}/app"))
                .ok()
                .filter(|_| {
                    addr.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                })
                .ok_or_else(|| format!("--play-addr {addr}: not HOST:PORT"))?;
            (parsed.host, parsed.port)
        }
    };
    Ok(PlayTarget {
        protocol,
        host,
        port,
        app: url.app.clone(),
    })
}

fn config(m: &Matches) -> Result<BenchConfig, String> {
    let url = m.opt_str("url").ok_or("--url is required")?;
    let url = RtmpUrl::parse(&url).map_err(|e| format!("--url: {e}"))?;
    let play = play_target(m, &url)?;
    let publishers: usize = parse_num(m, "publishers", 1)?;
    let players: usize = parse_num(m, "players", 10)?;
    let churn: usize = parse_num(m, "churn", 0)?;
    if publishers == 0 {
        return Err("--publishers must be at least 1".into());
    }
    let synthetic = SyntheticConfig {
        bitrate_kbit: parse_num(m, "bitrate", 2500)?,
        audio_kbit: parse_num(m, "audio", 128)?,
        fps: parse_num(m, "fps", 30)?,
        gop: parse_num(m, "gop", 60)?,
    };
    if synthetic.fps == 0 || synthetic.gop == 0 || synthetic.bitrate_kbit == 0 {
        return Err("--bitrate, --fps and --gop must be positive".into());
    }
    if synthetic.audio_kbit >= synthetic.bitrate_kbit {
        return Err("--audio must be less than --bitrate".into());
    }
    let source = match m.opt_str("flv") {
        None => Source::Synthetic(synthetic),
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|e| format!("--flv {path}: {e}"))?;
            let file = FlvFile::parse(&bytes).map_err(|e| format!("--flv {path}: {e}"))?;
            Source::Flv {
                path: PathBuf::from(path),
                file: Arc::new(file),
            }
        }
    };
    let protocol = match play.protocol {
        Protocol::Rtmp => String::new(),
        p => format!(" {p}"),
    };
    let label = m.opt_str("label").unwrap_or_else(|| match &source {
        Source::Synthetic(s) if churn > 0 => {
            format!("churn {churn}{protocol} workers, {} kbit/s", s.bitrate_kbit)
        }
        Source::Synthetic(s) => format!(
            "{publishers} pub × {players}{protocol} players, {} kbit/s",
            s.bitrate_kbit
        ),
        Source::Flv { path, .. } => {
            format!(
                "{publishers} pub × {players}{protocol} players, {}",
                path.display()
            )
        }
    });
    let server_name = m.opt_str("server-name").unwrap_or_else(|| "server".into());
    let contender = m
        .opt_str("contender")
        .unwrap_or_else(|| format!("{server_name}{protocol}"));
    let stack_kib: usize = parse_num(m, "stack", 128)?;
    let ramp_rate: f64 = parse_num(m, "ramp-rate", 500.0)?;
    if ramp_rate <= 0.0 {
        return Err("--ramp-rate must be positive".into());
    }
    let timeout = secs(m, "timeout", 10.0)?;
    if timeout.is_zero() {
        return Err("--timeout must be positive".into());
    }
    Ok(BenchConfig {
        url,
        play,
        label,
        scenario: m.opt_str("scenario"),
        server_name,
        contender,
        server_pid: m
            .opt_str("server-pid")
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("--server-pid {p}: not a process id"))
            })
            .transpose()?,
        publishers,
        players,
        churn,
        source,
        duration: secs(m, "duration", 15.0)?,
        warmup: secs(m, "warmup", 3.0)?,
        ramp_rate,
        timeout,
        // Debug builds need more stack for the same code.
        stack_kib: stack_kib.max(if cfg!(debug_assertions) { 512 } else { 64 }),
        chunk_size: parse_num(m, "chunk-size", 4096)?,
    })
}

fn write_json(path: &str, v: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}"))
}

fn cmd_run(args: &[String]) -> Result<(), String> {
    let m = run_options().parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        println!("{}", usage());
        return Ok(());
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let cfg = config(&m)?;
    let quiet = m.opt_present("quiet");
    let label = cfg.label.clone();
    let server = cfg.contender.clone();
    let log = move |line: &str| {
        if !quiet {
            eprintln!("rtmpd-bench [{server}: {label}] {line}");
        }
    };
    let report = run::run(cfg, &log)?;
    print!("{}", report::run_text(&report));
    if let Some(path) = m.opt_str("json") {
        write_json(&path, &report)?;
    }
    Ok(())
}

fn cmd_compare(args: &[String]) -> Result<(), String> {
    let m = compare_options().parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        println!("{}", usage());
        return Ok(());
    }
    let targets = m
        .opt_strs("target")
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::new();
    for path in &m.free {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        // A merged file holds its runs in "runs".
        match v.get("runs").and_then(Value::as_array) {
            Some(rs) => runs.extend(rs.iter().cloned()),
            None => runs.push(v),
        }
    }
    if runs.is_empty() {
        return Err("compare needs at least one run's JSON file".into());
    }
    let (table, ratios, compared) = report::compare(&runs);
    let notes = m.opt_strs("note");
    println!("{table}");
    for n in &notes {
        println!("note: {n}");
    }
    let verdicts: Vec<_> = targets.iter().filter_map(|t| t.check(&runs)).collect();
    if !verdicts.is_empty() {
        println!("\n## targets (first contender, or its ratio to the second)");
        print!("{}", targets::table(&verdicts));
    }
    if let Some(path) = m.opt_str("json") {
        let generated = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let merged = json!({
            "tool": "rtmpd-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "generated_unix": generated,
            "notes": notes,
            "ratios": ratios,
            "compared": compared,
            "targets": verdicts.iter().map(|v| v.to_json()).collect::<Vec<_>>(),
            "runs": runs,
        });
        write_json(&path, &merged)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compare") => cmd_compare(&args[1..]),
        Some("run") => cmd_run(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{}", usage());
            Ok(())
        }
        Some(_) => cmd_run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtmpd-bench: {e}");
            ExitCode::from(2)
        }
    }
}
