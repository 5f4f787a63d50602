//! Players and probes that join a stream already live: they must be fast-started
//! from the GOP cache with a stream decoders accept. The stream is a fixture our
//! client publishes up to the middle of a GOP, where it pauses until the players
//! have joined, then sends the rest: so every player joins at that point of the
//! stream, however long it takes to start on a busy machine.

use std::process::{Child, Command};
use std::time::Duration;

use rtmpd::media::flv::FlvTag;

use crate::client_support::{SteppedPublisher, HELD_PUBLISH_TIMEOUT};
use crate::support::*;

/// Bounds on hangs only, generous for a busy machine.
const SUBSCRIBE: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(60);
/// Where the players join: halfway through the second GOP of av.flv (keyframes
/// every 1000 ms), so the cached keyframe is 500 ms old and the next one 500 ms
/// away; for audio.flv, well past its first second.
const JOIN_AT_MS: u32 = 1500;

/// Starts a player on the URL it is given.
type StartPlayer<'a> = Box<dyn FnOnce(&str) -> Child + 'a>;

/// A server that holds a paused publisher, with `configure` applied on top.
fn server_with(configure: impl FnOnce(&mut rtmpd::config::Config)) -> TestServer {
    start_server_with(|c| {
        c.publish_timeout = HELD_PUBLISH_TIMEOUT;
        configure(c);
    })
}

/// Publishes `fixture_name` on `path` up to `JOIN_AT_MS`, runs `players` (each
/// started by its function on the stream's URL) and waits until the server has
/// subscribed them all (the only plays on the server), then publishes the rest and
/// ends the publish. Returns the players
/// and the tags published before they joined.
fn join_mid_stream(
    server: &TestServer,
    path: &str,
    fixture_name: &str,
    players: Vec<StartPlayer<'_>>,
) -> (Vec<Child>, Vec<FlvTag>) {
    let mut publisher = SteppedPublisher::start(server, path, fixture_tags(fixture_name));
    publisher.send_until(JOIN_AT_MS);
    let before_join = publisher.sent().to_vec();
    let url = server.url(path);
    let count = players.len();
    let players: Vec<Child> = players.into_iter().map(|start| start(&url)).collect();
    server.wait_for_plays(count as u64, SUBSCRIBE);
    publisher.finish();
    (players, before_join)
}

/// Checks that a player started from the fast-start cache: the first tag of its
/// `kind` track (audio or video, by FLV tag type) is one published before it joined
/// and, for video, the last keyframe before that (it did not wait for the next one);
/// for audio, older than the newest frame then (it got a cached stretch, not just the
/// latest frame). `same_timestamps`: the player keeps the server's timestamps
/// (rtmpdump does; ffmpeg rebases them to 0).
fn assert_fast_started(
    before_join: &[FlvTag],
    received: &[FlvTag],
    tag_type: u8,
    same_timestamps: bool,
    who: &str,
) {
    let (audio, video) = media_tracks(received);
    let (published_audio, published_video) = media_tracks(before_join);
    let (track, published) = if tag_type == rtmpd::media::flv::TAG_VIDEO {
        (video, published_video)
    } else {
        (audio, published_audio)
    };
    let first = track
        .first()
        .unwrap_or_else(|| panic!("{who}: no tag of type {tag_type} received"));
    let at = published
        .iter()
        .rposition(|t| t.data == first.data)
        .unwrap_or_else(|| {
            panic!(
                "{who}: the first tag of type {tag_type} received (ts {}) was not published \
                 before the player joined at {JOIN_AT_MS} ms: it did not start from the cache",
                first.timestamp
            )
        });
    let cached = &published[at];
    if tag_type == rtmpd::media::flv::TAG_VIDEO {
        let last_keyframe = published
            .iter()
            .rposition(is_keyframe)
            .expect("a keyframe before the join");
        assert_eq!(
            at, last_keyframe,
            "{who}: the first video tag received (published ts {}) is not the last keyframe \
             before the join (ts {})",
            cached.timestamp, published[last_keyframe].timestamp
        );
    } else {
        assert!(
            at + 1 < published.len(),
            "{who}: the first audio tag received is the newest one published before the \
             join (ts {}): nothing older came from the cache",
            cached.timestamp
        );
    }
    if same_timestamps {
        assert_eq!(
            first.timestamp, cached.timestamp,
            "{who}: a late joiner gets the publisher's timestamps"
        );
    }
}

#[test]
fn late_joiners_start_from_the_cached_keyframe() {
    let server = server_with(|_| {});
    let dir = TempDir::new("late-join");
    let path = "live/late";
    let dump_out = dir.join("rtmpdump.flv");
    let ff_out = dir.join("ffmpeg.flv");
    let (players, before_join) = join_mid_stream(
        &server,
        path,
        "av.flv",
        vec![
            Box::new(|url: &str| play_rtmpdump(url, &dump_out)),
            Box::new(|url: &str| play_ffmpeg(url, &ff_out)),
        ],
    );
    for (player, what) in players.into_iter().zip(["rtmpdump", "ffmpeg player"]) {
        wait_success(player, FINISH, what);
    }

    let published = fixture_tags("av.flv");
    for (who, out, same_timestamps) in [("rtmpdump", &dump_out, true), ("ffmpeg", &ff_out, false)] {
        let received = read_flv(out);
        let (audio_sh, video_sh) = sequence_headers(&received);
        assert!(
            !audio_sh.is_empty() && !video_sh.is_empty(),
            "{who}: both sequence headers must be received"
        );
        assert_received_matches(&published, &received, false);
        assert_fast_started(
            &before_join,
            &received,
            rtmpd::media::flv::TAG_VIDEO,
            same_timestamps,
            who,
        );
    }
}

#[test]
fn late_joiner_remuxes_without_timestamp_warnings() {
    let server = server_with(|_| {});
    let dir = TempDir::new("late-remux");
    let path = "live/remux";
    let out = dir.join("remux.flv");
    let remux = |url: &str| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "warning", "-y", "-i", url])
            .args(["-c", "copy", "-f", "flv"])
            .arg(&out);
        spawn(cmd)
    };
    let (mut players, _) = join_mid_stream(&server, path, "av.flv", vec![Box::new(remux)]);
    let (status, stderr) = wait_with_stderr(players.remove(0), FINISH);
    assert!(status.success(), "ffmpeg failed with {status}:\n{stderr}");
    // ffmpeg 5.1 says "Non-monotonous DTS in output stream ..." (older and newer
    // versions "non monotonically increasing dts" / "Non-monotonic DTS"), and its FLV
    // demuxer "DTS ... out of order".
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("monoton") && !lower.contains("out of order"),
        "ffmpeg complained about the timestamps of the late-joined stream:\n{stderr}"
    );

    let streams = ffprobe_streams(out.to_str().unwrap(), FINISH);
    assert_av_streams(&streams, "remuxed output");
    assert_eq!(streams.len(), 2, "remuxed output: {streams:?}");
}

/// The fixture's H.264 320x240 and AAC 44.1 kHz stereo are among `streams`.
fn assert_av_streams(streams: &[std::collections::BTreeMap<String, String>], what: &str) {
    let find = |codec_type: &str| {
        streams
            .iter()
            .find(|s| s.get("codec_type").map(String::as_str) == Some(codec_type))
            .unwrap_or_else(|| panic!("{what}: no {codec_type} stream in {streams:?}"))
    };
    let video = find("video");
    let audio = find("audio");
    let field = |s: &std::collections::BTreeMap<String, String>, k: &str| {
        s.get(k).cloned().unwrap_or_default()
    };
    assert_eq!(
        [
            field(video, "codec_name"),
            field(video, "width"),
            field(video, "height")
        ],
        ["h264", "320", "240"],
        "{what}: video stream {video:?}"
    );
    assert_eq!(
        [
            field(audio, "codec_name"),
            field(audio, "sample_rate"),
            field(audio, "channels")
        ],
        ["aac", "44100", "2"],
        "{what}: audio stream {audio:?}"
    );
}

/// ffprobe joins the live stream like a late player, probes it and disconnects.
#[test]
fn ffprobe_on_the_live_url_sees_both_tracks() {
    let server = server_with(|_| {});
    let path = "live/probe";
    let probe = |url: &str| spawn_ffprobe_streams(url);
    let (mut players, _) = join_mid_stream(&server, path, "av.flv", vec![Box::new(probe)]);
    let streams = ffprobe_report(players.remove(0), &server.url(path), FINISH);
    assert_av_streams(&streams, "ffprobe on the live URL");
}

#[test]
fn audio_only_late_joiner_gets_audio_at_once() {
    let server = server_with(|_| {});
    let dir = TempDir::new("late-audio");
    let path = "live/radio";
    let out = dir.join("rtmpdump.flv");
    let (mut players, before_join) = join_mid_stream(
        &server,
        path,
        "audio.flv",
        vec![Box::new(|url: &str| play_rtmpdump(url, &out))],
    );
    wait_success(players.remove(0), FINISH, "rtmpdump");

    let received = read_flv(&out);
    let (audio_sh, _) = sequence_headers(&received);
    assert!(!audio_sh.is_empty(), "the AAC sequence header is received");
    assert_received_matches(&fixture_tags("audio.flv"), &received, false);
    assert_fast_started(
        &before_join,
        &received,
        rtmpd::media::flv::TAG_AUDIO,
        true,
        "rtmpdump",
    );
}

/// With the GOP cache off (or after a GOP outgrew it) a late joiner gets only the
/// metadata and sequence headers up front; it must then wait for the next keyframe
/// rather than be sent inter frames it cannot decode.
#[test]
fn late_joiner_without_gop_cache_starts_at_a_keyframe() {
    let server = server_with(|c| c.gop_cache = false);
    let dir = TempDir::new("late-nocache");
    let path = "live/nocache";
    let out = dir.join("rtmpdump.flv");
    let (mut players, before_join) = join_mid_stream(
        &server,
        path,
        "av.flv",
        vec![Box::new(|url: &str| play_rtmpdump(url, &out))],
    );
    wait_success(players.remove(0), FINISH, "rtmpdump");

    let received = read_flv(&out);
    let (_, video) = media_tracks(&received);
    assert!(
        video.first().is_some_and(is_keyframe),
        "the first video tag a late joiner gets must be a keyframe; it got {} video tags \
         before the first keyframe",
        video.iter().take_while(|t| !is_keyframe(t)).count()
    );
    // The next keyframe, not one from the cache that is off.
    let (_, published_before) = media_tracks(&before_join);
    assert!(
        video
            .first()
            .is_some_and(|first| first.timestamp >= JOIN_AT_MS
                && !published_before.iter().any(|t| t.data == first.data)),
        "the first video tag was published before the player joined: the cache is off"
    );
    assert_received_matches(&fixture_tags("av.flv"), &received, false);
}
