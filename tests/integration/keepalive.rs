//! TCP keepalive (issue 10 §4): a player whose peer vanished without a FIN, while
//! it waits for a publisher (so nothing is written to it and no write can stall),
//! frees its thread within `--tcp-keepalive` + about 30 s. A socket that merely
//! never reads still answers keepalive probes, so the honest test makes the peer
//! vanish: the player runs in a network namespace of its own behind a veth pair,
//! and a drop rule in that namespace swallows everything it sends (its probe
//! answers, and the FIN when it is killed). Creating namespaces takes root and
//! `ip` (iproute2) plus `nft` or `iptables` (scripts/test.sh installs them; CI runs
//! as root); without them the test fails, unless RTMPD_TEST_SKIP_NETNS=1 says to
//! do without: then it says that it skipped and passes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtmpd::rtmp::message::VIDEO;

use crate::client_support::new_publisher;
use crate::support::*;

/// The keepalive idle time the tests run with: short, so they take seconds.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// A network namespace joined to ours by a veth pair, removed when dropped.
struct Netns {
    name: String,
    /// Our end's address (the server listens here) and the namespace's.
    host: Ipv4Addr,
    peer: Ipv4Addr,
}

impl Netns {
    /// A namespace and a /30 link of its own, named after this process so that
    /// concurrent test runs do not collide; `None` (having said so) if the machine
    /// cannot make one and RTMPD_TEST_SKIP_NETNS is set.
    fn create() -> Option<Netns> {
        let missing = missing_tools();
        if !missing.is_empty() {
            let why = format!(
                "this test needs root and {} (scripts/test.sh installs them)",
                missing.join(", ")
            );
            if std::env::var_os("RTMPD_TEST_SKIP_NETNS").is_some() {
                eprintln!(
                    "SKIPPED: {why}; RTMPD_TEST_SKIP_NETNS is set: TCP keepalive was not checked"
                );
                return None;
            }
            panic!("{why}, or set RTMPD_TEST_SKIP_NETNS=1 to skip it");
        }
        let id = std::process::id();
        let n = id % 16384;
        let base = [10, 213, (n >> 6) as u8, ((n & 63) << 2) as u8];
        let ns = Netns {
            name: format!("rtmpd-ka-{id}"),
            host: Ipv4Addr::new(base[0], base[1], base[2], base[3] + 1),
            peer: Ipv4Addr::new(base[0], base[1], base[2], base[3] + 2),
        };
        let (outside, inside) = (format!("rka{id}h"), format!("rka{id}n"));
        // A namespace left over by a killed run of a process with the same id.
        let _ = Command::new("ip")
            .args(["netns", "del", &ns.name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.host), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        let addr = format!("{}/30", ns.peer);
        ns.ip(&["addr", "add", &addr, "dev", &inside]);
        ns.ip(&["link", "set", &inside, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `PROGRAM ARGS` to run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    fn ip(&self, args: &[&str]) {
        run(self.command("ip").args(args));
    }

    /// From now on, nothing the namespace sends leaves it and nothing reaches it.
    fn drop_everything(&self) {
        let nft = "table inet rtmpd_test {
            chain out { type filter hook output priority 0; policy drop; }
            chain in { type filter hook input priority 0; policy drop; }
        }";
        if has("nft") {
            run_with_input(self.command("nft").args(["-f", "-"]), nft);
        } else {
            for chain in ["OUTPUT", "INPUT"] {
                run(self.command("iptables").args(["-A", chain, "-j", "DROP"]));
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// What the machine lacks for the test: root, `ip`, a packet filter.
fn missing_tools() -> Vec<&'static str> {
    let mut missing = Vec::new();
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if !root {
        missing.push("root");
    }
    if !has("ip") {
        missing.push("ip (iproute2)");
    }
    if !has("nft") && !has("iptables") {
        missing.push("nft (nftables) or iptables");
    }
    missing
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Runs a set-up command; panics with its output if it fails.
fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a set-up command with `text` on its standard input; panics if it fails.
fn run_with_input(cmd: &mut Command, text: &str) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The send queue (bytes not yet acknowledged) of each established connection
/// of the listener on `port`, as `ss` sees it.
fn send_queues(port: u16) -> Vec<u64> {
    let out = Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .expect("running ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Two players wait in the namespace. One is idle with everything acknowledged:
/// only keepalive probes can find its peer gone. The other is sent a few frames
/// after its peer has vanished: with data in flight no probe goes out, and the
/// limit on unacknowledged data must find it instead. Both threads end within
/// `--tcp-keepalive` + about 30 s (here 2 s + 3 s of probes).
#[test]
fn waiting_players_whose_peer_vanished_are_released() {
    let Some(ns) = Netns::create() else { return };
    let server = start_server_with(|c| {
        c.listen = vec![SocketAddr::new(IpAddr::V4(ns.host), 0).into()];
        c.http = Vec::new();
        c.tcp_keepalive = KEEPALIVE;
        // Below the probes' 5 s, so that it does not set the limit for data in flight.
        c.write_stall_timeout = Duration::from_secs(3);
    });
    let players: Vec<ChildGuard> = ["live/idle", "live/busy"]
        .iter()
        .map(|path| {
            let url = format!("rtmp://{}/{path}", server.addr);
            let mut cmd = ns.command("rtmpdump");
            cmd.args(["--live", "-q", "-r", &url, "-o", "/dev/null"]);
            ChildGuard::new(spawn(cmd))
        })
        .collect();
    for path in ["live/idle", "live/busy"] {
        server.wait_for_players(path, 1, Duration::from_secs(60));
    }
    // The play replies are out and acknowledged: the connections are idle.
    wait_for(
        "the play replies to be acknowledged",
        Duration::from_secs(60),
        || {
            let queues = send_queues(server.addr.port());
            queues.len() == 2 && queues.iter().all(|&q| q == 0)
        },
    );

    ns.drop_everything();
    let vanished = Instant::now();
    // Their FINs go nowhere: to the server the peers are simply gone.
    drop(players);
    let mut publisher = new_publisher(&server, "live/busy");
    publisher
        .send_media(VIDEO, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3])
        .unwrap();
    publisher
        .send_media(VIDEO, 0, &[0x17, 1, 0, 0, 0, 9])
        .unwrap();
    wait_for(
        "the frames to be in flight",
        Duration::from_secs(10),
        || send_queues(server.addr.port()).iter().any(|&q| q > 0),
    );
    let limit = KEEPALIVE + Duration::from_secs(30);
    wait_for("both players to be released", limit, || {
        server.players("live/idle") + server.players("live/busy") == 0
    });
    let took = vanished.elapsed();
    assert_eq!(
        server.handle.open_connections(),
        1,
        "only the publisher is left: the players' threads have ended"
    );
    // The peers were heard from just before the drop; a release long before the
    // keepalive idle time would mean their FINs got through after all.
    assert!(
        took >= KEEPALIVE / 2,
        "released after {took:?}, before keepalive could have noticed anything"
    );
}
