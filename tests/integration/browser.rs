//! A real browser: headless Chromium opens the web page at `/`, finds the stream
//! listed, and its native `<video>` plays the stream's HLS (`currentTime`
//! advances, `videoWidth` is the source's); the page does not shift while it
//! refreshes, every button has an accessible name and nothing sticks out on a
//! phone's screen; served over HTTPS it plays the HTTPS HLS URL; with an API
//! token the page asks for it. Natively Chromium starts three segments from the
//! live edge (its requests seen through a logging proxy). hls.js (test-only,
//! installed by scripts/test.sh) plays the Low-Latency HLS less than 2 s behind
//! the frames' arrival at the server. Chromium is driven over the DevTools protocol (a WebSocket, with
//! tungstenite); a screenshot of the page is saved under target/ for people to
//! look at.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::http_support::*;
use crate::support::*;

const START: Duration = Duration::from_secs(60);

/// Headless Chromium with a DevTools connection to its one page.
struct Browser {
    _child: ChildGuard,
    _profile: TempDir,
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

fn chromium() -> &'static str {
    "chromium"
}

impl Browser {
    /// Opens `url` in a fresh headless Chromium (its own empty profile).
    fn open(url: &str) -> Browser {
        let profile = TempDir::new("chromium");
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-file-access-from-files",
            "--window-size=1280,900",
            "--remote-debugging-port=0",
            // The HTTPS test's certificate is from a CA made in the test.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = ChildGuard::new(cmd.spawn().unwrap_or_else(|e| {
            panic!("starting chromium: {e} (run scripts/test.sh to install it)")
        }));
        // Chromium says where DevTools listens in the profile it was given.
        let port_file = profile.join("DevToolsActivePort");
        let mut port = None;
        wait_for("Chromium's DevTools port", START, || {
            port = fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok());
            port.is_some()
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap()));
        let mut page = None;
        wait_for("the page's DevTools target", START, || {
            // DevTools' HTTP server keeps connections open: read by length.
            let mut http = TcpStream::connect(addr).unwrap();
            http.write_all(b"GET /json/list HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let list = read_length_delimited(&mut http, START);
            let targets: Value = serde_json::from_slice(&list.body).unwrap();
            page = targets
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned);
            page.is_some()
        });
        let page = page.unwrap();
        let path = page.splitn(4, '/').nth(3).unwrap().to_owned();
        let ws = websocket(addr, &path, START).expect("the DevTools WebSocket");
        let mut browser = Browser {
            _child: child,
            _profile: profile,
            ws,
            next_id: 1,
        };
        browser.wait_for(
            "the page to load",
            START,
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
        browser
    }

    /// Calls a DevTools method and returns its result (events are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().expect("a DevTools message") else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expr}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is truthy; returns that value.
    fn wait_for(&mut self, what: &str, timeout: Duration, expr: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the page under target/ and returns its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(shot["data"].as_str().unwrap());
        let dir = target_dir();
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, png).unwrap();
        path
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            n.to_be_bytes()[1..c.len()].to_vec()
        })
        .collect()
}

/// The video element's state: currentTime, videoWidth, videoHeight, error.
const VIDEO_STATE: &str = "(() => { const v = document.querySelector('video'); \
    return v && { t: v.currentTime, w: v.videoWidth, h: v.videoHeight, \
    err: v.error && v.error.message }; })()";

/// Waits until the page's video has played `seconds` more than when first seen
/// playing; returns its last state.
fn wait_playing(browser: &mut Browser, seconds: f64) -> Value {
    let first = browser.wait_for(
        "the video to start",
        START,
        &format!("(() => {{ const s = {VIDEO_STATE}; return s && s.t > 0 && s; }})()"),
    );
    let from = first["t"].as_f64().unwrap();
    browser.wait_for(
        "currentTime to advance",
        START,
        &format!(
            "(() => {{ const s = {VIDEO_STATE}; return s && s.t > {from} + {seconds} && s; }})()"
        ),
    )
}

/// Publishes av.flv (looped, in real time) on `path` until three segments are
/// listed: Chromium's native HLS player fails on a live playlist of one or two
/// segments (DEMUXER_ERROR_COULD_NOT_PARSE); it plays once a stream has three,
/// as any stream live for six seconds has.
fn publish_three_segments(server: &TestServer, path: &str) -> ChildGuard {
    publish_segments(server, path, 3)
}

/// Publishes av.flv (looped, in real time) on `path` until `n` segments are
/// listed.
fn publish_segments(server: &TestServer, path: &str, n: usize) -> ChildGuard {
    let publisher = ChildGuard::new(publish_looped(&server.url(path), &fixture("av.flv"), 100));
    server.wait_for_frames(path, START);
    wait_for(&format!("{n} segments"), START, || {
        segment_numbers(&get(server.http_addr(), &format!("/{path}/media.m3u8")).text()).len() >= n
    });
    publisher
}

/// The media sequence numbers of the complete segments a playlist lists.
fn segment_numbers(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("seg-")?.strip_suffix(".m4s")?.parse().ok())
        .collect()
}

/// A TCP proxy in front of `to` that keeps the paths of the GET requests
/// passing through it, in order.
struct RequestLog {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl RequestLog {
    fn start(to: SocketAddr) -> RequestLog {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let log = paths.clone();
        // Ends with the test process; each direction of each connection is a thread.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                let log = log.clone();
                std::thread::spawn(move || forward_requests(client, server, &log));
            }
        });
        RequestLog { addr, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// Copies a client's bytes to the server, noting each request line's path.
fn forward_requests(mut client: TcpStream, mut server: TcpStream, log: &Mutex<Vec<String>>) {
    let (mut buf, mut line) = ([0u8; 16 * 1024], Vec::new());
    while let Ok(n @ 1..) = client.read(&mut buf) {
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
        for &b in &buf[..n] {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(path) = text.strip_prefix("GET ").and_then(|r| r.split(' ').next()) {
                log.lock().unwrap().push(path.to_owned());
            }
            line.clear();
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// Chromium's native HLS player, on a live playlist, starts three segments
/// from its end (RFC 8216 §6.3.3), not at the oldest segment kept: after at
/// most a look at an early segment (for the codecs), the segments it plays in
/// a row begin at most two before the last one listed when it started.
#[test]
fn native_playback_starts_within_three_segments_of_the_live_edge() {
    let server = start_server();
    let path = "live/native-edge";
    // Five segments: starting at the oldest is then two more behind.
    let publisher = publish_segments(&server, path, 5);
    let proxy = RequestLog::start(server.http_addr());
    let last = *segment_numbers(&get(server.http_addr(), &format!("/{path}/media.m3u8")).text())
        .last()
        .unwrap();
    let dir = TempDir::new("native-edge");
    let page = dir.join("native.html");
    let url = format!("http://{}/{path}/index.m3u8", proxy.addr);
    fs::write(
        &page,
        format!("<!doctype html><video muted autoplay src=\"{url}\"></video>"),
    )
    .unwrap();
    let mut browser = Browser::open(&format!("file://{}", page.display()));
    wait_playing(&mut browser, 2.0);
    let fetched: Vec<u64> = proxy
        .paths()
        .iter()
        .filter_map(|p| {
            p.rsplit('/')
                .next()?
                .strip_prefix("seg-")?
                .strip_suffix(".m4s")?
                .parse()
                .ok()
        })
        .collect();
    // The first of three segments fetched in a row: where playback began.
    let start = fetched
        .windows(3)
        .find(|w| w[1] == w[0] + 1 && w[2] == w[1] + 1)
        .map(|w| w[0]);
    let start = start.unwrap_or_else(|| panic!("no run of segments in {fetched:?}"));
    assert!(
        start + 2 >= last,
        "playback began at segment {start}, the playlist ended at {last}: {fetched:?}"
    );
    eprintln!("native playback began at segment {start} of 0..={last} ({fetched:?})");
    drop(publisher);
}

#[test]
fn the_page_lists_the_stream_and_its_video_plays_natively() {
    // Recorded too, so the page shows a recording's state.
    let records = TempDir::new("page-records");
    let record_dir = rtmpd::config::record::RecordDir(records.path().to_owned());
    let server = start_server_with(|c| {
        std::sync::Arc::make_mut(&mut c.policy).set_record_everywhere(Some(record_dir));
    });
    let path = "live/page";
    let publisher = publish_three_segments(&server, path);
    let mut browser = Browser::open(&server.http_url("/"));
    browser.wait_for(
        "the stream in the list",
        START,
        "[...document.querySelectorAll('#streams h2')].some(h => h.textContent === 'live/page')",
    );
    // Layout shifts from here on (the list is drawn; refreshes follow every 2 s).
    browser.eval(
        "window.shifts = 0; new PerformanceObserver(l => { for (const e of l.getEntries()) \
         window.shifts += e.value; }).observe({ type: 'layout-shift' }); true",
    );
    let state = wait_playing(&mut browser, 2.0);
    assert_eq!(
        (state["w"].as_u64(), state["h"].as_u64()),
        (Some(320), Some(240)),
        "{state}"
    );
    assert!(state["err"].is_null(), "{state}");
    let shifts = browser.eval("window.shifts").as_f64().unwrap();
    assert!(
        shifts < 0.01,
        "the page shifted by {shifts} while refreshing"
    );
    let text = browser
        .eval("document.body.innerText")
        .as_str()
        .unwrap()
        .to_owned();
    for expected in [
        "h264",
        "aac",
        "320×240",
        "RTMP",
        "HTTP-FLV",
        "HLS",
        "rtmp",
        "Recording",
        "on · ",
        ".flv, ",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from the page:\n{text}"
        );
    }
    let unnamed = browser.eval(
        "[...document.querySelectorAll('button, input, video')].filter(e => \
         !(e.getAttribute('aria-label') || e.labels?.[0]?.textContent || e.textContent).trim()).length",
    );
    assert_eq!(unnamed, 0, "controls without an accessible name");
    let shot = browser.screenshot("hls-page.png");
    eprintln!("screenshot of the page: {}", shot.display());
    // On a phone's screen (360 CSS pixels) nothing sticks out sideways.
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": true }),
    );
    let wide = browser.wait_for(
        "the phone layout",
        START,
        "innerWidth === 360 && document.documentElement.scrollWidth",
    );
    assert!(
        wide.as_u64().is_some_and(|w| w <= 360),
        "the page is {wide} px wide on a 360 px screen"
    );
    let shot = browser.screenshot("hls-page-phone.png");
    eprintln!("screenshot on a phone's screen: {}", shot.display());
    drop(publisher);
}

/// Opened over HTTPS, the page's player plays the HTTPS HLS URL: a browser
/// blocks http:// media on an https:// page.
#[test]
fn over_https_the_page_plays_the_https_hls_url() {
    use crate::tls_support::{with_rtmps, TestCa};
    let dir = TempDir::new("page-https");
    let leaf = TestCa::new().leaf();
    let server = start_server_with(|c| {
        with_rtmps(c, dir.path(), &leaf);
        c.https = vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()];
    });
    let https = server.listener(rtmpd::server::Service::Https);
    let path = "live/page-tls";
    let publisher = publish_three_segments(&server, path);
    let mut browser = Browser::open(&format!("https://localhost:{}/", https.port()));
    let state = wait_playing(&mut browser, 1.0);
    assert_eq!(state["w"].as_u64(), Some(320), "{state}");
    let src = browser.eval("document.querySelector('video').src");
    assert_eq!(
        src.as_str(),
        Some(format!("https://localhost:{}/{path}/index.m3u8", https.port()).as_str())
    );
    drop(publisher);
}

#[test]
fn the_page_asks_for_the_api_token() {
    let server = crate::access::start_with_rules("api_token = \"t0ken\"\n");
    let mut browser = Browser::open(&server.http_url("/"));
    browser.wait_for(
        "the token form",
        START,
        "getComputedStyle(document.getElementById('auth')).display !== 'none'",
    );
    browser.eval(
        "document.getElementById('token').value = 't0ken'; \
         document.getElementById('auth').requestSubmit(); true",
    );
    browser.wait_for(
        "the list after the token",
        START,
        "getComputedStyle(document.getElementById('auth')).display === 'none' && \
         document.getElementById('status').textContent.includes('live')",
    );
}

/// Where scripts/test.sh installs hls.js (a test-only npm package).
fn hls_js() -> Option<PathBuf> {
    let path = std::env::var_os("RTMPD_TEST_HLSJS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir().join("test-tools/hlsjs/node_modules/hls.js/dist/hls.min.js")
        });
    path.exists().then_some(path)
}

#[test]
fn hls_js_plays_low_latency_hls_within_two_seconds_of_the_live_edge() {
    let Some(hls_js) = hls_js() else {
        assert!(
            std::env::var_os("RTMPD_TEST_SKIP_HLSJS").is_some(),
            "hls.js is missing: run scripts/test.sh (or set RTMPD_TEST_SKIP_HLSJS=1 to skip)"
        );
        eprintln!("skipped: RTMPD_TEST_SKIP_HLSJS is set");
        return;
    };
    let server = start_server();
    let path = "live/latency";
    let publisher = ChildGuard::new(publish_looped(&server.url(path), &fixture("av.flv"), 100));
    server.wait_for_frames(path, START);
    let dir = TempDir::new("hlsjs");
    let page = dir.join("latency.html");
    let url = server.http_url(&format!("{path}/index.m3u8"));
    // A loaded test machine stalls Chromium now and then. hls.js then adds 1 s to
    // its target latency per stall and never speeds up, by default: that would
    // measure the machine. As a low-latency player page would, it is told to
    // keep its target and to catch up (at up to 1.5x) after a stall.
    fs::write(
        &page,
        format!(
            "<!doctype html><video id=v muted autoplay></video>\
             <script src=\"file://{}\"></script><script>\
             const hls = new Hls({{ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, liveSyncOnStallIncrease: 0 }});\
             window.stalls = 0; v.addEventListener('waiting', () => window.stalls++);\
             hls.loadSource('{url}'); hls.attachMedia(v);\
             window.latency = () => hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null;\
             window.target = () => hls.targetLatency;\
             window.parts = () => hls.levels.reduce((n, l) => n + ((l.details && l.details.partList) || []).length, 0);\
             </script>",
            hls_js.display()
        ),
    )
    .unwrap();
    let mut browser = Browser::open(&format!("file://{}", page.display()));
    wait_playing(&mut browser, 1.0);
    // hls.js plays the parts, and holds playback the playlist's PART-HOLD-BACK
    // behind the live edge: under 2 s. That is what the server decides.
    let parts = browser.eval("window.parts()").as_u64().unwrap_or_default();
    assert!(parts > 0, "hls.js sees no parts: not Low-Latency HLS");
    let target = browser.eval("window.target()").as_f64();
    assert!(
        target.is_some_and(|t| t > 0.0 && t < 2.0),
        "hls.js aims {target:?} s behind the live edge"
    );
    // How far behind the frames' arrival at the server (EXT-X-PROGRAM-DATE-TIME)
    // hls.js shows them: issue 15 asks for less than 2 s behind an RTMP player of
    // the same stream, which itself plays after that arrival, so this is the
    // stricter bound. 1.2-1.5 s on an idle machine; a machine loaded by several
    // suites at once (load average in the hundreds) measured 2.0-2.4 s.
    let mut samples = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(l) = browser.eval("window.latency()").as_f64() {
            samples.push(l);
        }
    }
    samples.sort_by(f64::total_cmp);
    assert!(
        samples.len() >= 5,
        "hls.js reported no playing date: {samples:?}"
    );
    let median = samples[samples.len() / 2];
    let stalls = browser.eval("window.stalls");
    eprintln!(
        "hls.js aims {target:?} s behind the live edge ({parts} parts); plays a median \
         {median:.2} s behind the server's arrival time, of {samples:?} ({stalls} stalls)"
    );
    assert!(
        median < 2.0,
        "hls.js plays a median {median:.2} s behind the server's arrival time, of \
         {samples:?} ({stalls} stalls)"
    );
    drop(publisher);
}
