//! The writer thread of a connection: the only code that writes to the socket. It
//! chunks the session's replies and, for players, the frames from the stream's
//! queue, all with one chunk encoder so header compression and the chunk size stay
//! consistent. Whatever is queued when it wakes goes out in a single write.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{select, Receiver, Select, TryRecvError};
use log::{debug, warn};

use super::{deadline, ConnectionKind, Context};
use crate::media::frame::FrameKind;
use crate::media::player::PlayerFilter;
use crate::registry::PlayerItem;
use crate::rtmp::chunk::{ChunkEncoder, RawMessage};
use crate::rtmp::message::{self as msg, UserControl};

/// Stop gathering queued frames once this much is ready to write, so one slow
/// write does not hold a huge buffer.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Room for a merge window's worth of a few-Mbit/s stream.
const INITIAL_BUFFER_BYTES: usize = 16 * 1024;
/// Capacity beyond this is given back after the write.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

pub(crate) enum WriterCommand {
    /// Session replies, sent in order.
    Messages(Vec<RawMessage>),
    /// Start sending this stream's queue on `stream_id`, replacing what played there.
    Play {
        stream_id: u32,
        queue: Receiver<PlayerItem>,
    },
    Stop {
        stream_id: u32,
    },
    Pause {
        stream_id: u32,
        paused: bool,
    },
    ReceiveAudio {
        stream_id: u32,
        on: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        on: bool,
    },
}

struct Playback {
    stream_id: u32,
    queue: Receiver<PlayerItem>,
    /// Pause, track switches, resync and timestamps: shared with the HTTP writers.
    filter: PlayerFilter,
}

struct Writer {
    encoder: ChunkEncoder,
    buf: Vec<u8>,
    /// One per stream id being played; almost always zero or one.
    playbacks: Vec<Playback>,
    /// The buffer holds media frames (not just replies).
    wrote_media: bool,
}

enum Next {
    Command(WriterCommand),
    Item(u32, PlayerItem),
    /// The registry dropped this stream's queue (the subscription ended).
    QueueClosed(u32),
}

/// Runs until the reader side hangs up or a write fails. On failure the socket is
/// shut down so the reader thread's blocking read returns too.
pub(crate) fn run(
    socket: TcpStream,
    commands: Receiver<WriterCommand>,
    peer: SocketAddr,
    bytes_out: Arc<AtomicU64>,
    ctx: &Context,
) {
    let mut writer = Writer {
        encoder: ChunkEncoder::new(),
        buf: Vec::with_capacity(INITIAL_BUFFER_BYTES),
        playbacks: Vec::new(),
        wrote_media: false,
    };
    let merge = ctx.config.merge_writes;
    loop {
        let Some(next) = writer.wait(&commands) else {
            break;
        };
        writer.handle(next);
        writer.gather(&commands);
        if writer.buf.is_empty() {
            continue;
        }
        if let Err(e) = deadline::write_all_within(&socket, &[&writer.buf], ctx.config.play_timeout)
        {
            if e.kind() == io::ErrorKind::TimedOut {
                warn!(
                    "{peer}: client accepted no data for {:.1} s; closing",
                    ctx.config.play_timeout.as_secs_f64()
                );
            } else {
                debug!("{peer}: write failed: {e}");
            }
            let _ = socket.shutdown(Shutdown::Both);
            break;
        }
        bytes_out.fetch_add(writer.buf.len() as u64, Ordering::Relaxed);
        ctx.counters
            .add_bytes_out(ConnectionKind::Rtmp, writer.buf.len());
        writer.buf.clear();
        // A joining player's burst can be a whole GOP; do not keep that much per
        // player once it is sent.
        if writer.buf.capacity() > KEPT_BUFFER_BYTES {
            writer.buf = Vec::with_capacity(INITIAL_BUFFER_BYTES);
        }
        // A busy player is written to at most once per merge window: sleeping right
        // after a media write lets the next frames queue up without waking this
        // thread per frame, and they leave in one write. After a quiet spell (and so
        // for a joining player's first burst) the wait ends with the first item and
        // the write goes out at once; replies to commands are only held back while
        // media is flowing, by at most the window.
        if std::mem::take(&mut writer.wrote_media) && !merge.is_zero() {
            thread::sleep(merge);
        }
    }
}

impl Writer {
    /// Blocks for the next command or queued item; None when the connection ended.
    fn wait(&self, commands: &Receiver<WriterCommand>) -> Option<Next> {
        match self.playbacks.as_slice() {
            [] => commands.recv().ok().map(Next::Command),
            [p] => select! {
                recv(commands) -> c => c.ok().map(Next::Command),
                recv(p.queue) -> item => Some(p.next(item.ok())),
            },
            many => {
                let mut select = Select::new();
                select.recv(commands);
                for p in many {
                    select.recv(&p.queue);
                }
                let op = select.select();
                match op.index() {
                    0 => op.recv(commands).ok().map(Next::Command),
                    i => {
                        let p = &many[i - 1];
                        Some(p.next(op.recv(&p.queue).ok()))
                    }
                }
            }
        }
    }

    /// Takes everything else already waiting, so it leaves in the same write.
    fn gather(&mut self, commands: &Receiver<WriterCommand>) {
        while let Ok(c) = commands.try_recv() {
            self.handle(Next::Command(c));
        }
        let mut i = 0;
        while self.buf.len() < WRITE_BATCH_BYTES && i < self.playbacks.len() {
            let p = &self.playbacks[i];
            let next = match p.queue.try_recv() {
                Ok(item) => Next::Item(p.stream_id, item),
                Err(TryRecvError::Empty) => {
                    i += 1;
                    continue;
                }
                Err(TryRecvError::Disconnected) => Next::QueueClosed(p.stream_id),
            };
            self.handle(next);
        }
    }

    fn handle(&mut self, next: Next) {
        match next {
            Next::Command(c) => self.command(c),
            Next::Item(stream_id, item) => self.item(stream_id, item),
            Next::QueueClosed(stream_id) => self.stop(stream_id),
        }
    }

    fn stop(&mut self, stream_id: u32) {
        self.playbacks.retain(|p| p.stream_id != stream_id);
    }

    fn filter(&mut self, stream_id: u32) -> Option<&mut PlayerFilter> {
        self.playbacks
            .iter_mut()
            .find(|p| p.stream_id == stream_id)
            .map(|p| &mut p.filter)
    }

    fn command(&mut self, command: WriterCommand) {
        match command {
            WriterCommand::Messages(messages) => {
                for m in messages {
                    self.message(&m);
                }
            }
            WriterCommand::Play { stream_id, queue } => {
                self.stop(stream_id);
                self.playbacks.push(Playback {
                    stream_id,
                    queue,
                    filter: PlayerFilter::new(),
                });
            }
            WriterCommand::Stop { stream_id } => self.stop(stream_id),
            WriterCommand::Pause { stream_id, paused } => {
                if let Some(f) = self.filter(stream_id) {
                    f.set_paused(paused);
                }
            }
            WriterCommand::ReceiveAudio { stream_id, on } => {
                if let Some(f) = self.filter(stream_id) {
                    f.set_audio(on);
                }
            }
            WriterCommand::ReceiveVideo { stream_id, on } => {
                if let Some(f) = self.filter(stream_id) {
                    f.set_video(on);
                }
            }
        }
    }

    fn message(&mut self, m: &RawMessage) {
        self.encode(m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload);
        if m.type_id == msg::SET_CHUNK_SIZE && m.stream_id == 0 {
            // From now on our chunks are this size: the peer applies it to what follows.
            if let Ok(size) = msg::read_u32("set chunk size", &m.payload) {
                if let Err(e) = self.encoder.set_chunk_size(size) {
                    warn!("not switching to chunk size {size}: {e}");
                }
            }
        }
    }

    fn encode(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        if let Err(e) = self
            .encoder
            .encode(csid, ts, type_id, stream_id, payload, &mut self.buf)
        {
            // Only an oversized payload can fail, and inbound limits prevent those.
            warn!("dropping outgoing message type {type_id}: {e}");
        }
    }

    fn item(&mut self, stream_id: u32, item: PlayerItem) {
        let Some(filter) = self.filter(stream_id) else {
            return;
        };
        match item {
            PlayerItem::Frame(frame) => {
                if let Some(ts) = filter.admit(&frame) {
                    let csid = match frame.kind {
                        FrameKind::Audio => msg::CSID_AUDIO,
                        FrameKind::Video => msg::CSID_VIDEO,
                        FrameKind::Data => msg::CSID_STREAM_DATA,
                    };
                    self.encode(csid, ts, frame.kind.type_id(), stream_id, &frame.payload);
                    self.wrote_media = true;
                }
            }
            PlayerItem::PublishStart => {
                filter.new_epoch();
                self.message(&msg::user_control(UserControl::StreamBegin(stream_id)));
                self.message(&msg::on_status(
                    stream_id,
                    "status",
                    "NetStream.Play.PublishNotify",
                    "A publisher started on this stream.",
                ));
            }
            PlayerItem::PublishStop => {
                self.message(&msg::user_control(UserControl::StreamEof(stream_id)));
                self.message(&msg::on_status(
                    stream_id,
                    "status",
                    "NetStream.Play.UnpublishNotify",
                    "The publisher stopped.",
                ));
            }
        }
    }
}

impl Playback {
    fn next(&self, item: Option<PlayerItem>) -> Next {
        match item {
            Some(item) => Next::Item(self.stream_id, item),
            None => Next::QueueClosed(self.stream_id),
        }
    }
}
