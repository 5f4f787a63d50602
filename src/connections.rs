//! What every client connection shares, whichever protocol it speaks: the accept
//! loop that registers each accepted socket in the connection table
//! (`crate::lifecycle`, which enforces the connection budgets) and gives it a thread
//! of its own, and the context those threads share (config, registry, the table
//! and its stop, counters by kind of connection, the listeners). The RTMP and HTTP
//! sides both build on this; `server` wires their listeners to it.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, error, warn};

use crate::admission::Admission;
use crate::config::Config;
use crate::hls::Hls;
use crate::lifecycle::{ConnectionKind, Lifecycle, Phase, Registration};
use crate::net::tls::HandshakeError;
use crate::net::{keepalive, Socket, TcpTransport, TlsTransport, Transport};
use crate::player::{MergeWindow, PlayerConfig};
use crate::record::Recorders;
use crate::registry::Registry;
use crate::relay::Relay;
use crate::tls::ServerTls;

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
    /// Every open connection, the connection budgets and the stop.
    pub lifecycle: Arc<Lifecycle>,
    pub counters: Counters,
    /// Who may publish and play; also the live policy a reload replaces.
    pub admission: Admission,
    /// The recordings of published streams.
    pub recorders: Arc<Recorders>,
    /// Every listening socket and its bound address, as `/api/server` lists them.
    pub listeners: Vec<(Service, SocketAddr)>,
    /// Pushes and pulls to and from other servers.
    pub relay: Arc<Relay>,
    /// Every live stream's HLS and the HLS viewers' sessions.
    pub hls: Arc<Hls>,
    /// The TLS listeners' certificate and configuration, when a certificate is set.
    pub tls: Option<Arc<ServerTls>>,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Rtmp,
    /// RTMP over TLS (`--rtmps-listen`).
    Rtmps,
    /// HTTP-FLV and WebSocket-FLV players, and the API and metrics unless an
    /// `Api` listener serves them.
    Http,
    /// What `Http` serves, over TLS (`--https`): HTTPS and WSS.
    Https,
    /// `--api-listen`: the API and metrics alone.
    Api,
}

impl Service {
    /// The name in JSON (`rtmp`, `http`, `api`).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Rtmp => "rtmp",
            Service::Rtmps => "rtmps",
            Service::Http => "http",
            Service::Https => "https",
            Service::Api => "api",
        }
    }

    /// The name in log lines and messages (`RTMP`, `HTTP`, `API`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Rtmp => "RTMP",
            Service::Rtmps => "RTMPS",
            Service::Http => "HTTP",
            Service::Https => "HTTPS",
            Service::Api => "API",
        }
    }

    /// The flag that sets its addresses.
    pub fn flag(self) -> &'static str {
        match self {
            Service::Rtmp => "-l/--listen",
            Service::Rtmps => "--rtmps-listen",
            Service::Http => "--http",
            Service::Https => "--https",
            Service::Api => "--api-listen",
        }
    }

    /// Whether its clients speak TLS first.
    pub fn is_tls(self) -> bool {
        matches!(self, Service::Rtmps | Service::Https)
    }

    /// The kind of connection it accepts.
    pub fn connection_kind(self) -> ConnectionKind {
        match self {
            Service::Rtmp | Service::Rtmps => ConnectionKind::Rtmp,
            Service::Http | Service::Https | Service::Api => ConnectionKind::Http,
        }
    }
}

impl Context {
    /// What a player's engine runs with.
    pub fn player_config(&self) -> PlayerConfig {
        PlayerConfig {
            merge: MergeWindow::new(
                self.config.merge_writes,
                self.config.merge_mode,
                self.registry.audience(),
            ),
            stall: self.config.write_stall_timeout,
            epoch: self.started,
            lifecycle: self.lifecycle.clone(),
        }
    }

    /// One kind's connection numbers: the table's and the traffic counters'.
    pub fn connection_counts(&self, kind: ConnectionKind) -> ConnectionCounts {
        let table = self.lifecycle.counts(kind);
        let i = kind.index();
        let load = |a: &[AtomicU64; ConnectionKind::COUNT]| a[i].load(Ordering::Relaxed);
        ConnectionCounts {
            open: table.open(),
            pending: table.pending,
            accepted: load(&self.counters.accepted),
            refused: table.refused,
            evicted: table.evicted,
            bytes_in: load(&self.counters.bytes_in),
            bytes_out: load(&self.counters.bytes_out),
        }
    }
}

/// Server-wide connection and traffic counters, by kind of connection. Socket
/// bytes, so protocol overhead counts too.
#[derive(Default)]
pub(crate) struct Counters {
    accepted: [AtomicU64; ConnectionKind::COUNT],
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
}

/// One kind's numbers: `open` now, the rest since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Open now, in any phase.
    pub open: u64,
    /// Open now and not yet publishing, playing or with a complete request.
    pub pending: u64,
    pub accepted: u64,
    /// Refused when about to publish, play or be answered: `--max-connections`
    /// connections were established.
    pub refused: u64,
    /// Closed while pending to make room for newer connections (`--max-pending`).
    pub evicted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What serves one connection: its entry in the table, its transport (plain or
/// TLS, the handshake done), the shared context.
pub(crate) type Serve = fn(Registration, Box<dyn Transport>, Arc<Context>);

/// Accepts until the server stops, giving each client's socket its options (no
/// Nagle delay, TCP keepalive), registering it in the connection table and starting
/// one thread per client that opens its transport (`tls`: runs the TLS handshake
/// first) and runs `serve`.
pub(crate) fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<Context>,
    kind: ConnectionKind,
    tls: Option<Arc<ServerTls>>,
    serve: Serve,
) {
    let lifecycle = &ctx.lifecycle;
    loop {
        let (socket, peer) = match listener.accept() {
            // Seen and matched as plain IPv4 from here on, if it came mapped.
            Ok((socket, peer)) => (socket, crate::net::listener::plain_peer(peer)),
            Err(_) if lifecycle.is_stopping() => return,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("{} accept failed: {e}", kind.as_str());
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if ctx.admission.is_blocked(peer.ip()) {
            // Too many refused attempts lately (logged once when the block began).
            drop(socket);
            continue;
        }
        let config = &ctx.config;
        let (idle, stall) = (config.tcp_keepalive, config.write_stall_timeout);
        if let Err(e) = keepalive::configure_accepted(&socket, idle, stall) {
            // Only a socket that is already gone refuses its options; its thread
            // will find out at once.
            debug!("{peer}: setting socket options: {e}");
        }
        let Some(entry) = lifecycle.admit(kind, peer, Arc::new(socket)) else {
            return;
        };
        ctx.counters.accepted[kind.index()].fetch_add(1, Ordering::Relaxed);
        let thread_ctx = ctx.clone();
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .name(format!("{} {peer}", kind.as_str()))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if let Some(transport) = open(&entry, &thread_ctx, tls.as_deref()) {
                    serve(entry, transport, thread_ctx);
                }
            });
        if let Err(e) = spawned {
            error!("{peer}: cannot start a thread for the connection: {e}");
        }
    }
}

/// The transport of an accepted connection: plain TCP, or TLS once its handshake
/// is done, within `--handshake-timeout` (the connection is pending meanwhile,
/// like any that has proven nothing yet). `None` if the handshake failed: the
/// TLS side counts it and logs it once per address (unless the peer closed
/// without sending a byte: a port check). Never inlined: the TLS handshake's
/// large frame would otherwise stay on the thread's stack under the whole
/// connection (one more 4 KiB page touched per player, +9% RSS per player).
#[inline(never)]
fn open(
    entry: &Registration,
    ctx: &Context,
    tls: Option<&ServerTls>,
) -> Option<Box<dyn Transport>> {
    let peer = entry.peer();
    let socket = match Socket::new(entry.socket().clone(), ctx.config.write_stall_timeout) {
        Ok(socket) => socket,
        Err(e) => {
            debug!("{peer}: {e}");
            return None;
        }
    };
    let Some(tls) = tls else {
        return Some(Box::new(TcpTransport::over(socket, peer)));
    };
    match handshake(tls, socket, peer, ctx.config.setup_timeout) {
        Ok(transport) => Some(Box::new(transport)),
        Err(_) if entry.phase() == Phase::Closing || ctx.lifecycle.is_stopping() => {
            debug!("{peer}: closed during the TLS handshake (a stop, or --max-pending)");
            None
        }
        // Connected and closed without a byte: a port check (a load balancer's,
        // a monitor's), not a failed handshake.
        Err(e @ HandshakeError::Closed { received: 0 }) => {
            debug!("{peer}: {e}");
            None
        }
        Err(e) => {
            tls.failed(peer, &e);
            None
        }
    }
}

/// The helpers' stacks are more than four times a connection's, so glibc, which
/// keeps the stacks of ended threads for reuse, never hands a helper's (whose
/// top pages stay resident) to a connection thread.
const HANDSHAKE_STACK: usize = 5 * THREAD_STACK;

/// Runs the server's side of a TLS handshake on a helper thread of its own. The
/// key exchange and the signature go about 12 KB deeper into the stack than a
/// player ever does again, and a thread keeps every stack page it has touched
/// resident for its life: on the helper, those pages are not the long-lived
/// player's, so an RTMPS player costs what its own work needs.
fn handshake(
    tls: &ServerTls,
    socket: Socket,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<TlsTransport, HandshakeError> {
    thread::scope(|scope| {
        let helper = thread::Builder::new()
            .name(format!("tls {peer}"))
            .stack_size(HANDSHAKE_STACK)
            .spawn_scoped(scope, || tls.accept(socket, peer, timeout))
            .map_err(|e| {
                HandshakeError::Io(io::Error::new(
                    e.kind(),
                    format!("cannot start a thread for the handshake: {e}"),
                ))
            })?;
        helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
