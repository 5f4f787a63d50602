//! The writer thread of a connection: the only code that writes to the socket. It
//! chunks the session's replies and, for players, the frames from the stream's
//! queue, all with one chunk encoder so header compression and the chunk size stay
//! consistent. Whatever is queued when it wakes goes out in a single write.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{select, Receiver};
use log::{debug, warn};

use crate::media::frame::{Frame, FrameKind};
use crate::media::timestamp::TimestampMapper;
use crate::registry::PlayerItem;
use crate::rtmp::chunk::{ChunkEncoder, RawMessage};
use crate::rtmp::message::{self as msg, UserControl};

/// Stop gathering queued frames once this much is ready to write, so one slow
/// write does not hold a huge buffer.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

pub(crate) enum WriterCommand {
    /// Session replies, sent in order.
    Messages(Vec<RawMessage>),
    /// Start sending this stream's queue on `stream_id`.
    Play {
        stream_id: u32,
        queue: Receiver<PlayerItem>,
    },
    Stop {
        stream_id: u32,
    },
    Pause(bool),
    ReceiveAudio(bool),
    ReceiveVideo(bool),
}

struct Playback {
    stream_id: u32,
    queue: Receiver<PlayerItem>,
    timestamps: TimestampMapper,
    paused: bool,
    audio: bool,
    video: bool,
    /// After a pause or a gap, wait for a frame a decoder can start from.
    need_key: bool,
    seen_video: bool,
}

struct Writer {
    encoder: ChunkEncoder,
    buf: Vec<u8>,
    playback: Option<Playback>,
}

enum Next {
    Command(WriterCommand),
    Item(PlayerItem),
    /// The registry dropped our queue (the subscription ended).
    QueueClosed,
}

/// Runs until the reader side hangs up or a write fails. On failure the socket is
/// shut down so the reader thread's blocking read returns too.
pub(crate) fn run(
    mut socket: TcpStream,
    commands: Receiver<WriterCommand>,
    peer: SocketAddr,
    bytes_out: Arc<AtomicU64>,
) {
    let mut writer = Writer {
        encoder: ChunkEncoder::new(),
        buf: Vec::with_capacity(16 * 1024),
        playback: None,
    };
    loop {
        let Some(next) = writer.wait(&commands) else {
            break;
        };
        writer.handle(next);
        writer.gather(&commands);
        if writer.buf.is_empty() {
            continue;
        }
        if let Err(e) = socket.write_all(&writer.buf) {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                warn!("{peer}: client accepted no data within the write timeout; closing");
            } else {
                debug!("{peer}: write failed: {e}");
            }
            let _ = socket.shutdown(Shutdown::Both);
            break;
        }
        bytes_out.fetch_add(writer.buf.len() as u64, Ordering::Relaxed);
        writer.buf.clear();
        if writer.buf.capacity() > WRITE_BATCH_BYTES * 2 {
            writer.buf.shrink_to(16 * 1024);
        }
    }
}

impl Writer {
    /// Blocks for the next command or queued item; None when the connection ended.
    fn wait(&self, commands: &Receiver<WriterCommand>) -> Option<Next> {
        match &self.playback {
            None => commands.recv().ok().map(Next::Command),
            Some(p) => select! {
                recv(commands) -> c => c.ok().map(Next::Command),
                recv(p.queue) -> item => Some(item.map_or(Next::QueueClosed, Next::Item)),
            },
        }
    }

    /// Takes everything else already waiting, so it leaves in the same write.
    fn gather(&mut self, commands: &Receiver<WriterCommand>) {
        while let Ok(c) = commands.try_recv() {
            self.handle(Next::Command(c));
        }
        while self.buf.len() < WRITE_BATCH_BYTES {
            let Some(p) = &self.playback else { return };
            match p.queue.try_recv() {
                Ok(item) => self.handle(Next::Item(item)),
                Err(crossbeam_channel::TryRecvError::Empty) => return,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.handle(Next::QueueClosed)
                }
            }
        }
    }

    fn handle(&mut self, next: Next) {
        match next {
            Next::Command(c) => self.command(c),
            Next::Item(item) => self.item(item),
            Next::QueueClosed => self.playback = None,
        }
    }

    fn command(&mut self, command: WriterCommand) {
        match command {
            WriterCommand::Messages(messages) => {
                for m in messages {
                    self.message(&m);
                }
            }
            WriterCommand::Play { stream_id, queue } => {
                self.playback = Some(Playback {
                    stream_id,
                    queue,
                    timestamps: TimestampMapper::new(),
                    paused: false,
                    audio: true,
                    video: true,
                    need_key: false,
                    seen_video: false,
                });
            }
            WriterCommand::Stop { stream_id } => {
                if self.playback.as_ref().map(|p| p.stream_id) == Some(stream_id) {
                    self.playback = None;
                }
            }
            WriterCommand::Pause(paused) => {
                if let Some(p) = &mut self.playback {
                    p.paused = paused;
                    p.need_key = true;
                }
            }
            WriterCommand::ReceiveAudio(on) => {
                if let Some(p) = &mut self.playback {
                    p.audio = on;
                }
            }
            WriterCommand::ReceiveVideo(on) => {
                if let Some(p) = &mut self.playback {
                    p.need_key |= on && !p.video;
                    p.video = on;
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

    fn item(&mut self, item: PlayerItem) {
        let Some(p) = &mut self.playback else { return };
        let stream_id = p.stream_id;
        match item {
            PlayerItem::Frame(frame) => {
                if let Some(ts) = p.admit(&frame) {
                    let csid = match frame.kind {
                        FrameKind::Audio => msg::CSID_AUDIO,
                        FrameKind::Video => msg::CSID_VIDEO,
                        FrameKind::Data => msg::CSID_STREAM_DATA,
                    };
                    self.encode(csid, ts, frame.kind.type_id(), stream_id, &frame.payload);
                }
            }
            PlayerItem::PublishStart => {
                p.timestamps.new_epoch();
                p.seen_video = false;
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
    /// Whether this player gets the frame, and at which timestamp.
    fn admit(&mut self, frame: &Frame) -> Option<u32> {
        let wanted = match frame.kind {
            FrameKind::Audio => self.audio,
            FrameKind::Video => self.video,
            FrameKind::Data => true,
        };
        if self.paused || !wanted {
            return None;
        }
        if frame.kind == FrameKind::Video {
            self.seen_video = true;
        }
        if self.need_key && !frame.is_essential() && frame.kind != FrameKind::Data {
            let start_here =
                frame.is_keyframe() || (frame.kind == FrameKind::Audio && !self.seen_video);
            if !start_here {
                return None;
            }
            self.need_key = false;
        }
        Some(self.timestamps.map(frame.timestamp))
    }
}
