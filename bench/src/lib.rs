//! The load generator behind `rtmpd-bench`: publishes synthetic H.264/AAC (or a
//! real FLV file) in real time through the server crate's RTMP client
//! (`rtmpd::client`), runs many verifying players (or connect/play/leave churn)
//! over RTMP, HTTP-FLV or WebSocket-FLV (`play`) against any server, and reports
//! delivery, skipped frames, server-added latency, time to the first keyframe and
//! the server process's CPU, memory and threads read from /proc. `report` puts
//! runs side by side and `targets` checks them against an issue's numbers.
//!
//! The pure parts (payload stamping, percentiles, /proc parsing, report
//! formatting) are unit-tested here; the timed runs are not part of the test
//! suite: `scripts/bench.sh` drives them.

pub mod flvfile;
pub mod play;
pub mod procfs;
pub mod report;
pub mod run;
pub mod stats;
pub mod synthetic;
pub mod targets;
