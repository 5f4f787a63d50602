//! The WebSocket parts of WebSocket-FLV, all from `tungstenite` (RFC 6455): the
//! handshake's accept key, the server's frame headers, and the reader of what the
//! client sends (pings, close, anything else ignored). rtmpd's own request parser
//! has already read the upgrade request, so the connection is handed to tungstenite
//! after the handshake (`from_partially_read`) instead of through its handshake code.
//!
//! The socket has two users: the player's writer thread sends FLV messages, and the
//! watcher thread runs tungstenite's reader. tungstenite wants to write pongs and
//! close replies itself; its "socket" here is the read half plus a channel, so those
//! frames reach the writer whole and go out between FLV messages, never inside one.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use crossbeam_channel::Sender;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::flv_player::WatchEvent;
use crate::connections::Context;
use crate::lifecycle::ConnectionKind;

/// Players send only control frames; anything bigger than this is not a player.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.as_bytes())
}

/// Appends the header of an unmasked, final binary frame of `len` bytes.
pub fn binary_header(len: usize, out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        opcode: OpCode::Data(Data::Binary),
        mask: None,
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(len as u64, out);
}

/// A complete close frame (1000, normal closure) with a short reason.
pub fn close_frame(reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = Frame::close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: reason.into(),
    }))
    .format(&mut out);
    out
}

/// tungstenite's view of the socket: reads from it, writes into the writer's queue.
struct ReaderSocket<'a> {
    socket: TcpStream,
    events: Sender<WatchEvent>,
    ctx: &'a Context,
}

impl Read for ReaderSocket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.ctx.counters.add_bytes_in(ConnectionKind::Http, n);
        Ok(n)
    }
}

impl Write for ReaderSocket<'_> {
    /// tungstenite writes only whole frames from its buffer (write_buffer_size 0).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.events
            .send(WatchEvent::Control(buf.to_vec()))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the client's side of the conversation until it closes or misbehaves, then
/// reports why. `rest` is what arrived right behind the upgrade request.
pub(crate) fn read_client(
    socket: TcpStream,
    rest: Vec<u8>,
    events: Sender<WatchEvent>,
    ctx: &Context,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE));
    let stream = ReaderSocket {
        socket,
        events: events.clone(),
        ctx,
    };
    let mut ws = WebSocket::from_partially_read(stream, rest, Role::Server, Some(config));
    let (reason, fault) = loop {
        match ws.read() {
            // tungstenite has queued the pong or the close reply; send it now.
            Ok(Message::Ping(_) | Message::Close(_)) => {
                let _ = ws.flush();
            }
            // Players have nothing to say; text, binary and pongs are ignored.
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                break ("client closed the WebSocket".to_owned(), false)
            }
            Err(tungstenite::Error::Io(e)) => {
                let reason = match e.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                        "client closed the connection".to_owned()
                    }
                    _ => format!("socket error: {e}"),
                };
                break (reason, false);
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => break ("client closed the connection".to_owned(), false),
            Err(e) => {
                break (
                    format!("WebSocket protocol error from the client: {e}"),
                    true,
                )
            }
        }
    };
    let _ = events.send(WatchEvent::Closed { reason, fault });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frame_headers() {
        let mut out = Vec::new();
        binary_header(5, &mut out);
        assert_eq!(out, [0x82, 5]);
        out.clear();
        binary_header(300, &mut out);
        assert_eq!(out, [0x82, 126, 1, 44]);
        out.clear();
        binary_header(70_000, &mut out);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let close = close_frame("bye");
        assert_eq!(close, [0x88, 5, 0x03, 0xe8, b'b', b'y', b'e']);
    }
}
