//! Helpers of the relay tests: Debian's nginx-rtmp as the reference peer (run in
//! the foreground with a generated config on a free port, restartable), a
//! publisher of a known stream longer than the fixtures (a fixture looped, with
//! timestamps that carry on), per-app config for in-process servers, and a TCP
//! proxy that cuts connections to make relays reconnect.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::client::{Client, ClientEvent, RtmpUrl};
use rtmpd::config::policy::{AppKeys, Policy};
use rtmpd::config::relay::{Origin, PushEntry, UpstreamUrl};
use rtmpd::config::Config;
use rtmpd::media::flv::{FlvTag, TAG_SCRIPT};
use rtmpd::rtmp::message::UserControl;

use crate::client_support::{is_status, options, send_tags};
use crate::http_support::get_json;
use crate::support::*;

// ---------------------------------------------------------------------------------
// Config

/// Sets per-app keys for `app` in the server's policy.
pub fn with_app(config: &mut Config, app: &str, keys: AppKeys) {
    let mut policy = Policy::clone(&config.policy);
    policy.apps.insert(app.to_owned(), keys);
    config.policy = Arc::new(policy);
}

/// Push entries for these URLs.
pub fn push_to(urls: &[String]) -> Vec<PushEntry> {
    urls.iter()
        .map(|u| PushEntry::new(UpstreamUrl::parse(u).unwrap()))
        .collect()
}

pub fn upstream(url: &str) -> UpstreamUrl {
    UpstreamUrl::parse(url).unwrap()
}

/// An edge's `origin = "URL"`.
pub fn origin_at(url: &str) -> Origin {
    Origin {
        url: upstream(url),
        tls_verify: None,
    }
}

// ---------------------------------------------------------------------------------
// The API's view of relays

/// `/api/relays` of the server: its pushes and pulls.
pub fn relays(server: &TestServer) -> serde_json::Value {
    get_json(server.http_addr(), "/api/relays").1
}

/// The push of `app/key` to the destination whose URL (as the API shows it)
/// contains `url_part`.
pub fn push_status(server: &TestServer, path: &str, url_part: &str) -> Option<serde_json::Value> {
    let key = stream_key(path);
    relays(server)["pushes"].as_array()?.iter().find_map(|p| {
        (p["app"] == key.app.as_str()
            && p["key"] == key.name.as_str()
            && p["url"].as_str().is_some_and(|u| u.contains(url_part)))
        .then(|| p.clone())
    })
}

pub fn wait_push_state(
    server: &TestServer,
    path: &str,
    url_part: &str,
    state: &str,
    timeout: Duration,
) {
    wait_for(
        &format!("the push of {path} to {url_part} to be {state}"),
        timeout,
        || push_status(server, path, url_part).is_some_and(|p| p["state"] == state),
    );
}

/// The waits a failing push chose, as the API shows them: (reconnects so far,
/// `backoff_seconds`, the wait chosen after that failure), once for each failure
/// seen while it backs off, until one after at least `n - 1` reconnects. A
/// failure a busy machine kept the poll from seeing is left out, not guessed.
pub fn observe_backoff(
    server: &TestServer,
    path: &str,
    url_part: &str,
    n: usize,
) -> Vec<(u64, f64)> {
    let mut waits: Vec<(u64, f64)> = Vec::new();
    let last = n as u64 - 1;
    wait_for(
        &format!("the push to {url_part} to back off {n} times"),
        Duration::from_secs(120),
        || {
            if let Some(p) = push_status(server, path, url_part) {
                let reconnects = p["reconnects"].as_u64().unwrap_or_default();
                if let Some(wait) = p["backoff_seconds"].as_f64() {
                    if waits.last().is_none_or(|(m, _)| *m != reconnects) {
                        waits.push((reconnects, wait));
                    }
                }
            }
            waits.last().is_some_and(|(m, _)| *m >= last)
        },
    );
    waits
}

/// Asserts that `waits` ([`observe_backoff`]) double from `min` seconds with
/// each reconnect, up to `max`, and that the maximum was reached.
pub fn assert_backoff(waits: &[(u64, f64)], min: f64, max: f64) {
    for &(n, wait) in waits {
        let want = (min * 2f64.powi(n as i32)).min(max);
        assert!(
            (wait - want).abs() <= 0.002,
            "after {n} reconnects: a wait of {wait} s, expected {want} s ({waits:?})"
        );
    }
    let (n, _) = *waits.last().expect("waits seen");
    assert!(
        min * 2f64.powi(n as i32) >= max,
        "the maximum wait was not reached ({waits:?})"
    );
}

// ---------------------------------------------------------------------------------
// A known stream, longer than a fixture

/// `tags` played `loops` times as one stream: the script tag and sequence headers
/// once at the start, the end-of-sequence marker only at the very end, and each
/// loop's timestamps continuing the last (one frame's spacing after it), the way
/// an encoder looping a file would send it.
pub fn looped(tags: &[FlvTag], loops: u32) -> Vec<FlvTag> {
    let last = tags.iter().map(|t| t.timestamp).max().unwrap_or(0);
    let span = last + 40;
    let mut out = Vec::new();
    for n in 0..loops {
        for tag in tags {
            let setup = tag.tag_type == TAG_SCRIPT || is_sequence_header(tag);
            if (setup && n > 0) || (is_end_of_sequence(tag) && n + 1 < loops) {
                continue;
            }
            out.push(FlvTag {
                tag_type: tag.tag_type,
                timestamp: tag.timestamp + n * span,
                data: tag.data.clone(),
            });
        }
    }
    out
}

/// Publishes `tags` to `url` with rtmpd's client, in real time (each tag when
/// its timestamp is due), then unpublishes. Returns when the publish started;
/// the thread returns the publisher's error, if any.
pub fn publish_paced(url: &str, tags: Vec<FlvTag>) -> thread::JoinHandle<Result<(), String>> {
    let url = RtmpUrl::parse(url).unwrap();
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let handle = thread::spawn(move || {
        let mut client = Client::connect(&url, &options()).map_err(|e| e.to_string())?;
        client.publish(&url.name).map_err(|e| e.to_string())?;
        let _ = started_tx.send(());
        let start = Instant::now();
        let first = tags.first().map_or(0, |t| t.timestamp);
        for tag in &tags {
            let due = start + Duration::from_millis(u64::from(tag.timestamp - first));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            send_tags(&mut client, std::slice::from_ref(tag));
        }
        client.close();
        Ok(())
    });
    started
        .recv_timeout(Duration::from_secs(60))
        .expect("the paced publisher to start publishing");
    handle
}

/// A player built on rtmpd's client that keeps what it receives as FLV tags,
/// for a server whose players never end by themselves (nginx-rtmp's wait for
/// the next publisher): it plays `url` until it has received a tag with the
/// data of `last` (or `timeout` passes), then leaves. Unlike a player writing a
/// file, nothing it got can be stuck in a buffer.
pub fn play_until(url: &str, last: FlvTag, timeout: Duration) -> thread::JoinHandle<Vec<FlvTag>> {
    play_collecting(url, timeout, move |event, _| {
        matches!(event, ClientEvent::Media { type_id, payload, .. }
            if *type_id == last.tag_type && *payload == last.data)
    })
}

/// Like [`play_until`], until the server says, after some media, that the
/// publisher has gone (StreamEOF, as nginx-rtmp says it, or
/// `NetStream.Play.UnpublishNotify`): for a stream whose last tag is no mark of
/// its end (a looped one repeats it).
pub fn play_until_unpublished(url: &str, timeout: Duration) -> thread::JoinHandle<Vec<FlvTag>> {
    play_collecting(url, timeout, |event, tags| {
        !tags.is_empty()
            && (matches!(event, ClientEvent::UserControl(UserControl::StreamEof(_)))
                || is_status(event, "NetStream.Play.UnpublishNotify"))
    })
}

/// Plays `url` (returning once the play is answered), keeping the media and data
/// it receives as FLV tags, until an event satisfies `done` or `timeout` passes.
fn play_collecting(
    url: &str,
    timeout: Duration,
    done: impl Fn(&ClientEvent, &[FlvTag]) -> bool + Send + 'static,
) -> thread::JoinHandle<Vec<FlvTag>> {
    let url = RtmpUrl::parse(url).unwrap();
    let (playing_tx, playing) = crossbeam_channel::bounded(1);
    let handle = thread::spawn(move || {
        let mut client = Client::connect(&url, &options()).expect("the player connects");
        client.play(&url.name).expect("the player plays");
        let _ = playing_tx.send(());
        let deadline = Instant::now() + timeout;
        let mut tags = Vec::new();
        while Instant::now() < deadline {
            let event = match client.next_event_within(Duration::from_millis(200)) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(e) => panic!("the player of {url}: {e}"),
            };
            match &event {
                ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                    ..
                } => tags.push(FlvTag {
                    tag_type: *type_id,
                    timestamp: *timestamp,
                    data: payload.clone(),
                }),
                ClientEvent::Data {
                    timestamp, payload, ..
                } => tags.push(FlvTag {
                    tag_type: TAG_SCRIPT,
                    timestamp: *timestamp,
                    data: payload.clone(),
                }),
                _ => {}
            }
            if done(&event, &tags) {
                break;
            }
        }
        client.close();
        tags
    });
    playing
        .recv_timeout(Duration::from_secs(60))
        .expect("the player to start playing");
    handle
}

/// The last media tag of `tags` (not the end-of-sequence marker).
pub fn last_media(tags: &[FlvTag]) -> FlvTag {
    let (audio, video) = media_tracks(tags);
    [audio.last(), video.last()]
        .into_iter()
        .flatten()
        .max_by_key(|t| t.timestamp)
        .cloned()
        .expect("media tags")
}

// ---------------------------------------------------------------------------------
// nginx-rtmp

/// Debian's nginx with libnginx-mod-rtmp, in the foreground, on 127.0.0.1 and a
/// free port, with `applications` as the body of its `server {}` block. Stopped
/// when dropped.
pub struct Nginx {
    dir: TempDir,
    conf: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Nginx {
    pub fn start(applications: &str) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let module = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
            .iter()
            .map(|d| PathBuf::from(d).join("ngx_rtmp_module.so"))
            .find(|p| p.is_file())
            .expect("nginx's rtmp module (scripts/test.sh installs libnginx-mod-rtmp)");
        let path = dir.path().display().to_string();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module {module};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
                 pid {path}/nginx.pid;\nerror_log {path}/error.log info;\n\
                 events {{ worker_connections 1024; }}\n\
                 rtmp {{\n  server {{\n    listen 127.0.0.1:{port};\n    chunk_size 4096;\n\
                 {applications}\n  }}\n}}\n",
                module = module.display()
            ),
        )
        .unwrap();
        let mut nginx = Nginx {
            dir,
            conf,
            port,
            child: None,
        };
        nginx.run();
        nginx
    }

    /// Starts nginx (again, after [`Nginx::kill`]) on its port; returns once it
    /// listens.
    pub fn run(&mut self) {
        let path = self.dir.path();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(path)
            .arg("-e")
            .arg(path.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nginx (scripts/test.sh installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr}; its log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills nginx (its connections drop at once) and starts it again on the same
    /// port; returns once it listens again.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("nginx log:\n{}", self.log());
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------
// A proxy that cuts connections

/// Forwards TCP connections to `target`, cutting each `cut_after` after it
/// began: every connection through it fails, mid-stream if it got that far.
/// Counts the connections; stops accepting when dropped.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl CuttingProxy {
    pub fn start(target: SocketAddr, cut_after: Duration) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || proxy(client, target, cut_after));
            }
        });
        CuttingProxy {
            addr,
            connections,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.addr)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn proxy(client: TcpStream, target: SocketAddr, cut_after: Duration) {
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let pipe = |from: &TcpStream, to: &TcpStream| {
        let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        thread::spawn(move || copy(from, to))
    };
    let (up, down) = (pipe(&client, &server), pipe(&server, &client));
    thread::sleep(cut_after);
    for socket in [&client, &server] {
        let _ = socket.shutdown(Shutdown::Both);
    }
    let _ = (up.join(), down.join());
}

/// Copies until EOF or an error.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
