//! rtmpd: a live-streaming server. An encoder publishes over RTMP; players pull the
//! same stream back over RTMP with a fast start from a cached GOP.
//!
//! The protocol core (`rtmp`) works on byte buffers only: handshake, chunk codec, AMF,
//! message parsing and the per-connection session state machine take bytes in and hand
//! back bytes to send plus events. `media` knows what a frame is (keyframe, sequence
//! header) and keeps the fast-start cache. `registry` maps app/stream keys to live
//! streams and fans frames out to players through bounded queues. `server` owns the
//! sockets: a blocking listener and one thread per client that drives the session and,
//! for a player, writes the stream in merged writes. `http` serves
//! the same streams as HTTP-FLV and WebSocket-FLV, plus a JSON stats API and
//! Prometheus metrics, on its own listener in the same thread-per-connection style.
//! Every connection is registered in the server's connection table
//! (`lifecycle`), which enforces the connection budgets and carries a
//! graceful stop (`signals` turns SIGINT/SIGTERM into one) to every thread.

pub mod amf;
pub mod build_info;
pub mod cli;
pub mod client;
pub mod config;
mod connections;
pub mod http;
pub mod lifecycle;
pub mod media;
pub mod net;
pub mod procfs;
pub mod registry;
pub mod rng;
pub mod rtmp;
pub mod server;
pub mod signals;
pub mod stream_key;
