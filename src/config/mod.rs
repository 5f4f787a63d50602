//! What the server runs with: one validated `Config`, with the defaults in one
//! place, and the table of every setting that can change it (`settings`: name,
//! kind and range of value, help, field). The command line (`crate::cli`) and the
//! config file (`file`) map their values onto it through that table; the file
//! adds the per-app keys and everything else a reload may change (`policy`).

pub mod file;
pub mod policy;
pub mod record;
pub mod relay;
pub mod settings;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use file::{FileError, Source};
pub use policy::{AppPolicy, Policy, Verb};

use crate::amf::amf0::AmfLimits;
use crate::player::MergeMode;
use crate::rtmp::chunk::ChunkLimits;

/// Everything the server needs to run, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where RTMP clients connect; at least one address.
    pub listen: Vec<ListenAddr>,
    /// HTTP-FLV, WebSocket-FLV, the JSON API and metrics; empty serves no HTTP.
    /// `Config::default()` leaves it off so embedders and tests opt in (and never
    /// collide on a fixed port); the command line's default is every interface on
    /// [`DEFAULT_HTTP_PORT`].
    pub http: Vec<ListenAddr>,
    /// Where `/api/*` and `/metrics` are served instead of on `http`; empty: on
    /// `http`.
    pub api_listen: Vec<ListenAddr>,
    /// RTMPS (RTMP over TLS) clients connect here; empty, the default, serves
    /// none. Needs `tls_cert` and `tls_key`.
    pub rtmps_listen: Vec<ListenAddr>,
    /// HTTPS and WSS: what `http` serves, over TLS; empty, the default, serves
    /// none. Needs `tls_cert` and `tls_key`.
    pub https: Vec<ListenAddr>,
    /// The TLS listeners' certificate chain (PEM, the server's own first) and its
    /// private key; a reload (SIGHUP, or a change of the files) reads them again.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections the kernel completes and queues on each listener until we
    /// accept them (the `listen(2)` backlog; Linux caps it at `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Chunk size we announce and send with; larger chunks mean fewer headers.
    pub chunk_size: u32,
    /// Keep the current GOP so players joining mid-stream start at once.
    pub gop_cache: bool,
    /// Upper bounds of the cached GOP; past either, the cache waits for the next keyframe.
    pub gop_max_frames: usize,
    pub gop_max_bytes: usize,
    /// Frames a player may have queued before it starts skipping to the next keyframe.
    pub player_queue_frames: usize,
    /// Established connections (publishing, playing, or with a complete HTTP
    /// request) served at once; more are refused when they try.
    pub max_connections: usize,
    /// Connections not yet established; at the limit the oldest of the address
    /// with the most of them is closed for the newcomer.
    pub max_pending: usize,
    /// How long a client may take to get going (`--handshake-timeout`): an RTMP
    /// client from accept through handshake and connect to publish or play, and
    /// again after its last stream ended; an HTTP client to send its whole request.
    pub setup_timeout: Duration,
    /// A publisher that sends nothing for this long is dropped and its key freed.
    pub publish_timeout: Duration,
    /// Any client whose socket accepts none of the bytes we write for this long is
    /// dropped (`--play-timeout`): players mostly, but also an RTMP or HTTP client
    /// that does not read our replies.
    pub write_stall_timeout: Duration,
    /// How long a graceful stop waits for connections to end before cutting them.
    pub shutdown_timeout: Duration,
    /// Per-connection limits on what a peer may make us buffer.
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
    /// Longest app or stream name, in bytes.
    pub max_name_len: usize,
    /// A busy player gets at most one socket write per window; zero writes every
    /// frame as it comes. The cost of serving a player is per write, not per byte.
    /// The most it may be; `merge_mode` says how it is chosen.
    pub merge_writes: Duration,
    /// Adaptive: no window while the server has few players, then one that grows
    /// with their number up to `merge_writes`; fixed: always `merge_writes`.
    pub merge_mode: MergeMode,
    /// How long an accepted connection may be idle before TCP keepalive probes ask
    /// whether its peer is still there (`--tcp-keepalive`); a peer that answers none
    /// is given up about 30 s later. Zero sends no probes.
    pub tcp_keepalive: Duration,
    /// How log lines are written; read by `main` when it sets up logging.
    pub log_format: LogFormat,
    /// Access rules and per-app keys as loaded. A running server reads the live
    /// ones (a reload replaces them) from its `crate::admission::Admission`.
    pub policy: Arc<Policy>,
    /// Where this config came from, so a reload can read it again.
    pub source: Source,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per record for people: a timestamp, the level, where it came from
    /// and the message; under journald the syslog priority instead of a timestamp.
    Text,
    /// One JSON object per line (time, level, target, message) for log shippers.
    Json,
}

impl LogFormat {
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name a flag or a config file gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where a listener accepts connections (`-l`, `--http`, `--api-listen`): one
/// address, or a bare port meaning every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// Every interface: `0.0.0.0:PORT` and `[::]:PORT`, as two sockets so IPv4
    /// clients never appear as `::ffff:a.b.c.d`. On a host without IPv6 the IPv6
    /// one is left out with a log line, never a failed start.
    AnyInterface(u16),
    /// Exactly this address: `127.0.0.1:1935`, `[::1]:1935`, or `[::]:1935` for
    /// IPv6 alone.
    Addr(SocketAddr),
}

impl fmt::Display for ListenAddr {
    /// As a flag takes it: the bare port, or the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::AnyInterface(port) => write!(f, "{port}"),
            ListenAddr::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> ListenAddr {
        ListenAddr::Addr(addr)
    }
}

/// Where `rtmpd` accepts RTMP clients unless `-l` says otherwise: every interface.
pub const DEFAULT_RTMP_PORT: u16 = 1935;

/// Where `rtmpd` serves HTTP unless `--http` says otherwise: every interface.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![ListenAddr::AnyInterface(DEFAULT_RTMP_PORT)],
            http: Vec::new(),
            api_listen: Vec::new(),
            rtmps_listen: Vec::new(),
            https: Vec::new(),
            tls_cert: None,
            tls_key: None,
            listen_backlog: 1024,
            chunk_size: 4096,
            gop_cache: true,
            gop_max_frames: 2048,
            gop_max_bytes: 32 * 1024 * 1024,
            player_queue_frames: 1024,
            max_connections: 2000,
            max_pending: 1000,
            setup_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
            max_name_len: 256,
            merge_writes: Duration::from_millis(DEFAULT_MERGE_WRITES_MS),
            merge_mode: MergeMode::Adaptive,
            tcp_keepalive: Duration::from_secs(30),
            log_format: LogFormat::Text,
            policy: Arc::default(),
            source: Source::default(),
        }
    }
}

impl Config {
    /// The TLS certificate and key files, when both are set.
    pub fn tls_files(&self) -> Option<crate::tls::CertFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the settings that go together do: a TLS listener needs a
    /// certificate and its key, and a certificate needs its key.
    pub fn check_tls(&self) -> Result<(), String> {
        let listeners: Vec<&str> = [("rtmps_listen", &self.rtmps_listen), ("https", &self.https)]
            .iter()
            .filter(|(_, addrs)| !addrs.is_empty())
            .map(|(key, _)| *key)
            .collect();
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => Ok(()),
            (Some(_), None) => Err("tls_cert (--tls-cert) is set without tls_key (--tls-key): \
                                    the certificate needs its private key"
                .into()),
            (None, Some(_)) => {
                Err("tls_key (--tls-key) is set without tls_cert (--tls-cert)".into())
            }
            (None, None) if listeners.is_empty() => Ok(()),
            (None, None) => Err(format!(
                "{} (--{}) needs a certificate: set tls_cert and tls_key (--tls-cert, --tls-key)",
                listeners.join(" and "),
                listeners.join(", --").replace('_', "-")
            )),
        }
    }
    /// What `rtmpd` runs with where no setting says otherwise: the defaults, with
    /// HTTP served on every interface on [`DEFAULT_HTTP_PORT`].
    pub fn rtmpd_defaults() -> Config {
        Config {
            http: vec![ListenAddr::AnyInterface(DEFAULT_HTTP_PORT)],
            ..Config::default()
        }
    }
}

/// Measured with scripts/bench.sh; see README "Performance".
const DEFAULT_MERGE_WRITES_MS: u64 = 60;
