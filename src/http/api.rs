//! The JSON stats API: `/api/streams`, `/api/streams/{app}/{key}`, `/api/server`
//! and `/api/recordings`.
//! Documents are built with `serde_json::json!` from registry and server snapshots;
//! durations are seconds (fractional), sizes bytes, rates bits per second, and an
//! unknown value is `null` rather than a guess. The shape is documented in README.md.

use serde_json::{json, Value};

use super::metrics::process_info;
use crate::build_info;
use crate::connections::{ConnectionCounts, Context, Service};
use crate::lifecycle::ConnectionKind;
use crate::media::codec::{AudioInfo, VideoInfo};
use crate::record::listing;
use crate::registry::{PlayerProtocol, StreamStats};
use crate::relay::status::{Direction, RelaySnapshot};
use crate::stream_key::StreamKey;

/// `{"streams": [...]}`, every stream with a publisher or a waiting player.
pub(super) fn streams(ctx: &Context) -> Value {
    let relays = ctx.relay.snapshot();
    let streams: Vec<Value> = ctx
        .registry
        .stream_stats()
        .iter()
        .map(|s| with_relays(with_recording(ctx, stream_json(s), &s.key), &s.key, &relays))
        .collect();
    json!({ "streams": streams })
}

/// `/api/relays`: every push and pull, whether or not its stream is live.
pub(super) fn relays(ctx: &Context) -> Value {
    let relays = ctx.relay.snapshot();
    let of = |d: Direction| -> Vec<Value> {
        relays
            .iter()
            .filter(|r| r.direction == d)
            .map(|r| {
                let mut doc = relay_json(r);
                doc["app"] = json!(r.key.app);
                doc["key"] = json!(r.key.name);
                doc
            })
            .collect()
    };
    json!({ "pushes": of(Direction::Push), "pulls": of(Direction::Pull) })
}

/// One relay; `bytes` are sent for a push, received for a pull.
fn relay_json(r: &RelaySnapshot) -> Value {
    let bytes = match r.direction {
        Direction::Push => "bytes_sent",
        Direction::Pull => "bytes_received",
    };
    json!({
        "url": r.url,
        "state": r.state,
        "state_seconds": seconds(r.state_for),
        "retry_in_seconds": r.retry_in.map(seconds),
        "backoff_seconds": r.backoff.map(seconds),
        "last_error": r.last_error,
        bytes: r.bytes,
        "reconnects": r.reconnects,
    })
}

/// One stream, or a 400/404 with `{"error": ...}`.
pub(super) fn stream(ctx: &Context, app: &str, key: &str) -> (u16, Value) {
    let key = match StreamKey::from_request(app, key, ctx.config.max_name_len) {
        Ok(key) => key,
        Err(e) => return (400, json!({ "error": format!("bad stream name: {e}") })),
    };
    match ctx.registry.stream_stats_for(&key) {
        Some(stats) => {
            let doc = with_recording(ctx, stream_json(&stats), &key);
            (200, with_relays(doc, &key, &ctx.relay.snapshot()))
        }
        None => (404, json!({ "error": format!("no stream {key}") })),
    }
}

/// `/api/server`: version, uptime, connections, threads and totals.
pub(super) fn server(ctx: &Context) -> Value {
    let counts = |kind| ctx.connection_counts(kind);
    let (rtmp, http) = (counts(ConnectionKind::Rtmp), counts(ConnectionKind::Http));
    let totals = ctx.registry.totals();
    let streams = ctx.registry.stream_stats();
    let live = streams.iter().filter(|s| s.publisher.is_some()).count();
    let players: usize = streams.iter().map(|s| s.players.len()).sum();
    let process = process_info();
    let first = |service| {
        let mut all = ctx.listeners.iter();
        all.find(|(s, _)| *s == service)
            .map(|(_, addr)| addr.to_string())
    };
    let listeners: Vec<Value> = ctx
        .listeners
        .iter()
        .map(|(service, addr)| json!({ "kind": service.as_str(), "address": addr.to_string() }))
        .collect();
    let connection = |c: ConnectionCounts| {
        json!({
            "open": c.open,
            "pending": c.pending,
            "accepted": c.accepted,
            "refused": c.refused,
            "evicted": c.evicted,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
        })
    };
    let plays: serde_json::Map<String, Value> = PlayerProtocol::ALL
        .iter()
        .map(|p| (p.as_str().to_owned(), json!(totals.plays(*p))))
        .collect();
    json!({
        "version": build_info::VERSION,
        "commit": build_info::COMMIT,
        "build_date": build_info::BUILD_DATE,
        "uptime_seconds": seconds(ctx.started.elapsed()),
        // The first listener of each service, as before listeners were lists.
        "listen": {
            "rtmp": first(Service::Rtmp),
            "rtmps": first(Service::Rtmps),
            "http": first(Service::Http),
            "https": first(Service::Https),
            "api": first(Service::Api),
        },
        "listeners": listeners,
        "connections": {
            "open": rtmp.open + http.open,
            "pending": rtmp.pending + http.pending,
            "max": ctx.config.max_connections,
            "max_pending": ctx.config.max_pending,
            "rtmp": connection(rtmp),
            "http": connection(http),
        },
        "threads": process.threads,
        "streams": { "total": streams.len(), "live": live },
        "players": players,
        "totals": {
            "connections_accepted": rtmp.accepted + http.accepted,
            "connections_refused": rtmp.refused + http.refused,
            "connections_evicted": rtmp.evicted + http.evicted,
            "bytes_in": rtmp.bytes_in + http.bytes_in,
            "bytes_out": rtmp.bytes_out + http.bytes_out,
            "media_bytes_in": totals.bytes_in,
            "publishes": totals.publishes,
            "publishes_refused": totals.publishes_refused,
            "plays": plays,
            "dropped_frames": totals.dropped_frames,
        },
        "recordings": recordings_json(ctx),
        "tls": tls_json(ctx),
    })
}

/// The TLS certificate in use and the handshakes that failed; `null` without one.
fn tls_json(ctx: &Context) -> Value {
    let Some(tls) = &ctx.tls else {
        return Value::Null;
    };
    let cert = tls.certificate();
    let files = tls.files();
    json!({
        "certificate": files.cert.display().to_string(),
        "key": files.key.display().to_string(),
        "fingerprint_sha256": cert.fingerprint,
        "not_after": cert.not_after.map(crate::tls::certs::utc),
        "handshake_failures": tls.handshake_failures(),
    })
}

fn recordings_json(ctx: &Context) -> Value {
    let r = ctx.recorders.counts();
    json!({
        "active": r.active,
        "failed": r.failed_now,
        "started_total": r.started_total,
        "failed_total": r.failed_total,
        "files_total": r.files_total,
        "bytes_total": r.bytes_total,
    })
}

/// A stream's document with its `recording`: `null`, or the file being written
/// and its bytes (`error` set once it stopped on one; the stream goes on).
fn with_recording(ctx: &Context, mut doc: Value, key: &StreamKey) -> Value {
    doc["recording"] = ctx.recorders.status(key).map_or(Value::Null, |r| {
        json!({
            "path": r.path.map(|p| p.display().to_string()),
            "bytes": r.bytes,
            "files": r.files,
            "recording_seconds": seconds(r.since),
            "failed": r.error.is_some(),
            "error": r.error,
            "backlog_bytes": r.backlog,
            "backlog_peak_bytes": r.backlog_peak,
            "buffer_bytes": r.buffer,
        })
    });
    doc
}

/// `/api/recordings`: the finished files under every `record_dir`.
pub(super) fn recordings(ctx: &Context) -> Value {
    let policy = ctx.admission.policy();
    let (files, truncated) = listing::list(&policy, &ctx.recorders.files_in_progress());
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "app": f.app,
                "key": f.key,
                "path": f.path.display().to_string(),
                "size": f.size,
                "duration": f.duration,
            })
        })
        .collect();
    json!({ "recordings": files, "truncated": truncated })
}

/// A stream's document with its `pushes` and its `pull` (`null` unless pulled).
fn with_relays(mut doc: Value, key: &StreamKey, relays: &[RelaySnapshot]) -> Value {
    let ours = |d: Direction| {
        relays
            .iter()
            .filter(move |r| r.direction == d && r.key == *key)
    };
    doc["pushes"] = ours(Direction::Push).map(relay_json).collect();
    doc["pull"] = ours(Direction::Pull).next().map_or(Value::Null, relay_json);
    doc
}

fn stream_json(s: &StreamStats) -> Value {
    let players: Vec<Value> = s
        .players
        .iter()
        .map(|p| {
            json!({
                "address": p.peer.to_string(),
                "protocol": p.protocol.as_str(),
                "connected_seconds": seconds(p.connected),
                "bytes_out": p.bytes_out,
                "dropped_frames": p.dropped_frames,
            })
        })
        .collect();
    let publisher = s.publisher.as_ref();
    json!({
        "app": s.key.app,
        "key": s.key.name,
        "live": publisher.is_some(),
        "publisher": publisher.map(|p| json!({
            "address": p.peer.to_string(),
            "protocol": "rtmp",
        })),
        "uptime_seconds": publisher.map(|p| seconds(p.uptime)),
        "video": s.codecs.video.as_ref().map(video_json),
        "audio": s.codecs.audio.as_ref().map(audio_json),
        "ingress_bitrate_bps": publisher.map_or(0, |p| p.bitrate),
        "bytes_in": publisher.map_or(0, |p| p.bytes_in),
        "bytes_out": s.players.iter().map(|p| p.bytes_out).sum::<u64>(),
        "dropped_frames": s.players.iter().map(|p| p.dropped_frames).sum::<u64>(),
        "player_count": s.players.len(),
        "players": players,
    })
}

fn video_json(v: &VideoInfo) -> Value {
    json!({
        "codec": v.codec,
        "profile": v.profile,
        "level": v.level,
        "width": v.width,
        "height": v.height,
        "fps": v.fps,
    })
}

fn audio_json(a: &AudioInfo) -> Value {
    json!({
        "codec": a.codec,
        "profile": a.profile,
        "sample_rate": a.sample_rate,
        "channels": a.channels,
    })
}

/// Seconds with millisecond precision: enough for humans and dashboards.
fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Codecs;
    use crate::registry::{PlayerStats, PublisherStats};
    use std::time::Duration;

    #[test]
    fn stream_document_shape() {
        let stats = StreamStats {
            key: StreamKey::new("live", "cam").unwrap(),
            publisher: Some(PublisherStats {
                peer: "10.0.0.1:5000".parse().unwrap(),
                uptime: Duration::from_millis(12_345),
                bytes_in: 1000,
                bitrate: 800_000,
            }),
            codecs: Codecs {
                video: Some(VideoInfo {
                    codec: Some("h264".into()),
                    width: Some(320),
                    height: Some(240),
                    ..VideoInfo::default()
                }),
                audio: None,
            },
            players: vec![PlayerStats {
                peer: "10.0.0.2:6000".parse().unwrap(),
                protocol: PlayerProtocol::WsFlv,
                connected: Duration::from_secs(3),
                dropped_frames: 4,
                bytes_out: 500,
            }],
        };
        let doc = stream_json(&stats);
        assert_eq!(doc["app"], "live");
        assert_eq!(doc["key"], "cam");
        assert_eq!(doc["live"], true);
        assert_eq!(doc["publisher"]["address"], "10.0.0.1:5000");
        assert_eq!(doc["uptime_seconds"], 12.345);
        assert_eq!(doc["video"]["width"], 320);
        assert_eq!(doc["video"]["fps"], Value::Null);
        assert_eq!(doc["audio"], Value::Null);
        assert_eq!(doc["ingress_bitrate_bps"], 800_000);
        assert_eq!(doc["bytes_out"], 500);
        assert_eq!(doc["player_count"], 1);
        assert_eq!(doc["players"][0]["protocol"], "ws-flv");
        assert_eq!(doc["players"][0]["dropped_frames"], 4);
    }
}
