//! The server's lifecycle: one table of every open connection, and the stop.
//!
//! Every accepted socket is registered here with its kind, peer, accept time and
//! phase. A connection starts *pending* (it has proven nothing yet: an RTMP client
//! that is not publishing or playing, an HTTP client whose request is incomplete)
//! and becomes *established* once it does something useful. The two phases have
//! separate budgets: `--max-connections` established ones, which are never pushed
//! out, and `--max-pending` pending ones, where at the limit the oldest pending
//! connection of the address group holding the most of them gives way to the
//! newcomer (its socket is shut down, so its thread ends at once). A flood of idle
//! sockets therefore costs at most `--max-pending` threads and can never keep a
//! real client from getting in, even from the same address.
//!
//! The stop goes through the same table: [`Lifecycle::stop`] runs the stop hooks
//! (the registry's "end every stream" is one; later features add theirs), then
//! raises the flag that connection threads check at their wake-ups and closes
//! every pending connection. Established connections end themselves, properly:
//! a player's queue already holds the end of its stream when it sees the flag, a
//! publisher is told its stream ended; their sockets stay intact until then, so a
//! closing connection can still read until the client has closed its side. The
//! server's run loop waits for the table to empty ([`Lifecycle::wait_empty`]) until
//! `--shutdown-timeout`, and cuts what is left ([`Lifecycle::cut_all`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};

/// The two kinds of connection the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    Rtmp,
    Http,
}

impl ConnectionKind {
    pub const ALL: [ConnectionKind; 2] = [ConnectionKind::Rtmp, ConnectionKind::Http];

    /// How many kinds there are: the size of per-kind counters.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in logs, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Rtmp => "rtmp",
            ConnectionKind::Http => "http",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How often, at most, evictions are logged at warn; the rest are counted into
/// the next line, so a flood costs a line per interval, not one per socket.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The two budgets of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Established connections served at once (`--max-connections`).
    pub max_established: usize,
    /// Connections that have not proven themselves yet (`--max-pending`).
    pub max_pending: usize,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, nothing useful done yet; may be evicted for a newcomer.
    Pending,
    /// Publishing, playing or served a request: counted against `--max-connections`.
    Established,
    /// Evicted or cut: its socket is shut down and its thread is on its way out.
    Closing,
}

/// Why a connection may not become established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` connections are established already.
    Full { max: usize },
    /// It was closed for a newer connection while pending.
    Evicted,
    /// The server is stopping.
    Stopping,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full { max } => write!(
                f,
                "the server is full ({max} connections, --max-connections)"
            ),
            Refusal::Evicted => f.write_str("closed for a newer connection while pending"),
            Refusal::Stopping => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for Refusal {}

/// Connections of one kind: open now (by phase) and since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub pending: u64,
    pub established: u64,
    /// Closing (evicted or cut) but whose thread has not ended yet.
    pub closing: u64,
    /// Pending connections closed for newer ones (`--max-pending`), since start.
    pub evicted: u64,
    /// Refused when about to become established (`--max-connections`), since start.
    pub refused: u64,
}

impl TableCounts {
    /// Every connection of the kind whose thread still runs.
    pub fn open(&self) -> u64 {
        self.pending + self.established + self.closing
    }
}

/// A connection still open when the stop's deadline passed.
#[derive(Debug, Clone)]
pub struct Cut {
    pub kind: ConnectionKind,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub age: Duration,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {:?}, open {:.1} s)",
            self.peer,
            self.kind.as_str(),
            self.phase,
            self.age.as_secs_f64()
        )
    }
}

type StopHook = Box<dyn Fn() + Send + Sync>;

pub struct Lifecycle {
    limits: Limits,
    table: Mutex<Table>,
    /// Signalled when a connection leaves the table and when the stop begins.
    changed: Condvar,
    /// Raised once the stop hooks have run; connection threads check it.
    stopping: AtomicBool,
    /// Claimed by the first `stop` call, so a second one knows it is second.
    stop_claimed: AtomicBool,
    hooks: Mutex<Vec<(&'static str, StopHook)>>,
    evicted: [AtomicU64; ConnectionKind::COUNT],
    refused: [AtomicU64; ConnectionKind::COUNT],
}

struct Entry {
    kind: ConnectionKind,
    peer: SocketAddr,
    accepted: Instant,
    phase: Phase,
    socket: Arc<TcpStream>,
}

/// Clients are grouped by address for eviction: an IPv4 address, or an IPv6 /64
/// (one subscriber's share, which a single attacker holds whole).
pub(crate) type Group = u128;

pub(crate) fn group(ip: IpAddr) -> Group {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Pending connections by address group, oldest (lowest id) first.
    pending: HashMap<Group, BTreeSet<u64>>,
    pending_count: usize,
    established_count: usize,
    eviction_log: EvictionLog,
}

#[derive(Default)]
struct EvictionLog {
    last: Option<Instant>,
    /// Evictions since the last line.
    unlogged: u64,
}

impl Table {
    fn unpend(&mut self, id: u64, peer: SocketAddr) {
        let g = group(peer.ip());
        if let Some(set) = self.pending.get_mut(&g) {
            if set.remove(&id) {
                self.pending_count -= 1;
            }
            if set.is_empty() {
                self.pending.remove(&g);
            }
        }
    }

    /// The oldest pending connection of the group with the most pending ones.
    fn victim(&self) -> Option<u64> {
        self.pending
            .values()
            .filter_map(|set| Some((set.len(), *set.first()?)))
            // Most pending first; among equals, the oldest.
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, id)| id)
    }
}

impl Lifecycle {
    pub fn new(limits: Limits) -> Lifecycle {
        Lifecycle {
            limits,
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            stop_claimed: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
            evicted: Default::default(),
            refused: Default::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Registers a freshly accepted socket as pending, evicting the oldest pending
    /// connection of the biggest address group if the pending budget is spent.
    /// `None` once the server is stopping: the caller just drops the socket.
    pub fn admit(
        self: &Arc<Self>,
        kind: ConnectionKind,
        peer: SocketAddr,
        socket: Arc<TcpStream>,
    ) -> Option<Registration> {
        let mut table = self.table.lock();
        if self.is_stopping() {
            return None;
        }
        if table.pending_count >= self.limits.max_pending {
            self.evict_one(&mut table, peer);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.entries.insert(
            id,
            Entry {
                kind,
                peer,
                accepted: Instant::now(),
                phase: Phase::Pending,
                socket: socket.clone(),
            },
        );
        table
            .pending
            .entry(group(peer.ip()))
            .or_default()
            .insert(id);
        table.pending_count += 1;
        Some(Registration {
            lifecycle: self.clone(),
            id,
            kind,
            peer,
            socket,
        })
    }

    fn evict_one(&self, table: &mut Table, newcomer: SocketAddr) {
        let Some(id) = table.victim() else { return };
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        entry.phase = Phase::Closing;
        let _ = entry.socket.shutdown(Shutdown::Both);
        let (kind, peer, age) = (entry.kind, entry.peer, entry.accepted.elapsed());
        table.unpend(id, peer);
        self.evicted[kind.index()].fetch_add(1, Ordering::Relaxed);
        let log = &mut table.eviction_log;
        log.unlogged += 1;
        if log
            .last
            .is_none_or(|last| last.elapsed() >= EVICTION_LOG_INTERVAL)
        {
            warn!(
                "{} pending connections (--max-pending): closed {} pending one(s) for newer \
                 ones{}, the last {peer} ({}, pending {:.1} s) for {newcomer}",
                self.limits.max_pending,
                log.unlogged,
                match log.last {
                    Some(last) => format!(" in the last {:.0} s", last.elapsed().as_secs_f64()),
                    None => String::new(),
                },
                kind.as_str(),
                age.as_secs_f64(),
            );
            log.last = Some(Instant::now());
            log.unlogged = 0;
        }
    }

    /// Runs `hook` when the stop begins, before connection threads see the flag;
    /// hooks run in the order they were added. This is where a feature ends what
    /// it owns and wakes what only it can wake (the registry ends every stream, so
    /// players' queues hold their ending before the players see the flag).
    pub fn on_stop(&self, name: &'static str, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.lock().push((name, Box::new(hook)));
    }

    /// Whether the server is stopping. Threads check this at their wake-ups.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps until the stop begins or `timeout` passes; true if stopping. For
    /// threads that wait on nothing else (a retry back-off, the run loop).
    pub fn wait_stopping(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut table = self.table.lock();
        while !self.is_stopping() {
            match deadline {
                Some(d) => {
                    if self.changed.wait_until(&mut table, d).timed_out() {
                        return self.is_stopping();
                    }
                }
                None => self.changed.wait(&mut table),
            }
        }
        true
    }

    /// Begins the graceful stop: runs the stop hooks, raises the flag and closes
    /// every pending connection. Logs one line saying why (`cause`) and what is
    /// left to end. False if a stop had begun already.
    pub fn stop(&self, cause: &str, timeout: Duration) -> bool {
        if self.stop_claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let (pending, established) = {
            let table = self.table.lock();
            (table.pending_count, table.established_count)
        };
        info!(
            "{cause}: stopping: no new connections; ending {established} connection(s) and \
             closing {pending} pending within {:.1} s (--shutdown-timeout; a second signal \
             exits at once)",
            timeout.as_secs_f64()
        );
        for (name, hook) in self.hooks.lock().iter() {
            log::debug!("stop: {name}");
            hook();
        }
        let mut table = self.table.lock();
        self.stopping.store(true, Ordering::Release);
        for entry in table.entries.values_mut() {
            if entry.phase == Phase::Pending {
                entry.phase = Phase::Closing;
                let _ = entry.socket.shutdown(Shutdown::Both);
            }
        }
        table.pending.clear();
        table.pending_count = 0;
        drop(table);
        self.changed.notify_all();
        true
    }

    /// Waits until every connection has left the table or `deadline` passes; true
    /// if the table is empty.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        let mut table = self.table.lock();
        while !table.entries.is_empty() {
            if self.changed.wait_until(&mut table, deadline).timed_out() {
                return table.entries.is_empty();
            }
        }
        true
    }

    /// Shuts down every socket still in the table, so every thread blocked on one
    /// returns at once; returns what was cut.
    pub fn cut_all(&self) -> Vec<Cut> {
        let mut table = self.table.lock();
        let mut cut: Vec<Cut> = table
            .entries
            .values_mut()
            .map(|entry| {
                let _ = entry.socket.shutdown(Shutdown::Both);
                let was = entry.phase;
                entry.phase = Phase::Closing;
                Cut {
                    kind: entry.kind,
                    peer: entry.peer,
                    phase: was,
                    age: entry.accepted.elapsed(),
                }
            })
            .collect();
        table.pending.clear();
        table.pending_count = 0;
        cut.sort_by_key(|c| std::cmp::Reverse(c.age));
        cut
    }

    /// Connections in the table now, of every kind and phase.
    pub fn open(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// The table's numbers for one kind.
    pub fn counts(&self, kind: ConnectionKind) -> TableCounts {
        let table = self.table.lock();
        let mut counts = TableCounts {
            evicted: self.evicted[kind.index()].load(Ordering::Relaxed),
            refused: self.refused[kind.index()].load(Ordering::Relaxed),
            ..TableCounts::default()
        };
        for entry in table.entries.values().filter(|e| e.kind == kind) {
            match entry.phase {
                Phase::Pending => counts.pending += 1,
                Phase::Established => counts.established += 1,
                Phase::Closing => counts.closing += 1,
            }
        }
        counts
    }
}

/// A connection's entry in the table, held by its thread; dropping it (also on
/// panic) removes the entry.
pub struct Registration {
    lifecycle: Arc<Lifecycle>,
    id: u64,
    kind: ConnectionKind,
    peer: SocketAddr,
    socket: Arc<TcpStream>,
}

impl Registration {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's number, unique while the server runs (hooks' `clientid`).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn socket(&self) -> &Arc<TcpStream> {
        &self.socket
    }

    /// Moves a pending connection to the established budget. Already established:
    /// nothing changes.
    pub fn establish(&self) -> Result<(), Refusal> {
        let lifecycle = &self.lifecycle;
        let mut table = lifecycle.table.lock();
        let phase = table.entries.get(&self.id).map(|e| e.phase);
        match phase {
            Some(Phase::Established) => return Ok(()),
            _ if lifecycle.is_stopping() => return Err(Refusal::Stopping),
            Some(Phase::Pending) => {}
            Some(Phase::Closing) | None => return Err(Refusal::Evicted),
        }
        let max = lifecycle.limits.max_established;
        if table.established_count >= max {
            lifecycle.refused[self.kind.index()].fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full { max });
        }
        table.unpend(self.id, self.peer);
        table.established_count += 1;
        if let Some(entry) = table.entries.get_mut(&self.id) {
            entry.phase = Phase::Established;
        }
        Ok(())
    }

    /// Moves an established connection back to pending: an HTTP connection kept
    /// alive between requests, which has proven nothing for the next one yet. It
    /// may then be evicted for a newcomer, and a stop closes it, as any pending
    /// connection. Anything but an established connection is left as it is.
    pub fn idle(&self) {
        let lifecycle = &self.lifecycle;
        let mut table = lifecycle.table.lock();
        match table.entries.get_mut(&self.id) {
            Some(entry) if entry.phase == Phase::Established => entry.phase = Phase::Pending,
            _ => return,
        }
        table.established_count -= 1;
        if table.pending_count >= lifecycle.limits.max_pending {
            lifecycle.evict_one(&mut table, self.peer);
        }
        table
            .pending
            .entry(group(self.peer.ip()))
            .or_default()
            .insert(self.id);
        table.pending_count += 1;
        if lifecycle.is_stopping() {
            if let Some(entry) = table.entries.get_mut(&self.id) {
                entry.phase = Phase::Closing;
                let _ = entry.socket.shutdown(Shutdown::Both);
            }
            table.unpend(self.id, self.peer);
        }
    }

    /// The connection's phase now.
    pub fn phase(&self) -> Phase {
        let table = self.lifecycle.table.lock();
        table
            .entries
            .get(&self.id)
            .map_or(Phase::Closing, |e| e.phase)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let lifecycle = &self.lifecycle;
        let mut table = lifecycle.table.lock();
        if let Some(entry) = table.entries.remove(&self.id) {
            match entry.phase {
                Phase::Pending => table.unpend(self.id, self.peer),
                Phase::Established => table.established_count -= 1,
                Phase::Closing => {}
            }
        }
        drop(table);
        lifecycle.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (our side, the client's side).
    fn pair(listener: &TcpListener) -> (Arc<TcpStream>, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(server), client)
    }

    fn lifecycle(max_established: usize, max_pending: usize) -> Arc<Lifecycle> {
        Arc::new(Lifecycle::new(Limits {
            max_established,
            max_pending,
        }))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// True once the client side reads end-of-stream or an error: our side was shut.
    fn was_shut(client: &mut TcpStream) -> bool {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        matches!(client.read(&mut [0u8; 1]), Ok(0) | Err(_))
    }

    #[test]
    fn the_oldest_pending_connection_gives_way_at_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lc = lifecycle(10, 2);
        let (s1, mut c1) = pair(&listener);
        let (s2, _c2) = pair(&listener);
        let (s3, _c3) = pair(&listener);
        let peer = addr("10.0.0.1:1000");
        let r1 = lc.admit(ConnectionKind::Rtmp, peer, s1).unwrap();
        let r2 = lc.admit(ConnectionKind::Rtmp, peer, s2).unwrap();
        let r3 = lc.admit(ConnectionKind::Rtmp, peer, s3).unwrap();
        assert_eq!(r1.phase(), Phase::Closing);
        assert!(was_shut(&mut c1), "the evicted socket is shut down");
        assert_eq!(r1.establish(), Err(Refusal::Evicted));
        assert_eq!((r2.phase(), r3.phase()), (Phase::Pending, Phase::Pending));
        let counts = lc.counts(ConnectionKind::Rtmp);
        assert_eq!((counts.pending, counts.closing, counts.evicted), (2, 1, 1));
        drop(r1);
        assert_eq!(lc.open(), 2);
    }

    #[test]
    fn established_connections_are_never_evicted_and_have_their_own_budget() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lc = lifecycle(1, 1);
        let peer = addr("10.0.0.1:1000");
        let (s1, _c1) = pair(&listener);
        let r1 = lc.admit(ConnectionKind::Rtmp, peer, s1).unwrap();
        r1.establish().unwrap();
        // Pending budget is free again: these two only push each other out.
        let (s2, _c2) = pair(&listener);
        let r2 = lc.admit(ConnectionKind::Http, peer, s2).unwrap();
        let (s3, _c3) = pair(&listener);
        let r3 = lc.admit(ConnectionKind::Http, peer, s3).unwrap();
        assert_eq!(r1.phase(), Phase::Established);
        assert_eq!(r2.phase(), Phase::Closing);
        assert_eq!(r3.establish(), Err(Refusal::Full { max: 1 }));
        assert_eq!(r3.phase(), Phase::Pending, "a refusal leaves it pending");
        assert_eq!(lc.counts(ConnectionKind::Http).refused, 1);
        drop(r1);
        r3.establish().unwrap();
        assert_eq!(r3.establish(), Ok(()), "idempotent");
    }

    #[test]
    fn the_biggest_address_group_pays_for_a_newcomer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lc = lifecycle(10, 3);
        let (s, _c1) = pair(&listener);
        let lone = lc
            .admit(ConnectionKind::Rtmp, addr("10.0.0.9:1"), s)
            .unwrap();
        let mut flood = Vec::new();
        let mut clients = Vec::new();
        for port in 1..=2 {
            let (s, c) = pair(&listener);
            clients.push(c);
            let peer = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
            flood.push(lc.admit(ConnectionKind::Rtmp, peer, s).unwrap());
        }
        // The lone client is the oldest, but the flooding address has more pending.
        let (s, _c) = pair(&listener);
        let _new = lc
            .admit(ConnectionKind::Rtmp, addr("10.0.0.1:3"), s)
            .unwrap();
        assert_eq!(lone.phase(), Phase::Pending);
        assert_eq!(flood[0].phase(), Phase::Closing);
        assert_eq!(flood[1].phase(), Phase::Pending);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64_and_mapped_v4_as_v4() {
        assert_eq!(
            group("2001:db8:1:2::1".parse().unwrap()),
            group("2001:db8:1:2:ffff::9".parse().unwrap())
        );
        assert_ne!(
            group("2001:db8:1:2::1".parse().unwrap()),
            group("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            group("::ffff:10.0.0.1".parse().unwrap()),
            group("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn stop_runs_hooks_first_closes_pending_and_waits_for_the_table() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lc = lifecycle(10, 10);
        let peer = addr("127.0.0.1:1");
        let (s1, mut pending_client) = pair(&listener);
        let pending = lc.admit(ConnectionKind::Rtmp, peer, s1).unwrap();
        let (s2, mut established_client) = pair(&listener);
        let reader = lc.admit(ConnectionKind::Rtmp, peer, s2).unwrap();
        reader.establish().unwrap();
        let seen_flag = Arc::new(AtomicBool::new(true));
        let (lc2, seen) = (lc.clone(), seen_flag.clone());
        lc.on_stop("probe", move || {
            seen.store(lc2.is_stopping(), Ordering::SeqCst)
        });
        assert!(!lc.wait_stopping(Some(Duration::from_millis(1))));
        assert!(lc.stop("test", Duration::from_secs(1)));
        assert!(!lc.stop("again", Duration::from_secs(1)), "only once");
        assert!(
            !seen_flag.load(Ordering::SeqCst),
            "hooks run before the flag"
        );
        assert!(lc.is_stopping() && lc.wait_stopping(None));
        assert!(was_shut(&mut pending_client));
        established_client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let err = established_client.read(&mut [0u8; 1]).unwrap_err();
        assert!(
            crate::net::is_timeout(&err),
            "established sockets are left alone"
        );
        assert!(lc
            .admit(ConnectionKind::Rtmp, peer, pair(&listener).0)
            .is_none());
        assert_eq!(reader.establish(), Ok(()), "already established");
        assert!(!lc.wait_empty(Instant::now() + Duration::from_millis(10)));
        let waiter = {
            let lc = lc.clone();
            std::thread::spawn(move || lc.wait_empty(Instant::now() + Duration::from_secs(30)))
        };
        drop(pending);
        let cut = lc.cut_all();
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].phase, Phase::Established);
        assert!(was_shut(&mut established_client), "cut");
        drop(reader);
        assert!(waiter.join().unwrap());
    }
}
