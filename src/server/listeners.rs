//! The sockets the server listens on, from the configured addresses: a bare port
//! is `0.0.0.0:PORT` and `[::]:PORT`, two sockets (the IPv6 one left out, with one
//! log line, on a host without IPv6); an address given twice for one listener is
//! bound once; and a
//! socket that cannot be bound is an error naming the listener, the address and the
//! flag that moves it.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use log::info;

use crate::config::{Config, ListenAddr};
use crate::connections::Service;
use crate::net::listener;

/// A bound, listening socket.
pub(super) struct Listener {
    pub service: Service,
    /// Where it is bound (the port the system chose, for port 0).
    pub addr: SocketAddr,
    pub socket: TcpListener,
}

/// A listener that could not be bound, said for the person starting the server:
/// `cannot listen for RTMP on 0.0.0.0:1935: address already in use (another rtmpd
/// or nginx-rtmp running? choose another address with -l/--listen)`.
#[derive(Debug)]
pub struct BindError {
    pub service: Service,
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, others) = match self.service {
            Service::Rtmp => ("RTMP", "another rtmpd or nginx-rtmp"),
            Service::Rtmps => ("RTMPS", "another rtmpd or a TLS server"),
            Service::Http => ("HTTP", "another rtmpd or a web server"),
            Service::Https => ("HTTPS", "another rtmpd or a web server"),
            Service::Api => ("the API", "another rtmpd or a web server"),
        };
        let (addr, flag) = (self.addr, self.service.flag());
        write!(f, "cannot listen for {what} on {addr}: ")?;
        match self.source.kind() {
            io::ErrorKind::AddrInUse => write!(
                f,
                "address already in use ({others} running? choose another address with {flag})"
            ),
            io::ErrorKind::PermissionDenied => write!(
                f,
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; \
                 choose another address with {flag})"
            ),
            io::ErrorKind::AddrNotAvailable => write!(
                f,
                "address not available (no interface of this machine has {}; choose another \
                 address with {flag})",
                addr.ip()
            ),
            _ => write!(f, "{} (choose another address with {flag})", self.source),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One socket to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    service: Service,
    addr: SocketAddr,
    /// The IPv6 half of a bare port: left out where the host has no IPv6.
    ipv6_default: bool,
}

/// Every socket the config asks for, RTMP first, each address once.
fn wanted(config: &Config) -> Vec<Wanted> {
    let services = [
        (Service::Rtmp, &config.listen),
        (Service::Rtmps, &config.rtmps_listen),
        (Service::Http, &config.http),
        (Service::Https, &config.https),
        (Service::Api, &config.api_listen),
    ];
    let mut wanted: Vec<Wanted> = Vec::new();
    for (service, addrs) in services {
        for addr in addrs {
            let sockets = match *addr {
                ListenAddr::AnyInterface(port) => vec![
                    (SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
                    (SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true),
                ],
                ListenAddr::Addr(addr) => vec![(addr, false)],
            };
            for (addr, ipv6_default) in sockets {
                // Port 0 asks for a fresh port each time: never a duplicate. The
                // same address for two services is a conflict that binding reports.
                let twice = addr.port() != 0
                    && wanted
                        .iter()
                        .any(|w| w.addr == addr && w.service == service);
                if !twice {
                    wanted.push(Wanted {
                        service,
                        addr,
                        ipv6_default,
                    });
                }
            }
        }
    }
    wanted
}

/// Binds every listener `config` asks for; the first that fails is the error
/// (an [`io::Error`] of the cause's kind, carrying a [`BindError`]).
pub(super) fn bind_all(config: &Config) -> io::Result<Vec<Listener>> {
    let bound = bind_each(&wanted(config), listener::ipv6_available(), |addr| {
        listener::listen(addr, config.listen_backlog)
    })?;
    if let Some(first) = bound.left_out.first() {
        let left_out: Vec<String> = bound
            .left_out
            .iter()
            .map(|l| format!("{} ({})", l.wanted.addr, l.wanted.service.name()))
            .collect();
        info!(
            "no IPv6 on this host ({}): not listening on {}",
            first.why,
            left_out.join(", ")
        );
    }
    Ok(bound.listeners)
}

/// What `bind_each` bound, and what it left out.
struct Bound {
    listeners: Vec<Listener>,
    left_out: Vec<LeftOut>,
}

/// An IPv6 default left out, and why.
struct LeftOut {
    why: String,
    wanted: Wanted,
}

/// Binds `wanted` with `listen`, leaving out the IPv6 defaults when `ipv6` is
/// false or their address is not available.
fn bind_each(
    wanted: &[Wanted],
    ipv6: bool,
    listen: impl Fn(SocketAddr) -> io::Result<TcpListener>,
) -> io::Result<Bound> {
    let mut bound = Bound {
        listeners: Vec::new(),
        left_out: Vec::new(),
    };
    for &w in wanted {
        if w.ipv6_default && !ipv6 {
            let why = "IPv6 sockets are not supported".to_owned();
            bound.left_out.push(LeftOut { why, wanted: w });
            continue;
        }
        match listen(w.addr).and_then(|socket| Ok((socket.local_addr()?, socket))) {
            Ok((addr, socket)) => bound.listeners.push(Listener {
                service: w.service,
                addr,
                socket,
            }),
            Err(e) if w.ipv6_default && e.kind() == io::ErrorKind::AddrNotAvailable => {
                let why = e.to_string();
                bound.left_out.push(LeftOut { why, wanted: w });
            }
            Err(source) => {
                let error = BindError {
                    service: w.service,
                    addr: w.addr,
                    source,
                };
                return Err(io::Error::new(error.source.kind(), error));
            }
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &[&str], http: &[&str]) -> Config {
        let mut c = Config::default();
        let settings = crate::config::settings::SETTINGS;
        let find = |name| settings.iter().find(|s| s.name == name).unwrap();
        find("listen").set_texts(&mut c, listen).unwrap();
        if !http.is_empty() {
            find("http").set_texts(&mut c, http).unwrap();
        }
        c
    }

    fn addrs(wanted: &[Wanted]) -> Vec<(Service, String, bool)> {
        wanted
            .iter()
            .map(|w| (w.service, w.addr.to_string(), w.ipv6_default))
            .collect()
    }

    #[test]
    fn a_bare_port_is_both_wildcards_and_addresses_are_bound_once() {
        let c = config(&["1935", "0.0.0.0:1935", "[::1]:1936"], &["8080"]);
        assert_eq!(
            addrs(&wanted(&c)),
            [
                (Service::Rtmp, "0.0.0.0:1935".into(), false),
                (Service::Rtmp, "[::]:1935".into(), true),
                (Service::Rtmp, "[::1]:1936".into(), false),
                (Service::Http, "0.0.0.0:8080".into(), false),
                (Service::Http, "[::]:8080".into(), true),
            ]
        );
        // An explicit [::] is IPv6 alone and required.
        assert_eq!(
            addrs(&wanted(&config(&["[::]:1935"], &[]))),
            [(Service::Rtmp, "[::]:1935".into(), false)]
        );
    }

    /// A host without IPv6: the IPv6 defaults are left out and the server starts;
    /// an IPv6 address asked for by name is an error.
    #[test]
    fn without_ipv6_the_ipv6_defaults_are_left_out_but_named_ones_fail() {
        let c = config(&["127.0.0.1:0", "0"], &["0"]);
        let no_ipv6 = |addr: SocketAddr| match addr {
            SocketAddr::V6(_) => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
            SocketAddr::V4(_) => listener::listen(addr, 16),
        };
        for ipv6 in [false, true] {
            let bound = bind_each(&wanted(&c), ipv6, no_ipv6).unwrap();
            let services: Vec<_> = bound
                .listeners
                .iter()
                .map(|l| (l.service, l.addr.is_ipv4()))
                .collect();
            assert_eq!(
                services,
                [
                    (Service::Rtmp, true),
                    (Service::Rtmp, true),
                    (Service::Http, true)
                ]
            );
            let left_out: Vec<_> = bound.left_out.iter().map(|l| l.wanted.service).collect();
            assert_eq!(left_out, [Service::Rtmp, Service::Http]);
        }

        let named = config(&["[::1]:0"], &[]);
        let err = bind_each(&wanted(&named), false, no_ipv6)
            .err()
            .expect("an IPv6 address given by name must bind");
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert_eq!(
            err.to_string(),
            "cannot listen for RTMP on [::1]:0: address not available (no interface of this \
             machine has ::1; choose another address with -l/--listen)"
        );
    }

    #[test]
    fn a_taken_address_names_the_listener_and_its_flag() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let rtmp = bind_all(&config(&[addr.as_str()], &[]))
            .err()
            .expect("the address is taken");
        assert_eq!(rtmp.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            rtmp.to_string(),
            format!(
                "cannot listen for RTMP on {addr}: address already in use (another rtmpd or \
                 nginx-rtmp running? choose another address with -l/--listen)"
            )
        );
        let http = bind_all(&config(&["127.0.0.1:0"], &[addr.as_str()]))
            .err()
            .expect("the address is taken")
            .to_string();
        assert!(
            http.starts_with(&format!(
                "cannot listen for HTTP on {addr}: address already in use"
            )) && http.ends_with("choose another address with --http)"),
            "{http}"
        );
    }
}
