//! Integration tests: the server runs in-process on an ephemeral port and real
//! clients (ffmpeg, rtmpdump) publish and play against it.
//!
//! All integration tests live in this one test binary (one link, one process, shared
//! helpers): add each test module here as `mod NAME;` next to `support`.

mod access;
mod client_protocol;
mod client_streaming;
mod client_support;
mod command_line;
mod config_file;
mod fanout;
mod handshake;
// Shared with the fuzz targets in tests/fuzz.
mod browser;
#[path = "../harness/mod.rs"]
mod harness;
mod hls;
mod hostile;
mod http_api;
mod http_flv;
mod http_support;
mod http_websocket;
mod keepalive;
mod late_join;
mod listeners;
mod log_lines;
mod mutation;
mod package;
mod playback;
mod process;
mod publishing;
mod recording;
mod relay;
mod relay_nginx;
mod relay_scale;
mod relay_support;
mod service;
mod shutdown;
mod stream_names;
mod support;
mod tls;
mod tls_support;
mod tracks;
