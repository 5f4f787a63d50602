//! Relays against Debian's nginx-rtmp, the reference peer: rtmpd pushes to it
//! and pulls from it; its `push` and `pull` directives work against rtmpd; and a
//! destination restarted in the middle of a push is live again within the
//! backoff while rtmpd's own players notice nothing. Media compared byte for
//! byte (nginx-rtmp runs with `meta copy;`; the comparison is of media tags).

use std::time::Duration;

use rtmpd::config::policy::{AppKeys, Seconds};

use crate::client_support::{SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::relay_support::*;
use crate::support::*;

// Bounds on a hang only, generous for a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);

const LIVE_APP: &str = "application live { live on; meta copy; }";

#[test]
fn rtmpd_pushes_to_nginx_rtmp_whose_players_get_the_media_byte_exact() {
    let nginx = Nginx::start(LIVE_APP);
    let source = start_server_with(|c| {
        with_app(
            c,
            "src",
            AppKeys {
                push: Some(push_to(&[nginx.url("live/{key}")])),
                ..AppKeys::default()
            },
        )
    });
    let published = fixture_tags("av.flv");
    // nginx-rtmp lets a player wait for a stream that is not published yet.
    let player = play_until(&nginx.url("live/cam"), last_media(&published), FINISH);
    let publisher = publish_ffmpeg(&source.url("src/cam"), &fixture("av.flv"), true);
    wait_success(publisher, FINISH, "publisher");
    let received = player.join().expect("nginx-rtmp's player");
    assert_received_matches(&published, &received, true);
}

#[test]
fn an_rtmpd_edge_pulls_from_an_nginx_rtmp_origin() {
    let nginx = Nginx::start(LIVE_APP);
    let edge = start_server_with(|c| {
        with_app(
            c,
            "live",
            AppKeys {
                origin: Some(origin_at(&format!("rtmp://127.0.0.1:{}", nginx.port))),
                ..AppKeys::default()
            },
        )
    });
    let dir = TempDir::new("edge-nginx");
    let out = dir.join("edge-player.flv");
    // Looped, and stopped once the edge's player has had enough: a real-time
    // stream could end before a busy machine has that player going.
    let (input, published) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(&nginx.url("live/cam"), &input, true);
    // The edge's player comes once nginx-rtmp has the stream.
    let probe = dir.join("probe.flv");
    let first = play_rtmpdump(&nginx.url("live/cam"), &probe);
    wait_for("nginx-rtmp to have the stream", SUBSCRIBE, || {
        std::fs::metadata(&probe).is_ok_and(|m| m.len() > 1000)
    });
    let player = play_rtmpdump(&edge.url("live/cam"), &out);
    wait_for_received(&out, FINISH);
    stop(publisher, FINISH);
    wait_success(player, FINISH, "the edge's player");
    let _ = stop(first, Duration::from_secs(3));
    assert_received_matches(&published, &read_flv(&out), false);
}

/// nginx-rtmp's `pull` (an nginx edge of an rtmpd origin) and `push` (nginx
/// restreaming to rtmpd) directives against rtmpd.
#[test]
fn nginx_rtmp_pull_and_push_directives_work_against_rtmpd() {
    let rtmpd = start_server();
    let nginx = Nginx::start(&format!(
        "application pulled {{ live on; meta copy; pull rtmp://{0}/live; }}\n\
         application pushed {{ live on; meta copy; push rtmp://{0}/fromnginx; }}",
        rtmpd.addr
    ));
    let dir = TempDir::new("nginx-directives");
    let published = fixture_tags("av.flv");

    // pull: a player on nginx makes it pull live/cam from rtmpd. Looped, and
    // stopped once that player has had enough, however slowly it came.
    let (input, looped) = looped_fixture(&dir, "av.flv", 100);
    let publisher = publish_ffmpeg(&rtmpd.url("live/cam"), &input, true);
    rtmpd.wait_for_frames("live/cam", SUBSCRIBE);
    let pulled = dir.join("pulled.flv");
    let player = play_rtmpdump(&nginx.url("pulled/cam"), &pulled);
    rtmpd.wait_for_players("live/cam", 1, SUBSCRIBE);
    wait_for_received(&pulled, FINISH);
    stop(publisher, FINISH);
    let _ = stop(player, Duration::from_secs(3));
    assert_received_matches(&looped, &read_flv(&pulled), false);

    // push: what is published to nginx arrives at rtmpd, for a player waiting there.
    let pushed = dir.join("pushed.flv");
    let player = play_rtmpdump(&rtmpd.url("fromnginx/cam"), &pushed);
    rtmpd.wait_for_players("fromnginx/cam", 1, SUBSCRIBE);
    let publisher = publish_ffmpeg(&nginx.url("pushed/cam"), &fixture("av.flv"), true);
    wait_success(publisher, FINISH, "publisher to nginx-rtmp");
    wait_success(player, FINISH, "rtmpd's player");
    assert_received_matches(&published, &read_flv(&pushed), false);
}

/// nginx-rtmp, the destination of a push, goes away mid-stream and comes back:
/// the push backs off on its schedule (never beyond its maximum) while it is
/// away, is live again once it is back, nginx-rtmp's new player gets the stream,
/// and rtmpd's own player gets all of it, byte for byte, as if nothing happened.
#[test]
fn a_destination_restarted_mid_push_is_live_again_and_local_players_never_notice() {
    let mut nginx = Nginx::start(LIVE_APP);
    let source = start_server_with(|c| {
        c.publish_timeout = HELD_PUBLISH_TIMEOUT;
        with_app(
            c,
            "src",
            AppKeys {
                push: Some(push_to(&[nginx.url("live/{key}")])),
                push_backoff_min: Some(Seconds(Duration::from_millis(500))),
                push_backoff_max: Some(Seconds(Duration::from_secs(1))),
                ..AppKeys::default()
            },
        )
    });
    let dir = TempDir::new("nginx-restart");
    let local = dir.join("local.flv");
    let local_player = play_rtmpdump(&source.url("src/cam"), &local);
    source.wait_for_players("src/cam", 1, SUBSCRIBE);
    let stream = looped(&fixture_tags("av.flv")[1..], 3);
    // Our publisher moves on only when told: nginx-rtmp is away for as long as
    // the test watches the push, wherever the stream is by then.
    let mut publisher = SteppedPublisher::start(&source, "src/cam", stream.clone());
    publisher.send_until(2000);
    wait_push_state(&source, "src/cam", "live/{key}", "live", SUBSCRIBE);

    nginx.kill();
    // More stream while it is away: the push finds the connection gone.
    publisher.send_until(4000);
    let waits = observe_backoff(&source, "src/cam", "live/{key}", 2);
    assert_backoff(&waits, 0.5, 1.0);
    nginx.run();
    // Its new player waits there (subscribed before we go on) for the stream.
    let resumed = play_until_unpublished(&nginx.url("live/cam"), FINISH);
    wait_push_state(&source, "src/cam", "live/{key}", "live", SUBSCRIBE);
    // The rest in real time, as an encoder sends it: nginx-rtmp drops frames
    // that flood a player's queue. (Pacing only: nothing waits on the clock.)
    let end = stream.last().map_or(0, |t| t.timestamp);
    for ms in (4200..=end).step_by(200) {
        publisher.send_until(ms);
        std::thread::sleep(Duration::from_millis(200));
    }
    publisher.finish();
    wait_success(local_player, FINISH, "rtmpd's player");
    assert_received_matches(&stream, &read_flv(&local), true);
    let resumed = resumed.join().expect("nginx-rtmp's player");
    assert_received_matches(&stream, &resumed, false);
}
