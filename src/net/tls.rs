//! TLS behind the [`Transport`] seam: a rustls connection (server or client side)
//! over a [`Socket`]. rustls is sans-IO, so the socket work stays ours: reads pull
//! records off the socket (`read_tls`, within the read's own timeout or without
//! waiting) and decrypt them (`process_new_packets`); a write encrypts its slices
//! into records in one go (rustls splits and joins them at record boundaries, so
//! many small slices do not become many small records) and flushes them with
//! `write_tls` under the socket's stall limit. The code above sees plaintext and
//! the same errors as over plain TCP; a TLS alert or a bad record is an
//! `InvalidData` error carrying the rustls error.
//!
//! The handshake runs first, on its own, within a deadline ([`TlsTransport::handshake`]):
//! the server's accept and the client's connect both finish it before the
//! protocol begins, so its failures are told apart from the protocol's
//! ([`HandshakeError`]).

use std::fmt;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::transport::{in_groups, Socket, Transport};

/// How much encrypted output rustls may hold before it is written: a write larger
/// than this is encrypted and sent in pieces. Each piece is a fresh allocation
/// that lives until the socket takes it, and hundreds of players write at the
/// same moment (a keyframe, a tick group): rustls's default (64 KiB) let their
/// in-flight records swell the heap by that much each.
const SEND_BUFFER_LIMIT: usize = 32 * 1024;

/// One TLS connection over one socket.
pub struct TlsTransport {
    socket: Socket,
    peer: SocketAddr,
    conn: rustls::Connection,
    /// Socket bytes read so far, and the first of them: a handshake that fails
    /// says how far the peer got and what it sent instead of TLS.
    received: u64,
    first_byte: Option<u8>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("peer", &self.peer)
            .field("handshaking", &self.conn.is_handshaking())
            .field("received", &self.received)
            .finish()
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake was not complete within the allowed time.
    TimedOut {
        after: Duration,
        received: u64,
    },
    /// The peer closed the connection before the handshake was complete.
    Closed {
        received: u64,
    },
    /// The peer's bytes were not an acceptable TLS handshake. `first_byte` is the
    /// first byte the peer sent: another protocol is told by it.
    Tls {
        error: rustls::Error,
        first_byte: Option<u8>,
    },
    Io(io::Error),
}

impl HandshakeError {
    /// What the peer probably spoke instead of TLS, if its first byte says.
    fn guess(first_byte: Option<u8>) -> Option<&'static str> {
        match first_byte? {
            // C0: RTMP's version byte.
            3 => Some("plain RTMP on a TLS port: rtmp:// where rtmps:// was meant?"),
            b'G' | b'H' | b'P' | b'O' | b'D' => {
                Some("plain HTTP on a TLS port: http:// where https:// was meant?")
            }
            _ => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::TimedOut { after, received } => write!(
                f,
                "TLS handshake not complete within {:.1} s ({received} bytes received)",
                after.as_secs_f64()
            ),
            HandshakeError::Closed { received: 0 } => {
                f.write_str("closed before the TLS handshake began")
            }
            HandshakeError::Closed { received } => write!(
                f,
                "closed during the TLS handshake ({received} bytes received)"
            ),
            HandshakeError::Tls { error, first_byte } => {
                write!(f, "TLS handshake failed: {error}")?;
                match HandshakeError::guess(*first_byte) {
                    Some(guess) => write!(f, " ({guess})"),
                    None => Ok(()),
                }
            }
            HandshakeError::Io(e) => write!(f, "TLS handshake: socket error: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Tls { error, .. } => Some(error),
            HandshakeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads the socket for rustls: within a timeout, or (`None`) without waiting;
/// keeps the first byte the peer ever sent.
struct SocketReader<'a> {
    socket: &'a mut Socket,
    timeout: Option<Duration>,
    first_byte: &'a mut Option<u8>,
}

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.timeout {
            Some(timeout) => self.socket.read_within(buf, timeout),
            None => self.socket.try_read(buf),
        }?;
        if n > 0 && self.first_byte.is_none() {
            *self.first_byte = Some(buf[0]);
        }
        Ok(n)
    }
}

impl TlsTransport {
    /// TLS over `socket` to `peer`; nothing is sent or read until the handshake.
    pub fn new(socket: Socket, peer: SocketAddr, conn: impl Into<rustls::Connection>) -> Self {
        let mut conn = conn.into();
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsTransport {
            socket,
            peer,
            conn,
            received: 0,
            first_byte: None,
        }
    }

    /// The rustls connection (protocol version, cipher suite, the peer's
    /// certificates, SNI).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// Runs the handshake to its end within `timeout`.
    pub fn handshake(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        let deadline = Instant::now() + timeout;
        while self.conn.is_handshaking() {
            self.flush().map_err(HandshakeError::Io)?;
            if !self.conn.wants_read() {
                // Only after the peer's end: nothing more will come.
                return Err(HandshakeError::Closed {
                    received: self.received,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeError::TimedOut {
                    after: timeout,
                    received: self.received,
                });
            }
            match self.pull(Some(left)) {
                Ok(0) => {
                    return Err(HandshakeError::Closed {
                        received: self.received,
                    })
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(match tls_error(e) {
                        Ok(error) => HandshakeError::Tls {
                            error,
                            first_byte: self.first_byte,
                        },
                        Err(e) => HandshakeError::Io(e),
                    });
                }
                Err(e) if super::is_disconnect(&e) => {
                    return Err(HandshakeError::Closed {
                        received: self.received,
                    })
                }
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        // The last flight (a client's Finished, a server's session tickets).
        self.flush().map_err(HandshakeError::Io)
    }

    /// Reads what the socket has (within `timeout`, or without waiting) into
    /// rustls and processes it; `Ok(0)` at the end of the peer's bytes.
    fn pull(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let n = self.conn.read_tls(&mut SocketReader {
            socket: &mut self.socket,
            timeout,
            first_byte: &mut self.first_byte,
        })?;
        self.received += n as u64;
        if let Err(error) = self.conn.process_new_packets() {
            // rustls queued an alert that tells the peer why: one try, no wait.
            let conn = &mut self.conn;
            let _ = self
                .socket
                .write_now(|socket| conn.wants_write().then(|| conn.write_tls(socket)));
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(n)
    }

    /// Plaintext rustls already holds: `None` if it has none.
    fn read_plaintext(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        match self.conn.reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            // Ok(0): the peer's close_notify; UnexpectedEof: closed without one.
            result => Some(result),
        }
    }

    /// Sends every record rustls holds, under the stall limit.
    fn flush(&mut self) -> io::Result<()> {
        let conn = &mut self.conn;
        self.socket
            .write_until_done(|socket| conn.wants_write().then(|| conn.write_tls(socket)))
    }
}

/// The rustls error inside an `InvalidData` error made by [`TlsTransport::pull`].
fn tls_error(e: io::Error) -> Result<rustls::Error, io::Error> {
    let kind = e.kind();
    match e
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(error)) => Ok(*error),
        Some(Err(other)) => Err(io::Error::new(kind, other)),
        None => Err(kind.into()),
    }
}

impl Transport for TlsTransport {
    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let started = Instant::now();
        let mut wait = timeout;
        loop {
            if let Some(result) = self.read_plaintext(buf) {
                return result;
            }
            // Whatever rustls has to say first (a key update's answer).
            self.flush()?;
            // A record may arrive in pieces: the rest within what is left.
            self.pull(Some(wait))?;
            wait = timeout.saturating_sub(started.elapsed());
            if wait.is_zero() {
                if let Some(result) = self.read_plaintext(buf) {
                    return result;
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(result) = self.read_plaintext(buf) {
                return result;
            }
            self.pull(None)?;
        }
    }

    fn write_all(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()> {
        in_groups(parts, |mut slices| {
            while !slices.is_empty() {
                // rustls encrypts what fits in its record buffer (SEND_BUFFER_LIMIT), in
                // records that span slices.
                let taken = io::Write::write_vectored(&mut self.conn.writer(), slices)?;
                IoSlice::advance_slices(&mut slices, taken);
                if !slices.is_empty() {
                    if taken == 0 && !self.conn.wants_write() {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the TLS connection takes no more data",
                        ));
                    }
                    self.flush()?;
                }
            }
            Ok(())
        })?;
        self.flush()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        self.socket.shutdown_write()
    }

    fn shutdown(&mut self) {
        self.socket.shutdown();
    }

    fn set_stall(&mut self, stall: Duration) -> io::Result<()> {
        self.socket.set_stall(stall)
    }
}
