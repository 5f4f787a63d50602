//! The JSON API and the Prometheus metrics, checked against what is live: ffmpeg
//! publishes a fixture, three players (RTMP via ffmpeg, HTTP-FLV, WebSocket-FLV)
//! watch it, and `/api/streams`, `/api/streams/{app}/{key}`, `/api/server` and
//! `/metrics` must describe exactly that.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::http_support::{get, get_json, publish_looped};
use crate::support::*;

/// A bound on hangs only, generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn api_and_metrics_describe_the_live_stream_and_its_players() {
    let server = start_server();
    let addr = server.http_addr();
    let dir = TempDir::new("http-api");
    // Loop the fixture so the stream stays live for the whole test, however slow
    // the machine (it is stopped at the end).
    let publisher = publish_looped(&server.url("live/api"), &fixture("av.flv"), 1000);
    server.wait_for_frames("live/api", TIMEOUT);

    // HTTP-FLV player: reads and discards on a thread.
    let mut http_player = TcpStream::connect(addr).unwrap();
    http_player.set_read_timeout(Some(TIMEOUT)).unwrap();
    http_player
        .write_all(b"GET /live/api.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let http_player_addr = http_player.local_addr().unwrap().to_string();
    let http_reader = {
        let mut s = http_player.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        })
    };
    // WebSocket-FLV player, read on a thread too.
    let ws_stream = TcpStream::connect(addr).unwrap();
    ws_stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let ws_player_addr = ws_stream.local_addr().unwrap().to_string();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/live/api.flv").as_str(), ws_stream).unwrap();
    let ws_reader = thread::spawn(move || while ws.read().is_ok() {});
    // RTMP player.
    let rtmp_player = play_ffmpeg(&server.url("live/api"), &dir.join("rtmp.flv"));
    server.wait_for_players("live/api", 3, TIMEOUT);
    // Let a couple of seconds of media through, for the bitrate and byte counts.
    // The bitrate is over the last 4 s of the wall clock, so a publisher that a busy
    // machine held up, then let catch up, is momentarily off the fixture's ~320
    // kbit/s: wait for a reading in range (one in bytes or kbit/s never is).
    let mut s = Value::Null;
    wait_for("the stream's counters and bitrate", TIMEOUT, || {
        let (status, doc) = get_json(addr, "/api/streams/live/api");
        assert_eq!(status, 200);
        let players = doc["players"].as_array().cloned().unwrap_or_default();
        let counted = doc["uptime_seconds"].as_f64().unwrap_or(0.0) >= 2.0
            && doc["bytes_in"].as_u64() > Some(50_000)
            && players.len() == 3
            && players
                .iter()
                .all(|p| p["bytes_out"].as_u64() > Some(50_000))
            && doc["ingress_bitrate_bps"]
                .as_u64()
                .is_some_and(|b| (150_000..1_000_000).contains(&b));
        s = doc;
        counted
    });

    let (status, all) = get_json(addr, "/api/streams");
    assert_eq!(status, 200);
    let streams = all["streams"].as_array().expect("a streams array");
    assert_eq!(streams.len(), 1, "{all}");
    assert_eq!(s["app"], "live");
    assert_eq!(s["key"], "api");
    assert_eq!(s["live"], true);
    let publisher_addr = s["publisher"]["address"].as_str().unwrap();
    assert!(publisher_addr.starts_with("127.0.0.1:"), "{publisher_addr}");
    assert_eq!(s["publisher"]["protocol"], "rtmp");
    assert_eq!(s["video"]["codec"], "h264");
    assert_eq!(s["video"]["width"], 320);
    assert_eq!(s["video"]["height"], 240);
    assert_eq!(s["video"]["fps"], 25.0);
    assert_eq!(s["audio"]["codec"], "aac");
    assert_eq!(s["audio"]["sample_rate"], 44100);
    assert_eq!(s["audio"]["channels"], 2);
    // The bitrate and bytes in were checked above.
    assert!(s["bytes_out"].as_u64().unwrap() > 50_000, "{s}");
    assert_eq!(s["player_count"], 3);

    let players = s["players"].as_array().unwrap();
    let by_protocol: HashMap<&str, &Value> = players
        .iter()
        .map(|p| (p["protocol"].as_str().unwrap(), p))
        .collect();
    let protocols: HashSet<&str> = by_protocol.keys().copied().collect();
    assert_eq!(protocols, HashSet::from(["rtmp", "http-flv", "ws-flv"]));
    assert_eq!(
        by_protocol["http-flv"]["address"],
        http_player_addr.as_str()
    );
    assert_eq!(by_protocol["ws-flv"]["address"], ws_player_addr.as_str());
    for p in players {
        assert!(p["connected_seconds"].as_f64().unwrap() >= 0.0, "{p}");
        assert!(p["bytes_out"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["dropped_frames"], 0, "{p}");
    }

    let (status, missing) = get_json(addr, "/api/streams/live/nothing");
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "no stream live/nothing");

    let (status, srv) = get_json(addr, "/api/server");
    assert_eq!(status, 200);
    assert_eq!(srv["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(srv["commit"], rtmpd::build_info::COMMIT);
    assert_eq!(srv["build_date"], rtmpd::build_info::BUILD_DATE);
    assert!(srv["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(srv["threads"].as_u64().unwrap() >= 4, "{srv}");
    // Publisher + RTMP player; two HTTP players plus this request.
    assert_eq!(srv["connections"]["rtmp"]["open"], 2, "{srv}");
    assert!(
        srv["connections"]["http"]["open"].as_u64().unwrap() >= 3,
        "{srv}"
    );
    assert_eq!(srv["streams"]["live"], 1);
    assert_eq!(srv["players"], 3);
    let totals = &srv["totals"];
    assert_eq!(totals["publishes"], 1);
    for protocol in ["rtmp", "http-flv", "ws-flv"] {
        assert_eq!(totals["plays"][protocol], 1, "{totals}");
    }
    assert!(totals["bytes_in"].as_u64().unwrap() > 50_000);
    assert!(totals["bytes_out"].as_u64().unwrap() > 150_000);

    let metrics = parse_metrics(&get(addr, "/metrics"));
    let value = |series: &str| -> f64 {
        *metrics
            .get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    };
    assert_eq!(value("rtmpd_streams{state=\"live\"}"), 1.0);
    for protocol in ["rtmp", "http-flv", "ws-flv"] {
        assert_eq!(
            value(&format!("rtmpd_players{{protocol=\"{protocol}\"}}")),
            1.0
        );
        assert_eq!(
            value(&format!("rtmpd_plays_total{{protocol=\"{protocol}\"}}")),
            1.0
        );
    }
    assert_eq!(value("rtmpd_connections{kind=\"rtmp\"}"), 2.0);
    assert!(value("rtmpd_connections{kind=\"http\"}") >= 3.0);
    assert_eq!(value("rtmpd_publishes_total"), 1.0);
    assert!(value("rtmpd_received_bytes_total{kind=\"rtmp\"}") > 50_000.0);
    assert!(value("rtmpd_sent_bytes_total{kind=\"http\"}") > 50_000.0);
    assert_eq!(value("rtmpd_stream_players{app=\"live\",key=\"api\"}"), 3.0);
    assert!(value("rtmpd_stream_received_bytes_total{app=\"live\",key=\"api\"}") > 50_000.0);
    assert_eq!(value("rtmpd_dropped_frames_total"), 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") >= 0.0);

    stop(publisher, Duration::from_secs(5));
    wait_with_timeout(rtmp_player, TIMEOUT);
    ws_reader.join().unwrap();
    http_reader.join().unwrap();
    drop(http_player);
    wait_for("the stream entry to go", TIMEOUT, || {
        get_json(addr, "/api/streams").1["streams"] == Value::Array(vec![])
    });
}

/// Parses the Prometheus text format strictly enough to catch mistakes: every
/// sample belongs to the family declared just before it by `# TYPE` (allowing the
/// `_total` naming of counters), names and labels are well formed, counters end in
/// `_total`, values are numbers, and no series appears twice. Returns series →
/// value, keyed by the sample text before the value.
pub fn parse_metrics(resp: &crate::http_support::HttpResponse) -> HashMap<String, f64> {
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    assert!(text.ends_with('\n'));
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut family: Option<(String, String)> = None;
    let mut helped = HashSet::new();
    let mut declared = HashSet::new();
    let mut series = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(valid_name(name) && !help.is_empty(), "{line}");
            helped.insert(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(valid_name(name), "{line}");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                declared.insert(name.to_owned()),
                "family declared twice: {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (key, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = key.split('{').next().unwrap();
        let (fam, _) = family
            .as_ref()
            .unwrap_or_else(|| panic!("no TYPE for {line}"));
        assert_eq!(name, fam, "sample outside its family: {line}");
        if let Some(labels) = key.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line}"));
            for pair in inner.split("\",") {
                let (label, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(valid_name(label), "{line}");
                assert!(!v.contains('\n'), "{line}");
            }
        }
        assert!(
            series.insert(key.to_owned(), value).is_none(),
            "duplicate series {key}"
        );
    }
    series
}
