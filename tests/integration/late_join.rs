//! Players and probes that join a stream already live (published in realtime):
//! they must be fast-started from the GOP cache with a stream decoders accept.

use std::process::Command;
use std::thread;
use std::time::Duration;

use rtmpd::media::flv::FlvTag;
use rtmpd::media::frame::FrameKind;

use crate::support::*;

const PUBLISH_START: Duration = Duration::from_secs(10);
const SUBSCRIBE: Duration = Duration::from_secs(10);
/// The fixtures last 3-4 s in realtime; the rest is slack for a loaded machine.
const FINISH: Duration = Duration::from_secs(15);
/// When players join, counted from the publisher's first frame: halfway through
/// the second GOP of av.flv (keyframes about every 1000 ms), so the cached
/// keyframe is ~500 ms old and the next one ~500 ms away.
const JOIN_AT: Duration = Duration::from_millis(1500);

/// A realtime publisher of `fixture_name` on `path`, with a timeline spy that
/// subscribed first; returns once the first frames are in and `JOIN_AT` has passed
/// since.
fn publish_and_wait_to_join(
    server: &TestServer,
    path: &str,
    fixture_name: &str,
) -> (std::process::Child, PublishTimeline) {
    let timeline = PublishTimeline::record(server, path);
    let publisher = publish_ffmpeg(&server.url(path), &fixture(fixture_name), true);
    let first_frames = timeline.wait_for_first_frame(PUBLISH_START);
    // The join point is a moment in the stream, not a condition. The assertions
    // only need it to fall between keyframes, which a 500 ms margin either side
    // leaves room for even on a loaded machine.
    thread::sleep(JOIN_AT.saturating_sub(first_frames.elapsed()));
    (publisher, timeline)
}

/// Waits until the server has subscribed `player`, the `nth` player of the key
/// (the timeline spy included); returns it with `nth`.
fn join(
    server: &TestServer,
    path: &str,
    nth: usize,
    player: std::process::Child,
) -> (std::process::Child, usize) {
    server.wait_for_players(path, nth, SUBSCRIBE);
    (player, nth)
}

/// Checks that the `nth` player started from the fast-start cache: the first tag of
/// the `kind` track it received had been published before it subscribed, and its
/// publish timestamp is earlier than the stream time at that moment (it did not
/// wait for the next keyframe). `same_timestamps`: the player keeps the server's
/// timestamps (rtmpdump does; ffmpeg rebases them to 0).
fn assert_fast_started(
    timeline: &PublishTimeline,
    received: &[FlvTag],
    nth: usize,
    kind: FrameKind,
    same_timestamps: bool,
    who: &str,
) {
    let (audio, video) = media_tracks(received);
    let track = if kind == FrameKind::Video {
        video
    } else {
        audio
    };
    let first = track
        .first()
        .unwrap_or_else(|| panic!("{who}: no {kind:?} received"));
    let published = timeline
        .find(|f| {
            f.kind == kind
                && f.payload == first.data
                && (!same_timestamps || f.timestamp == first.timestamp)
        })
        .unwrap_or_else(|| panic!("{who}: the first {kind:?} tag received was never published"));
    let ts = published.frame.timestamp;
    let stream_time = timeline
        .stream_time_before(nth)
        .expect("frames were published before the player joined");
    assert!(
        published.players_after < nth,
        "{who}: the first {kind:?} frame received (published ts {ts}) was published after \
         the player subscribed (stream time {stream_time} ms then): it did not start from \
         the cache"
    );
    // Equal when the player joined right after that keyframe was published, before
    // any other frame: it is still the cached one (published before the player
    // subscribed, as checked above), not the next.
    assert!(
        ts <= stream_time,
        "{who}: the first {kind:?} frame received has published ts {ts}, later than \
         the stream time {stream_time} ms when the player subscribed"
    );
    if same_timestamps {
        assert_eq!(
            first.timestamp, ts,
            "{who}: a late joiner gets the publisher's timestamps"
        );
    }
}

#[test]
fn late_joiners_start_from_the_cached_keyframe() {
    let server = start_server();
    let dir = TempDir::new("late-join");
    let path = "live/late";
    let (publisher, mut timeline) = publish_and_wait_to_join(&server, path, "av.flv");

    let dump_out = dir.join("rtmpdump.flv");
    let (dumper, dumper_nth) = join(
        &server,
        path,
        2,
        play_rtmpdump(&server.url(path), &dump_out),
    );
    let ff_out = dir.join("ffmpeg.flv");
    let (ff, ff_nth) = join(&server, path, 3, play_ffmpeg(&server.url(path), &ff_out));

    wait_success(publisher, FINISH, "publisher");
    wait_success(dumper, FINISH, "rtmpdump");
    wait_success(ff, FINISH, "ffmpeg player");
    timeline.finish(FINISH);

    let published = fixture_tags("av.flv");
    for (who, out, nth, same_timestamps) in [
        ("rtmpdump", &dump_out, dumper_nth, true),
        ("ffmpeg", &ff_out, ff_nth, false),
    ] {
        let received = read_flv(out);
        let (audio_sh, video_sh) = sequence_headers(&received);
        assert!(
            !audio_sh.is_empty() && !video_sh.is_empty(),
            "{who}: both sequence headers must be received"
        );
        let (_, video) = media_tracks(&received);
        assert!(
            video.first().is_some_and(is_keyframe),
            "{who}: the first video tag must be a keyframe"
        );
        assert_received_matches(&published, &received, false);
        assert_fast_started(
            &timeline,
            &received,
            nth,
            FrameKind::Video,
            same_timestamps,
            who,
        );
    }
}

#[test]
fn late_joiner_remuxes_without_timestamp_warnings() {
    let server = start_server();
    let dir = TempDir::new("late-remux");
    let path = "live/remux";
    let (publisher, mut timeline) = publish_and_wait_to_join(&server, path, "av.flv");

    let out = dir.join("remux.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "warning", "-y", "-i"])
        .arg(server.url(path))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out);
    let (player, _) = join(&server, path, 2, spawn(cmd));

    wait_success(publisher, FINISH, "publisher");
    let (status, stderr) = wait_with_stderr(player, FINISH);
    timeline.finish(FINISH);
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
fn probe_live(path: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let server = start_server();
    let publisher = publish_ffmpeg(&server.url(path), &fixture("av.flv"), true);
    server.wait_for_publisher(path, PUBLISH_START);
    let streams = ffprobe_streams(&server.url(path), FINISH);
    // The publisher has done its part; it need not run to the end.
    stop(publisher, Duration::from_secs(5));
    streams
}

#[test]
fn ffprobe_on_the_live_url_sees_both_tracks() {
    let streams = probe_live("live/probe");
    assert_av_streams(&streams, "ffprobe on the live URL");
}

#[test]
fn audio_only_late_joiner_gets_audio_at_once() {
    let server = start_server();
    let dir = TempDir::new("late-audio");
    let path = "live/radio";
    let (publisher, mut timeline) = publish_and_wait_to_join(&server, path, "audio.flv");
    let out = dir.join("rtmpdump.flv");
    let (player, nth) = join(&server, path, 2, play_rtmpdump(&server.url(path), &out));
    wait_success(publisher, FINISH, "publisher");
    wait_success(player, FINISH, "rtmpdump");
    timeline.finish(FINISH);

    let received = read_flv(&out);
    let (audio_sh, _) = sequence_headers(&received);
    assert!(!audio_sh.is_empty(), "the AAC sequence header is received");
    assert_received_matches(&fixture_tags("audio.flv"), &received, false);
    assert_fast_started(
        &timeline,
        &received,
        nth,
        FrameKind::Audio,
        true,
        "rtmpdump",
    );
}

/// With the GOP cache off (or after a GOP outgrew it) a late joiner gets only the
/// metadata and sequence headers up front; it must then wait for the next keyframe
/// rather than be sent inter frames it cannot decode.
#[test]
fn late_joiner_without_gop_cache_starts_at_a_keyframe() {
    let server = start_server_with(|c| c.gop_cache = false);
    let dir = TempDir::new("late-nocache");
    let path = "live/nocache";
    let (publisher, mut timeline) = publish_and_wait_to_join(&server, path, "av.flv");
    let out = dir.join("rtmpdump.flv");
    let (player, _) = join(&server, path, 2, play_rtmpdump(&server.url(path), &out));
    wait_success(publisher, FINISH, "publisher");
    wait_success(player, FINISH, "rtmpdump");
    timeline.finish(FINISH);

    let received = read_flv(&out);
    let (_, video) = media_tracks(&received);
    assert!(
        video.first().is_some_and(is_keyframe),
        "the first video tag a late joiner gets must be a keyframe; it got {} video tags \
         before the first keyframe",
        video.iter().take_while(|t| !is_keyframe(t)).count()
    );
    assert_received_matches(&fixture_tags("av.flv"), &received, false);
}
