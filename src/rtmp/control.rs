//! The receiving side of protocol control, which both ends of a connection do the
//! same way: the chunk decoder with the peer's Set Chunk Size and Abort applied,
//! the Acknowledgement owed each time the peer's Window Acknowledgement Size worth
//! of bytes has come in, and the Ping Response to a Ping Request. The server's
//! session (`session`) and the client's (`client_session`) each own one and handle
//! the rest of the messages themselves.

use std::fmt;

use crate::rtmp::chunk::{ChunkDecoder, ChunkError, ChunkLimits, RawMessage};
use crate::rtmp::message::{self as msg, MessageError, UserControl};

/// Why the peer's input cannot be used: a broken chunk stream, or a message that
/// does not parse.
#[derive(Debug)]
pub enum InputError {
    Chunk(ChunkError),
    Message { type_id: u8, source: MessageError },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Chunk(e) => e.fmt(f),
            InputError::Message { type_id, source } => {
                write!(f, "message type {type_id}: {source}")
            }
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Chunk(e) => Some(e),
            InputError::Message { source, .. } => Some(source),
        }
    }
}

impl From<ChunkError> for InputError {
    fn from(e: ChunkError) -> Self {
        InputError::Chunk(e)
    }
}

/// What [`Inbound::handle`] made of a message.
#[derive(Debug)]
pub enum Control {
    /// A protocol control message that was applied (Set Chunk Size, Abort, Window
    /// Acknowledgement Size, Set Peer Bandwidth): nothing left to do.
    Applied,
    /// Set Chunk Size, applied: the peer's chunk size from now on (for the
    /// session's log line, which names the peer).
    ChunkSize(u32),
    /// A user control event; `reply` is the Ping Response owed to a Ping Request,
    /// to be sent.
    UserControl {
        event: UserControl,
        reply: Option<RawMessage>,
    },
    /// Not protocol control (Acknowledgements included: what they mean is the
    /// session's business): the session's to handle.
    Other(RawMessage),
}

/// The decoder and the acknowledgement bookkeeping of one connection's input.
pub struct Inbound {
    decoder: ChunkDecoder,
    /// The peer's Window Acknowledgement Size: how often we must acknowledge (0:
    /// not announced).
    peer_window: u32,
    /// The byte count last acknowledged.
    acked: u64,
}

impl Inbound {
    pub fn new(limits: ChunkLimits) -> Inbound {
        Inbound {
            decoder: ChunkDecoder::new(limits),
            peer_window: 0,
            acked: 0,
        }
    }

    /// Bytes from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// The next complete message, if any.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        self.decoder.next_message()
    }

    /// Bytes received so far, the count acknowledgements carry.
    pub fn bytes_received(&self) -> u64 {
        self.decoder.bytes_received()
    }

    /// The Acknowledgement owed, if a window's worth of bytes came in since the
    /// last one.
    pub fn ack_due(&mut self) -> Option<RawMessage> {
        let received = self.decoder.bytes_received();
        if self.peer_window > 0 && received - self.acked >= u64::from(self.peer_window) {
            self.acked = received;
            // The sequence number is the byte count modulo 2^32 by definition.
            Some(msg::acknowledgement(received as u32))
        } else {
            None
        }
    }

    /// Applies `m` if it is protocol control, else hands it back.
    pub fn handle(&mut self, m: RawMessage) -> Result<Control, InputError> {
        let bad = |source| InputError::Message {
            type_id: m.type_id,
            source,
        };
        match m.type_id {
            msg::SET_CHUNK_SIZE => {
                let size = msg::read_u32("set chunk size", &m.payload).map_err(bad)?;
                self.decoder.set_chunk_size(size)?;
                return Ok(Control::ChunkSize(size));
            }
            msg::ABORT => {
                let csid = msg::read_u32("abort", &m.payload).map_err(bad)?;
                self.decoder.abort(csid);
            }
            msg::WINDOW_ACK_SIZE => {
                self.peer_window = msg::read_u32("window ack size", &m.payload).map_err(bad)?;
            }
            msg::SET_PEER_BANDWIDTH => {
                // Our output is not throttled, so the limit needs no action.
                msg::read_u32("set peer bandwidth", &m.payload).map_err(bad)?;
            }
            msg::USER_CONTROL => {
                let event = UserControl::parse(&m.payload).map_err(bad)?;
                let reply = match event {
                    UserControl::PingRequest(t) => {
                        Some(msg::user_control(UserControl::PingResponse(t)))
                    }
                    _ => None,
                };
                return Ok(Control::UserControl { event, reply });
            }
            _ => return Ok(Control::Other(m)),
        }
        Ok(Control::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkEncoder;

    fn feed(inbound: &mut Inbound, m: &RawMessage) -> Vec<Control> {
        let mut bytes = Vec::new();
        ChunkEncoder::new().encode_message(m, &mut bytes).unwrap();
        inbound.push(&bytes);
        let mut out = Vec::new();
        while let Some(m) = inbound.next_message().unwrap() {
            out.push(inbound.handle(m).unwrap());
        }
        out
    }

    #[test]
    fn pings_are_answered_and_acks_follow_the_window() {
        let mut inbound = Inbound::new(ChunkLimits::default());
        assert!(matches!(
            feed(&mut inbound, &msg::window_ack_size(100))[..],
            [Control::Applied]
        ));
        match &feed(
            &mut inbound,
            &msg::user_control(UserControl::PingRequest(9)),
        )[..]
        {
            [Control::UserControl {
                event: UserControl::PingRequest(9),
                reply: Some(reply),
            }] => assert_eq!(
                UserControl::parse(&reply.payload).unwrap(),
                UserControl::PingResponse(9)
            ),
            other => panic!("{other:?}"),
        }
        assert!(inbound.ack_due().is_none(), "window not reached");
        let media = feed(&mut inbound, &msg::raw(6, 1, msg::AUDIO, vec![0; 120]));
        assert!(matches!(&media[..], [Control::Other(m)] if m.type_id == msg::AUDIO));
        let ack = inbound.ack_due().expect("a window's worth came in");
        assert_eq!(
            u64::from(msg::read_u32("", &ack.payload).unwrap()),
            inbound.bytes_received()
        );
        assert!(inbound.ack_due().is_none(), "one ack per window");
    }

    #[test]
    fn malformed_control_is_an_error_naming_the_type() {
        let mut inbound = Inbound::new(ChunkLimits::default());
        let err = inbound
            .handle(msg::raw(2, 0, msg::WINDOW_ACK_SIZE, vec![1]))
            .unwrap_err();
        assert!(err.to_string().starts_with("message type 5:"), "{err}");
        assert!(matches!(
            inbound.handle(msg::set_chunk_size(0)),
            Err(InputError::Chunk(_))
        ));
    }
}
