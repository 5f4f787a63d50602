//! Sockets, below every protocol: what socket errors mean, for every side that
//! reads or writes one (server connections, HTTP players, the client): a timeout is
//! our own deadline passing, a disconnect is the peer gone, anything else is worth
//! reporting; and writes that give up once the peer stalls (`deadline`).

pub(crate) mod deadline;

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

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

/// Ends our side of a connection whose last bytes have been written, then reads
/// and discards until the client closes, for at most `time` and `max_bytes`.
/// Closing a socket with unread input makes the kernel reset the connection,
/// which can destroy what we wrote last (an error about that very input, the end
/// of a stream) before the client reads it.
pub fn linger(socket: &TcpStream, time: Duration, max_bytes: usize) {
    if socket.shutdown(Shutdown::Write).is_err() || socket.set_nonblocking(false).is_err() {
        return;
    }
    let deadline = Instant::now() + time;
    let mut buf = [0u8; 4096];
    let mut left = max_bytes;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match (&*socket).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
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
