//! Media knowledge independent of the transport: what a frame is, the fast-start
//! cache, per-player timestamp mapping, the FLV container and fragmented MP4 for HLS.

pub mod codec;
pub mod flv;
pub mod fmp4;
pub mod frame;
pub mod gop;
pub mod player;
pub mod timestamp;
