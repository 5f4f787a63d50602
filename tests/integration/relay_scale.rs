//! Relays at scale and over time: one origin and two edges serving a hundred
//! players; five push destinations, one of them dead, beside a hundred local
//! players; two hundred push reconnects without a thread or memory leak.

use std::io::Write;
use std::process::Child;
use std::time::{Duration, Instant};

use rtmpd::config::policy::{AppKeys, Seconds};

use crate::client_support::{SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::http_support::{get, get_json, publish_looped};
use crate::process::{settled_status, ServerProcess};
use crate::relay_support::*;
use crate::support::*;

// Bounds on a hang only: a hundred rtmpdumps start slowly on a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(120);
const FINISH: Duration = Duration::from_secs(120);

/// `n` rtmpdump players of `url`, each writing to its own file in `dir`.
fn players(dir: &TempDir, label: &str, url: &str, n: usize) -> Vec<(Child, std::path::PathBuf)> {
    (0..n)
        .map(|i| {
            let out = dir.join(&format!("{label}-{i}.flv"));
            (play_rtmpdump(url, &out), out)
        })
        .collect()
}

/// Waits for every player to end by itself and checks what each received.
fn finish_and_compare(
    players: Vec<(Child, std::path::PathBuf)>,
    published: &[rtmpd::media::flv::FlvTag],
    from_start: bool,
    label: &str,
) {
    let outs: Vec<_> = players
        .into_iter()
        .enumerate()
        .map(|(i, (child, out))| {
            wait_success(child, FINISH, &format!("{label} player {i}"));
            out
        })
        .collect();
    for (i, out) in outs.iter().enumerate() {
        let received = read_flv(out);
        let result = std::panic::catch_unwind(|| {
            assert_received_matches(published, &received, from_start);
        });
        assert!(
            result.is_ok(),
            "{label} player {i} ({}) differs",
            out.display()
        );
    }
}

/// README "Scaling out" on loopback: one origin, two rtmpd edges, a hundred
/// players spread over the edges. Every player gets the stream byte for byte;
/// the origin serves two players (the edges) whatever the audience.
#[test]
fn one_origin_and_two_edges_serve_a_hundred_players() {
    let origin = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let origin_url = format!("rtmp://{}", origin.addr);
    let edge = || {
        start_server_with(|c| {
            c.player_queue_frames = 4096;
            with_app(
                c,
                "live",
                AppKeys {
                    origin: Some(origin_at(&origin_url)),
                    // Players wait for the stream while a busy machine starts
                    // the hundred of them and the publisher.
                    origin_timeout: Some(Seconds(Duration::from_secs(300))),
                    ..AppKeys::default()
                },
            )
        })
    };
    let edges = [edge(), edge()];
    let dir = TempDir::new("scale");
    let path = "live/event";
    let audience: Vec<_> = edges
        .iter()
        .enumerate()
        .flat_map(|(e, edge)| players(&dir, &format!("edge{e}"), &edge.url(path), 50))
        .collect();
    // Each edge pulls once, however many of its players are waiting.
    origin.wait_for_players(path, 2, SUBSCRIBE);
    // Half the stream, held until every player is on: none can come after its end.
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&origin, path, published.clone());
    publisher.send_until(2000);
    for edge in &edges {
        edge.wait_for_players(path, 50, SUBSCRIBE);
    }
    assert_eq!(
        origin.players(path),
        2,
        "the origin serves the two edges only"
    );
    publisher.finish();
    finish_and_compare(audience, &published, false, "edge");
}

/// Five destinations, one of them refusing connections: the four others and a
/// hundred local players get the whole stream, byte for byte, and the dead one
/// is retried on its schedule, as the API shows.
#[test]
fn five_destinations_one_dead_and_a_hundred_local_players() {
    let destination = start_server();
    let dead = free_port();
    let live: Vec<String> = (1..=4)
        .map(|i| destination.url(&format!("d{i}/{{key}}")))
        .collect();
    let mut urls = live.clone();
    urls.push(format!("rtmp://127.0.0.1:{dead}/dead/{{key}}"));
    let source = start_server_with(|c| {
        c.player_queue_frames = 4096;
        c.publish_timeout = HELD_PUBLISH_TIMEOUT;
        with_app(
            c,
            "live",
            AppKeys {
                push: Some(push_to(&urls)),
                push_backoff_min: Some(Seconds(Duration::from_millis(250))),
                push_backoff_max: Some(Seconds(Duration::from_secs(2))),
                ..AppKeys::default()
            },
        )
    });
    let dir = TempDir::new("five");
    let path = "live/show";
    let local = players(&dir, "local", &source.url(path), 100);
    let remote: Vec<_> = (1..=4)
        .flat_map(|i| {
            players(
                &dir,
                &format!("d{i}"),
                &destination.url(&format!("d{i}/show")),
                1,
            )
        })
        .collect();
    source.wait_for_players(path, 100, SUBSCRIBE);
    for i in 1..=4 {
        destination.wait_for_players(&format!("d{i}/show"), 1, SUBSCRIBE);
    }
    // Half the stream, then the publisher holds it live while the dead
    // destination's retries are watched, however long that takes.
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&source, path, published.clone());
    publisher.send_until(2000);
    let waits = observe_backoff(&source, path, &format!(":{dead}/"), 4);
    assert_backoff(&waits, 0.25, 2.0);
    let dead_push = push_status(&source, path, &format!(":{dead}/")).unwrap();
    assert!(
        dead_push["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{dead_push}"
    );
    for url in &live {
        let p = push_status(&source, path, &url[url.len() - 8..]).unwrap();
        assert_eq!(
            (&p["state"], &p["reconnects"]),
            (&"live".into(), &0.into()),
            "{p}"
        );
        // Live is set once the destination accepts; the bytes follow.
        wait_for(&format!("the push to {url} to send"), SUBSCRIBE, || {
            push_status(&source, path, &url[url.len() - 8..])
                .is_some_and(|p| p["bytes_sent"].as_u64() > Some(0))
        });
    }
    // /metrics says the same.
    let metrics = crate::http_api::parse_metrics(&get(source.http_addr(), "/metrics"));
    let series = |family: &str, url: &str, state: Option<&str>| {
        let state = state.map(|s| format!(",state=\"{s}\"")).unwrap_or_default();
        let name = format!("{family}{{app=\"live\",key=\"show\",url=\"{url}\"{state}}}");
        *metrics
            .get(&name)
            .unwrap_or_else(|| panic!("{name} in /metrics: {metrics:?}"))
    };
    let dead_url = format!("rtmp://127.0.0.1:{dead}/dead/{{key}}");
    assert!(series("rtmpd_push_reconnects_total", &dead_url, None) >= 3.0);
    assert_eq!(series("rtmpd_push_up", &dead_url, None), 0.0);
    assert_eq!(series("rtmpd_push_state", &dead_url, Some("live")), 0.0);
    for url in &live {
        assert_eq!(series("rtmpd_push_up", url, None), 1.0, "{url}");
        assert_eq!(series("rtmpd_push_state", url, Some("live")), 1.0, "{url}");
        assert_eq!(series("rtmpd_push_reconnects_total", url, None), 0.0);
        assert!(series("rtmpd_push_sent_bytes_total", url, None) > 0.0);
    }
    publisher.finish();
    finish_and_compare(local, &published, true, "local");
    finish_and_compare(remote, &published, true, "destination");
}

/// Two hundred push connections cut mid-stream by a proxy, each followed by a
/// reconnect (backoff 0.1 s): the server's threads and memory come back to what
/// they were after the first few.
#[test]
fn two_hundred_push_reconnects_leak_no_thread_and_no_memory() {
    let destination = start_server();
    // Each connection lives 50 ms: handshake, publish, the stream's start.
    let proxy = CuttingProxy::start(destination.addr, Duration::from_millis(50));
    let dir = TempDir::new("reconnects");
    let config = dir.join("rtmpd.toml");
    let mut file = std::fs::File::create(&config).unwrap();
    writeln!(
        file,
        "push = [\"{}\"]\npush_backoff_min = 0.1\npush_backoff_max = 0.1",
        proxy.url("live/{key}")
    )
    .unwrap();
    let config = config.display().to_string();
    let server = ServerProcess::start("reconnects", true, &["--config", &config]);
    let publisher = ChildGuard::new(publish_looped(
        &server.url("live/loop"),
        &fixture("av.flv"),
        1000,
    ));
    let cycles = |n: usize| {
        wait_for(&format!("{n} push connections"), FINISH, || {
            proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= n
        });
    };
    cycles(30);
    let baseline = settled_status(&server);
    let started = Instant::now();
    cycles(230);
    let after = settled_status(&server);
    let (_, doc) = get_json(server.http.unwrap(), "/api/relays");
    let reconnects = doc["pushes"][0]["reconnects"].as_u64().unwrap();
    assert!(reconnects >= 229, "{doc}");
    eprintln!(
        "200 reconnect cycles in {:.1} s: threads {} -> {}, RSS {} -> {} KiB",
        started.elapsed().as_secs_f64(),
        baseline.threads,
        after.threads,
        baseline.rss_kib,
        after.rss_kib
    );
    assert_eq!(
        after.threads, baseline.threads,
        "threads after 200 reconnects"
    );
    assert!(
        after.rss_kib <= baseline.rss_kib + 2048,
        "RSS grew from {} to {} KiB over 200 reconnects",
        baseline.rss_kib,
        after.rss_kib
    );
    let _ = stop(publisher.take(), Duration::from_secs(3));
    server.assert_no_panic();
}
