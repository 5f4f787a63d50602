//! Listeners (issue 16): `-l` and `--http` given more than once, a bare port on
//! IPv4 and IPv6 as two sockets, IPv6 clients served and named as they are, IPv4
//! clients that arrive mapped (`::ffff:a.b.c.d`) named as plain IPv4, the backlog
//! set. Each test first checks for an IPv6 loopback (see `ipv6_loopback`), but
//! the last, which makes a host whose IPv6 is off in a network namespace.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use rtmpd::client::{Client, RtmpUrl};
use rtmpd::config::ListenAddr;
use serde_json::json;

use crate::client_support::options;
use crate::http_support::get_json;
use crate::process::ServerProcess;
use crate::support::*;

fn listen_on(addr: &str) -> ListenAddr {
    ListenAddr::Addr(addr.parse().unwrap())
}

/// Our client publishing `app/name` at `rtmp://ADDR/app/name`.
fn publish_at(addr: SocketAddr, path: &str) -> Client {
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/{path}")).unwrap();
    let mut client =
        Client::connect(&url, &options()).unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let name = client.url().name.clone();
    client.publish(&name).unwrap();
    client
}

/// The publisher's address as `/api/streams/APP/KEY` gives it.
fn api_publisher(http: SocketAddr, path: &str) -> String {
    let (status, doc) = get_json(http, &format!("/api/streams/{path}"));
    assert_eq!(status, 200, "{doc}");
    doc["publisher"]["address"].as_str().unwrap().to_owned()
}

#[test]
fn ffmpeg_publishes_and_plays_over_ipv6_and_the_api_names_ipv6_peers() {
    if !ipv6_loopback("ipv6 streaming") {
        return;
    }
    let server = start_server_with(|c| {
        c.listen = vec![listen_on("[::1]:0")];
        c.http = vec![listen_on("[::1]:0")];
    });
    assert!(server.addr.is_ipv6() && server.http_addr().is_ipv6());

    // Every tag, byte for byte, over IPv6 both ways.
    ffmpeg_plays_every_tag(&server, &server.url("live/v6"), "live/v6");

    // The API (itself on IPv6) names the IPv6 publisher as it is.
    let publisher = publish_at(server.addr, "live/peer");
    let local = publisher.local_addr().unwrap();
    assert!(local.is_ipv6());
    assert_eq!(
        api_publisher(server.http_addr(), "live/peer"),
        local.to_string()
    );
    let (_, doc) = get_json(server.http_addr(), "/api/server");
    assert_eq!(
        doc["listeners"],
        json!([
            {"kind": "rtmp", "address": server.addr.to_string()},
            {"kind": "http", "address": server.http_addr().to_string()},
        ])
    );
    assert_eq!(doc["listen"]["rtmp"], server.addr.to_string());
}

/// An IPv4 client that reaches an IPv6 socket arrives as `::ffff:127.0.0.1`
/// (only a listener on a mapped address lets it: every other IPv6 socket is
/// IPv6-only); from accept on it is plain 127.0.0.1.
#[test]
fn a_mapped_ipv4_client_is_named_as_plain_ipv4() {
    if !ipv6_loopback("mapped IPv4 peers") {
        return;
    }
    let server = start_server_with(|c| c.listen = vec![listen_on("[::ffff:127.0.0.1]:0")]);
    let port = server.addr.port();
    let publisher = publish_at(SocketAddr::from(([127, 0, 0, 1], port)), "live/mapped");
    let local = publisher.local_addr().unwrap();
    assert_eq!(
        api_publisher(server.http_addr(), "live/mapped"),
        local.to_string()
    );
    assert!(local.to_string().starts_with("127.0.0.1:"));
}

/// A port free on both IPv4 and IPv6 right now (std's `[::]` socket takes both).
fn free_port() -> u16 {
    let probe = TcpListener::bind("[::]:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// The backlog (`ss`'s Send-Q of a listening socket) of every listener on `port`.
fn backlogs(port: u16) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-H", "-l", "-t", "-n", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2; scripts/test.sh installs it)");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_bare_port_is_an_ipv4_and_an_ipv6_socket_each_naming_its_own_clients() {
    if !ipv6_loopback("bare port") {
        return;
    }
    let port = free_port();
    let bare = port.to_string();
    // Besides the test's usual 127.0.0.1:0: -l is repeatable.
    let server = ServerProcess::start("bare-port", true, &["-l", &bare, "--listen-backlog", "77"]);
    let log = server.log();
    for addr in [format!("0.0.0.0:{port}"), format!("[::]:{port}")] {
        assert!(
            log.contains(&format!("listening for RTMP on {addr}\n")),
            "{addr}:\n{log}"
        );
    }
    // Both bound the one port: so the IPv6 socket is IPv6-only, or the IPv4 bind
    // would have failed; IPv4 clients come in on the IPv4 socket as themselves.
    let http = server.http.unwrap();
    let v4 = publish_at(SocketAddr::from(([127, 0, 0, 1], port)), "live/v4");
    let v6 = publish_at(format!("[::1]:{port}").parse().unwrap(), "live/v6");
    for (client, path) in [(&v4, "live/v4"), (&v6, "live/v6")] {
        let peer = client.local_addr().unwrap();
        server.wait_for_log("publish", path);
        assert!(
            server.log().contains(&format!("{peer}: publish {path}")),
            "{peer} in the log"
        );
        assert_eq!(api_publisher(http, path), peer.to_string());
    }
    assert!(v4.local_addr().unwrap().is_ipv4() && v6.local_addr().unwrap().is_ipv6());

    let (_, doc) = get_json(http, "/api/server");
    let listed: Vec<(String, String)> = doc["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap().to_owned();
            (field("kind"), field("address"))
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("rtmp", server.addr.to_string()),
            ("rtmp", format!("0.0.0.0:{port}")),
            ("rtmp", format!("[::]:{port}")),
            ("http", http.to_string()),
        ]
        .map(|(k, a)| (k.to_owned(), a))
    );
    assert_eq!(backlogs(port), ["77", "77"], "--listen-backlog");
}

/// A host whose IPv6 a sysctl turned off (`net.ipv6.conf.all.disable_ipv6=1`,
/// common on VPSes and in containers): the IPv6 wildcard still binds, but
/// nothing reaches it, not even the server's own wake-up connection at a stop.
/// The stop must still end every accept loop, exit 0 at once, and say nothing
/// alarming. The real binary in a network namespace of its own (root and
/// `unshare`; RTMPD_TEST_SKIP_NETNS=1 skips it, like the keepalive test).
#[test]
fn a_stop_is_clean_where_a_sysctl_turned_ipv6_off() {
    let sysctl = "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
                  net.ipv6.conf.lo.disable_ipv6=1";
    let isolated = Command::new("unshare")
        .args(["-n", "sh", "-c", &format!("sysctl -qw {sysctl}")])
        .status()
        .is_ok_and(|s| s.success());
    if !isolated {
        assert!(
            std::env::var_os("RTMPD_TEST_SKIP_NETNS").is_some(),
            "cannot make a network namespace without IPv6 (needs root, unshare and sysctl), \
             or set RTMPD_TEST_SKIP_NETNS=1 to skip it"
        );
        eprintln!("SKIPPED: RTMPD_TEST_SKIP_NETNS is set: a stop without IPv6 was not checked");
        return;
    }
    let dir = TempDir::new("no-ipv6");
    let log_path = dir.join("rtmpd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // unshare and sh exec: the child is rtmpd itself.
    let script = format!(
        "ip link set lo up && sysctl -qw {sysctl} && exec '{}' -l 0 --http 0",
        env!("CARGO_BIN_EXE_rtmpd")
    );
    let child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting rtmpd in a namespace");
    let pid = child.id().to_string();
    let child = ChildGuard::new(child);
    let read_log = || std::fs::read_to_string(&log_path).unwrap();
    wait_for("four listeners", Duration::from_secs(60), || {
        read_log().matches("listening for ").count() == 4
    });
    let text = read_log();
    for wanted in ["RTMP on [::]:", "HTTP on [::]:", "RTMP on 0.0.0.0:"] {
        assert!(text.contains(wanted), "{wanted}: {text}");
    }
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let status = wait_with_timeout(child.take(), Duration::from_secs(60));
    let text = read_log();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("stopped: every connection closed"), "{text}");
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
}
