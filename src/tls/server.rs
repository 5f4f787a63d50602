//! The server side of TLS: one rustls configuration for the RTMPS and HTTPS
//! listeners, whose certificate can be replaced while the server runs.
//!
//! rustls asks a resolver for the certificate of each new handshake; ours hands
//! out the one loaded last, so a reload ([`ServerTls::reload`], on SIGHUP, or
//! [`ServerTls::reload_if_changed`] when the files change) serves the renewed
//! certificate to new connections while the established ones keep the keys they
//! agreed on. A file that does not load changes nothing: the old certificate
//! stays, and the log says why.
//!
//! Handshake failures (a port scanner, plain RTMP or HTTP on the TLS port, a
//! client that does not trust our certificate) are counted, and logged once per
//! address per [`FAILURE_LOG_WINDOW`], so a client retrying in a loop costs
//! one line.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;

use super::certs::{self, CertFiles, CertInfo, Certificate};
use crate::net::tls::HandshakeError;
use crate::net::{Socket, TlsTransport};

/// How long after a logged handshake failure further ones from the same address
/// are only counted (and logged at debug).
pub const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(3600);
/// Addresses remembered for that; past this many, the oldest are forgotten.
const FAILURE_LOG_ADDRESSES: usize = 4096;

/// TLS for the listeners: the configuration every handshake starts from, the
/// certificate in use and where it came from.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    current: Arc<CurrentCert>,
    files: Mutex<Watched>,
    failures: AtomicU64,
    failure_log: Mutex<HashMap<IpAddr, Instant>>,
}

/// The certificate new handshakes get.
#[derive(Debug)]
struct CurrentCert(RwLock<Certificate>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().key.clone())
    }
}

/// The files of the certificate in use and what they looked like when read.
struct Watched {
    files: CertFiles,
    /// The files as last read (loaded or refused), so a change is seen once.
    read: Option<Stamp>,
    /// A change seen at the last look, loaded only once it has held still for a
    /// look (a renewal writes the certificate and the key one after the other).
    settling: Option<Stamp>,
}

/// What tells a file's new version from its old: modification time, size and
/// inode of what the path leads to (certbot's `live/` links are replaced by
/// links to new files).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64, u64)>; 2]);

impl Stamp {
    fn of(files: &CertFiles) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let one = |path| {
            let meta = fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len(), meta.ino()))
        };
        Stamp([one(&files.cert), one(&files.key)])
    }
}

impl ServerTls {
    /// Loads the certificate; an error says which file is wrong and how.
    pub fn load(files: CertFiles) -> Result<ServerTls, certs::CertError> {
        let stamp = Stamp::of(&files);
        let cert = certs::load(&files)?;
        info!(
            "TLS certificate from {}: {}",
            files.cert.display(),
            cert.info
        );
        warn_if_expired(&cert.info);
        let current = Arc::new(CurrentCert(RwLock::new(cert)));
        let config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| certs::CertError::Key {
                path: files.key.clone(),
                error,
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        let mut config = config;
        // No TLS 1.3 session tickets: librtmp (rtmpdump, GStreamer's rtmpsrc)
        // with GnuTLS fails on the ticket that arrives after the handshake and
        // closes the connection; without them it plays. A streaming client
        // reconnects seldom, so resumption saves little (TLS 1.2's session IDs
        // still resume).
        config.send_tls13_tickets = 0;
        Ok(ServerTls {
            config: Arc::new(config),
            current,
            files: Mutex::new(Watched {
                files,
                read: Some(stamp),
                settling: None,
            }),
            failures: AtomicU64::new(0),
            failure_log: Mutex::new(HashMap::new()),
        })
    }

    /// Runs the server's side of a handshake on an accepted socket, within
    /// `timeout`.
    pub fn accept(
        &self,
        socket: Socket,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<TlsTransport, HandshakeError> {
        let conn =
            ServerConnection::new(self.config.clone()).map_err(|error| HandshakeError::Tls {
                error,
                first_byte: None,
            })?;
        let mut transport = TlsTransport::new(socket, peer, conn);
        transport.handshake(timeout)?;
        Ok(transport)
    }

    /// The certificate new connections get.
    pub fn certificate(&self) -> CertInfo {
        self.current.0.read().info.clone()
    }

    /// The files it came from.
    pub fn files(&self) -> CertFiles {
        self.files.lock().files.clone()
    }

    /// Reads the certificate again, from `files` if the configuration now names
    /// others; `cause` starts the log line. True if it loaded; otherwise the
    /// certificate in use stays and the log says why.
    pub fn reload(&self, cause: &str, files: Option<&CertFiles>) -> bool {
        let mut watched = self.files.lock();
        if let Some(files) = files {
            watched.files = files.clone();
        }
        self.load_watched(&mut watched, cause)
    }

    /// Reloads if a file changed since it was last read and has since held still
    /// for one look; `None` if nothing changed (or the change is still settling).
    pub fn reload_if_changed(&self) -> Option<bool> {
        let mut watched = self.files.lock();
        let now = Stamp::of(&watched.files);
        if watched.read.as_ref() == Some(&now) {
            watched.settling = None;
            return None;
        }
        if watched.settling.as_ref() != Some(&now) {
            watched.settling = Some(now);
            return None;
        }
        Some(self.load_watched(&mut watched, "certificate files changed"))
    }

    fn load_watched(&self, watched: &mut Watched, cause: &str) -> bool {
        let files = watched.files.clone();
        watched.read = Some(Stamp::of(&files));
        watched.settling = None;
        match certs::load(&files) {
            Ok(cert) => {
                let was = self.certificate();
                if cert.info == was {
                    info!(
                        "{cause}: TLS certificate from {} unchanged ({})",
                        files.cert.display(),
                        cert.info.fingerprint
                    );
                } else {
                    info!(
                        "{cause}: TLS certificate reloaded from {}: {} (new connections; \
                         open ones keep theirs)",
                        files.cert.display(),
                        cert.info
                    );
                }
                warn_if_expired(&cert.info);
                *self.current.0.write() = cert;
                true
            }
            Err(e) => {
                error!(
                    "{cause}: TLS certificate not reloaded, the one in use stays ({}): {e}",
                    self.certificate()
                );
                false
            }
        }
    }

    /// Counts a failed handshake and logs it, once per address per
    /// [`FAILURE_LOG_WINDOW`].
    pub fn failed(&self, peer: SocketAddr, error: &HandshakeError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.first_failure_in_window(peer.ip()) {
            warn!(
                "{peer}: {error} (further TLS handshake failures from {} within {} min are \
                 only counted: rtmpd_tls_handshake_failures_total)",
                peer.ip(),
                FAILURE_LOG_WINDOW.as_secs() / 60
            );
        } else {
            debug!("{peer}: {error}");
        }
    }

    fn first_failure_in_window(&self, ip: IpAddr) -> bool {
        let mut log = self.failure_log.lock();
        let now = Instant::now();
        if log
            .get(&ip)
            .is_some_and(|at| now.duration_since(*at) < FAILURE_LOG_WINDOW)
        {
            return false;
        }
        if log.len() >= FAILURE_LOG_ADDRESSES {
            log.retain(|_, at| now.duration_since(*at) < FAILURE_LOG_WINDOW);
            if log.len() >= FAILURE_LOG_ADDRESSES {
                // A flood from many addresses: start over rather than grow.
                log.clear();
            }
        }
        log.insert(ip, now);
        true
    }

    /// Handshakes that failed since the server started.
    pub fn handshake_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

fn warn_if_expired(info: &CertInfo) {
    if info.not_after.is_some_and(|end| end < SystemTime::now()) {
        warn!(
            "the TLS certificate has expired ({}): clients that verify will refuse it",
            info
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Transport;
    use crate::tls::testing::{self_signed, TempDir};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// A rustls client that trusts `ca_pem` and reports the certificate it got.
    fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Accepts one connection on a thread and runs `serve` on its TLS transport.
    fn serve_one(
        tls: Arc<ServerTls>,
        serve: impl FnOnce(Result<TlsTransport, HandshakeError>) + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = thread::spawn(move || {
            let (socket, peer) = listener.accept().unwrap();
            let socket = Socket::new(Arc::new(socket), Duration::from_secs(5)).unwrap();
            serve(tls.accept(socket, peer, Duration::from_secs(2)));
        });
        (addr, thread)
    }

    fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let name = "localhost".try_into().unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        rustls::StreamOwned::new(conn, socket)
    }

    #[test]
    fn echoes_over_tls_both_ways_and_ends_with_close_notify() {
        let dir = TempDir::new("tls-echo");
        // A CA's leaf: the client verifies the chain the server sends.
        let ca = crate::tls::testing::ca();
        let cert = ca.leaf(&["localhost"]);
        let tls = Arc::new(ServerTls::load(cert.write(&dir, "a")).unwrap());
        let (addr, server) = serve_one(tls, |transport| {
            let mut t = transport.unwrap();
            let mut buf = [0u8; 64];
            let n = t.read_within(&mut buf, Duration::from_secs(5)).unwrap();
            assert_eq!(&buf[..n], b"ping");
            // Many small slices and a large one: one stream of records.
            let big = vec![0x5a; 300_000];
            let small: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i; 3]).collect();
            let mut parts: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
            parts.push(&big);
            t.write_all(&mut parts.into_iter()).unwrap();
            t.linger(Duration::from_secs(5), usize::MAX);
            t.shutdown();
        });
        let mut client = connect(addr, client_config(&ca.cert_pem));
        client.write_all(b"ping").unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        let mut expected: Vec<u8> = (0..200u8).flat_map(|i| [i; 3]).collect();
        expected.extend(vec![0x5a; 300_000]);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes differ");
        drop(client);
        server.join().unwrap();
    }

    /// An RSA key (signing with RSA-PSS in TLS 1.3) and an EC key, each in the
    /// form openssl writes (PKCS#1, SEC1): each serves a handshake a verifying
    /// client accepts.
    #[test]
    fn rsa_and_ec_certificates_serve_handshakes() {
        let dir = TempDir::new("tls-keys");
        for (label, pem) in [
            ("rsa", crate::tls::testing::RSA_PKCS1),
            ("ec", crate::tls::testing::EC_SEC1),
        ] {
            let cert = crate::tls::testing::TestCert::from_key_pem(pem);
            let tls = Arc::new(ServerTls::load(cert.write(&dir, label)).unwrap());
            let (addr, server) = serve_one(tls, move |transport| {
                let mut t = transport.unwrap_or_else(|e| panic!("{label}: {e}"));
                t.write_all(&mut [&b"ok"[..]].into_iter()).unwrap();
                t.linger(Duration::from_secs(5), usize::MAX);
            });
            let mut client = connect(addr, client_config(&cert.cert_pem));
            let mut got = [0u8; 2];
            client
                .read_exact(&mut got)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(&got, b"ok", "{label}");
            drop(client);
            server.join().unwrap();
        }
    }

    #[test]
    fn a_look_for_input_does_not_wait() {
        let dir = TempDir::new("tls-try");
        let cert = self_signed(&["localhost"]);
        let tls = Arc::new(ServerTls::load(cert.write(&dir, "a")).unwrap());
        let (looked, wait_look) = std::sync::mpsc::channel::<()>();
        let (timed_out, wait_timeout) = std::sync::mpsc::channel::<()>();
        let (addr, server) = serve_one(tls, move |transport| {
            let mut t = transport.unwrap();
            let mut buf = [0u8; 16];
            let err = t.try_read(&mut buf).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
            looked.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let n = loop {
                match t.try_read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "nothing arrived");
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(&buf[..n], b"hello");
            let started = Instant::now();
            let err = t
                .read_within(&mut buf, Duration::from_millis(50))
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
            assert!(started.elapsed() >= Duration::from_millis(40));
            timed_out.send(()).unwrap();
            // The client closed without close_notify: an abrupt end, a disconnect.
            let err = t.read_within(&mut buf, Duration::from_secs(5)).unwrap_err();
            assert!(crate::net::is_disconnect(&err), "{err}");
        });
        let mut client = connect(addr, client_config(&cert.cert_pem));
        client.flush().unwrap();
        // Completes the handshake from the client's side.
        while client.conn.is_handshaking() {
            client.conn.complete_io(&mut client.sock).unwrap();
        }
        wait_look.recv().unwrap();
        client.write_all(b"hello").unwrap();
        wait_timeout.recv().unwrap();
        client.sock.shutdown(std::net::Shutdown::Both).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn handshake_failures_say_what_came_instead() {
        let dir = TempDir::new("tls-fail");
        let cert = self_signed(&["localhost"]);
        let tls = Arc::new(ServerTls::load(cert.write(&dir, "a")).unwrap());
        let cases: [(&[u8], &str); 3] = [
            (&[3; 1537], "plain RTMP on a TLS port"),
            (b"GET / HTTP/1.1\r\n\r\n", "plain HTTP on a TLS port"),
            (&[0x16, 3, 1, 0, 5, 9, 9, 9, 9, 9], "TLS handshake failed"),
        ];
        for (bytes, expected) in cases {
            let (addr, server) = serve_one(tls.clone(), move |transport| {
                let e = transport.unwrap_err().to_string();
                assert!(e.contains(expected), "{e}");
            });
            let mut socket = TcpStream::connect(addr).unwrap();
            let _ = socket.write_all(bytes);
            server.join().unwrap();
        }
        // Silent, and closed at once.
        let (addr, server) = serve_one(tls.clone(), |transport| {
            let e = transport.unwrap_err().to_string();
            assert!(e.contains("not complete within 2.0 s (0 bytes"), "{e}");
        });
        let started = Instant::now();
        let _silent = TcpStream::connect(addr).unwrap();
        server.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        let (addr, server) = serve_one(tls.clone(), |transport| {
            let e = transport.unwrap_err().to_string();
            assert_eq!(e, "closed before the TLS handshake began");
        });
        drop(TcpStream::connect(addr).unwrap());
        server.join().unwrap();
        // A client that does not trust the certificate gives up: the server sees
        // the client's alert.
        let other = self_signed(&["localhost"]);
        let (addr, server) = serve_one(tls.clone(), |transport| {
            let e = transport.unwrap_err().to_string();
            assert!(e.contains("UnknownCA") || e.contains("alert"), "{e}");
        });
        let mut client = connect(addr, client_config(&other.cert_pem));
        assert!(client.write_all(b"x").and_then(|_| client.flush()).is_err());
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn reload_serves_the_new_certificate_and_a_bad_file_keeps_the_old() {
        let dir = TempDir::new("tls-reload");
        let a = self_signed(&["localhost"]);
        let b = self_signed(&["localhost"]);
        let files = a.write(&dir, "live");
        let tls = Arc::new(ServerTls::load(files.clone()).unwrap());
        assert_eq!(tls.certificate().fingerprint, a.fingerprint());
        assert_eq!(tls.reload_if_changed(), None, "nothing changed");

        // An established connection keeps working across the reload.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (addr, server) = serve_one(tls.clone(), move |transport| {
            let mut t = transport.unwrap();
            rx.recv().unwrap();
            t.write_bytes(b"still here").unwrap();
            t.linger(Duration::from_secs(5), usize::MAX);
        });
        let mut old = connect(addr, client_config(&a.cert_pem));
        old.write_all(b"x").unwrap();
        old.flush().unwrap();

        // A half-written renewal (the new certificate, the old key) is refused
        // and the old certificate stays.
        std::fs::write(&files.cert, &b.cert_pem).unwrap();
        assert!(!tls.reload("test", None));
        assert_eq!(tls.certificate().fingerprint, a.fingerprint());
        std::fs::write(&files.key, &b.key_pem).unwrap();
        assert!(tls.reload("test", None));
        assert_eq!(tls.certificate().fingerprint, b.fingerprint());

        tx.send(()).unwrap();
        let mut got = [0u8; 10];
        old.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"still here");
        drop(old);
        server.join().unwrap();

        // A new connection gets the new certificate (and trusts only it).
        let (addr, server) = serve_one(tls.clone(), |transport| {
            transport.unwrap();
        });
        let mut new = connect(addr, client_config(&b.cert_pem));
        new.write_all(b"y").unwrap();
        new.flush().unwrap();
        let seen = new.conn.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(seen, b.der);
        server.join().unwrap();
    }

    #[test]
    fn a_changed_file_is_loaded_once_it_holds_still() {
        let dir = TempDir::new("tls-watch");
        let a = self_signed(&["localhost"]);
        let b = self_signed(&["localhost"]);
        let files = a.write(&dir, "live");
        let tls = ServerTls::load(files.clone()).unwrap();
        // Replaced as certbot does: new files, the path moved over.
        let renewed = b.write(&dir, "renewed");
        std::fs::rename(&renewed.cert, &files.cert).unwrap();
        std::fs::rename(&renewed.key, &files.key).unwrap();
        assert_eq!(tls.reload_if_changed(), None, "settling");
        assert_eq!(tls.reload_if_changed(), Some(true));
        assert_eq!(tls.certificate().fingerprint, b.fingerprint());
        assert_eq!(tls.reload_if_changed(), None, "loaded once");
        // A broken file is tried once, not at every look.
        std::fs::write(&files.key, "garbage").unwrap();
        assert_eq!(tls.reload_if_changed(), None);
        assert_eq!(tls.reload_if_changed(), Some(false));
        assert_eq!(tls.reload_if_changed(), None);
        assert_eq!(tls.certificate().fingerprint, b.fingerprint());
    }

    #[test]
    fn failures_are_logged_once_per_address_and_all_counted() {
        let dir = TempDir::new("tls-count");
        let tls = ServerTls::load(self_signed(&["localhost"]).write(&dir, "a")).unwrap();
        let e = HandshakeError::Closed { received: 3 };
        let ip = |last: u8| IpAddr::from([10, 0, 0, last]);
        assert!(tls.first_failure_in_window(ip(1)));
        assert!(!tls.first_failure_in_window(ip(1)));
        assert!(tls.first_failure_in_window(ip(2)));
        tls.failed(SocketAddr::new(ip(3), 1), &e);
        tls.failed(SocketAddr::new(ip(3), 2), &e);
        assert_eq!(tls.handshake_failures(), 2);
        for i in 0..FAILURE_LOG_ADDRESSES as u32 + 10 {
            tls.first_failure_in_window(IpAddr::from(i.to_be_bytes()));
        }
        assert!(tls.failure_log.lock().len() <= FAILURE_LOG_ADDRESSES);
    }
}
