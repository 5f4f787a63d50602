//! What every client connection shares, whichever protocol it speaks: the accept
//! loop that gives each accepted socket a thread of its own, the connection limit
//! it enforces, and the context those threads share (config, registry, counters by
//! kind of connection). The RTMP and HTTP sides both build on this; `server` wires
//! their listeners to it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, warn};

use crate::config::Config;
use crate::registry::Registry;

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

/// Accepts forever, starting one thread per client that runs `serve`.
pub(crate) fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<Context>,
    kind: ConnectionKind,
    serve: fn(TcpStream, SocketAddr, Arc<Context>),
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
