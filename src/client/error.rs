//! Everything that can stop a client call, from a bad URL to a refusal by the
//! server. Each variant keeps what a caller needs to react (the status code,
//! the `_error` reply, the I/O error) and displays as a sentence.

use std::fmt;
use std::io;
use std::time::Duration;

use super::url::UrlError;
use super::Status;
use crate::rtmp::chunk::ChunkError;
use crate::rtmp::control::InputError;
use crate::rtmp::handshake::HandshakeError;
use crate::rtmp::message::{Command, MessageError};

#[derive(Debug)]
pub enum ClientError {
    InvalidUrl(UrlError),
    /// A [`ClientOptions`](super::ClientOptions) value that cannot work.
    InvalidOption(&'static str),
    /// Name resolution or the TCP connection failed.
    Connect {
        addr: String,
        source: io::Error,
    },
    /// The TLS handshake of an `rtmps://` connection failed (a certificate that
    /// does not verify, a server that does not speak TLS).
    Tls {
        addr: String,
        error: String,
    },
    Io(io::Error),
    /// Nothing arrived (or could be written) within the socket timeout. The
    /// connection is still usable: no partial message was consumed.
    Timeout(Duration),
    /// The server closed the connection (end of stream on a read).
    Closed,
    Handshake(HandshakeError),
    /// The server's chunk stream is malformed; the connection is unusable.
    Chunk(ChunkError),
    /// A message from the server could not be parsed.
    Message {
        type_id: u8,
        source: MessageError,
    },
    /// The server answered a call with `_error`.
    CallFailed {
        call: String,
        reply: Box<Command>,
    },
    /// The server answered a call with `_result`, but not with what the call
    /// needs (createStream without a stream id, say).
    UnexpectedReply {
        call: String,
        reply: Box<Command>,
    },
    /// The server refused a publish or play with an error status
    /// (`NetStream.Publish.BadName`, `NetStream.Play.StreamNotFound`, ...).
    Status(Box<Status>),
    /// The call does not fit the client's state (media before publish, ...).
    InvalidState(&'static str),
}

impl ClientError {
    /// True when the connection is gone: closed by the server, or reset.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Closed => true,
            ClientError::Io(e) => crate::net::is_disconnect(e),
            _ => false,
        }
    }

    /// The status code of a refusal, or of the `_error` reply to a call.
    pub fn status_code(&self) -> Option<&str> {
        match self {
            ClientError::Status(s) => Some(&s.code),
            ClientError::CallFailed { reply, .. } => info_str(reply, "code"),
            _ => None,
        }
    }
}

fn info_str<'a>(reply: &'a Command, key: &str) -> Option<&'a str> {
    reply.arg(0)?.get(key)?.as_str()
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidUrl(e) => write!(f, "invalid RTMP URL: {e}"),
            ClientError::InvalidOption(what) => write!(f, "invalid client option: {what}"),
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ClientError::Tls { addr, error } => write!(f, "TLS with {addr}: {error}"),
            ClientError::Io(e) => write!(f, "socket error: {e}"),
            ClientError::Timeout(t) => write!(
                f,
                "the server sent nothing (or accepted nothing) within {:.1} s",
                t.as_secs_f64()
            ),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::Handshake(e) => write!(f, "handshake failed: {e}"),
            ClientError::Chunk(e) => write!(f, "malformed chunk stream from the server: {e}"),
            ClientError::Message { type_id, source } => {
                write!(
                    f,
                    "malformed message type {type_id} from the server: {source}"
                )
            }
            ClientError::CallFailed { call, reply } => {
                write!(f, "the server refused '{call}'")?;
                match (info_str(reply, "code"), info_str(reply, "description")) {
                    (Some(code), Some(text)) => write!(f, ": {code} ({text})"),
                    (Some(code), None) => write!(f, ": {code}"),
                    _ => Ok(()),
                }
            }
            ClientError::UnexpectedReply { call, reply } => write!(
                f,
                "the server's reply to '{call}' lacks what the call needs: {:?}",
                reply.args
            ),
            ClientError::Status(s) => write!(
                f,
                "the server answered {} (level {}): {}",
                s.code, s.level, s.description
            ),
            ClientError::InvalidState(what) => write!(f, "not possible now: {what}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::InvalidUrl(e) => Some(e),
            ClientError::Connect { source, .. } => Some(source),
            ClientError::Io(e) => Some(e),
            ClientError::Handshake(e) => Some(e),
            ClientError::Chunk(e) => Some(e),
            ClientError::Message { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<UrlError> for ClientError {
    fn from(e: UrlError) -> Self {
        ClientError::InvalidUrl(e)
    }
}

impl From<HandshakeError> for ClientError {
    fn from(e: HandshakeError) -> Self {
        ClientError::Handshake(e)
    }
}

impl From<ChunkError> for ClientError {
    fn from(e: ChunkError) -> Self {
        ClientError::Chunk(e)
    }
}

impl From<InputError> for ClientError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Chunk(e) => ClientError::Chunk(e),
            InputError::Message { type_id, source } => ClientError::Message { type_id, source },
        }
    }
}
