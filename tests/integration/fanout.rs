//! Many players on one stream: every one of them gets all of it, byte for byte.

use std::time::Duration;

use crate::support::*;

const PLAYERS: usize = 50;
/// A bound on hangs only: 50 rtmpdumps take a while to start on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn fifty_waiting_players_all_get_the_whole_stream() {
    // The fixture is ~280 frames: with a queue longer than that no player can be
    // made to skip, whatever the scheduling, so the publisher need not be realtime.
    let server = start_server_with(|c| c.player_queue_frames = 4096);
    let dir = TempDir::new("fanout");
    let path = "live/crowd";
    let outs: Vec<_> = (0..PLAYERS)
        .map(|i| dir.join(&format!("player-{i}.flv")))
        .collect();
    let players: Vec<_> = outs
        .iter()
        .map(|out| play_rtmpdump(&server.url(path), out))
        .collect();
    server.wait_for_players(path, PLAYERS, TIMEOUT);
    assert_eq!(server.players(path), PLAYERS);

    let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), false);
    wait_success(publisher, TIMEOUT, "publisher");
    for (i, player) in players.into_iter().enumerate() {
        wait_success(player, TIMEOUT, &format!("player {i}"));
    }
    wait_for("all players to unsubscribe", TIMEOUT, || {
        server.stream_info(path).is_none()
    });

    let published = fixture_tags("av.flv");
    for (i, out) in outs.iter().enumerate() {
        let received = read_flv(out);
        let result = std::panic::catch_unwind(|| {
            assert_received_matches(&published, &received, true);
        });
        assert!(result.is_ok(), "player {i} ({}) differs", out.display());
    }
}
