//! The one player engine every subscriber runs, whatever it speaks: RTMP players,
//! HTTP-FLV (chunked or close-delimited) and WebSocket-FLV players today, and any
//! other subscriber that sends a stream somewhere (a relay, a recorder, a segmenter).
//!
//! A subscriber is a [`Sink`]: the registry queues it plays ([`Feed`]s of shared
//! frames), a framing that turns queued items into bytes in a [`Batch`] (RTMP
//! chunks: `rtmp`; FLV tags: `flv`; an HTTP chunk or WebSocket frame around each
//! batch is the sink's `seal`), and what it makes of its peer's input, without I/O
//! (an RTMP session, discarding, WebSocket control frames). The [`Player`] runs the
//! loop over a [`Transport`], one thread per subscriber, the same for all of them:
//! it waits for frames on the feeds' doorbells, takes what has queued up to one
//! write's worth, looks at the peer's input without blocking (every
//! [`INPUT_POLL`] while frames flow, every [`pace::IDLE_POLL`] while none do),
//! writes everything in one vectored write (frames straight from the shared
//! payloads) and sleeps to its next merge tick ([`Pace`]). It checks the server's
//! stop at every wake-up and gives up on a peer that takes nothing for the stall
//! limit (`--play-timeout`, the transport's).

mod batch;
pub mod flv;
mod pace;
pub mod rtmp;

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use crate::media::player::PlayerFilter;
use crate::net::{self, Transport};
use crate::registry::{self, PlayerItem, Subscription};

pub use batch::{Batch, WritePieces};
pub use pace::{adaptive_window, MergeMode, MergeWindow, Pace};

/// How often a player whose frames flow looks at what the client sent: often
/// enough that a pause or a closed connection is acted on at once to a person,
/// seldom enough that a player written to every frame (`--merge-writes-ms 0`)
/// does not pay a read per frame.
pub const INPUT_POLL: Duration = Duration::from_millis(100);
/// Reads a playing client gets per look, so a chatty one cannot hold its frames.
const READS_PER_POLL: usize = 8;
/// Room for one read of a player's input. Players send little (acks, a pause, a
/// pong); the buffer is on the stack, so a player costs no heap for it.
const INPUT_BUFFER: usize = 1024;

/// One stream a sink plays: its queue, the per-player filter (pause, tracks,
/// timestamps) and the sink's name for it (RTMP's stream id; 0 elsewhere).
pub struct Feed {
    pub id: u32,
    pub subscription: Subscription,
    pub filter: PlayerFilter,
}

impl Feed {
    pub fn new(id: u32, subscription: Subscription, filter: PlayerFilter) -> Feed {
        Feed {
            id,
            subscription,
            filter,
        }
    }
}

/// Why the engine stopped a sink; each sink says it in its own words
/// ([`Sink::end`]).
#[derive(Debug)]
pub enum End {
    /// The server is stopping ([`Lifecycle::is_stopping`]).
    Stopping,
    /// The peer closed or reset the connection.
    PeerClosed,
    /// The peer took none of our bytes for this long.
    Stalled(Duration),
    Io(io::Error),
}

/// What one kind of subscriber adds to the engine.
pub trait Sink {
    /// Why its play ends.
    type End;

    /// The streams it plays, in the order their queues are taken.
    fn feeds(&self) -> &[Feed];

    /// Where its bytes gather until the next write.
    fn batch(&mut self) -> &mut Batch;

    /// Puts one queued item of `feeds()[feed]` into the batch, or ends the play.
    fn item(&mut self, feed: usize, item: PlayerItem) -> Result<(), Self::End>;

    /// Takes what the peer sent (no I/O): replies go into the batch.
    fn input(&mut self, bytes: &[u8]) -> Result<(), Self::End>;

    /// Says an ending of the engine's in the sink's words.
    fn end(&self, end: End) -> Self::End;

    /// Wraps the batch before it is written (an HTTP chunk, a WebSocket frame);
    /// the body is complete and its length known.
    fn seal(&mut self) {}

    /// Whether the engine should keep running it: an RTMP connection that starts
    /// publishing, or stops playing, goes back to being driven by its input.
    fn is_playing(&self) -> bool {
        true
    }

    /// Counts bytes written to the peer.
    fn sent(&mut self, _bytes: usize) {}

    /// Counts bytes read from the peer.
    fn received(&mut self, _bytes: usize) {}
}

/// What a player's loop needs besides its sink: the merge window, the stall limit
/// and the server's stop.
#[derive(Clone)]
pub struct PlayerConfig {
    /// A busy player's writes are at most one per window (`--merge-writes-ms`,
    /// `--merge-mode`).
    pub merge: MergeWindow,
    /// The peer may take nothing for this long (`--play-timeout`); the transport
    /// enforces it, the engine names it.
    pub stall: Duration,
    /// Merge ticks count from here (the server's start), so players share them.
    pub epoch: Instant,
    pub lifecycle: Arc<Lifecycle>,
}

/// The loop of one subscriber's thread.
pub struct Player {
    config: PlayerConfig,
    pace: Pace,
    /// When the peer's input was last looked at.
    polled: Instant,
}

impl Player {
    pub fn new(config: PlayerConfig) -> Player {
        let now = Instant::now();
        Player {
            pace: Pace::new(),
            config,
            // So the first round already looks at the peer's input.
            polled: now.checked_sub(INPUT_POLL).unwrap_or(now),
        }
    }

    /// Runs rounds while the sink plays; returns when it no longer does, or why
    /// it ended.
    pub fn run<S: Sink>(
        &mut self,
        transport: &mut dyn Transport,
        sink: &mut S,
    ) -> Result<(), S::End> {
        while sink.is_playing() {
            self.round(transport, sink)?;
        }
        Ok(())
    }

    /// One round: wait for frames (or, while they flow, just look), take what the
    /// peer sent meanwhile, write it all at once, then sleep to the next merge tick
    /// so the next frames gather.
    pub fn round<S: Sink>(
        &mut self,
        transport: &mut dyn Transport,
        sink: &mut S,
    ) -> Result<(), S::End> {
        if self.config.lifecycle.is_stopping() {
            return Err(sink.end(End::Stopping));
        }
        let epoch = self.config.epoch;
        let window = self.config.merge.now();
        let more = match self.wait(sink, self.pace.doorbell_wait(epoch.elapsed(), window))? {
            true => self.gather(sink)?,
            false => false,
        };
        if self.polled.elapsed() >= INPUT_POLL {
            self.poll_input(transport, sink)?;
        }
        let media = sink.batch().has_media();
        self.write(transport, sink)?;
        let sleep = self.pace.after_round(epoch.elapsed(), window, media, more);
        if !sleep.is_zero() {
            thread::sleep(sleep);
        }
        Ok(())
    }

    /// Parks on the feeds' doorbells until one has an item or `timeout` passes;
    /// whether an item was taken.
    fn wait<S: Sink>(&mut self, sink: &mut S, timeout: Duration) -> Result<bool, S::End> {
        let feeds = sink.feeds();
        let bells = feeds.iter().map(|f| f.subscription.doorbell());
        let found = registry::wait_for(bells, Instant::now() + timeout, || {
            feeds
                .iter()
                .enumerate()
                .find_map(|(i, f)| Some((i, f.subscription.try_next()?)))
        });
        match found {
            Some((feed, item)) => {
                sink.item(feed, item)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Takes what the feeds have queued, up to one write's worth; whether more is
    /// waiting.
    pub fn gather<S: Sink>(&mut self, sink: &mut S) -> Result<bool, S::End> {
        let mut feed = 0;
        while feed < sink.feeds().len() {
            if sink.batch().is_full() {
                return Ok(true);
            }
            match sink.feeds()[feed].subscription.try_next() {
                Some(item) => sink.item(feed, item)?,
                None => feed += 1,
            }
        }
        Ok(false)
    }

    /// Takes what the peer sent, without waiting for more.
    fn poll_input<S: Sink>(
        &mut self,
        transport: &mut dyn Transport,
        sink: &mut S,
    ) -> Result<(), S::End> {
        self.polled = Instant::now();
        let mut buf = [0u8; INPUT_BUFFER];
        for _ in 0..READS_PER_POLL {
            match transport.try_read(&mut buf) {
                Ok(0) => return Err(sink.end(End::PeerClosed)),
                Ok(n) => {
                    sink.received(n);
                    sink.input(&buf[..n])?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if net::is_disconnect(&e) => return Err(sink.end(End::PeerClosed)),
                Err(e) => return Err(sink.end(End::Io(e))),
            }
        }
        Ok(())
    }

    /// Seals and writes what the sink has gathered, counting the bytes.
    pub fn write<S: Sink>(
        &mut self,
        transport: &mut dyn Transport,
        sink: &mut S,
    ) -> Result<(), S::End> {
        if sink.batch().is_empty() {
            return Ok(());
        }
        sink.seal();
        match sink.batch().write(transport) {
            Ok(n) => {
                sink.sent(n);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Err(sink.end(End::Stalled(self.config.stall)))
            }
            Err(e) if net::is_disconnect(&e) => Err(sink.end(End::PeerClosed)),
            Err(e) => Err(sink.end(End::Io(e))),
        }
    }

    /// Writes everything the feeds hold now, without waiting for more: at a stop,
    /// each queue ends with the registry's `PublishStop`.
    pub fn drain<S: Sink>(
        &mut self,
        transport: &mut dyn Transport,
        sink: &mut S,
    ) -> Result<(), S::End> {
        while self.gather(sink)? {
            self.write(transport, sink)?;
        }
        self.write(transport, sink)
    }
}
