//! Socket writes that give up once the peer has stopped taking bytes. A socket send
//! timeout applies per `write` call and restarts after any partial progress, so on
//! its own it lets a stuck peer hold a writer for up to twice as long as intended,
//! and a trickling one forever. Connections set the send timeout to a slice of the
//! allowed stall and write through `write_all_within`, which counts the slices.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super as net;

/// The socket send timeout to set on a connection whose peer may stall for `stall`.
pub(crate) fn send_timeout(stall: Duration) -> Duration {
    (stall / 8).max(Duration::from_millis(10))
}

/// Slices per `writev`. Enough for a merge window of frames (two per frame);
/// kept on the stack, so a write allocates nothing.
const SLICES_PER_WRITE: usize = 32;

/// Writes all `parts` in order with as few syscalls as the kernel allows, failing
/// with `TimedOut` once the peer has accepted no byte for `stall`.
pub(crate) fn write_all_within<'a>(
    socket: &TcpStream,
    parts: impl IntoIterator<Item = &'a [u8]>,
    stall: Duration,
) -> io::Result<()> {
    write_all(socket, parts, stall, false)
}

/// [`write_all_within`] for a socket in non-blocking mode: what the kernel takes
/// at once leaves without a wait; should the peer's window fill, the socket blocks
/// for the rest (its send timeout counting the stall) and is made non-blocking
/// again before this returns.
pub(crate) fn write_all_within_nonblocking<'a>(
    socket: &TcpStream,
    parts: impl IntoIterator<Item = &'a [u8]>,
    stall: Duration,
) -> io::Result<()> {
    write_all(socket, parts, stall, true)
}

fn write_all<'a>(
    socket: &TcpStream,
    parts: impl IntoIterator<Item = &'a [u8]>,
    stall: Duration,
    nonblocking: bool,
) -> io::Result<()> {
    let mut parts = parts.into_iter().filter(|p| !p.is_empty()).peekable();
    let mut blocking = !nonblocking;
    let mut result = Ok(());
    while parts.peek().is_some() {
        let mut group = [IoSlice::new(&[]); SLICES_PER_WRITE];
        let mut n = 0;
        for (slot, part) in group.iter_mut().zip(parts.by_ref()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        result = write_group(socket, &mut group[..n], stall, &mut blocking);
        if result.is_err() {
            break;
        }
    }
    // A failure to restore the mode must not hide why the write failed.
    let restored = if nonblocking && blocking {
        socket.set_nonblocking(true)
    } else {
        Ok(())
    };
    result.and(restored)
}

/// Writes one group of slices; `blocking` says whether the socket blocks now, and
/// is set once it had to be made to.
fn write_group(
    mut socket: &TcpStream,
    mut slices: &mut [IoSlice],
    stall: Duration,
    blocking: &mut bool,
) -> io::Result<()> {
    let mut progress = Instant::now();
    while !slices.is_empty() {
        match socket.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut slices, n);
                progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !*blocking => {
                socket.set_nonblocking(false)?;
                *blocking = true;
            }
            Err(e) if net::is_timeout(&e) => {
                if progress.elapsed() >= stall {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Shutdown, TcpListener};
    use std::thread;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn sends_every_part_in_order() {
        let (server, mut client) = pair();
        let big = vec![7u8; 3 << 20];
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        write_all_within(
            &server,
            [&b"head"[..], b"", &big, b"tail"],
            Duration::from_secs(5),
        )
        .unwrap();
        server.shutdown(Shutdown::Both).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 8 + big.len());
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 4..], b"tail");
    }

    #[test]
    fn a_peer_that_never_reads_times_out_after_the_stall_not_twice_it() {
        let (server, _client) = pair();
        let stall = Duration::from_millis(400);
        server.set_write_timeout(Some(send_timeout(stall))).unwrap();
        // Far more than the socket buffers hold, so the writer must stall.
        let big = vec![1u8; 64 << 20];
        let started = Instant::now();
        let err = write_all_within(&server, [&big[..]], stall).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took >= stall, "gave up after {took:?}");
        // One slice of slack for the write that was under way when the stall began.
        assert!(took < stall * 2, "took {took:?} for a {stall:?} stall");
    }

    #[test]
    fn a_nonblocking_socket_waits_for_a_full_window_and_stays_nonblocking() {
        let (server, mut client) = pair();
        server.set_nonblocking(true).unwrap();
        server
            .set_write_timeout(Some(send_timeout(Duration::from_secs(5))))
            .unwrap();
        // More than the socket buffers hold: the write must wait for the reader.
        let big = vec![3u8; 16 << 20];
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let mut got = vec![0u8; 16 << 20];
            client.read_exact(&mut got).unwrap();
            (got, client)
        });
        write_all_within_nonblocking(&server, [&big[..]], Duration::from_secs(5)).unwrap();
        let (got, _client) = reader.join().unwrap();
        assert_eq!(got, big);
        // Non-blocking again: a read with nothing to read returns at once.
        let err = (&server).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
