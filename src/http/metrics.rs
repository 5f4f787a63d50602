//! `/metrics` in the Prometheus text exposition format (version 0.0.4). Names follow
//! Prometheus conventions: an `rtmpd_` prefix, base units in the name (`_bytes`,
//! `_seconds`), `_total` on counters; the process metrics use the standard
//! `process_` names every Prometheus client library exports, so stock dashboards
//! work. Per-stream series carry `app` and `key` labels and vanish with the stream.
//!
//! Process numbers come from Linux's /proc; elsewhere those series are left out.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::build_info;
use crate::connections::{ConnectionCounts, Context};
use crate::lifecycle::ConnectionKind;
use crate::procfs;
use crate::registry::{PlayerProtocol, StreamStats};
use crate::relay::status::{Direction, RelaySnapshot, RelayState};

pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition for one scrape.
pub(super) fn render(ctx: &Context) -> String {
    let mut m = Exposition::default();
    let uptime = ctx.started.elapsed().as_secs_f64();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());

    m.family(
        "rtmpd_build_info",
        "gauge",
        "Always 1; the version and the git commit it was built from are labels.",
    );
    m.sample(
        "rtmpd_build_info",
        &[
            ("version", build_info::VERSION),
            ("commit", build_info::COMMIT),
        ],
        1.0,
    );
    m.family(
        "rtmpd_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    m.sample("rtmpd_uptime_seconds", &[], uptime);

    let kinds = ConnectionKind::ALL.map(|k| (k, ctx.connection_counts(k)));
    type Field = fn(&ConnectionCounts) -> u64;
    let per_kind: [(&str, &str, &str, Field); 7] = [
        (
            "rtmpd_connections",
            "gauge",
            "Connections open now, by kind (rtmp, http).",
            |c| c.open,
        ),
        (
            "rtmpd_connections_pending",
            "gauge",
            "Connections open now that are not yet publishing, playing or with a complete request, by kind.",
            |c| c.pending,
        ),
        (
            "rtmpd_connections_accepted_total",
            "counter",
            "Connections accepted, by kind.",
            |c| c.accepted,
        ),
        (
            "rtmpd_connections_refused_total",
            "counter",
            "Connections refused when about to publish, play or be answered because --max-connections were established, by kind.",
            |c| c.refused,
        ),
        (
            "rtmpd_connections_evicted_total",
            "counter",
            "Pending connections closed to make room for newer ones (--max-pending), by kind.",
            |c| c.evicted,
        ),
        (
            "rtmpd_received_bytes_total",
            "counter",
            "Bytes read from client sockets, by kind.",
            |c| c.bytes_in,
        ),
        (
            "rtmpd_sent_bytes_total",
            "counter",
            "Bytes written to client sockets, by kind.",
            |c| c.bytes_out,
        ),
    ];
    for (name, kind, help, field) in per_kind {
        m.family(name, kind, help);
        for (k, counts) in &kinds {
            m.sample(name, &[("kind", k.as_str())], field(counts) as f64);
        }
    }

    let streams = ctx.registry.stream_stats();
    let totals = ctx.registry.totals();
    m.family(
        "rtmpd_streams",
        "gauge",
        "Streams with a publisher (live) or only waiting players (waiting).",
    );
    let live = streams.iter().filter(|s| s.publisher.is_some()).count();
    m.sample("rtmpd_streams", &[("state", "live")], live as f64);
    m.sample(
        "rtmpd_streams",
        &[("state", "waiting")],
        (streams.len() - live) as f64,
    );
    m.family(
        "rtmpd_players",
        "gauge",
        "Players connected now, by protocol.",
    );
    for p in PlayerProtocol::ALL {
        let n = streams
            .iter()
            .flat_map(|s| &s.players)
            .filter(|pl| pl.protocol == p)
            .count();
        m.sample("rtmpd_players", &[("protocol", p.as_str())], n as f64);
    }
    m.family(
        "rtmpd_publishes_total",
        "counter",
        "Publishers accepted on a stream key.",
    );
    m.sample("rtmpd_publishes_total", &[], totals.publishes as f64);
    m.family(
        "rtmpd_publishes_refused_total",
        "counter",
        "Publishers refused because the key was being published.",
    );
    m.sample(
        "rtmpd_publishes_refused_total",
        &[],
        totals.publishes_refused as f64,
    );
    m.family(
        "rtmpd_plays_total",
        "counter",
        "Players started, by protocol.",
    );
    for p in PlayerProtocol::ALL {
        m.sample(
            "rtmpd_plays_total",
            &[("protocol", p.as_str())],
            totals.plays(p) as f64,
        );
    }
    m.family(
        "rtmpd_dropped_frames_total",
        "counter",
        "Frames not sent to players that had fallen behind (skipped to the next keyframe).",
    );
    m.sample(
        "rtmpd_dropped_frames_total",
        &[],
        totals.dropped_frames as f64,
    );
    m.family(
        "rtmpd_media_received_bytes_total",
        "counter",
        "Payload bytes of the audio, video and data messages publishers sent.",
    );
    m.sample(
        "rtmpd_media_received_bytes_total",
        &[],
        totals.bytes_in as f64,
    );

    m.family(
        "rtmpd_stream_players",
        "gauge",
        "Players on the stream now.",
    );
    for s in &streams {
        let labels = [("app", s.key.app.as_str()), ("key", s.key.name.as_str())];
        m.sample("rtmpd_stream_players", &labels, s.players.len() as f64);
    }
    let published: Vec<_> = streams
        .iter()
        .filter_map(|s| {
            Some((
                [("app", s.key.app.as_str()), ("key", s.key.name.as_str())],
                s.publisher.as_ref()?,
            ))
        })
        .collect();
    m.family(
        "rtmpd_stream_received_bytes_total",
        "counter",
        "Payload bytes the stream's current publisher sent.",
    );
    for (labels, p) in &published {
        m.sample(
            "rtmpd_stream_received_bytes_total",
            labels,
            p.bytes_in as f64,
        );
    }
    m.family(
        "rtmpd_stream_uptime_seconds",
        "gauge",
        "Seconds since the stream's current publisher started.",
    );
    for (labels, p) in &published {
        m.sample(
            "rtmpd_stream_uptime_seconds",
            labels,
            p.uptime.as_secs_f64(),
        );
    }

    recording_metrics(&mut m, ctx, &streams);
    relay_metrics(&mut m, &ctx.relay.snapshot());
    tls_metrics(&mut m, ctx);

    let process = process_info();
    m.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    m.sample("process_start_time_seconds", &[], (now - uptime).floor());
    let optional = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            process.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.resident_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            process.virtual_bytes.map(|b| b as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            process.open_fds.map(|n| n as f64),
        ),
        (
            "process_threads",
            "gauge",
            "Operating system threads in the process.",
            process.threads.map(|n| n as f64),
        ),
    ];
    for (name, kind, help, value) in optional {
        if let Some(v) = value {
            m.family(name, kind, help);
            m.sample(name, &[], v);
        }
    }
    m.out
}

/// The TLS listeners' series, when a certificate is set: its expiry, for an
/// alert before it lapses (a renewal that did not reach the server), and the
/// handshakes that failed.
fn tls_metrics(m: &mut Exposition, ctx: &Context) {
    let Some(tls) = &ctx.tls else { return };
    let cert = tls.certificate();
    if let Some(end) = cert.not_after {
        let secs = match end.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        m.family(
            "rtmpd_tls_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the TLS certificate in use expires, since the Unix epoch, in seconds.",
        );
        m.sample(
            "rtmpd_tls_certificate_expiry_timestamp_seconds",
            &[("fingerprint_sha256", &cert.fingerprint)],
            secs,
        );
    }
    m.family(
        "rtmpd_tls_handshake_failures_total",
        "counter",
        "TLS handshakes on the RTMPS and HTTPS listeners that failed or timed out.",
    );
    m.sample(
        "rtmpd_tls_handshake_failures_total",
        &[],
        tls.handshake_failures() as f64,
    );
}

/// The recordings' series (`crate::record`).
fn recording_metrics(m: &mut Exposition, ctx: &Context, streams: &[StreamStats]) {
    let counts = ctx.recorders.counts();
    m.family(
        "rtmpd_recordings",
        "gauge",
        "Recordings now: writing (recording), or stopped by an error while their stream goes on (failed).",
    );
    m.sample(
        "rtmpd_recordings",
        &[("state", "recording")],
        counts.active as f64,
    );
    m.sample(
        "rtmpd_recordings",
        &[("state", "failed")],
        counts.failed_now as f64,
    );
    let totals = [
        (
            "rtmpd_recordings_started_total",
            "Recordings started.",
            counts.started_total,
        ),
        (
            "rtmpd_recording_failures_total",
            "Recordings stopped by an error (disk behind, full or failing).",
            counts.failed_total,
        ),
        (
            "rtmpd_recorded_files_total",
            "Recording files closed.",
            counts.files_total,
        ),
        (
            "rtmpd_recorded_bytes_total",
            "Bytes written to recording files.",
            counts.bytes_total,
        ),
    ];
    for (name, help, value) in totals {
        m.family(name, "counter", help);
        m.sample(name, &[], value as f64);
    }
    let recorded: Vec<_> = streams
        .iter()
        .filter_map(|s| Some((s, ctx.recorders.status(&s.key)?)))
        .collect();
    m.family(
        "rtmpd_stream_recording_bytes",
        "gauge",
        "Bytes in the stream's current recording file.",
    );
    for (s, r) in &recorded {
        let labels = [("app", s.key.app.as_str()), ("key", s.key.name.as_str())];
        m.sample("rtmpd_stream_recording_bytes", &labels, r.bytes as f64);
    }
    m.family(
        "rtmpd_stream_recording_failed",
        "gauge",
        "1 when the stream's recording stopped on an error (the stream goes on).",
    );
    for (s, r) in &recorded {
        let labels = [("app", s.key.app.as_str()), ("key", s.key.name.as_str())];
        let failed = if r.error.is_some() { 1.0 } else { 0.0 };
        m.sample("rtmpd_stream_recording_failed", &labels, failed);
    }
}

/// Each push and pull, labelled with its stream and (redacted) URL.
fn relay_metrics(m: &mut Exposition, relays: &[RelaySnapshot]) {
    for direction in [Direction::Push, Direction::Pull] {
        let (name, bytes_help) = match direction {
            Direction::Push => ("push", "Bytes sent to the push destination."),
            Direction::Pull => ("pull", "Bytes received from the pull's source."),
        };
        let ours: Vec<_> = relays.iter().filter(|r| r.direction == direction).collect();
        type Value = fn(&RelaySnapshot) -> f64;
        let families: [(String, &str, &str, Value); 3] = [
            (
                format!("rtmpd_{name}_up"),
                "gauge",
                "1 while media flows, else 0 (connecting, waiting, backing off, disabled).",
                |r| f64::from(u8::from(r.state == "live")),
            ),
            (
                format!(
                    "rtmpd_{name}_{}_bytes_total",
                    if name == "push" { "sent" } else { "received" }
                ),
                "counter",
                bytes_help,
                |r| r.bytes as f64,
            ),
            (
                format!("rtmpd_{name}_reconnects_total"),
                "counter",
                "Connections tried again after a failure.",
                |r| r.reconnects as f64,
            ),
        ];
        for (family, kind, help, value) in families {
            m.family(&family, kind, help);
            for r in &ours {
                m.sample(&family, &relay_labels(r), value(r));
            }
        }
        // One sample per state, 1 for the one it is in: an alert can tell a
        // destination backing off from one still connecting.
        let family = format!("rtmpd_{name}_state");
        m.family(
            &family,
            "gauge",
            "1 for the state it is in (connecting, live, waiting, backing_off, disabled).",
        );
        for r in &ours {
            for state in RelayState::NAMES {
                let [app, key, url] = relay_labels(r);
                let labels = [app, key, url, ("state", state)];
                m.sample(&family, &labels, f64::from(u8::from(r.state == state)));
            }
        }
    }
}

fn relay_labels(r: &RelaySnapshot) -> [(&'static str, &str); 3] {
    [
        ("app", r.key.app.as_str()),
        ("key", r.key.name.as_str()),
        ("url", r.url.as_str()),
    ]
}

/// Builds the text format: `# HELP`/`# TYPE` lines, then samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What the operating system says about this process; `None` where unknown.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ProcessInfo {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
}

pub(super) fn process_info() -> ProcessInfo {
    let status = procfs::Status::read("self").unwrap_or_default();
    ProcessInfo {
        cpu_seconds: procfs::cpu_ticks("self")
            .ok()
            .map(|ticks| ticks as f64 / procfs::USER_HZ as f64),
        resident_bytes: status.rss_kib.map(|kib| kib * 1024),
        virtual_bytes: status.size_kib.map(|kib| kib * 1024),
        threads: status.threads,
        open_fds: procfs::open_fds("self").ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::stream_key::StreamKey;

    #[test]
    fn samples_and_escaping() {
        let mut m = Exposition::default();
        m.family("rtmpd_x_total", "counter", "Things.");
        m.sample("rtmpd_x_total", &[], 3.0);
        m.sample("rtmpd_x_total", &[("app", "a\"b\\c\nd"), ("key", "k")], 0.5);
        assert_eq!(
            m.out,
            "# HELP rtmpd_x_total Things.\n# TYPE rtmpd_x_total counter\nrtmpd_x_total 3\n\
             rtmpd_x_total{app=\"a\\\"b\\\\c\\nd\",key=\"k\"} 0.5\n"
        );
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }

    #[test]
    fn each_relay_has_its_numbers_and_one_state_set() {
        let relay = |direction, url: &str, state, bytes, reconnects| RelaySnapshot {
            direction,
            key: StreamKey {
                app: "live".into(),
                name: "cam".into(),
            },
            url: url.into(),
            state,
            state_for: Duration::from_secs(1),
            retry_in: None,
            backoff: None,
            last_error: None,
            bytes,
            reconnects,
        };
        let mut m = Exposition::default();
        relay_metrics(
            &mut m,
            &[
                relay(Direction::Push, "rtmp://a/x/{key}", "backing_off", 10, 3),
                relay(Direction::Pull, "rtmp://o", "live", 2000, 0),
            ],
        );
        let lines: Vec<&str> = m.out.lines().filter(|l| !l.starts_with('#')).collect();
        let push = r#"app="live",key="cam",url="rtmp://a/x/{key}""#;
        let pull = r#"app="live",key="cam",url="rtmp://o""#;
        for want in [
            format!("rtmpd_push_up{{{push}}} 0"),
            format!("rtmpd_push_sent_bytes_total{{{push}}} 10"),
            format!("rtmpd_push_reconnects_total{{{push}}} 3"),
            format!("rtmpd_push_state{{{push},state=\"backing_off\"}} 1"),
            format!("rtmpd_push_state{{{push},state=\"live\"}} 0"),
            format!("rtmpd_pull_up{{{pull}}} 1"),
            format!("rtmpd_pull_received_bytes_total{{{pull}}} 2000"),
            format!("rtmpd_pull_state{{{pull},state=\"live\"}} 1"),
            format!("rtmpd_pull_state{{{pull},state=\"waiting\"}} 0"),
        ] {
            assert!(lines.contains(&want.as_str()), "{want} in\n{}", m.out);
        }
        let states = |family: &str| lines.iter().filter(|l| l.starts_with(family)).count();
        assert_eq!(states("rtmpd_push_state{"), RelayState::NAMES.len());
        assert_eq!(states("rtmpd_pull_state{"), RelayState::NAMES.len());
    }

    #[test]
    fn this_process_is_visible_on_linux() {
        if cfg!(target_os = "linux") {
            let p = process_info();
            assert!(p.threads.unwrap() >= 1);
            assert!(p.resident_bytes.unwrap() > 0);
            assert!(p.cpu_seconds.is_some());
            assert!(p.open_fds.unwrap() >= 3);
        }
    }
}
