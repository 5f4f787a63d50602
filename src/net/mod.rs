//! Sockets, below every protocol: the transport a connection reads and writes
//! through (`transport`: plain TCP, with writes that give up once the peer stalls;
//! `tls`: rustls over the same socket), the options every accepted socket gets
//! (`keepalive`), listening sockets and the peer addresses they hand out
//! (`listener`), and what socket errors mean for every side that reads or writes
//! one (server connections, HTTP players, the client): a timeout is our own
//! deadline passing, a disconnect is the peer gone, anything else is worth
//! reporting.

pub mod keepalive;
pub mod listener;
pub mod tls;
pub mod transport;

use std::io;

pub use tls::TlsTransport;
pub use transport::{Socket, TcpTransport, Transport};

/// A read or write that hit the socket's timeout. Linux reports `WouldBlock` for
/// `SO_RCVTIMEO`/`SO_SNDTIMEO`, other systems `TimedOut`.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer closed or reset the connection: an ordinary ending, not an error.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(is_timeout(&io::ErrorKind::WouldBlock.into()));
        assert!(is_timeout(&io::ErrorKind::TimedOut.into()));
        assert!(!is_timeout(&io::ErrorKind::BrokenPipe.into()));
        assert!(is_disconnect(&io::ErrorKind::ConnectionReset.into()));
        assert!(!is_disconnect(&io::ErrorKind::TimedOut.into()));
    }
}
