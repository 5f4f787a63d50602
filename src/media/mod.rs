//! Media knowledge independent of the transport: what a frame is, the fast-start
//! cache, per-player timestamp mapping and the FLV container.

pub mod codec;
pub mod flv;
pub mod frame;
pub mod gop;
pub mod player;
pub mod timestamp;
