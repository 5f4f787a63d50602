//! The WebSocket parts of WebSocket-FLV, all from `tungstenite` (RFC 6455): the
//! handshake's accept key, the server's frame headers, and the reader of what the
//! client sends (pings, close, anything else ignored). rtmpd's own request parser
//! has already read the upgrade request, so tungstenite takes over after the
//! handshake (`from_partially_read`) instead of running its handshake code.
//!
//! The player's thread does all the I/O: it hands what the client sent to
//! [`ClientFrames`], which runs tungstenite's protocol state over those bytes alone
//! (its "socket" reads them and then says it would block) and collects the frames
//! tungstenite answers with (pong, close reply) for the player to write between FLV
//! messages, never inside one.

use std::io::{self, Read, Write};

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

/// Players send only control frames; anything bigger than this is not a player.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Longest close reason a close frame carries (125 bytes of payload, 2 of them the
/// code).
const MAX_CLOSE_REASON: usize = 123;

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

/// A complete close frame (1000, normal closure) with a short reason (cut to what
/// a close frame holds).
pub fn close_frame(reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = Vec::new();
    let _ = Frame::close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: reason[..cut].into(),
    }))
    .format(&mut out);
    out
}

/// The client closed the WebSocket or broke the protocol (`fault`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub reason: String,
    pub fault: bool,
}

/// What a WebSocket-FLV client sends, read without I/O.
pub struct ClientFrames {
    ws: WebSocketContext,
}

/// tungstenite's view of the connection for one call: the bytes that came, then
/// "would block"; what it writes goes to the replies.
struct Wire<'a> {
    input: &'a [u8],
    replies: &'a mut Vec<u8>,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.input.read(buf)?;
        Ok(n)
    }
}

impl Write for Wire<'_> {
    /// tungstenite writes only whole frames from its buffer (write_buffer_size 0).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.replies.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ClientFrames {
    /// The client's side of a WebSocket whose upgrade request was followed by
    /// `rest` (read with [`ClientFrames::read`] and no more input).
    pub fn new(rest: Vec<u8>) -> ClientFrames {
        let config = WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        ClientFrames {
            ws: WebSocketContext::from_partially_read(rest, Role::Server, Some(config)),
        }
    }

    /// Takes what the client sent; the frames that answer it (pong, the close
    /// reply) are appended to `replies`. An error once the client has closed (its
    /// close answered in `replies`) or broken the protocol.
    pub fn read(&mut self, input: &[u8], replies: &mut Vec<u8>) -> Result<(), Closed> {
        let mut wire = Wire { input, replies };
        let (reason, fault) = loop {
            match self.ws.read(&mut wire) {
                // tungstenite has queued the pong or the close reply; out with it.
                Ok(Message::Ping(_) | Message::Close(_)) => {
                    let _ = self.ws.flush(&mut wire);
                }
                // Players have nothing to say; text, binary and pongs are ignored.
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    break ("client closed the WebSocket".to_owned(), false)
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
        Err(Closed { reason, fault })
    }
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
        let long = close_frame(&"é".repeat(100));
        assert_eq!(long[1] as usize, 2 + 122, "cut at a character boundary");
    }

    /// A client frame as a browser sends it: final, masked.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn pings_are_answered_and_a_close_is_answered_and_ends() {
        let ping = client_frame(0x9, b"hi");
        // The first bytes came with the upgrade request, the rest in pieces.
        let mut frames = ClientFrames::new(ping[..3].to_vec());
        let mut replies = Vec::new();
        frames.read(&[], &mut replies).unwrap();
        assert!(replies.is_empty(), "half a frame: nothing to answer yet");
        frames.read(&ping[3..], &mut replies).unwrap();
        assert_eq!(replies, [0x8a, 2, b'h', b'i'], "an unmasked pong");
        replies.clear();
        let text = client_frame(0x1, b"ignored");
        frames.read(&text, &mut replies).unwrap();
        assert!(replies.is_empty());
        let close = client_frame(0x8, &[0x03, 0xe8]);
        let end = frames.read(&close, &mut replies).unwrap_err();
        assert_eq!(replies, [0x88, 2, 0x03, 0xe8], "the close is answered");
        assert_eq!(
            end,
            Closed {
                reason: "client closed the WebSocket".into(),
                fault: false
            }
        );
    }

    #[test]
    fn oversized_and_unmasked_frames_are_protocol_errors() {
        let mut replies = Vec::new();
        let mut frames = ClientFrames::new(Vec::new());
        // A 16 MiB binary frame announced: refused from its header alone.
        let huge = [0x82, 0xff, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 4];
        let end = frames.read(&huge, &mut replies).unwrap_err();
        assert!(end.fault, "{end:?}");
        let mut frames = ClientFrames::new(Vec::new());
        let end = frames.read(&[0x89, 0], &mut replies).unwrap_err();
        assert!(
            end.fault && end.reason.contains("protocol error"),
            "{end:?}"
        );
    }
}
