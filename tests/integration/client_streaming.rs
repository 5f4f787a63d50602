//! Publishing and playing with rtmpd's own client: the fixture arrives intact at
//! rtmpdump and at our player whatever the publisher's chunk size, both handshakes
//! work, a player survives a republish with a timeline that keeps going forward,
//! and players get the status sequence Flash expects before any media.

use rtmpd::amf::amf0::Amf0Value;
use rtmpd::client::{ClientEvent, ClientOptions};
use rtmpd::rtmp::handshake::HandshakeKind;
use rtmpd::rtmp::message::{UserControl, AUDIO, VIDEO};

use crate::client_support::*;
use crate::support::*;

/// Publishes av.flv with our client at `chunk_size` to rtmpdump and our own
/// player, both subscribed before the first frame.
fn fixture_reaches_players_intact(chunk_size: u32) {
    let server = start_server();
    let path = format!("live/fixture-{chunk_size}");
    let tags = fixture_tags("av.flv");
    let tmp = TempDir::new("client-publish");
    let dump_file = tmp.join("rtmpdump.flv");
    let dump = ChildGuard::new(play_rtmpdump(&server.url(&path), &dump_file));
    let mut player = new_player(&server, &path);
    // Both must be subscribed before publishing, or they would start mid-stream.
    server.wait_for_players(&path, 2, EVENT_TIMEOUT);

    let opts = ClientOptions {
        chunk_size,
        ..options()
    };
    let mut publisher = new_publisher_with(&server, &path, &opts);
    send_tags(&mut publisher, &tags);
    publisher.close();

    let events = events_until(&mut player, "the end of the publish", |e| {
        is_status(e, "NetStream.Play.UnpublishNotify")
    });
    // rtmpdump ends by itself on UnpublishNotify.
    wait_with_timeout(dump.take(), EVENT_TIMEOUT);
    assert_received_matches(&tags, &read_flv(&dump_file), true);

    assert_same_media(&av_tags(&tags), &media(&events), "our player");
    let stream_id = player.play_stream().expect("playing");
    for e in &events {
        if let ClientEvent::Media { stream_id: s, .. } | ClientEvent::Data { stream_id: s, .. } = e
        {
            assert_eq!(*s, stream_id, "media on the play stream");
        }
    }
    // The metadata arrives as onMetaData, byte for byte what the FLV holds.
    let metadata: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Data { payload, .. } if payload[..] == tags[0].data[..] => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(metadata.len(), 1, "onMetaData arrives once, unchanged");
}

#[test]
fn fixture_published_with_chunk_size_128_arrives_intact() {
    fixture_reaches_players_intact(128);
}

#[test]
fn fixture_published_with_chunk_size_65536_arrives_intact() {
    fixture_reaches_players_intact(65536);
}

#[test]
fn digest_and_simple_handshakes_publish_and_play() {
    let server = start_server();
    let tags = fixture_tags("av.flv");
    // Metadata, both sequence headers and the first frames.
    let head = &tags[..8];
    for digest in [true, false] {
        let path = format!("live/handshake-{digest}");
        let opts = ClientOptions {
            digest_handshake: digest,
            ..options()
        };
        let mut player = new_player_with(&server, &path, &opts);
        let mut publisher = new_publisher_with(&server, &path, &opts);
        for client in [&player, &publisher] {
            match (digest, client.handshake_kind()) {
                (true, HandshakeKind::Digest { .. }) | (false, HandshakeKind::Simple) => {}
                (_, kind) => panic!("asked for digest={digest}, the server answered {kind:?}"),
            }
        }
        send_tags(&mut publisher, head);
        let want = av_tags(head);
        let events = events_until(&mut player, "the published frames", |e| {
            is_media(e, want.last())
        });
        assert_same_media(&want, &media(&events), &format!("digest={digest}"));
        publisher.close();
        player.close();
    }
}

#[test]
fn player_stays_across_a_republish_and_its_timeline_goes_forward() {
    let server = start_server();
    let path = "live/republish";
    let tags = fixture_tags("av.flv");
    // Metadata, headers and half a second: short enough that a restart at 0
    // looks like ordinary jitter, so only the republish itself can trigger the
    // rebase.
    let first_run: Vec<_> = tags
        .iter()
        .take_while(|t| t.timestamp < 500)
        .cloned()
        .collect();
    let first_run = &first_run[..];
    let mut player = new_player(&server, path);
    let stream_id = player.play_stream().expect("playing");

    // The first publisher just goes away: no FCUnpublish, no deleteStream.
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, first_run);
    drop(publisher);
    let run1 = events_until(&mut player, "the first unpublish", |e| {
        is_status(e, "NetStream.Play.UnpublishNotify")
    });
    let n = run1.len();
    assert!(
        matches!(run1[n - 2], ClientEvent::UserControl(UserControl::StreamEof(id)) if id == stream_id),
        "StreamEOF precedes UnpublishNotify, got {}",
        summary(&run1[n - 2])
    );
    let media1 = media(&run1);
    assert_same_media(&av_tags(first_run), &media1, "first publisher");

    // The player is still subscribed; a new publisher starts over at 0.
    assert_eq!(server.players(path), 1);
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &tags);
    publisher.close();
    let run2 = events_until(&mut player, "the second unpublish", |e| {
        is_status(e, "NetStream.Play.UnpublishNotify")
    });
    assert!(
        matches!(run2[0], ClientEvent::UserControl(UserControl::StreamBegin(id)) if id == stream_id),
        "the republish starts with StreamBegin, got {}",
        summary(&run2[0])
    );
    assert!(
        is_status(&run2[1], "NetStream.Play.PublishNotify"),
        "then PublishNotify, got {}",
        summary(&run2[1])
    );
    assert!(
        matches!(&run2[2], ClientEvent::Data { payload, .. } if payload[..] == tags[0].data[..]),
        "then the new publisher's metadata, got {}",
        summary(&run2[2])
    );

    // Same frames and spacing, shifted to continue the player's timeline.
    let published = av_tags(&tags);
    let media2 = media(&run2);
    assert_eq!(media2.len(), published.len(), "second publisher's frames");
    let shift = media2[0].1.wrapping_sub(published[0].1);
    let last1 = media1
        .iter()
        .map(|m| m.1)
        .max()
        .expect("first run had media");
    assert!(
        media2[0].1 >= last1,
        "the timeline went back at the republish: {} after {last1}",
        media2[0].1
    );
    let shifted: Vec<Av> = published
        .iter()
        .map(|(t, ts, data)| (*t, ts.wrapping_add(shift), data.clone()))
        .collect();
    assert_same_media(&shifted, &media2, "second publisher (shifted)");
    for track in [AUDIO, VIDEO] {
        let stamps: Vec<u32> = media1
            .iter()
            .chain(&media2)
            .filter(|m| m.0 == track)
            .map(|m| m.1)
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "track {track} goes backwards: {stamps:?}"
        );
    }
}

/// StreamBegin, Play.Reset, Play.Start, |RtmpSampleAccess, and no other data
/// message: players such as ffmpeg and VLC would turn one into an extra stream.
fn assert_play_preamble(events: &[ClientEvent], stream_id: u32) {
    assert!(events.len() >= 4, "only {} events", events.len());
    assert_eq!(
        events[0],
        ClientEvent::UserControl(UserControl::StreamBegin(stream_id))
    );
    for (event, code) in events[1..3]
        .iter()
        .zip(["NetStream.Play.Reset", "NetStream.Play.Start"])
    {
        match status(event, code) {
            Some(s) => {
                assert_eq!((s.stream_id, s.level.as_str()), (stream_id, "status"));
            }
            None => panic!("expected {code}, got {}", summary(event)),
        }
    }
    assert!(
        matches!(&events[3], ClientEvent::Data { stream_id: s, .. } if *s == stream_id),
        "expected |RtmpSampleAccess, got {}",
        summary(&events[3])
    );
    assert_eq!(
        data_messages(&events[3..4]),
        [vec![
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true)
        ]]
    );
}

#[test]
fn players_get_the_status_sequence_before_any_media() {
    let server = start_server();
    let path = "live/status-order";
    let tags = fixture_tags("av.flv");

    // Nobody publishing yet.
    let mut early = new_player(&server, path);
    let id = early.play_stream().expect("playing");
    let events = play_preamble(&mut early);
    assert_eq!(
        events.len(),
        4,
        "{:?}",
        events.iter().map(summary).collect::<Vec<_>>()
    );
    assert_play_preamble(&events, id);

    // A live stream: the same sequence comes before the fast-start burst.
    let mut publisher = new_publisher(&server, path);
    send_tags(&mut publisher, &tags[..8]);
    server.wait_for_frames(path, EVENT_TIMEOUT);
    let mut late = new_player(&server, path);
    let id = late.play_stream().expect("playing");
    let want = av_tags(&tags[..8]);
    let events = events_until(&mut late, "the burst", |e| is_media(e, want.last()));
    assert_play_preamble(&events, id);
    assert!(
        matches!(&events[4], ClientEvent::Data { payload, .. } if payload[..] == tags[0].data[..]),
        "the burst starts with onMetaData, got {}",
        summary(&events[4])
    );
    assert_eq!(
        media(&events[..5]),
        vec![],
        "no media before the preamble ends"
    );
}
