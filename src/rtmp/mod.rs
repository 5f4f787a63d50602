//! The RTMP protocol core, free of I/O: handshake, chunk stream codec, message
//! parsing (commands are AMF, from `crate::amf`) and the server session state
//! machine.

pub mod chunk;
pub mod client_session;
pub mod control;
pub mod handshake;
pub mod message;
pub mod session;
