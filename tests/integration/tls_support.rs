//! TLS for the tests: certificates made here with rcgen (a CA, and leaves for
//! `localhost` and 127.0.0.1 that it signs), servers with an RTMPS listener, and
//! a rustls client that trusts the test CA or reports which certificate the
//! server presented.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rtmpd::config::Config;
use rtmpd::server::Service;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::support::*;

/// A certificate authority for the tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate, PEM: what a client that trusts it loads.
    pub pem: String,
}

/// A server certificate the CA signed, and its key.
pub struct Leaf {
    /// The leaf, then the CA: a chain as certbot's fullchain.pem has it.
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a leaf whose issuer is its own subject looks
        // self-signed to OpenSSL (curl).
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rtmpd test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A new leaf (a new key too) for `localhost` and 127.0.0.1.
    pub fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration that trusts this CA alone.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Writes the CA's certificate to `path` (for `SSL_CERT_FILE`, ffmpeg's
    /// `-ca_file`).
    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

impl Leaf {
    /// Writes `DIR/server.crt` and `DIR/server.key`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        self.write_to(&cert, &key);
        (cert, key)
    }

    /// Replaces `cert` and `key` as certbot does: new files moved over the old.
    pub fn write_to(&self, cert: &Path, key: &Path) {
        for (path, text) in [(cert, &self.chain_pem), (key, &self.key_pem)] {
            let new = path.with_extension("new");
            std::fs::write(&new, text).unwrap();
            std::fs::rename(&new, path).unwrap();
        }
    }
}

/// A test config with an RTMPS listener on 127.0.0.1 and a free port, serving
/// `leaf` (written into `dir`).
pub fn with_rtmps(config: &mut Config, dir: &Path, leaf: &Leaf) {
    let (cert, key) = leaf.write(dir);
    config.rtmps_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
}

impl TestServer {
    /// The first listener of `service`; panics if there is none.
    pub fn listener(&self, service: Service) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("the test server has no {} listener", service.name()))
    }

    /// `rtmps://127.0.0.1:PORT/PATH`.
    pub fn rtmps_url(&self, path: &str) -> String {
        let addr = self.listener(Service::Rtmps);
        format!("rtmps://{addr}/{}", path.trim_start_matches('/'))
    }
}

/// A TLS connection to `addr` with `config`, the handshake done (as `localhost`).
pub fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, std::io::Error> {
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    socket.set_write_timeout(Some(Duration::from_secs(60)))?;
    let conn = ClientConnection::new(config, "localhost".try_into().unwrap())
        .map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    stream.flush()?;
    Ok(stream)
}

/// The leaf certificate (DER) the TLS server at `addr` presents now.
pub fn served_certificate(addr: SocketAddr) -> Vec<u8> {
    // rtmpd's own client configuration that checks no certificate.
    let stream = tls_connect(addr, rtmpd::tls::client::config(false))
        .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    stream.conn.peer_certificates().expect("a certificate")[0].to_vec()
}
