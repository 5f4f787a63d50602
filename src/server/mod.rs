//! The server: binds the RTMP and HTTP listeners and runs the accept loop
//! (`crate::connections`) on each, RTMP on the calling thread and HTTP on one of
//! its own. An RTMP client's thread runs the handshake and the session and writes
//! the replies and, for a player, the stream's frames (`connection`, `writer`);
//! nothing here parses protocol bytes: that is `rtmp`'s job. HTTP clients are
//! served by `crate::http`. Both share the connection limit and the counters.

mod connection;
mod writer;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::info;

use crate::config::Config;
use crate::connections::{accept_loop, Context, Counters};
use crate::media::gop::GopLimits;
use crate::registry::{Registry, RegistryConfig};

pub use crate::connections::{ConnectionCounts, ConnectionKind};

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
