//! Relays between rtmpd servers: pushes (restream) and pulls (edge, static), with
//! real clients at both ends, byte for byte.

use std::sync::Arc;
use std::time::Duration;

use rtmpd::config::policy::{AppKeys, Policy};
use rtmpd::config::relay::{PushEntry, UpstreamUrl};
use rtmpd::config::Config;

use crate::http_support::get_json;
use crate::support::*;

const SUBSCRIBE: Duration = Duration::from_secs(10);
const FINISH: Duration = Duration::from_secs(20);

/// Adds per-app keys for `app` to the server's policy.
pub fn with_app(config: &mut Config, app: &str, keys: AppKeys) {
    let mut policy = Policy::clone(&config.policy);
    policy.apps.insert(app.to_owned(), keys);
    config.policy = Arc::new(policy);
}

pub fn push_to(urls: &[String]) -> Vec<PushEntry> {
    urls.iter()
        .map(|u| PushEntry::new(UpstreamUrl::parse(u).unwrap()))
        .collect()
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
        let (_, doc) = get_json(source.http_addr(), "/api/relays");
        doc["pushes"].as_array().is_some_and(|p| p.is_empty())
    });
}
