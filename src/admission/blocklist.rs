//! Brute-force blocking: an address (an IPv4 address or an IPv6 /64, as the
//! connection table groups them) with [`MAX_FAILURES`] refused attempts within
//! [`WINDOW`] has its new connections closed at accept for [`BLOCK`]: no thread,
//! no CPU and no connection slot spent on it. Logged once per block.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::warn;
use parking_lot::Mutex;

use crate::config::policy::canonical;
use crate::lifecycle::{group, Group};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const BLOCK: Duration = Duration::from_secs(60);
/// Past this many addresses remembered, the expired ones are forgotten.
const PRUNE_AT: usize = 4096;

#[derive(Default)]
pub struct Blocklist {
    addresses: Mutex<HashMap<Group, Record>>,
}

struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Record {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.window_start) >= WINDOW
            && self.blocked_until.is_none_or(|until| now >= until)
    }
}

impl Blocklist {
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now());
    }

    /// Counts a failure; true when it starts a block (the one time it is logged).
    fn failed_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut addresses = self.addresses.lock();
        if addresses.len() >= PRUNE_AT {
            addresses.retain(|_, r| !r.expired(now));
        }
        let record = addresses.entry(group(ip)).or_insert(Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(record.window_start) >= WINDOW {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures += 1;
        let blocked = record.blocked_until.is_some_and(|until| now < until);
        if record.failures >= MAX_FAILURES && !blocked {
            record.blocked_until = Some(now + BLOCK);
            warn!(
                "{}: {} refused attempts within {} s: its new connections are closed at \
                 accept for the next {} s",
                canonical(ip),
                record.failures,
                WINDOW.as_secs(),
                BLOCK.as_secs()
            );
            return true;
        }
        false
    }

    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_at(ip, Instant::now())
    }

    fn is_blocked_at(&self, ip: IpAddr, now: Instant) -> bool {
        let addresses = self.addresses.lock();
        addresses
            .get(&group(ip))
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_for_a_minute() {
        let list = Blocklist::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES - 1 {
            assert!(!list.failed_at(ip, t0 + Duration::from_secs(u64::from(i))));
        }
        assert!(!list.is_blocked_at(ip, t0 + Duration::from_secs(10)));
        assert!(list.failed_at(ip, t0 + Duration::from_secs(30)));
        let blocked_at = t0 + Duration::from_secs(30);
        assert!(list.is_blocked_at(ip, blocked_at));
        assert!(list.is_blocked_at("::ffff:10.0.0.1".parse().unwrap(), blocked_at));
        assert!(!list.is_blocked_at(other, blocked_at));
        assert!(!list.is_blocked_at(ip, blocked_at + BLOCK));
    }

    /// A block is logged once, however many failures (from connections open
    /// before it) follow; the next block, once this one is over, again once.
    #[test]
    fn a_block_begins_once_and_is_logged_once() {
        let list = Blocklist::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let began: Vec<u64> = (0..40u64)
            .filter(|&i| list.failed_at(ip, t0 + Duration::from_secs(i * 2)))
            .collect();
        // 10th failure at 18 s: blocked until 78 s; the window restarts at 60 s,
        // so the 10th failure after it (at 78 s) begins the next block.
        assert_eq!(began, [9, 39]);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_block() {
        let list = Blocklist::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30u64 {
            assert!(!list.failed_at(ip, t0 + Duration::from_secs(i * 7)));
            assert!(!list.is_blocked_at(ip, t0 + Duration::from_secs(i * 7)));
        }
    }
}
