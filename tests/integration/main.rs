//! Integration tests: the server runs in-process on an ephemeral port and real
//! clients (ffmpeg, rtmpdump) publish and play against it.
//!
//! All integration tests live in this one test binary (one link, one process, shared
//! helpers): add each test module here as `mod NAME;` next to `support`.

mod support;
