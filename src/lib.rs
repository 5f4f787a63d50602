//! rtmpd: a live-streaming server. An encoder publishes over RTMP; players pull the
//! same stream back over RTMP, HTTP-FLV or WebSocket-FLV, with a fast start from a
//! cached GOP, or as Low-Latency HLS from memory.
//!
//! Modules depend one way, from the bytes up. `amf` (AMF0/AMF3 values) and `media`
//! (what a frame is, the fast-start cache, FLV) know nothing of RTMP. `rtmp` is the
//! protocol core on byte buffers only: handshake, chunk codec, messages, the
//! protocol control both ends share, and the server's and the client's session
//! state machines, which take bytes in and hand back events and what to send.
//! `stream_key` holds the rules for stream names; `registry` maps keys to live
//! streams and fans frames out to subscribers through bounded queues, each under
//! its policy (players skip ahead; lossless subscribers, such as a recording, get
//! every frame up to a bound). Below the connections: `net` (the transport a
//! connection reads and writes through, with stall-limited writes; the options of
//! accepted sockets; socket errors), `lifecycle` (the table of every open
//! connection, its budgets and the graceful stop), `player` (the one engine every
//! subscriber runs on its thread: queues, merge ticks, doorbell, and the RTMP and
//! FLV framings over a transport) and `connections` (the accept loop and the
//! context every connection thread shares). `hls` cuts each live stream into fMP4
//! parts and segments (`media::fmp4` writes them), fed by the registry's publish
//! tap, and keeps the viewers' sessions. On top, `http` serves HTTP-FLV,
//! WebSocket-FLV, HLS, the web page, the JSON API and metrics, and `server` binds the listeners, runs
//! one thread per RTMP client and hands HTTP connections to `http`; `signals`
//! turns SIGINT/SIGTERM into a stop and SIGHUP into a reload. Every publish and
//! play, from either side, asks `admission` first (IP rules, secrets and signed
//! tokens, HTTP hooks), fed by the policy of the config file. `record` keeps
//! published streams as FLV files, each recording on a thread of its own that the
//! stream never waits for. `config` is the validated configuration, the table of
//! every setting and the config file (`config::file`, per-app keys in
//! `config::policy`); `cli` maps the command line onto it. `client` is a blocking
//! RTMP client driving `rtmp`'s client session. `procfs` (reading /proc), `rng`
//! (a seedable generator) and `utc` (calendar time) serve the metrics, the
//! handshake, HTTP dates, recording names, the bench and the tests.

pub mod admission;
pub mod amf;
pub mod build_info;
pub mod cli;
pub mod client;
pub mod config;
mod connections;
pub mod hls;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod media;
pub mod net;
pub mod player;
pub mod procfs;
pub mod record;
pub mod registry;
pub mod relay;
pub mod rng;
pub mod rtmp;
pub mod server;
pub mod signals;
pub mod stream_key;
pub mod systemd;
pub mod tls;
pub mod utc;
