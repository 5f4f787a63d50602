//! Relays between rtmpd servers, with real clients at both ends, byte for byte:
//! pushes (restream), edge pulls (RTMP, HTTP-FLV and HLS players), static pulls,
//! and what goes wrong (an origin that is not there, refusals). rtmps:// relays
//! are in `tls`.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use rtmpd::client::ClientError;
use rtmpd::config::policy::{AppKeys, IpRange, Seconds, Secret};
use rtmpd::config::relay::PullEntry;
use rtmpd::config::ListenAddr;

use crate::client_support::{
    connect_with, new_publisher, options, send_tags, SteppedPublisher, HELD_PUBLISH_TIMEOUT,
};
use crate::http_support::{exchange, get};
use crate::relay_support::*;
use crate::support::*;

// Bounds on a hang only, generous for a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);

/// An origin and an edge whose app `live` pulls from it, with `edge_keys` added.
/// The origin lets a publisher of ours pause ([`SteppedPublisher`]).
fn origin_and_edge(edge_keys: AppKeys) -> (TestServer, TestServer) {
    let origin = start_server_with(|c| c.publish_timeout = HELD_PUBLISH_TIMEOUT);
    let origin_url = format!("rtmp://{}", origin.addr);
    let edge = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                origin: Some(origin_at(&origin_url)),
                ..edge_keys
            },
        )
    });
    (origin, edge)
}

/// What a play of `path` with rtmpd's client is answered (the error status, or
/// start).
fn play_answer(server: &TestServer, path: &str) -> Result<(), ClientError> {
    let mut client = connect_with(server, path, &options());
    let name = client.url().name.clone();
    let answer = client.play(&name).map(|_| ());
    client.close();
    answer
}

/// A player waiting on the destination gets the whole stream an encoder published
/// to the source: the push starts with the publish, carries metadata and sequence
/// headers first, every frame after, and ends with it.
#[test]
fn a_push_to_another_rtmpd_arrives_whole_and_byte_exact() {
    let destination = start_server();
    let target = destination.url("dest/{key}");
    let source = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                push: Some(push_to(&[target])),
                ..AppKeys::default()
            },
        )
    });
    let dir = TempDir::new("push-rtmpd");
    let out = dir.join("player.flv");
    let player = play_rtmpdump(&destination.url("dest/cam"), &out);
    destination.wait_for_players("dest/cam", 1, SUBSCRIBE);
    let publisher = publish_ffmpeg(&source.url("live/cam"), &fixture("av.flv"), false);
    wait_success(publisher, FINISH, "publisher");
    wait_success(player, FINISH, "player on the destination");
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
    // The push ended with the publish: nothing left in the API.
    wait_for("the push to end", SUBSCRIBE, || {
        relays(&source)["pushes"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    });
}

/// Three RTMP players and one HTTP-FLV player on an edge: the origin sees one
/// player (the pull), every player gets the stream byte for byte, and the pull
/// lets go `origin_idle` after the last player left.
#[test]
fn an_edge_pulls_once_for_all_its_players_and_lets_go_when_they_leave() {
    let (origin, edge) = origin_and_edge(AppKeys {
        origin_idle: Some(Seconds(Duration::from_millis(500))),
        // The first player waits for the publisher, however slowly it starts.
        origin_timeout: Some(Seconds(Duration::from_secs(300))),
        ..AppKeys::default()
    });
    let dir = TempDir::new("edge");
    let path = "live/cam";
    // The first player arrives before anyone publishes at the origin: it waits
    // while the pull waits for the stream.
    let first = dir.join("first.flv");
    let waiting = play_rtmpdump(&edge.url(path), &first);
    origin.wait_for_players(path, 1, SUBSCRIBE);
    // Half the stream, held until the late players are on.
    let published = fixture_tags("av.flv");
    let mut publisher = SteppedPublisher::start(&origin, path, published.clone());
    publisher.send_until(2000);
    edge.wait_for_frames(path, SUBSCRIBE);
    let outs: Vec<_> = (0..2).map(|i| dir.join(&format!("late-{i}.flv"))).collect();
    let late: Vec<_> = outs
        .iter()
        .map(|out| play_rtmpdump(&edge.url(path), out))
        .collect();
    let addr = edge.http_addr();
    let http = thread::spawn(move || {
        let req = format!("GET /live/cam.flv HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        exchange(addr, req.as_bytes(), FINISH)
    });
    edge.wait_for_players(path, 4, SUBSCRIBE);
    assert_eq!(origin.players(path), 1, "the origin serves the edge once");
    publisher.finish();
    wait_success(waiting, FINISH, "first player");
    for (i, player) in late.into_iter().enumerate() {
        wait_success(player, FINISH, &format!("late player {i}"));
    }
    assert_received_matches(&published, &read_flv(&first), false);
    for out in &outs {
        assert_received_matches(&published, &read_flv(out), false);
    }
    let http = http.join().unwrap();
    assert_eq!(http.status, 200, "{}", http.text());
    let (_, tags) = rtmpd::media::flv::parse(&http.body).unwrap();
    assert_received_matches(&published, &tags, false);
    // Everyone left: the pull stops after origin_idle and the origin is free.
    wait_for("the pull to let go", SUBSCRIBE, || {
        origin.stream_info(path).is_none()
            && relays(&edge)["pulls"]
                .as_array()
                .is_some_and(|p| p.is_empty())
    });
}

/// An HLS viewer of an edge pulls the stream as an RTMP player does: its first
/// playlist request starts the pull and waits for the stream, the origin sees one
/// player, and every frame published there is in the edge's segments, byte for
/// byte. A viewer of a key the origin does not have gets a 404 that says so.
#[test]
fn an_hls_viewer_of_an_edge_pulls_the_stream() {
    // An edge whose origin refuses connections: a 404 that says why, at once.
    let nowhere = format!("rtmp://127.0.0.1:{}", free_port());
    let lost = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                origin: Some(origin_at(&nowhere)),
                ..AppKeys::default()
            },
        )
    });
    let missing = get(lost.http_addr(), "/live/nobody/index.m3u8");
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(missing.text().contains("origin"), "{}", missing.text());

    // Long enough for a busy machine to start the publish below.
    let (origin, edge) = origin_and_edge(AppKeys {
        origin_timeout: Some(Seconds(Duration::from_secs(300))),
        ..AppKeys::default()
    });
    let addr = edge.http_addr();
    let path = "live/hls-cam";
    let viewer = thread::spawn(move || {
        let req = format!(
            "GET /live/hls-cam/index.m3u8 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        exchange(addr, req.as_bytes(), Duration::from_secs(120))
    });
    origin.wait_for_players(path, 1, SUBSCRIBE);
    let tags = fixture_tags("av.flv");
    let mut publisher = new_publisher(&origin, path);
    send_tags(&mut publisher, &tags);
    let first = viewer.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("media.m3u8"), "{}", first.text());
    assert_eq!(origin.players(path), 1, "the origin serves the edge once");
    publisher.close();
    let got = crate::hls::ended_stream_samples(addr, path, "edge-hls");
    crate::hls::assert_samples_match(&crate::hls::expected_samples(&tags), &got);
}

/// With the origin unreachable, a player is told StreamNotFound after
/// origin_timeout; the next player tries again, and gets the stream once the
/// origin is up. While a pull holds the key, a local publisher is refused.
#[test]
fn an_edge_without_its_origin_says_not_found_and_the_next_player_tries_again() {
    let port = free_port();
    let origin_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let edge = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                origin: Some(origin_at(&format!("rtmp://{origin_addr}"))),
                // An unreachable origin is said at once; a reachable one may
                // take its time on a busy machine.
                origin_timeout: Some(Seconds(Duration::from_secs(300))),
                ..AppKeys::default()
            },
        )
    });
    // Refused at once: the player is told (not left to its own timeout).
    match play_answer(&edge, "live/cam") {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code, "NetStream.Play.StreamNotFound");
            assert!(s.description.contains("origin"), "{}", s.description);
        }
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    assert!(
        relays(&edge)["pulls"].as_array().unwrap().is_empty(),
        "forgotten"
    );

    // The origin comes up and publishes; the next player gets the stream.
    let origin = start_server_with(|c| c.listen = vec![ListenAddr::Addr(origin_addr)]);
    // Without the fixture's onMetaData: its duration would make rtmpdump call a
    // stream it joined late incomplete.
    let published = fixture_tags("av.flv")[1..].to_vec();
    let mut publisher = new_publisher(&origin, "live/cam");
    send_tags(&mut publisher, &published[..published.len() / 2]);
    let dir = TempDir::new("edge-retry");
    let out = dir.join("player.flv");
    let player = ChildGuard::new(play_rtmpdump(&edge.url("live/cam"), &out));
    edge.wait_for_players("live/cam", 1, SUBSCRIBE);
    assert_eq!(origin.players("live/cam"), 1);
    // A local publisher may not take the pulled key.
    let mut local = connect_with(&edge, "live/cam", &options());
    match local.publish("cam") {
        Err(ClientError::Status(s)) => assert_eq!(s.code, "NetStream.Publish.BadName"),
        other => panic!("a local publisher on a pulled key: {other:?}"),
    }
    send_tags(&mut publisher, &published[published.len() / 2..]);
    publisher.close();
    wait_success(player.take(), FINISH, "player");
    assert_received_matches(&published, &read_flv(&out), false);
}

/// A pulled stream is published through admission as from the origin's
/// address: IP rules refuse it (the player is told why it is not found), the
/// publish secret does not apply (the server cannot show one).
#[test]
fn pulled_streams_pass_admission_without_the_secret() {
    let secret = Secret::new("s3cret").unwrap();
    let (origin, edge) = origin_and_edge(AppKeys {
        publish_secret: Some(secret.clone()),
        ..AppKeys::default()
    });
    let mut publisher = new_publisher(&origin, "live/cam");
    let published = fixture_tags("av.flv");
    send_tags(&mut publisher, &published[..20]);
    let mut player = connect_with(&edge, "live/cam", &options());
    player.play("cam").expect("the secret does not stop a pull");
    player.close();
    publisher.close();

    let (origin, edge) = origin_and_edge(AppKeys {
        deny_publish: Some(vec![IpRange::parse("127.0.0.0/8").unwrap()]),
        ..AppKeys::default()
    });
    let mut publisher = new_publisher(&origin, "live/cam");
    send_tags(&mut publisher, &published[..20]);
    match play_answer(&edge, "live/cam") {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code, "NetStream.Play.StreamNotFound");
            assert!(s.description.contains("refused"), "{}", s.description);
        }
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
}

/// A static pull keeps pulling while the server runs: its stream is there
/// before any player asks, and comes back after the source went away.
#[test]
fn a_static_pull_runs_without_players_and_reconnects() {
    let origin = start_server();
    let from = upstream(&origin.url("live/cam"));
    let edge = start_server_with(|c| {
        let mut policy = rtmpd::config::Policy::clone(&c.policy);
        policy.global.pull = Some(vec![PullEntry {
            from,
            as_name: Some("tv/one".into()),
            tls_verify: None,
        }]);
        policy.global.push_backoff_min = Some(Seconds(Duration::from_millis(200)));
        policy.global.push_backoff_max = Some(Seconds(Duration::from_millis(400)));
        c.policy = std::sync::Arc::new(policy);
    });
    origin.wait_for_players("live/cam", 1, SUBSCRIBE);
    let published = fixture_tags("av.flv");
    for round in 0..2 {
        let mut publisher = new_publisher(&origin, "live/cam");
        send_tags(&mut publisher, &published[..40]);
        edge.wait_for_frames("tv/one", SUBSCRIBE);
        let pull = &relays(&edge)["pulls"][0];
        assert_eq!(
            (pull["app"].as_str(), pull["key"].as_str()),
            (Some("tv"), Some("one"))
        );
        assert_eq!(pull["state"], "live", "round {round}: {pull}");
        publisher.close();
        wait_for("the pulled stream to pause", SUBSCRIBE, || {
            !edge.is_live("tv/one")
        });
    }
    // The source server goes away and comes back on the same address: the pull
    // reconnects by itself.
    let addr = origin.addr;
    origin.handle.shutdown("test");
    wait_for("the origin to stop", SUBSCRIBE, || {
        origin.stopped.load(std::sync::atomic::Ordering::SeqCst)
    });
    wait_for("the pull to back off", SUBSCRIBE, || {
        relays(&edge)["pulls"][0]["state"] == "backing_off"
    });
    let again = start_server_with(|c| c.listen = vec![ListenAddr::Addr(addr)]);
    again.wait_for_players("live/cam", 1, SUBSCRIBE);
    assert!(relays(&edge)["pulls"][0]["reconnects"].as_u64().unwrap() >= 1);
}

/// The API's entry for the pull into `app/key`, if listed.
fn pull_of(server: &TestServer, path: &str) -> Option<serde_json::Value> {
    let (app, key) = path.split_once('/').unwrap();
    relays(server)["pulls"]
        .as_array()?
        .iter()
        .find(|p| p["app"] == app && p["key"] == key)
        .cloned()
}

/// A reload applies the file's static pulls: an entry taken out stops pulling
/// (the source loses its player), a new one starts, and one left alone runs on
/// untouched, its stream live through the reload.
#[test]
fn a_reload_starts_new_static_pulls_and_stops_removed_ones() {
    let origin = start_server();
    let dir = TempDir::new("pull-reload");
    let file = dir.join("edge.toml");
    let pulls = |entries: &[(&str, &str)]| {
        let list: Vec<String> = entries
            .iter()
            .map(|(from, to)| format!("{{ from = \"{}\", as = \"{to}\" }}", origin.url(from)))
            .collect();
        std::fs::write(&file, format!("pull = [{}]\n", list.join(", "))).unwrap();
    };
    pulls(&[("live/a", "tv/one"), ("live/c", "tv/three")]);
    let source = rtmpd::config::Source {
        file: Some(file.clone()),
        flags: Vec::new(),
    };
    let edge = start_server_with(|c| {
        c.policy = source.load().unwrap().policy;
        c.source = source.clone();
    });
    let mut publisher = new_publisher(&origin, "live/c");
    let published = fixture_tags("av.flv");
    send_tags(&mut publisher, &published[..40]);
    origin.wait_for_players("live/a", 1, SUBSCRIBE);
    edge.wait_for_frames("tv/three", SUBSCRIBE);
    wait_for("the pull of live/c to be live", SUBSCRIBE, || {
        pull_of(&edge, "tv/three").is_some_and(|p| p["state"] == "live")
    });
    let before = pull_of(&edge, "tv/three").unwrap()["state_seconds"]
        .as_f64()
        .unwrap();

    pulls(&[("live/b", "tv/two"), ("live/c", "tv/three")]);
    assert!(edge.handle.reload("test"), "the reload took");
    origin.wait_for_players("live/b", 1, SUBSCRIBE);
    wait_for("the pull of live/a to stop", SUBSCRIBE, || {
        origin.players("live/a") == 0 && pull_of(&edge, "tv/one").is_none()
    });
    assert!(pull_of(&edge, "tv/two").is_some());
    let kept = pull_of(&edge, "tv/three").unwrap();
    assert_eq!(
        (&kept["state"], &kept["reconnects"]),
        (&"live".into(), &0.into()),
        "{kept}"
    );
    assert!(kept["state_seconds"].as_f64().unwrap() > before, "{kept}");
    assert_eq!(origin.players("live/c"), 1, "still the one pull");
    send_tags(&mut publisher, &published[40..]);
    publisher.close();
}

/// A destination that refuses the publish is reported (log and API) and retried
/// ever more slowly, never in a loop.
#[test]
fn refused_destinations_are_reported_without_spinning() {
    let destination = start_server_with(|c| {
        with_app(
            c,
            "dest",
            AppKeys {
                publish_secret: Some(Secret::new("right").unwrap()),
                ..AppKeys::default()
            },
        )
    });
    let refusing = destination.url("dest/{key}?secret=wrong");
    let source = start_server_with(|c| {
        let mut keys = AppKeys {
            push: Some(push_to(&[refusing])),
            ..AppKeys::default()
        };
        keys.push_backoff_min = Some(Seconds(Duration::from_millis(200)));
        keys.push_backoff_max = Some(Seconds(Duration::from_secs(2)));
        with_app(c, "live", keys)
    });
    let mut publisher = new_publisher(&source, "live/cam");
    let published = fixture_tags("av.flv");
    send_tags(&mut publisher, &published[..10]);
    // The refused push: each wait is double the last, up to the maximum.
    let waits = observe_backoff(&source, "live/cam", "dest/{key}", 5);
    assert_backoff(&waits, 0.2, 2.0);
    let p = push_status(&source, "live/cam", "dest/{key}").unwrap();
    assert!(
        p["last_error"].as_str().unwrap().contains("Unauthorized"),
        "{p}"
    );
    assert!(!p["url"].as_str().unwrap().contains("wrong"), "{p}");
    publisher.close();
}

/// A destination that refuses the publish because another publisher holds the
/// key: the push reports the destination's own status (read from the
/// connection), not a socket error.
#[test]
fn a_refusal_is_reported_with_the_destinations_status() {
    let destination = start_server();
    let source = start_server_with(|c| {
        let mut keys = AppKeys {
            push: Some(push_to(&[destination.url("live/{key}")])),
            ..AppKeys::default()
        };
        keys.push_backoff_min = Some(Seconds(Duration::from_secs(5)));
        with_app(c, "live", keys)
    });
    let squatter = new_publisher(&destination, "live/cam");
    let mut publisher = new_publisher(&source, "live/cam");
    send_tags(&mut publisher, &fixture_tags("av.flv")[..10]);
    wait_push_state(&source, "live/cam", "live/{key}", "backing_off", SUBSCRIBE);
    let p = push_status(&source, "live/cam", "live/{key}").unwrap();
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("NetStream.Publish.BadName"),
        "{p}"
    );
    squatter.close();
    publisher.close();
}
