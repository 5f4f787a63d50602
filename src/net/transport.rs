//! The seam between the code that speaks a protocol and the bytes on the wire. A
//! connection's thread reads and writes through a [`Transport`]: reads that wait at
//! most so long, reads that only look, writes of many slices at once that give up
//! once the peer stops taking bytes, and the end of the connection. Plain TCP is
//! [`TcpTransport`]; TLS fits behind the same trait (rustls is sans-IO: its
//! `read_tls`/`process_new_packets` run inside the reads, its records are built from
//! the slices inside `write_all` and flushed with `write_tls` under the same stall
//! limit, its buffers live in the transport), so the connection code and the player
//! engine above never change with it.
//!
//! A socket send timeout applies per `write` call and restarts after any partial
//! progress, so on its own it lets a stuck peer hold a writer for up to twice as long
//! as intended, and a trickling one forever. `TcpTransport` sets the send timeout to
//! a slice of the allowed stall and counts the slices.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's byte stream, whatever carries it.
///
/// Errors follow `std::io`, with two kinds that mean something here: a read that
/// found nothing in time fails with `WouldBlock`, and a write that the peer took no
/// byte of for the stall limit fails with `TimedOut`. Any other error (a reset, a
/// keepalive that found the peer gone, a TLS alert) ends the connection.
pub trait Transport: Send {
    /// Who is at the other end.
    fn peer(&self) -> SocketAddr;

    /// Waits at most `timeout` for bytes and reads what has come; `Ok(0)` once the
    /// peer has closed its side.
    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// Reads what has arrived without waiting; `WouldBlock` if nothing has.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes every slice, in order, in as few system calls as it can; fails with
    /// `TimedOut` once the peer has accepted no byte for the transport's stall limit.
    fn write_all(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()>;

    /// Ends our side after what was written (TLS: close_notify first); reads
    /// still work.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Closes both directions now.
    fn shutdown(&mut self);

    /// Changes how long the peer may take no bytes before a write gives up (a
    /// client whose caller changes its timeout). Transports without a socket
    /// ignore it.
    fn set_stall(&mut self, _stall: Duration) -> io::Result<()> {
        Ok(())
    }

    /// Writes one buffer (see [`Transport::write_all`]).
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(&mut std::iter::once(bytes))
    }

    /// Ends our side of a connection whose last bytes have been written, then reads
    /// and discards until the peer closes, for at most `time` and `max_bytes`.
    /// Closing a socket with unread input makes the kernel reset the connection,
    /// which can destroy what we wrote last (an error about that very input, the
    /// end of a stream) before the peer reads it.
    fn linger(&mut self, time: Duration, max_bytes: usize) {
        if self.shutdown_write().is_err() {
            return;
        }
        let deadline = Instant::now() + time;
        let mut buf = [0u8; 4096];
        let mut left = max_bytes;
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return;
            }
            match self.read_within(&mut buf, wait) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// The socket send timeout for a peer that may stall for `stall`.
fn send_timeout(stall: Duration) -> Duration {
    (stall / 8).max(Duration::from_millis(10))
}

/// Slices per `writev`. Enough for a merge window of frames (two per frame);
/// kept on the stack, so a write allocates nothing.
const SLICES_PER_WRITE: usize = 32;

/// Hands the non-empty `parts` to `write` in order, [`SLICES_PER_WRITE`] at a
/// time: a transport's `write_all` over its own way of writing a group.
pub(crate) fn in_groups(
    parts: &mut dyn Iterator<Item = &[u8]>,
    mut write: impl FnMut(&mut [IoSlice]) -> io::Result<()>,
) -> io::Result<()> {
    let mut parts = parts.filter(|p| !p.is_empty()).peekable();
    while parts.peek().is_some() {
        let mut group = [IoSlice::new(&[]); SLICES_PER_WRITE];
        let mut n = 0;
        for (slot, part) in group.iter_mut().zip(parts.by_ref()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        write(&mut group[..n])?;
    }
    Ok(())
}

/// A connected socket as a transport drives it: the `Arc<TcpStream>` the
/// connection table shares (so a stop or an eviction can shut it down from another
/// thread), its blocking mode and read timeout as last set, and the stall limit of
/// writes. The blocking mode follows use: non-blocking while the connection only
/// looks for input (a player), blocking with a timeout while it waits for it; each
/// switch is one system call, made only when the mode changes. Plain TCP and TLS
/// both sit on one.
#[derive(Debug)]
pub struct Socket {
    socket: Arc<TcpStream>,
    stall: Duration,
    nonblocking: bool,
    /// The socket's read timeout as last set.
    read_timeout: Option<Duration>,
}

impl Socket {
    /// Takes over a connected socket whose peer may take nothing for `stall`
    /// before a write gives up.
    pub fn new(socket: Arc<TcpStream>, stall: Duration) -> io::Result<Socket> {
        socket.set_write_timeout(Some(send_timeout(stall)))?;
        Ok(Socket {
            socket,
            stall,
            nonblocking: false,
            read_timeout: None,
        })
    }

    /// See [`Transport::set_stall`].
    pub fn set_stall(&mut self, stall: Duration) -> io::Result<()> {
        self.socket.set_write_timeout(Some(send_timeout(stall)))?;
        self.stall = stall;
        Ok(())
    }

    /// The socket's own address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.socket.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
    }

    /// Waits at most `timeout` for bytes (`WouldBlock` if none came).
    pub fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.set_nonblocking(false)?;
        // A zero timeout means "forever" to the socket.
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        // Only when it changes: this runs once per read on the publish path.
        if self.read_timeout != timeout {
            self.socket.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        (&*self.socket).read(buf)
    }

    /// Reads what has arrived without waiting; `WouldBlock` if nothing has.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.set_nonblocking(true)?;
        (&*self.socket).read(buf)
    }

    /// Runs `write` until it returns `None` (nothing left to write), giving up with
    /// `TimedOut` once the peer has taken no byte for the stall limit. In
    /// non-blocking mode, what the kernel takes at once leaves without a wait;
    /// should the peer's window fill, the socket blocks for the rest (its send
    /// timeout counting the stall) and stays blocking until the next look for
    /// input makes it non-blocking again.
    pub fn write_until_done(
        &mut self,
        mut write: impl FnMut(&mut &TcpStream) -> Option<io::Result<usize>>,
    ) -> io::Result<()> {
        let mut progress = Instant::now();
        loop {
            let Some(result) = write(&mut &*self.socket) else {
                return Ok(());
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => progress = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.nonblocking => {
                    self.set_nonblocking(false)?;
                }
                // A slice of the send timeout passed without progress.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if progress.elapsed() >= self.stall {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`Socket::write_until_done`], but gives up with `WouldBlock` instead
    /// of waiting for the peer: for a last word (a TLS alert) before closing.
    pub fn write_now(
        &mut self,
        mut write: impl FnMut(&mut &TcpStream) -> Option<io::Result<usize>>,
    ) -> io::Result<()> {
        self.set_nonblocking(true)?;
        while let Some(result) = write(&mut &*self.socket) {
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends our side of the connection.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.socket.shutdown(Shutdown::Write)
    }

    /// Closes both directions now.
    pub fn shutdown(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Plain TCP: the socket's bytes as they are.
#[derive(Debug)]
pub struct TcpTransport {
    socket: Socket,
    peer: SocketAddr,
}

impl TcpTransport {
    /// Wraps an accepted (or connected) socket whose peer may take nothing for
    /// `stall` before a write gives up.
    pub fn new(socket: Arc<TcpStream>, peer: SocketAddr, stall: Duration) -> io::Result<Self> {
        Ok(TcpTransport::over(Socket::new(socket, stall)?, peer))
    }

    /// Plain TCP over a socket already set up.
    pub fn over(socket: Socket, peer: SocketAddr) -> Self {
        TcpTransport { socket, peer }
    }

    /// Writes one group of slices (see [`Socket::write_until_done`]).
    fn write_group(&mut self, mut slices: &mut [IoSlice]) -> io::Result<()> {
        self.socket.write_until_done(|socket| {
            if slices.is_empty() {
                return None;
            }
            let result = socket.write_vectored(slices);
            if let Ok(n) = result {
                IoSlice::advance_slices(&mut slices, n);
            }
            Some(result)
        })
    }
}

impl Transport for TcpTransport {
    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.socket.read_within(buf, timeout)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.try_read(buf)
    }

    fn write_all(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()> {
        in_groups(parts, |group| self.write_group(group))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.socket.shutdown_write()
    }

    fn shutdown(&mut self) {
        self.socket.shutdown();
    }

    fn set_stall(&mut self, stall: Duration) -> io::Result<()> {
        self.socket.set_stall(stall)
    }
}

/// Transports for tests: a real loopback connection, and one in memory.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::net::TcpListener;

    /// Our end of a loopback connection, and the peer's.
    pub fn pair(stall: Duration) -> (TcpTransport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (
            TcpTransport::new(Arc::new(server), peer, stall).unwrap(),
            client,
        )
    }

    /// Keeps every piece written, in order; has nothing to read.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub pieces: Vec<Vec<u8>>,
    }

    impl Recorder {
        /// Everything written, in one buffer.
        pub fn bytes(&self) -> Vec<u8> {
            self.pieces.concat()
        }
    }

    impl Transport for Recorder {
        fn peer(&self) -> SocketAddr {
            ([127, 0, 0, 1], 1).into()
        }
        fn read_within(&mut self, _: &mut [u8], _: Duration) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn try_read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn write_all(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()> {
            self.pieces
                .extend(parts.filter(|p| !p.is_empty()).map(<[u8]>::to_vec));
            Ok(())
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn shutdown(&mut self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pair;
    use super::*;
    use std::thread;

    #[test]
    fn sends_every_part_in_order() {
        let (mut server, mut client) = pair(Duration::from_secs(5));
        let big = vec![7u8; 3 << 20];
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let parts = [&b"head"[..], b"", &big, b"tail"];
        server.write_all(&mut parts.into_iter()).unwrap();
        server.shutdown();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 8 + big.len());
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 4..], b"tail");
    }

    #[test]
    fn a_peer_that_never_reads_times_out_after_the_stall_not_twice_it() {
        let stall = Duration::from_millis(400);
        let (mut server, _client) = pair(stall);
        // Far more than the socket buffers hold, so the writer must stall.
        let big = vec![1u8; 64 << 20];
        let started = Instant::now();
        let err = server.write_bytes(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took >= stall, "gave up after {took:?}");
    }

    /// Not twice the stall: counted in the send timeout's slices, each a blocked
    /// write (here one that takes at least its slice and moves nothing), the
    /// writer gives up by the first slice that ends past the stall. A count, not a
    /// clock reading: a busy machine only makes the slices longer, so fewer of
    /// them fit in the stall.
    #[test]
    fn a_stalled_write_gives_up_within_one_slice_of_the_stall() {
        let stall = Duration::from_millis(400);
        let slice = send_timeout(stall);
        let (server, _client) = pair(stall);
        let mut socket = Socket::new(server.socket.socket.clone(), stall).unwrap();
        let (mut progress_left, mut blocked) = (3, 0u32);
        let err = socket
            .write_until_done(|_| {
                if progress_left > 0 {
                    progress_left -= 1;
                    return Some(Ok(1));
                }
                blocked += 1;
                thread::sleep(slice);
                Some(Err(io::ErrorKind::WouldBlock.into()))
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let most = stall.as_millis().div_ceil(slice.as_millis()) as u32 + 1;
        assert!(
            (1..=most).contains(&blocked),
            "{blocked} blocked writes of {slice:?} for a {stall:?} stall (at most {most})"
        );
    }

    #[test]
    fn a_look_for_input_does_not_wait_and_a_full_window_is_waited_for() {
        let (mut server, mut client) = pair(Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let err = server.try_read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nothing sent yet");
        // More than the socket buffers hold: the write must wait for the reader.
        let big = vec![3u8; 16 << 20];
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let mut got = vec![0u8; 16 << 20];
            client.read_exact(&mut got).unwrap();
            client.write_all(b"hi").unwrap();
            (got, client)
        });
        server.write_bytes(&big).unwrap();
        let (got, _client) = reader.join().unwrap();
        assert_eq!(got, big);
        let n = server
            .read_within(&mut buf, Duration::from_secs(5))
            .unwrap();
        assert_eq!(&buf[..n], b"hi");
        let err = server.try_read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "non-blocking again");
        let started = Instant::now();
        let err = server
            .read_within(&mut buf, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn linger_reads_until_the_peer_closes() {
        let (mut server, mut client) = pair(Duration::from_secs(5));
        server.write_bytes(b"bye").unwrap();
        let reader = thread::spawn(move || {
            client.write_all(&[9u8; 10_000]).unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let started = Instant::now();
        server.linger(Duration::from_secs(5), usize::MAX);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the peer closed"
        );
        assert_eq!(reader.join().unwrap(), b"bye");
    }
}
