//! TLS for every side of the server, from rustls with the ring crypto provider:
//! the server's certificate from its PEM files (`certs`), the configuration the
//! RTMPS and HTTPS listeners share, with certificate reload and handshake
//! failure accounting (`server`), and the client configuration for rtmps://
//! upstreams and https:// hooks (`client`). The bytes themselves go through
//! `crate::net::tls`, behind the same transport seam as plain TCP.

pub mod certs;
pub mod client;
pub mod server;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use certs::{CertError, CertFiles, CertInfo};
pub use server::ServerTls;

/// The crypto every TLS configuration of ours uses: ring's.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
