//! The server: binds the RTMP and HTTP listeners, runs the accept loop
//! (`crate::connections`) on each, on threads of their own, and runs the stop: once
//! a stop begins ([`ServerHandle::shutdown`]) it wakes the accept loops, waits for
//! the connection table (`crate::lifecycle`) to empty and cuts what is left at
//! `--shutdown-timeout`. An RTMP client's thread runs the handshake and the session
//! and writes the replies and, for a player, the stream's frames through the player
//! engine (`connection`, `crate::player`); nothing here parses protocol bytes: that
//! is `rtmp`'s job. HTTP clients are served by `crate::http`. Both share the
//! connection table and the counters.
//!
//! A reload ([`ServerHandle::reload`], SIGHUP) reads the config file again and
//! swaps in its access rules for new connections; what cannot change without a
//! restart (listen addresses, limits) is named in the log and left as it is.

mod connection;
mod listeners;

use listeners::Listener;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::admission::Admission;
use crate::config::settings::SETTINGS;
use crate::config::Config;
use crate::connections::{accept_loop, Context, Counters, Serve};
use crate::hls::Hls;
use crate::lifecycle::{Lifecycle, Limits};
use crate::media::gop::GopLimits;
use crate::record::file::{Disk, Storage};
use crate::record::Recorders;
use crate::registry::{Registry, RegistryConfig};
use crate::relay::Relay;
use crate::tls::ServerTls;

pub use crate::connections::{ConnectionCounts, Service};
pub use crate::lifecycle::ConnectionKind;
pub use listeners::BindError;

/// Live numbers of a running server.
#[derive(Clone)]
pub struct ServerStats(Arc<Context>);

impl ServerStats {
    /// Connections being served right now, RTMP and HTTP together.
    pub fn connections(&self) -> usize {
        self.0.lifecycle.open()
    }

    /// Connection and byte counters of one kind.
    pub fn counts(&self, kind: ConnectionKind) -> ConnectionCounts {
        self.0.connection_counts(kind)
    }
}

/// Stops a running server from another thread (the signal handler, a test, an
/// embedding program).
#[derive(Clone)]
pub struct ServerHandle(Arc<Context>);

impl ServerHandle {
    /// Begins the graceful stop: no new connections, every stream ended the way a
    /// publisher's stop ends it, pending connections closed; `Server::run` returns
    /// once every connection has closed or `--shutdown-timeout` has passed, cutting
    /// what is left. `cause` starts the one log line (e.g. "SIGTERM"). Returns
    /// false if a stop had begun already.
    pub fn shutdown(&self, cause: &str) -> bool {
        self.0.lifecycle.stop(cause, self.0.config.shutdown_timeout)
    }

    pub fn is_stopping(&self) -> bool {
        self.0.lifecycle.is_stopping()
    }

    /// Connections open now, in any phase.
    pub fn open_connections(&self) -> usize {
        self.0.lifecycle.open()
    }

    /// Reads the config file again (`cause` starts the log lines, e.g.
    /// "SIGHUP"). A valid file's access rules apply to new connections from now
    /// on and nobody is dropped; settings that need a restart are named in the
    /// log and keep their running values. A file with errors changes nothing.
    /// True if the new rules are in force.
    ///
    /// This is the one reload path: whatever else learns to reload (TLS
    /// certificates) hooks in here, and a service manager's notification
    /// (systemd `RELOADING=1` ... `READY=1`) wraps the call.
    pub fn reload(&self, cause: &str) -> bool {
        let ctx = &self.0;
        let new = self.reload_config(cause);
        // A renewed certificate is read whatever became of the file's other
        // settings: a deploy hook's SIGHUP must not wait for someone's typo.
        let certificate = ctx.tls.as_ref().map(|tls| {
            let files = new.as_ref().and_then(|c| c.as_ref().ok()?.tls_files());
            tls.reload(cause, files.as_ref())
        });
        match (new, certificate) {
            (None, None) => {
                info!("{cause}: no --config file and no TLS certificate: nothing to reload");
                false
            }
            (new, certificate) => {
                new.is_none_or(|loaded| loaded.is_ok()) && certificate.unwrap_or(true)
            }
        }
    }

    /// The config file's part of [`ServerHandle::reload`]: `None` without a
    /// file, the new config once in force, or the error that kept the old one.
    fn reload_config(&self, cause: &str) -> Option<Result<Config, ()>> {
        let ctx = &self.0;
        let source = &ctx.config.source;
        let path = source.file.as_ref()?;
        let new = match source.load() {
            Ok(new) => new,
            Err(e) => {
                error!("{cause}: configuration not reloaded, the rules in force stay: {e}");
                return Some(Err(()));
            }
        };
        let running = &ctx.config;
        // The certificate's files are read again by the reload itself.
        let reloads_tls = ctx.tls.is_some() && new.tls_files().is_some();
        for s in SETTINGS.iter().filter(|s| !s.is_policy()) {
            if reloads_tls && matches!(s.name, "tls-cert" | "tls-key") {
                continue;
            }
            let (was, now) = (s.value_text(running), s.value_text(&new));
            if was != now {
                warn!(
                    "{cause}: {} changed to {now} in {}: needs a restart (still {was})",
                    s.key(),
                    path.display()
                );
            }
        }
        ctx.admission.set_policy(new.policy.clone());
        crate::relay::apply_static_pulls(ctx);
        info!("{cause}: configuration reloaded from {}", path.display());
        Some(Ok(new))
    }
}

pub struct Server {
    /// RTMP first, then HTTP, then the API's own (`--api-listen`).
    listeners: Vec<Listener>,
    ctx: Arc<Context>,
}

impl Server {
    /// Binds every listening socket (see `listeners`: a bare port is IPv4 and
    /// IPv6); nothing is accepted until `run`, but connections queue from here on.
    /// A socket that cannot be bound is an error carrying a [`BindError`].
    pub fn bind(config: Config) -> io::Result<Server> {
        Server::bind_with_storage(config, Arc::new(Disk))
    }

    /// [`Server::bind`], with recordings made in `storage` instead of on the
    /// disk (a test's slow or failing stand-in, say).
    pub fn bind_with_storage(config: Config, storage: Arc<dyn Storage>) -> io::Result<Server> {
        // Before any socket: a certificate that does not load is a failed start.
        let tls = match config.tls_files() {
            Some(files) => Some(Arc::new(ServerTls::load(files).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("TLS certificate: {e}"))
            })?)),
            None => None,
        };
        let listeners = listeners::bind_all(&config)?;
        let registry = Registry::new(RegistryConfig {
            gop: GopLimits {
                enabled: config.gop_cache,
                max_frames: config.gop_max_frames,
                max_bytes: config.gop_max_bytes,
            },
            player_queue_frames: config.player_queue_frames,
        });
        let lifecycle = Arc::new(Lifecycle::new(Limits {
            max_established: config.max_connections,
            max_pending: config.max_pending,
        }));
        // First, so systemd knows the stop has begun before anything ends.
        lifecycle.on_stop("tell systemd", crate::systemd::stopping);
        let ended = registry.clone();
        lifecycle.on_stop("end every stream", move || ended.close());
        let relay = Arc::new(Relay::default());
        let relays = relay.clone();
        lifecycle.on_stop("end every relay", move || relays.stop());
        // HLS reads each app's settings from the live policy at every publish.
        let ctx = Arc::new_cyclic(|ctx: &std::sync::Weak<Context>| {
            let ctx = ctx.clone();
            let hls = Hls::new(Box::new(move |key| {
                ctx.upgrade()?.admission.policy().app(&key.app).hls()
            }));
            Context {
                listeners: listeners.iter().map(|l| (l.service, l.addr)).collect(),
                admission: Admission::new(config.policy.clone()),
                config,
                registry: registry.clone(),
                started: Instant::now(),
                lifecycle: lifecycle.clone(),
                counters: Counters::default(),
                recorders: Recorders::new(storage),
                relay,
                hls,
                tls,
            }
        });
        if serves_http(&ctx.config) {
            registry.set_tap(ctx.hls.clone());
        }
        let hls = ctx.hls.clone();
        lifecycle.on_stop("end HLS", move || hls.close());
        Ok(Server { ctx, listeners })
    }

    /// Every listener: what it serves and where.
    pub fn listeners(&self) -> Vec<(Service, SocketAddr)> {
        self.ctx.listeners.clone()
    }

    /// The first of `service`'s listeners.
    fn first(&self, service: Service) -> Option<SocketAddr> {
        let mut all = self.ctx.listeners.iter();
        all.find(|(s, _)| *s == service).map(|(_, addr)| *addr)
    }

    /// The first RTMP listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.first(Service::Rtmp)
            .expect("a server has at least one RTMP listener")
    }

    /// Where HTTP-FLV, WebSocket-FLV, the API and metrics are served (the first
    /// HTTP listener); `None` when HTTP is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.first(Service::Http)
    }

    /// Where the API and metrics are served when `--api-listen` puts them apart.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.first(Service::Api)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.ctx.registry.clone()
    }

    /// A handle that reports live numbers while `run` owns the server.
    pub fn stats(&self) -> ServerStats {
        ServerStats(self.ctx.clone())
    }

    /// A handle that stops the server while `run` owns it.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.ctx.clone())
    }

    /// Accepts clients (RTMP and HTTP each on a thread of its own) until a stop
    /// begins ([`ServerHandle::shutdown`]), then waits for every connection to end,
    /// at most `--shutdown-timeout`, and cuts what is left.
    pub fn run(self) -> io::Result<()> {
        let Server { listeners, ctx } = self;
        let api_apart = listeners.iter().any(|l| l.service == Service::Api);
        let mut accepting = Vec::new();
        let mut serving = Vec::new();
        for Listener {
            service,
            addr,
            socket,
        } in listeners
        {
            let serve: Serve = match service {
                Service::Rtmp | Service::Rtmps => connection::serve,
                Service::Http | Service::Https if api_apart => crate::http::serve_players,
                Service::Http | Service::Https => crate::http::serve,
                Service::Api => crate::http::serve_api,
            };
            info!("listening for {} on {addr}", service.name());
            serving.push(format!("{} on {addr}", service.name()));
            let waker = socket.try_clone()?;
            let thread = spawn_accept_loop(socket, &ctx, service, serve)?;
            accepting.push((addr, waker, thread));
        }
        crate::relay::apply_static_pulls(&ctx);
        if serves_http(&ctx.config) {
            spawn_hls_sweeper(&ctx)?;
        }
        if let Some(tls) = &ctx.tls {
            let (tls, lifecycle) = (tls.clone(), ctx.lifecycle.clone());
            thread::Builder::new()
                .name("tls watch".into())
                .spawn(move || {
                    while !lifecycle.wait_stopping(Some(CERTIFICATE_POLL)) {
                        tls.reload_if_changed();
                    }
                })?;
        }
        // Every listener has been listening since `bind`: clients can connect.
        crate::systemd::ready(Some(&format!("serving {}", serving.join(", "))));

        let lifecycle = &ctx.lifecycle;
        lifecycle.wait_stopping(None);
        let deadline = Instant::now() + ctx.config.shutdown_timeout;
        for (addr, waker, thread) in accepting {
            // accept() blocks; a connection of our own makes it return and see the
            // flag (unless a client's connection already did). Where none can reach
            // the socket (`[::]` on a host whose IPv6 a sysctl turned off: the
            // wildcard binds, ::1 does not exist), shutting the listening socket
            // makes accept() fail (Linux), which the loop takes as the stop.
            let woken = thread.is_finished()
                || TcpStream::connect_timeout(&wake_address(addr), Duration::from_secs(1)).is_ok()
                || socket2::SockRef::from(&waker)
                    .shutdown(Shutdown::Read)
                    .map_err(|e| warn!("could not wake the accept loop on {addr}: {e}"))
                    .is_ok();
            if woken {
                let _ = thread.join();
            }
        }
        if !ctx.relay.join(deadline) {
            warn!("stop: relays still ending after --shutdown-timeout are left behind");
        }
        if lifecycle.wait_empty(deadline) {
            // Every publish has ended: the recordings are closing their files.
            ctx.recorders
                .wait_idle(deadline.max(Instant::now() + RECORDINGS_GRACE));
            ctx.admission.flush_done_hooks(DONE_HOOKS_GRACE);
            info!("stopped: every connection closed");
            return Ok(());
        }
        let cut = lifecycle.cut_all();
        let listed: Vec<String> = cut.iter().take(20).map(|c| c.to_string()).collect();
        info!(
            "stopped: {} connection(s) still open after {:.1} s (--shutdown-timeout) cut: {}{}",
            cut.len(),
            ctx.config.shutdown_timeout.as_secs_f64(),
            listed.join(", "),
            if cut.len() > listed.len() {
                ", ..."
            } else {
                ""
            }
        );
        // Their sockets are shut: the threads end at once; give them a moment to log.
        lifecycle.wait_empty(Instant::now() + CUT_GRACE);
        ctx.recorders.wait_idle(Instant::now() + RECORDINGS_GRACE);
        ctx.admission.flush_done_hooks(DONE_HOOKS_GRACE);
        Ok(())
    }
}

/// How long a stop waits for the last `_done` hook calls to go out.
const DONE_HOOKS_GRACE: Duration = Duration::from_secs(2);

/// How long a stop waits for recordings to close their files when the
/// connections have taken the whole `--shutdown-timeout`: a final checkpoint.
const RECORDINGS_GRACE: Duration = Duration::from_secs(2);

/// How long `run` waits, after cutting, for the cut connections' threads.
const CUT_GRACE: Duration = Duration::from_millis(200);

/// Where to connect to reach a listener bound to `addr` (a wildcard address is
/// reached on loopback).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Ends idle HLS sessions and forgets ended HLS streams, once a second, until
/// the stop (whose hook ends what is left).
fn spawn_hls_sweeper(ctx: &Arc<Context>) -> io::Result<()> {
    let ctx = ctx.clone();
    thread::Builder::new()
        .name("hls sweeper".into())
        .spawn(move || {
            while !ctx.lifecycle.wait_stopping(Some(Duration::from_secs(1))) {
                ctx.hls.sweep(Instant::now());
            }
        })
        .map(drop)
}

fn spawn_accept_loop(
    listener: TcpListener,
    ctx: &Arc<Context>,
    service: Service,
    serve: Serve,
) -> io::Result<thread::JoinHandle<()>> {
    let ctx = ctx.clone();
    let tls = match service.is_tls() {
        true => ctx.tls.clone(),
        false => None,
    };
    let kind = service.connection_kind();
    thread::Builder::new()
        .name(format!("{} accept", service.as_str()))
        .spawn(move || accept_loop(&listener, &ctx, kind, tls, serve))
}

/// Whether anything serves HTTP (plain or TLS): HLS is kept only then.
fn serves_http(config: &Config) -> bool {
    !config.http.is_empty() || !config.https.is_empty()
}

/// How often the certificate files are looked at for a renewal (a changed file
/// is loaded once it has held still for one look).
const CERTIFICATE_POLL: Duration = Duration::from_secs(5);
