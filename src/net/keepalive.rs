//! The options every accepted connection gets, RTMP and HTTP alike: no Nagle delay
//! (status replies and merged frame writes go out at once) and TCP keepalive, so a
//! peer that vanished without a FIN or RST (a phone that lost its network, a crashed
//! host, a NAT that forgot the mapping) is noticed even while nothing is sent to it:
//! a player waiting for a publisher would otherwise keep its thread forever.
//!
//! Keepalive probes only go out on a connection with nothing in flight. Had we
//! written a little just before the peer vanished (a player's status replies, a
//! publisher that came and went), the kernel would retransmit it for a quarter of an
//! hour instead, and our own stall limit only runs while a write of ours waits. So
//! the same setting bounds how long sent data may go unacknowledged
//! (`TCP_USER_TIMEOUT`): as long as the probes take, or `--play-timeout` if that is
//! longer, so a live peer that reads slowly is never cut before the stall limit.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Unanswered probes after which the kernel gives the connection up.
const PROBES: u32 = 3;
/// The bounds of the time between probes: a third of the idle time, so the probes
/// take about as long again as a short idle time and at most 30 s after a long one.
const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// The keepalive timing for a connection that may sit idle for `idle` before the
/// first probe: a vanished peer is given up `idle` + [`probe_time`] after the last
/// sign of it.
pub fn keepalive(idle: Duration) -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(idle)
        .with_interval(probe_interval(idle))
        .with_retries(PROBES)
}

fn probe_interval(idle: Duration) -> Duration {
    (idle / 3).clamp(MIN_PROBE_INTERVAL, MAX_PROBE_INTERVAL)
}

/// How long the probes take, once they start, to give up a peer that answers none.
pub fn probe_time(idle: Duration) -> Duration {
    probe_interval(idle) * PROBES
}

/// How long sent data may go unacknowledged on a connection probed after `idle`
/// whose peer may stall for `stall`.
pub fn unacknowledged_limit(idle: Duration, stall: Duration) -> Duration {
    (idle + probe_time(idle)).max(stall)
}

/// Sets the options of a freshly accepted connection: `keepalive_idle` is the idle
/// time before probes (zero: no probes, and the kernel's own limit for
/// unacknowledged data), `stall` the time the peer may take no bytes.
pub fn configure_accepted(
    socket: &TcpStream,
    keepalive_idle: Duration,
    stall: Duration,
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let socket = SockRef::from(socket);
    if keepalive_idle.is_zero() {
        socket.set_keepalive(false)?;
        return socket.set_tcp_user_timeout(None);
    }
    socket.set_tcp_keepalive(&keepalive(keepalive_idle))?;
    socket.set_tcp_user_timeout(Some(unacknowledged_limit(keepalive_idle, stall)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn probes_follow_the_idle_time_and_give_up_within_30_s() {
        let secs = Duration::from_secs;
        assert_eq!(probe_time(secs(2)), secs(3));
        assert_eq!(probe_time(secs(30)), secs(30));
        assert_eq!(probe_time(secs(7200)), secs(30));
    }

    #[test]
    fn accepted_sockets_get_the_options() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let secs = Duration::from_secs;
        configure_accepted(&socket, secs(30), secs(30)).unwrap();
        let s = SockRef::from(&socket);
        assert!(socket.nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), secs(30));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), secs(10));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), PROBES);
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(secs(60)));
        // A longer stall limit is never undercut.
        configure_accepted(&socket, secs(2), secs(120)).unwrap();
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(secs(120)));
        configure_accepted(&socket, Duration::ZERO, secs(30)).unwrap();
        assert!(!s.keepalive().unwrap());
    }
}
