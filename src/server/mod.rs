//! Sockets and threads. A blocking listener accepts; every client gets one thread
//! that runs the handshake and the session and writes the replies and, for a
//! player, the stream's frames (`connection`, `writer`). Nothing here parses
//! protocol bytes: that is `rtmp`'s job. The HTTP listener (`crate::http`) runs its
//! own accept loop, the same one as RTMP's, on a second thread, and shares the
//! connection limit and the server-wide counters kept here.

mod connection;
pub(crate) mod deadline;
mod writer;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::cli::Config;
use crate::media::gop::GopLimits;
use crate::registry::{Registry, RegistryConfig};

/// Stack for connection threads. Their deepest path is AMF decoding, bounded by the
/// nesting limit; debug builds need more room than release ones.
pub(crate) const THREAD_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    128 * 1024
};

/// What every connection thread shares.
pub(crate) struct Context {
    pub config: Config,
    pub registry: Arc<Registry>,
    pub started: Instant,
    /// Connections being served now, of both kinds, for `--max-connections`.
    pub connections: AtomicUsize,
    pub counters: Counters,
}

/// The two kinds of connection the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    Rtmp,
    Http,
}

impl ConnectionKind {
    pub const ALL: [ConnectionKind; 2] = [ConnectionKind::Rtmp, ConnectionKind::Http];

    /// How many kinds there are: the size of per-kind counters.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in logs, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Rtmp => "rtmp",
            ConnectionKind::Http => "http",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Server-wide connection and traffic counters, by kind of connection. Socket
/// bytes, so protocol overhead counts too.
#[derive(Default)]
pub(crate) struct Counters {
    open: [AtomicU64; ConnectionKind::COUNT],
    accepted: [AtomicU64; ConnectionKind::COUNT],
    refused: [AtomicU64; ConnectionKind::COUNT],
    bytes_in: [AtomicU64; ConnectionKind::COUNT],
    bytes_out: [AtomicU64; ConnectionKind::COUNT],
}

impl Counters {
    pub fn add_bytes_in(&self, kind: ConnectionKind, n: usize) {
        self.bytes_in[kind.index()].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, kind: ConnectionKind, n: usize) {
        self.bytes_out[kind.index()].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self, kind: ConnectionKind) -> ConnectionCounts {
        let i = kind.index();
        let load = |a: &[AtomicU64; ConnectionKind::COUNT]| a[i].load(Ordering::Relaxed);
        ConnectionCounts {
            open: load(&self.open),
            accepted: load(&self.accepted),
            refused: load(&self.refused),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
        }
    }
}

/// One kind's numbers: `open` now, the rest since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub open: u64,
    pub accepted: u64,
    /// Closed at accept because of `--max-connections`.
    pub refused: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Counts a connection for as long as its thread runs, panics included.
struct ConnectionSlot(Arc<Context>, ConnectionKind);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.counters.open[self.1.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Live numbers of a running server.
#[derive(Clone)]
pub struct ServerStats(Arc<Context>);

impl ServerStats {
    /// Connections being served right now, RTMP and HTTP together.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Relaxed)
    }

    /// Connection and byte counters of one kind.
    pub fn counts(&self, kind: ConnectionKind) -> ConnectionCounts {
        self.0.counters.snapshot(kind)
    }
}

pub struct Server {
    listener: TcpListener,
    http: Option<TcpListener>,
    ctx: Arc<Context>,
}

impl Server {
    /// Binds the listening socket; nothing is accepted until `run`.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("RTMP listener on {}: {e}", config.listen))
        })?;
        let http =
            match config.http {
                Some(addr) => Some(TcpListener::bind(addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("HTTP listener on {addr}: {e}"))
                })?),
                None => None,
            };
        let registry = Registry::new(RegistryConfig {
            gop: GopLimits {
                enabled: config.gop_cache,
                max_frames: config.gop_max_frames,
                max_bytes: config.gop_max_bytes,
            },
            player_queue_frames: config.player_queue_frames,
        });
        Ok(Server {
            listener,
            http,
            ctx: Arc::new(Context {
                config,
                registry,
                started: Instant::now(),
                connections: AtomicUsize::new(0),
                counters: Counters::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; fall back to the configured one.
        self.listener.local_addr().unwrap_or(self.ctx.config.listen)
    }

    /// Where HTTP-FLV, WebSocket-FLV, the API and metrics are served; `None` when
    /// HTTP is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.ctx.registry.clone()
    }

    /// A handle that reports live numbers while `run` owns the server.
    pub fn stats(&self) -> ServerStats {
        ServerStats(self.ctx.clone())
    }

    /// Accepts clients forever: HTTP on a thread of its own, RTMP on this one.
    pub fn run(self) -> io::Result<()> {
        if let Some(http) = &self.http {
            let addr = http.local_addr()?;
            info!("listening for HTTP on {addr}");
            let http = http.try_clone()?;
            let ctx = self.ctx.clone();
            thread::Builder::new()
                .name("http accept".into())
                .spawn(move || {
                    accept_loop(&http, &ctx, ConnectionKind::Http, crate::http::serve)
                })?;
        }
        info!("listening for RTMP on {}", self.local_addr());
        accept_loop(
            &self.listener,
            &self.ctx,
            ConnectionKind::Rtmp,
            connection::serve,
        );
        Ok(())
    }
}

/// Accepts forever, starting one thread per client that runs `serve`.
fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<Context>,
    kind: ConnectionKind,
    serve: fn(std::net::TcpStream, SocketAddr, Arc<Context>),
) {
    let counters = &ctx.counters;
    loop {
        let (socket, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("{} accept failed: {e}", kind.as_str());
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let open = ctx.connections.fetch_add(1, Ordering::Relaxed);
        counters.open[kind.index()].fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot(ctx.clone(), kind);
        if open >= ctx.config.max_connections {
            counters.refused[kind.index()].fetch_add(1, Ordering::Relaxed);
            warn!(
                "{peer}: refused: {open} connections open (--max-connections {})",
                ctx.config.max_connections
            );
            continue;
        }
        counters.accepted[kind.index()].fetch_add(1, Ordering::Relaxed);
        let thread_ctx = ctx.clone();
        let spawned = thread::Builder::new()
            .name(format!("{} {peer}", kind.as_str()))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _slot = slot;
                serve(socket, peer, thread_ctx)
            });
        if let Err(e) = spawned {
            error!("{peer}: cannot start a thread for the connection: {e}");
        }
    }
}
