//! Human-readable output of bench reports: one run as a block of lines, and
//! several runs side by side, per scenario (label) one column per contender (a
//! server, or one server's protocol or flags) with the ratio of the first
//! contender's numbers to the second's.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::stats::round3;

pub(crate) fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("?")
}

/// A run's column in a comparison: its contender, or (in reports written before
/// contenders existed) its server.
pub fn contender(r: &Value) -> &str {
    r.get("contender")
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(r, "/server_name"))
}

/// How a run's players played (reports written before protocols existed: RTMP).
fn protocol(r: &Value) -> &str {
    r.pointer("/config/protocol")
        .and_then(Value::as_str)
        .unwrap_or("rtmp")
}

/// A run's scenario id, if it has one.
pub fn scenario(r: &Value) -> Option<&str> {
    r.get("scenario").and_then(Value::as_str)
}

/// A number for a table cell: integers as such, others with up to 3 significant
/// decimals; `-` when unknown.
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn errors_line(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    if o.is_empty() {
        return None;
    }
    Some(
        o.iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// One run as a block of text.
pub fn run_text(r: &Value) -> String {
    let f = |p: &str| fmt_num(num(r, p));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} on {} ({}) ==",
        text(r, "/label"),
        contender(r),
        text(r, "/url")
    );
    let _ = writeln!(
        out,
        "load        {} publisher(s) × {} {} player(s), {} churn worker(s), source {} {} kbit/s; window {} s; loadavg {} → {}",
        f("/config/publishers"),
        f("/config/players_per_stream"),
        protocol(r),
        f("/config/churn_workers"),
        text(r, "/config/source"),
        f("/config/bitrate_kbit"),
        f("/delivery/window_s"),
        f("/machine/loadavg_start"),
        f("/machine/loadavg_end"),
    );
    let _ = writeln!(
        out,
        "players     {} of {} connected, {} failed, {} lost, ramp {} s",
        f("/players/connected"),
        f("/players/requested"),
        f("/players/failed"),
        f("/players/lost_during_run"),
        f("/players/ramp_s"),
    );
    let _ = writeln!(
        out,
        "delivery    {} frames of {} expected (ratio {}), skipped {}, {} Mbit/s total; per player kbit/s min {} p50 {}; slow players {}, at full rate {}",
        f("/delivery/frames"),
        f("/delivery/expected_frames"),
        f("/delivery/delivered_ratio"),
        f("/delivery/skipped_frames"),
        f("/delivery/aggregate_mbit_s"),
        f("/delivery/throughput_kbit_s/min"),
        f("/delivery/throughput_kbit_s/p50"),
        f("/delivery/slow_players"),
        f("/delivery/full_rate_players"),
    );
    let _ = writeln!(
        out,
        "checks      out of order {}, foreign {}, unrecognised {}, inter frames before 1st keyframe {}, gaps not resumed at a keyframe {}, read timeouts {}",
        f("/delivery/out_of_order"),
        f("/delivery/foreign_stream"),
        f("/delivery/unrecognised"),
        f("/delivery/inter_frames_before_first_keyframe"),
        f("/delivery/gap_not_resumed_at_keyframe"),
        f("/delivery/read_timeouts"),
    );
    let _ = writeln!(
        out,
        "latency ms  p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)",
        f("/latency_ms/p50"),
        f("/latency_ms/p90"),
        f("/latency_ms/p99"),
        f("/latency_ms/p999"),
        f("/latency_ms/max"),
        f("/latency_ms/count"),
    );
    let _ = writeln!(
        out,
        "start ms    play start p50 {} p99 {}; first keyframe p50 {} p99 {} max {}",
        f("/play_start_ms/p50"),
        f("/play_start_ms/p99"),
        f("/first_keyframe_ms/p50"),
        f("/first_keyframe_ms/p99"),
        f("/first_keyframe_ms/max"),
    );
    if !r["churn"].is_null() {
        let _ = writeln!(
            out,
            "churn       {} cycles/s ({} cycles, {} failures); play start p50 {} p99 {} ms; first media p50 {} p99 {} ms",
            f("/churn/cycles_per_s"),
            f("/churn/cycles"),
            f("/churn/failures"),
            f("/churn/play_start_ms/p50"),
            f("/churn/play_start_ms/p99"),
            f("/churn/first_media_ms/p50"),
            f("/churn/first_media_ms/p99"),
        );
    }
    if r["server"].is_null() {
        let _ = writeln!(out, "server      not sampled (no --server-pid)");
    } else {
        let mb = |p: &str| fmt_num(num(r, p).map(|kb| kb / 1024.0));
        let _ = writeln!(
            out,
            "server      CPU {} s ({}%), {} s/GB, {} ms/churn cycle; RSS idle {} MB, loaded {} MB, {} KB/player, peak {} MB, after {} MB; threads {} → {} (after {})",
            f("/server/cpu_s"),
            f("/server/cpu_pct"),
            f("/server/cpu_s_per_gb"),
            f("/server/cpu_ms_per_churn_cycle"),
            mb("/server/rss_idle_kb"),
            mb("/server/rss_loaded_kb"),
            f("/server/rss_per_player_kb"),
            mb("/server/hwm_kb"),
            mb("/server/rss_after_kb"),
            f("/server/threads_idle"),
            f("/server/threads_max"),
            f("/server/threads_after"),
        );
    }
    let _ = writeln!(
        out,
        "publishers  sent {} of the scheduled frames; max lag {} ms, {} late frames; {} stalled in a write at the end (longest {} ms)",
        f("/publishers/sent_ratio"),
        f("/publishers/max_schedule_lag_ms"),
        f("/publishers/late_frames"),
        f("/publishers/stalled_at_end"),
        f("/publishers/max_stall_at_end_ms"),
    );
    let _ = writeln!(
        out,
        "bench       CPU {} s ({}%), {} threads; machine: {} CPU s busy of {} ({}% idle), {} CPU s neither server nor bench",
        f("/bench/cpu_s"),
        f("/bench/cpu_pct"),
        f("/bench/threads_max"),
        f("/machine_window/busy_cpu_s"),
        f("/machine_window/capacity_cpu_s"),
        f("/machine_window/idle_pct"),
        f("/machine_window/other_cpu_s"),
    );
    for (what, p) in [
        ("publisher errors", "/publishers/errors"),
        ("player errors", "/players/errors"),
        ("churn errors", "/churn/errors"),
    ] {
        if let Some(line) = r.pointer(p).and_then(errors_line) {
            let _ = writeln!(out, "{what}: {line}");
        }
    }
    out
}

/// Rows of the side-by-side table: label, JSON pointer.
const ROWS: &[(&str, &str)] = &[
    ("players connected", "/players/connected"),
    ("players lost", "/players/lost_during_run"),
    ("delivered ratio", "/delivery/delivered_ratio"),
    ("skipped frames", "/delivery/skipped_frames"),
    ("slow players (<90%)", "/delivery/slow_players"),
    ("players at full rate", "/delivery/full_rate_players"),
    ("throughput p50 kbit/s", "/delivery/throughput_kbit_s/p50"),
    ("aggregate Mbit/s", "/delivery/aggregate_mbit_s"),
    ("server CPU s", "/server/cpu_s"),
    ("server CPU %", "/server/cpu_pct"),
    ("server CPU s/GB", "/server/cpu_s_per_gb"),
    ("server RSS idle MB", "/server/rss_idle_kb"),
    ("server RSS loaded MB", "/server/rss_loaded_kb"),
    ("server RSS peak MB", "/server/hwm_kb"),
    ("server RSS/player KB", "/server/rss_per_player_kb"),
    ("server threads max", "/server/threads_max"),
    ("latency p50 ms", "/latency_ms/p50"),
    ("latency p99 ms", "/latency_ms/p99"),
    ("latency max ms", "/latency_ms/max"),
    ("play start p50 ms", "/play_start_ms/p50"),
    ("play start p99 ms", "/play_start_ms/p99"),
    ("first keyframe p50 ms", "/first_keyframe_ms/p50"),
    ("first keyframe p99 ms", "/first_keyframe_ms/p99"),
    ("first keyframe max ms", "/first_keyframe_ms/max"),
    (
        "frames before keyframe",
        "/delivery/inter_frames_before_first_keyframe",
    ),
    ("churn cycles/s", "/churn/cycles_per_s"),
    ("churn failures", "/churn/failures"),
    ("churn first media p50 ms", "/churn/first_media_ms/p50"),
    ("churn first media p99 ms", "/churn/first_media_ms/p99"),
    ("server CPU ms/cycle", "/server/cpu_ms_per_churn_cycle"),
    ("publisher sent ratio", "/publishers/sent_ratio"),
    ("publisher max lag ms", "/publishers/max_schedule_lag_ms"),
    ("publishers stalled at end", "/publishers/stalled_at_end"),
    ("bench CPU %", "/bench/cpu_pct"),
    ("machine idle %", "/machine_window/idle_pct"),
    ("other CPU s (kernel, rest)", "/machine_window/other_cpu_s"),
];

fn row_value(r: &Value, pointer: &str) -> Option<f64> {
    let v = num(r, pointer)?;
    Some(
        if pointer.ends_with("_kb") && !pointer.ends_with("per_player_kb") {
            v / 1024.0
        } else {
            v
        },
    )
}

/// Runs grouped by label, in order of appearance.
fn group(runs: &[Value]) -> Vec<(&str, Vec<&Value>)> {
    let mut labels: Vec<(&str, Vec<&Value>)> = Vec::new();
    for r in runs {
        let label = text(r, "/label");
        match labels.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(r),
            None => labels.push((label, vec![r])),
        }
    }
    labels
}

/// The contenders of some runs, in order of appearance, with each one's (first) run.
pub fn contenders<'a>(runs: &[&'a Value]) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&str, &Value)> = Vec::new();
    for r in runs {
        let c = contender(r);
        if !out.iter().any(|(name, _)| *name == c) {
            out.push((c, r));
        }
    }
    out
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(round3(a / b)),
        _ => None,
    }
}

/// The side-by-side tables of several runs; the ratios (first contender / second,
/// per scenario) as JSON, `{label: {row: ratio}}`; and which two contenders each
/// ratio compares, `{label: [first, second]}`.
pub fn compare(runs: &[Value]) -> (String, Value, Value) {
    let mut out = String::new();
    let mut ratios = serde_json::Map::new();
    let mut compared = serde_json::Map::new();
    for (label, rs) in group(runs) {
        let columns = contenders(&rs);
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let _ = writeln!(out, "\n## {label}");
        let first = columns[0].1;
        let _ = writeln!(
            out,
            "   {} publisher(s) × {} {} player(s), {} churn worker(s), {} kbit/s {}, {} s window",
            fmt_num(num(first, "/config/publishers")),
            fmt_num(num(first, "/config/players_per_stream")),
            protocol(first),
            fmt_num(num(first, "/config/churn_workers")),
            fmt_num(num(first, "/config/bitrate_kbit")),
            text(first, "/config/source"),
            fmt_num(num(first, "/config/duration_s")),
        );
        if let [a, b, ..] = names.as_slice() {
            let _ = writeln!(out, "   ratio = {a} / {b}");
            compared.insert(label.to_owned(), json!([a, b]));
        }
        let widths: Vec<usize> = names
            .iter()
            .map(|n| n.chars().count().max(12) + 2)
            .collect();
        let _ = write!(out, "{:<26}", "metric");
        for (n, w) in names.iter().zip(&widths) {
            let _ = write!(out, "{n:>w$}");
        }
        let ratio_head = if names.len() >= 2 { "ratio" } else { "" };
        let _ = writeln!(out, "{ratio_head:>10}");
        // Churn-only runs have no players: their all-zero player rows say nothing.
        let churn_only = rs
            .iter()
            .all(|r| num(r, "/config/players_total") == Some(0.0));
        let mut label_ratios = serde_json::Map::new();
        for (name, pointer) in ROWS {
            let values: Vec<Option<f64>> =
                columns.iter().map(|(_, r)| row_value(r, pointer)).collect();
            if values
                .iter()
                .all(|v| v.is_none() || (churn_only && *v == Some(0.0)))
            {
                continue;
            }
            let _ = write!(out, "{name:<26}");
            for (v, w) in values.iter().zip(&widths) {
                let _ = write!(out, "{:>w$}", fmt_num(*v));
            }
            if values.len() >= 2 {
                let q = ratio(values[0], values[1]);
                let _ = write!(out, "{:>10}", fmt_num(q));
                if let Some(q) = q {
                    label_ratios.insert((*name).to_owned(), json!(q));
                }
            }
            let _ = writeln!(out);
        }
        for (c, r) in &columns {
            for p in ["/publishers/errors", "/players/errors", "/churn/errors"] {
                if let Some(line) = r.pointer(p).and_then(errors_line) {
                    let _ = writeln!(out, "   {c} errors: {line}");
                }
            }
        }
        ratios.insert(label.to_owned(), Value::Object(label_ratios));
    }
    (out, Value::Object(ratios), Value::Object(compared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, label: &str, cpu: f64, p99: f64) -> Value {
        json!({
            "label": label, "server_name": server, "url": "rtmp://127.0.0.1:1/live/x",
            "config": {"publishers": 1, "players_per_stream": 10, "churn_workers": 0,
                       "bitrate_kbit": 2500, "source": "synthetic", "duration_s": 15.0},
            "players": {"connected": 10, "errors": {}},
            "delivery": {"skipped_frames": 0},
            "latency_ms": {"p50": 0.5, "p99": p99},
            "server": {"cpu_s": cpu, "rss_loaded_kb": 2048},
            "churn": null,
        })
    }

    #[test]
    fn numbers_are_formatted_for_tables() {
        assert_eq!(fmt_num(None), "-");
        assert_eq!(fmt_num(Some(500.0)), "500");
        assert_eq!(fmt_num(Some(123.456)), "123");
        assert_eq!(fmt_num(Some(12.345)), "12.3");
        assert_eq!(fmt_num(Some(1.2345)), "1.23");
        assert_eq!(fmt_num(Some(0.01234)), "0.012");
    }

    #[test]
    fn compare_pairs_contenders_per_scenario() {
        let mut http = run("rtmpd", "s3", 3.0, 1.0);
        http["contender"] = json!("rtmpd http-flv");
        http["config"]["protocol"] = json!("http-flv");
        let runs = [
            run("rtmpd", "s1", 2.0, 4.0),
            run("nginx-rtmp", "s1", 4.0, 2.0),
            run("rtmpd", "s2", 1.0, 1.0),
            http,
            run("rtmpd", "s3", 1.5, 1.0),
        ];
        let (table, ratios, compared) = compare(&runs);
        assert!(
            table.contains("## s1") && table.contains("## s2"),
            "{table}"
        );
        assert!(table.contains("ratio = rtmpd / nginx-rtmp"), "{table}");
        assert_eq!(ratios["s1"]["server CPU s"], 0.5);
        assert_eq!(ratios["s1"]["latency p99 ms"], 2.0);
        assert_eq!(ratios["s1"]["server RSS loaded MB"], 1.0);
        assert!(ratios["s2"].as_object().unwrap().is_empty());
        // Each scenario has its own columns: s3 compares two runs of one server.
        assert!(table.contains("ratio = rtmpd http-flv / rtmpd"), "{table}");
        assert!(
            table.contains("1 publisher(s) × 10 http-flv player(s)"),
            "{table}"
        );
        assert_eq!(ratios["s3"]["server CPU s"], 2.0);
        assert_eq!(compared["s3"], json!(["rtmpd http-flv", "rtmpd"]));
        assert_eq!(compared.get("s2"), None);
        let s3 = &table[table.find("## s3").unwrap()..];
        assert!(!s3.contains("nginx-rtmp"), "{s3}");
        let line = table
            .lines()
            .find(|l| l.starts_with("server RSS loaded MB"))
            .unwrap();
        assert!(line.contains(" 2 "), "KiB shown as MiB: {line}");
    }

    #[test]
    fn one_run_prints_without_server_metrics() {
        let mut r = run("rtmpd", "s1", 1.0, 1.0);
        r["server"] = Value::Null;
        r["players"]["errors"] = json!({"connection refused": 3});
        let t = run_text(&r);
        assert!(t.contains("not sampled"), "{t}");
        assert!(t.contains("3× connection refused"), "{t}");
        assert!(t.contains("p99 1"), "{t}");
    }
}
