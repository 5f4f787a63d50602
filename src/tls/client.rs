//! The client side of TLS: rtmps:// upstreams (push destinations, origins) and
//! https:// hooks. A server's certificate is verified against the system's root
//! certificates (`/etc/ssl/certs`, so a CA the operator added counts) or, on a
//! host that has none (a minimal container), Mozilla's list built into the
//! binary; the name checked, and sent as SNI, is the URL's host.
//! `tls_verify = false` skips the certificate check for an upstream with a
//! self-signed certificate; the handshake's signatures are still checked, so
//! the connection is encrypted, just not authenticated.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use log::{info, warn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::net::tls::HandshakeError;
use crate::net::{Socket, TlsTransport};

/// The client configuration: verifying (the default), or not.
pub fn config(verify: bool) -> Arc<ClientConfig> {
    static VERIFYING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static TRUSTING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let builder = || {
        ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
    };
    if verify {
        VERIFYING
            .get_or_init(|| {
                Arc::new(
                    builder()
                        .with_root_certificates(roots().clone())
                        .with_no_client_auth(),
                )
            })
            .clone()
    } else {
        TRUSTING
            .get_or_init(|| {
                Arc::new(
                    builder()
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(NoCertificateCheck))
                        .with_no_client_auth(),
                )
            })
            .clone()
    }
}

/// Why a TLS connection to a server could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The URL's host is not a name or address TLS can check.
    BadName(String),
    Handshake(HandshakeError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::BadName(host) => {
                write!(f, "'{host}' is not a host name TLS can verify")
            }
            ConnectError::Handshake(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Runs the client's side of a handshake with `host` (the name verified and sent
/// as SNI) over a connected socket, within `timeout`.
pub fn connect(
    socket: Socket,
    peer: SocketAddr,
    host: &str,
    verify: bool,
    timeout: Duration,
) -> Result<TlsTransport, ConnectError> {
    // An IPv6 literal comes from a URL in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|_| ConnectError::BadName(host.to_owned()))?;
    let conn = ClientConnection::new(config(verify), name).map_err(|error| {
        ConnectError::Handshake(HandshakeError::Tls {
            error,
            first_byte: None,
        })
    })?;
    let mut transport = TlsTransport::new(socket, peer, conn);
    transport
        .handshake(timeout)
        .map_err(ConnectError::Handshake)?;
    Ok(transport)
}

/// The roots certificates are checked against: the system's, else the built-in
/// list. Read once, at the first use.
fn roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in found.errors.iter().take(3) {
            warn!("reading the system's root certificates: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added > 0 {
            info!("TLS clients verify servers against the system's {added} root certificates");
        } else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            info!(
                "no root certificates on this system (install ca-certificates): TLS clients \
                 verify servers against the {} built into rtmpd",
                roots.len()
            );
        }
        Arc::new(roots)
    })
}

/// `tls_verify = false`: any certificate is accepted; the handshake signatures
/// are still verified, with the provider's algorithms.
#[derive(Debug)]
struct NoCertificateCheck;

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Transport;
    use crate::tls::server::ServerTls;
    use crate::tls::testing::{self_signed, TempDir};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// A server with `cert` that answers one connection with "hi" (if its
    /// handshake completes), and a client socket connected to it.
    fn server(dir: &TempDir, cert: &crate::tls::testing::TestCert) -> (Socket, SocketAddr) {
        let tls = ServerTls::load(cert.write(dir, "server")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (socket, peer) = listener.accept().unwrap();
            let socket = Socket::new(Arc::new(socket), Duration::from_secs(5)).unwrap();
            if let Ok(mut t) = tls.accept(socket, peer, Duration::from_secs(5)) {
                let _ = t.write_bytes(b"hi");
                t.linger(Duration::from_secs(5), 1 << 20);
            }
        });
        let socket = TcpStream::connect(addr).unwrap();
        (
            Socket::new(Arc::new(socket), Duration::from_secs(5)).unwrap(),
            addr,
        )
    }

    fn read_hi(mut t: TlsTransport) {
        let mut buf = [0u8; 2];
        let n = t.read_within(&mut buf, Duration::from_secs(5)).unwrap();
        assert_eq!(&buf[..n], b"hi");
    }

    #[test]
    fn verification_checks_the_chain_and_the_name_and_can_be_turned_off() {
        let dir = TempDir::new("tls-client");
        let self_signed = self_signed(&["localhost"]);

        // Verifying against the system's roots: a self-signed certificate fails.
        let (socket, addr) = server(&dir, &self_signed);
        let e = connect(socket, addr, "localhost", true, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");

        // tls_verify = false: accepted.
        let (socket, addr) = server(&dir, &self_signed);
        read_hi(connect(socket, addr, "localhost", false, Duration::from_secs(5)).unwrap());

        // Not a name TLS can verify.
        let (socket, addr) = server(&dir, &self_signed);
        let e = connect(socket, addr, "bad name!", true, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ConnectError::BadName(_)), "{e}");
    }
}
