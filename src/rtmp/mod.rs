//! The RTMP protocol core, free of I/O: handshake, chunk stream codec, AMF0/AMF3,
//! message parsing and the server session state machine.

pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
