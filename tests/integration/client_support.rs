//! Helpers for the tests that drive the server with rtmpd's own client
//! (`rtmpd::client`): connecting publishers and players, sending FLV tags,
//! waiting for events with deadlines, and comparing what a player got with
//! what was published. Every wait is bounded, so a missing event fails the
//! test with a message naming what was awaited instead of hanging.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rtmpd::amf::amf0::{self, Amf0Value};
use rtmpd::client::{Client, ClientEvent, ClientOptions, RtmpUrl, Status};
use rtmpd::media::flv::{FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

use crate::support::TestServer;

/// Socket timeout of test clients, and how long a test waits for one event: a
/// bound on a hang, generous for a busy machine (events the server sends at once
/// come within milliseconds on a quiet one).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Client options for tests: simple defaults with the test timeout; an
/// `rtmps://` test server's certificate is taken as it is (it is made for the
/// test, by no CA the client knows).
pub fn options() -> ClientOptions {
    ClientOptions {
        timeout: EVENT_TIMEOUT,
        tls_verify: false,
        ..ClientOptions::default()
    }
}

/// The URL of `app/name` on the test server.
pub fn url(server: &TestServer, path: &str) -> RtmpUrl {
    RtmpUrl::parse(&server.url(path)).expect("test server URLs parse")
}

/// A client connected to the app of `path`.
pub fn connect_with(server: &TestServer, path: &str, opts: &ClientOptions) -> Client {
    let url = url(server, path);
    Client::connect(&url, opts).unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// A client publishing on `path` (app/name), with `opts`.
pub fn new_publisher_with(server: &TestServer, path: &str, opts: &ClientOptions) -> Client {
    let mut client = connect_with(server, path, opts);
    let name = client.url().name.clone();
    client
        .publish(&name)
        .unwrap_or_else(|e| panic!("publishing {path}: {e}"));
    client
}

pub fn new_publisher(server: &TestServer, path: &str) -> Client {
    new_publisher_with(server, path, &options())
}

/// A client playing `path` (app/name), with `opts`.
pub fn new_player_with(server: &TestServer, path: &str, opts: &ClientOptions) -> Client {
    let mut client = connect_with(server, path, opts);
    let name = client.url().name.clone();
    client
        .play(&name)
        .unwrap_or_else(|e| panic!("playing {path}: {e}"));
    client
}

pub fn new_player(server: &TestServer, path: &str) -> Client {
    new_player_with(server, path, &options())
}

/// Sends FLV tags as an encoder would: script tags as `@setDataFrame` + the
/// tag's data, audio and video as they are.
pub fn send_tags(client: &mut Client, tags: &[FlvTag]) {
    for (i, tag) in tags.iter().enumerate() {
        let sent = match tag.tag_type {
            TAG_SCRIPT => client.send_metadata(tag.timestamp, &tag.data),
            t => client.send_media(t, tag.timestamp, &tag.data),
        };
        sent.unwrap_or_else(|e| panic!("sending tag {i}: {e}"));
    }
}

/// How long a test server lets a publisher sit idle when the test pauses it (see
/// [`SteppedPublisher`]): far longer than any test waits for its players to start.
pub const HELD_PUBLISH_TIMEOUT: Duration = Duration::from_secs(600);

/// Our client publishing a fixture's tags in steps, so that players join at a
/// chosen point of the stream rather than wherever a real-time publisher has got
/// to by the time they are going, which on a busy machine can be anywhere (or past
/// the end). The test server must not drop the publisher while it pauses: start it
/// with `publish_timeout` [`HELD_PUBLISH_TIMEOUT`].
pub struct SteppedPublisher<'a> {
    client: Client,
    server: &'a TestServer,
    path: String,
    tags: Vec<FlvTag>,
    sent: usize,
}

impl<'a> SteppedPublisher<'a> {
    /// Publishes `tags` on `path`, with the duration in their onMetaData set to 0 as
    /// a live encoder (ffmpeg, say) sends it: given a file's duration, rtmpdump takes
    /// it as a promise and exits 2 ("may be incomplete") when the last frame's
    /// timestamp falls short of it, as it does by one frame's length.
    pub fn start(server: &'a TestServer, path: &str, mut tags: Vec<FlvTag>) -> Self {
        const DURATION: &[u8] = b"\x00\x08duration\x00";
        for tag in tags.iter_mut().filter(|t| t.tag_type == TAG_SCRIPT) {
            if let Some(at) = tag.data.windows(DURATION.len()).position(|w| w == DURATION) {
                let value = at + DURATION.len();
                tag.data[value..value + 8].copy_from_slice(&0f64.to_be_bytes());
            }
        }
        SteppedPublisher {
            client: new_publisher(server, path),
            server,
            path: path.to_owned(),
            tags,
            sent: 0,
        }
    }

    /// Sends the tags before stream time `ms` (the metadata and sequence headers at
    /// 0 among them) that were not sent yet, and waits until the server has taken
    /// them all in (its count of the publisher's payload bytes): a player that
    /// joins now joins at this point of the stream, not at one the server's thread
    /// had reached when a busy machine let it run.
    pub fn send_until(&mut self, ms: u32) {
        let end = self.sent
            + self.tags[self.sent..]
                .iter()
                .take_while(|t| t.timestamp < ms)
                .count();
        send_tags(&mut self.client, &self.tags[self.sent..end]);
        self.sent = end;
        self.server.wait_for_taken_in(&self.path, self.sent());
    }

    /// The tags sent so far.
    pub fn sent(&self) -> &[FlvTag] {
        &self.tags[..self.sent]
    }

    /// Sends the rest (as fast as the server takes it) and ends the publish.
    pub fn finish(mut self) {
        send_tags(&mut self.client, &self.tags[self.sent..]);
        self.client.close();
    }
}

/// Reads events until one satisfies `wanted` and returns it; panics naming
/// `what` on an error or after [`EVENT_TIMEOUT`].
pub fn wait_event(
    client: &mut Client,
    what: &str,
    mut wanted: impl FnMut(&ClientEvent) -> bool,
) -> ClientEvent {
    events_until(client, what, &mut wanted)
        .pop()
        .expect("events_until returns at least the awaited event")
}

/// Reads events up to and including the first one that satisfies `last`.
pub fn events_until(
    client: &mut Client,
    what: &str,
    mut last: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut events = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; got {} events, the last: {:?}",
            events.len(),
            events.last().map(summary)
        );
        match client.next_event() {
            Ok(event) => {
                let done = last(&event);
                events.push(event);
                if done {
                    return events;
                }
            }
            Err(e) => panic!(
                "waiting for {what}: {e}; after {} events, the last: {:?}",
                events.len(),
                events.last().map(summary)
            ),
        }
    }
}

/// Reads until the connection ends and checks that the server ended it
/// (not a timeout); returns the events that came before.
pub fn expect_disconnect(client: &mut Client, what: &str) -> Vec<ClientEvent> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut events = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: the server kept the connection open"
        );
        match client.next_event() {
            Ok(event) => events.push(event),
            Err(e) => {
                assert!(
                    e.is_disconnect(),
                    "{what}: expected the server to close the connection, got: {e}"
                );
                return events;
            }
        }
    }
}

/// The status with this code, if `event` is one.
pub fn status<'a>(event: &'a ClientEvent, code: &str) -> Option<&'a Status> {
    match event {
        ClientEvent::Status(s) if s.code == code => Some(s),
        _ => None,
    }
}

pub fn is_status(event: &ClientEvent, code: &str) -> bool {
    status(event, code).is_some()
}

/// Whether `event` is the `|RtmpSampleAccess` data message that ends the
/// server's answer to `play`.
pub fn is_sample_access(event: &ClientEvent) -> bool {
    let values = data_messages(std::slice::from_ref(event));
    values
        .first()
        .is_some_and(|v| v.first().and_then(Amf0Value::as_str) == Some("|RtmpSampleAccess"))
}

/// Reads the answer to `play` up to |RtmpSampleAccess.
pub fn play_preamble(client: &mut Client) -> Vec<ClientEvent> {
    events_until(client, "|RtmpSampleAccess", is_sample_access)
}

/// Whether `event` is this audio or video message.
pub fn is_media(event: &ClientEvent, want: Option<&Av>) -> bool {
    want.is_some() && media(std::slice::from_ref(event)).first() == want
}

/// One audio or video message as (type, timestamp, payload).
pub type Av = (u8, u32, Vec<u8>);

/// The audio and video messages among `events`, in order.
pub fn media(events: &[ClientEvent]) -> Vec<Av> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media {
                type_id,
                timestamp,
                payload,
                ..
            } => Some((*type_id, *timestamp, payload.clone())),
            _ => None,
        })
        .collect()
}

/// The audio and video tags of an FLV file, in order.
pub fn av_tags(tags: &[FlvTag]) -> Vec<Av> {
    tags.iter()
        .filter(|t| t.tag_type == TAG_AUDIO || t.tag_type == TAG_VIDEO)
        .map(|t| (t.tag_type, t.timestamp, t.data.clone()))
        .collect()
}

/// The decoded values of every data message among `events`.
pub fn data_messages(events: &[ClientEvent]) -> Vec<Vec<Amf0Value>> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Data { payload, .. } => Some(
                amf0::decode_all(payload)
                    .unwrap_or_else(|e| panic!("undecodable data message: {e}")),
            ),
            _ => None,
        })
        .collect()
}

/// Reads `player`'s events until the last of `want` arrives, then asserts the
/// media it received is `want`, message for message.
pub fn assert_player_receives(player: &mut Client, want: &[Av], what: &str) {
    let last = want.last();
    let events = events_until(player, what, |e| is_media(e, last));
    assert_same_media(want, &media(&events), what);
}

/// Asserts that `got` is `want`, message for message, naming the first
/// difference briefly (payloads are too long to print whole).
pub fn assert_same_media(want: &[Av], got: &[Av], what: &str) {
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!(
            w.0 == g.0 && w.1 == g.1 && w.2 == g.2,
            "{what}: message {i} differs: published type {} ts {} len {}, received type {} ts {} len {}{}",
            w.0,
            w.1,
            w.2.len(),
            g.0,
            g.1,
            g.2.len(),
            if w.2.len() == g.2.len() { " (payload bytes differ)" } else { "" }
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: received {} audio/video messages, published {}",
        got.len(),
        want.len()
    );
}

/// One line about an event, for failure messages.
pub fn summary(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Media {
            stream_id,
            type_id,
            timestamp,
            payload,
        } => format!(
            "media type {type_id} ts {timestamp} len {} on stream {stream_id}",
            payload.len()
        ),
        ClientEvent::Data {
            stream_id, payload, ..
        } => match amf0::decode_all(payload) {
            Ok(values) => format!("data {:?} on stream {stream_id}", values.first()),
            Err(e) => format!("data (undecodable: {e}) on stream {stream_id}"),
        },
        other => format!("{other:?}"),
    }
}
