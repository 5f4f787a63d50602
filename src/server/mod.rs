//! Sockets and threads. A blocking listener accepts; every client gets a reader
//! thread that runs the handshake and the session, and a writer thread that owns
//! the socket's write half and sends replies and media. Nothing here parses
//! protocol bytes: that is `rtmp`'s job.

mod connection;
mod writer;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::cli::Config;
use crate::media::gop::GopLimits;
use crate::registry::{Registry, RegistryConfig};

/// Stack for connection threads. Their deepest path is AMF decoding, bounded by the
/// nesting limit; debug builds need more room than release ones.
const THREAD_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    128 * 1024
};

/// What every connection thread shares.
pub(crate) struct Context {
    pub config: Config,
    pub registry: Arc<Registry>,
    pub started: Instant,
    /// Connections being served now, for `--max-connections`.
    pub connections: AtomicUsize,
}

/// Counts a connection for as long as its thread runs, panics included.
struct ConnectionSlot(Arc<Context>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Live numbers of a running server.
#[derive(Clone)]
pub struct ServerStats(Arc<Context>);

impl ServerStats {
    /// Connections being served right now.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Relaxed)
    }
}

pub struct Server {
    listener: TcpListener,
    ctx: Arc<Context>,
}

impl Server {
    /// Binds the listening socket; nothing is accepted until `run`.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen)?;
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
            ctx: Arc::new(Context {
                config,
                registry,
                started: Instant::now(),
                connections: AtomicUsize::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; fall back to the configured one.
        self.listener.local_addr().unwrap_or(self.ctx.config.listen)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.ctx.registry.clone()
    }

    /// A handle that reports live numbers while `run` owns the server.
    pub fn stats(&self) -> ServerStats {
        ServerStats(self.ctx.clone())
    }

    /// Accepts clients forever.
    pub fn run(self) -> io::Result<()> {
        info!("listening for RTMP on {}", self.local_addr());
        loop {
            let (socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let open = self.ctx.connections.fetch_add(1, Ordering::Relaxed);
            let slot = ConnectionSlot(self.ctx.clone());
            if open >= self.ctx.config.max_connections {
                warn!(
                    "{peer}: refused: {open} connections open (--max-connections {})",
                    self.ctx.config.max_connections
                );
                continue;
            }
            let ctx = self.ctx.clone();
            let spawned = thread::Builder::new()
                .name(format!("rtmp {peer}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let _slot = slot;
                    connection::serve(socket, peer, ctx)
                });
            if let Err(e) = spawned {
                error!("{peer}: cannot start a thread for the connection: {e}");
            }
        }
    }
}
