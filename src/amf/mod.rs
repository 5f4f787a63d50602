//! AMF0 and AMF3, the value encodings RTMP commands and FLV script data
//! (`onMetaData`) share: decoders total over untrusted bytes with limits on depth
//! and size, and encoders. Byte buffers only, no I/O. Its own module because both
//! `rtmp` and `media` read it and `media` must not depend on `rtmp`.

pub mod amf0;
pub mod amf3;
