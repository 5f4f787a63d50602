//! Helpers shared by the integration tests: an in-process server on an ephemeral
//! port, the FLV fixtures, external clients (ffmpeg publishing; rtmpdump or ffmpeg
//! playing into a file), timeouts so that no test can hang, a self-removing temp
//! dir, and comparison of what a player received with what was published.
//!
//! Not every test uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::config::Config;
use rtmpd::media::flv::{self, FlvTag, TAG_AUDIO, TAG_VIDEO};
use rtmpd::media::frame::FrameRole;
use rtmpd::registry::{PlayerProtocol, Registry, StreamInfo};
use rtmpd::server::{Server, ServerHandle, Service};
use rtmpd::stream_key::StreamKey;

// ---------------------------------------------------------------------------------
// Server

/// A server running on a background thread for the rest of the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The server's registry, to wait on stream state (publisher live, players
    /// subscribed) instead of sleeping.
    pub registry: Arc<Registry>,
    /// The HTTP listener (HTTP-FLV, WebSocket-FLV, API, metrics), on 127.0.0.1 and
    /// a free port unless the test turned HTTP off.
    pub http: Option<SocketAddr>,
    /// The API's own listener, when the test set `api_listen`.
    pub api: Option<SocketAddr>,
    /// Every listener, in order: what it serves and where.
    pub listeners: Vec<(Service, SocketAddr)>,
    /// Stops the server (graceful stop, as on SIGTERM).
    pub handle: ServerHandle,
    /// Set once `Server::run` has returned.
    pub stopped: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts a server with the default configuration on 127.0.0.1 and a free port.
pub fn start_server() -> TestServer {
    start_server_with(|_| {})
}

/// Starts a server on 127.0.0.1 and a free port after `configure` has adjusted the
/// default configuration (it may also override `listen`).
pub fn start_server_with(configure: impl FnOnce(&mut Config)) -> TestServer {
    let config = test_config(configure);
    start_bound(Server::bind(config).expect("binding the test server"))
}

/// A test config: 127.0.0.1 and free ports for RTMP and HTTP, adjusted by
/// `configure`.
pub fn test_config(configure: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()],
        http: vec![SocketAddr::from(([127, 0, 0, 1], 0)).into()],
        // A client a busy machine holds up between its steps (a publisher of ours
        // waiting for players to start, a player set up while ffmpeg starts) is
        // not cut by the 10 s defaults; the tests of these timeouts set their own.
        setup_timeout: Duration::from_secs(60),
        publish_timeout: crate::client_support::HELD_PUBLISH_TIMEOUT,
        ..Config::default()
    };
    configure(&mut config);
    config
}

/// Runs a server the test bound itself (with `Server::bind_with_storage`, say)
/// on a background thread.
pub fn start_bound(server: Server) -> TestServer {
    // RUST_LOG=debug cargo test ... shows the server's log for failing tests.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
    let addr = server.local_addr();
    let registry = server.registry();
    let http = server.http_addr();
    let api = server.api_addr();
    let listeners = server.listeners();
    let handle = server.handle();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let returned = stopped.clone();
    thread::Builder::new()
        .name(format!("rtmpd-{}", addr.port()))
        .spawn(move || {
            if let Err(e) = server.run() {
                eprintln!("test server on {addr} stopped: {e}");
            }
            returned.store(true, Ordering::SeqCst);
        })
        .expect("spawning the server thread");
    TestServer {
        addr,
        registry,
        http,
        api,
        listeners,
        handle,
        stopped,
    }
}

/// ffmpeg plays `url` (the stream `path`) from before ffmpeg publishes av.flv to
/// it, not in real time: both must end by themselves and the player get every
/// tag, byte for byte. (rtmpdump would do, but speaks no IPv6.)
pub fn ffmpeg_plays_every_tag(server: &TestServer, url: &str, path: &str) {
    let dir = TempDir::new("ffmpeg-plays");
    let out = dir.join("played.flv");
    let player = play_ffmpeg(url, &out);
    server.wait_for_players(path, 1, Duration::from_secs(60));
    let publisher = publish_ffmpeg(url, &fixture("av.flv"), false);
    wait_success(
        publisher,
        Duration::from_secs(60),
        &format!("ffmpeg publishing {url}"),
    );
    wait_success(
        player,
        Duration::from_secs(60),
        &format!("ffmpeg playing {url}"),
    );
    assert_received_matches(&fixture_tags("av.flv"), &read_flv(&out), true);
}

/// Whether this machine has the IPv6 loopback (`::1`) the IPv6 tests need.
/// Without it they fail, unless `RTMPD_TEST_NO_IPV6=1` (which scripts/test.sh
/// sets, and says so, where it finds none) lets them skip, saying so.
pub fn ipv6_loopback(test: &str) -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("RTMPD_TEST_NO_IPV6").is_some(),
        "{test}: no IPv6 loopback ([::1]) on this machine; set RTMPD_TEST_NO_IPV6=1 to skip \
         the IPv6 checks (scripts/test.sh does where it finds none)"
    );
    eprintln!("{test}: NOT TESTED: no IPv6 loopback here (RTMPD_TEST_NO_IPV6)");
    false
}

impl TestServer {
    /// The HTTP listener's address; panics if the test turned HTTP off.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("the test server has HTTP turned off")
    }

    /// `http://127.0.0.1:PORT/PATH`, e.g. `server.http_url("live/test.flv")`.
    pub fn http_url(&self, path: &str) -> String {
        format!(
            "http://{}/{}",
            self.http_addr(),
            path.trim_start_matches('/')
        )
    }

    /// `rtmp://127.0.0.1:PORT/PATH` (or `[::1]`), e.g. `server.url("live/test")`.
    pub fn url(&self, path: &str) -> String {
        // SocketAddr's Display brackets an IPv6 address, as URLs want.
        format!("rtmp://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The registry's view of `app/name`, e.g. `server.stream_info("live/test")`.
    pub fn stream_info(&self, path: &str) -> Option<StreamInfo> {
        self.registry.stream_info(&stream_key(path))
    }

    /// Players subscribed to `app/name` right now.
    pub fn players(&self, path: &str) -> usize {
        self.stream_info(path).map_or(0, |i| i.players)
    }

    /// Whether a publisher holds `app/name` right now.
    pub fn is_live(&self, path: &str) -> bool {
        self.stream_info(path)
            .is_some_and(|i| i.publisher.is_some())
    }

    /// Waits until at least `n` players are subscribed to `app/name`.
    pub fn wait_for_players(&self, path: &str, n: usize, timeout: Duration) {
        wait_for(&format!("{n} players on {path}"), timeout, || {
            self.players(path) >= n
        });
    }

    /// Waits until `n` plays have started on this server since it started, players
    /// still subscribed or not: a probe may have had what it wanted from the
    /// fast-start burst and gone before a count of current players would see it.
    pub fn wait_for_plays(&self, n: u64, timeout: Duration) {
        wait_for(&format!("{n} plays"), timeout, || {
            let totals = self.registry.totals();
            PlayerProtocol::ALL
                .iter()
                .map(|p| totals.plays(*p))
                .sum::<u64>()
                >= n
        });
    }

    /// Waits until the server has taken in every frame of `sent`, the tags the
    /// publisher of `app/name` has sent so far (by its count of their payload
    /// bytes): a player that joins then joins at that point of the stream.
    pub fn wait_for_taken_in(&self, path: &str, sent: &[FlvTag]) {
        let sent_bytes: u64 = sent.iter().map(|t| t.data.len() as u64).sum();
        let key = stream_key(path);
        let taken_in = || {
            self.registry
                .stream_stats_for(&key)
                .and_then(|s| s.publisher)
                .map_or(0, |p| p.bytes_in)
        };
        wait_for(
            &format!(
                "the server to take in the {} tags published on {path}",
                sent.len()
            ),
            Duration::from_secs(60),
            || taken_in() >= sent_bytes,
        );
        assert_eq!(taken_in(), sent_bytes, "payload bytes published on {path}");
    }

    /// Waits until a publisher holds `app/name`.
    pub fn wait_for_publisher(&self, path: &str, timeout: Duration) {
        wait_for(&format!("a publisher on {path}"), timeout, || {
            self.is_live(path)
        });
    }

    /// Waits until a publisher holds `app/name` and its first frames have arrived
    /// (the fast-start cache is no longer empty).
    pub fn wait_for_frames(&self, path: &str, timeout: Duration) {
        wait_for(&format!("frames published on {path}"), timeout, || {
            self.has_frames(path)
        });
    }

    /// Whether a publisher holds `app/name` and the server has taken in frames of it.
    pub fn has_frames(&self, path: &str) -> bool {
        self.stream_info(path)
            .is_some_and(|i| i.publisher.is_some() && i.cached_frames > 0)
    }
}

/// `StreamKey` of "app/name".
pub fn stream_key(path: &str) -> StreamKey {
    let (app, name) = path
        .split_once('/')
        .unwrap_or_else(|| panic!("{path:?} is not app/name"));
    StreamKey::new(app, name).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

// ---------------------------------------------------------------------------------
// Fixtures and FLV files

/// Path of `tests/fixtures/NAME` (see tests/fixtures/README.md).
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(path.is_file(), "fixture {} does not exist", path.display());
    path
}

/// All tags of a fixture, strictly parsed.
pub fn fixture_tags(name: &str) -> Vec<FlvTag> {
    let path = fixture(name);
    let buf = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match flv::parse(&buf) {
        Ok((_, tags)) => tags,
        Err(e) => panic!("fixture {}: {e}", path.display()),
    }
}

/// `name` looped `loops` extra times into `dir` as one FLV file (ffmpeg's
/// `-stream_loop`, stream copy), and the file's tags: what publishing that file
/// sends. For a live stream that must outlast whatever runs alongside it, however
/// slow the machine; the test stops the publisher when it is done.
pub fn looped_fixture(dir: &TempDir, name: &str, loops: u32) -> (PathBuf, Vec<FlvTag>) {
    let looped = dir.join(&format!("{name}-looped-{loops}.flv"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-stream_loop", &loops.to_string(), "-i"])
        .arg(fixture(name))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&looped);
    wait_success(
        spawn(cmd),
        Duration::from_secs(60),
        "ffmpeg looping a fixture",
    );
    let bytes =
        std::fs::read(&looped).unwrap_or_else(|e| panic!("reading {}: {e}", looped.display()));
    let (_, tags) = flv::parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "the looped fixture {} does not parse: {e}",
            looped.display()
        )
    });
    (looped, tags)
}

/// The complete tags of an FLV file a player wrote; a tag cut off because the player
/// was stopped mid-write is dropped. Panics if the file is missing or has no valid
/// FLV header.
pub fn read_flv(path: &Path) -> Vec<FlvTag> {
    let buf = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match flv::parse_lenient(&buf) {
        (Some(_), tags) => tags,
        (None, _) => panic!(
            "{} ({} bytes) does not start with a valid FLV header: {:02x?}",
            path.display(),
            buf.len(),
            &buf[..buf.len().min(16)]
        ),
    }
}

// ---------------------------------------------------------------------------------
// External clients

/// Publishes `input` to `url` with ffmpeg (stream copy). With `realtime` the file is
/// read at its native rate (`-re`), i.e. a 4 s fixture takes about 4 s.
pub fn publish_ffmpeg(url: &str, input: &Path, realtime: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.arg("-i").arg(input);
    cmd.args(["-c", "copy", "-f", "flv", url]);
    spawn(cmd)
}

/// rtmpdump's `--timeout`: it gives up on a stream that sends nothing for this
/// long, 30 s by default, which a player waiting for a publisher can reach on a busy
/// machine. The tests bound their waits themselves.
pub const RTMPDUMP_TIMEOUT: &str = "600";

/// Plays `url` with rtmpdump, writing the received stream to `out` as FLV.
pub fn play_rtmpdump(url: &str, out: &Path) -> Child {
    let mut cmd = Command::new("rtmpdump");
    cmd.args([
        "--live",
        "-q",
        "--timeout",
        RTMPDUMP_TIMEOUT,
        "-r",
        url,
        "-o",
    ])
    .arg(out);
    spawn(cmd)
}

/// Plays `url` with ffmpeg (stream copy), writing the received stream to `out` as FLV.
/// Note that ffmpeg re-muxes: it writes its own onMetaData and shifts timestamps to
/// start near 0, but keeps the frame data.
pub fn play_ffmpeg(url: &str, out: &Path) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-i", url]);
    cmd.args(["-c", "copy", "-f", "flv"]).arg(out);
    spawn(cmd)
}

/// The streams ffprobe finds in `target` (a file or a URL), one map per stream
/// with the fields codec_type, codec_name, width, height, sample_rate and channels
/// (those that apply to the stream). Panics if ffprobe fails or takes longer than
/// `timeout`.
pub fn ffprobe_streams(target: &str, timeout: Duration) -> Vec<BTreeMap<String, String>> {
    let mut streams = run_ffprobe(STREAM_ENTRIES, target, None, timeout);
    // An HLS input lists its streams twice: in its program and on their own.
    let mut seen = std::collections::BTreeSet::new();
    streams.retain(|s| seen.insert(s.get("index").cloned()));
    streams
}

/// The packets ffprobe reads from `target`, in order, one map per packet with the
/// fields codec_type and size.
pub fn ffprobe_packets(target: &str, timeout: Duration) -> Vec<BTreeMap<String, String>> {
    run_ffprobe("packet=codec_type,size", target, None, timeout)
}

/// The packets ffprobe reads from `target`, in order, with codec_type, pts_time,
/// flags and data_hash (`SHA256:hex` of the packet's data).
pub fn ffprobe_packet_hashes(target: &str, timeout: Duration) -> Vec<BTreeMap<String, String>> {
    run_ffprobe(
        "packet=codec_type,pts_time,flags,data_hash -show_data_hash SHA256",
        target,
        None,
        timeout,
    )
}

/// Like [`ffprobe_streams`] on what `feed` writes to ffprobe's stdin (`ffprobe -`),
/// e.g. a stream the test reads from a socket. `feed` runs on a thread of its own;
/// its writes fail once ffprobe has seen enough and exited, which should end it.
pub fn ffprobe_stdin_streams(
    feed: impl FnOnce(ChildStdin) + Send + 'static,
    timeout: Duration,
) -> Vec<BTreeMap<String, String>> {
    run_ffprobe(STREAM_ENTRIES, "-", Some(Box::new(feed)), timeout)
}

const STREAM_ENTRIES: &str = "stream=index,codec_type,codec_name,width,height,sample_rate,channels";

/// Writes to `child`'s stdin (which must be piped) from a thread of its own.
pub fn feed_stdin(
    child: &mut Child,
    feed: impl FnOnce(ChildStdin) + Send + 'static,
) -> thread::JoinHandle<()> {
    let stdin = child.stdin.take().expect("the child's stdin is piped");
    thread::spawn(move || feed(stdin))
}

type StdinFeed = Box<dyn FnOnce(ChildStdin) + Send>;

/// Runs ffprobe `-show_entries ENTRIES` on `target`; one map per section printed.
fn run_ffprobe(
    entries: &str,
    target: &str,
    feed: Option<StdinFeed>,
    timeout: Duration,
) -> Vec<BTreeMap<String, String>> {
    let mut cmd = ffprobe_command(entries, target);
    if feed.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let feeder = feed.map(|feed| feed_stdin(&mut child, feed));
    let report = ffprobe_report(child, target, timeout);
    if let Some(feeder) = feeder {
        feeder.join().expect("the thread feeding ffprobe panicked");
    }
    report
}

/// `ffprobe -show_entries ENTRIES TARGET` with its report and stderr piped, for
/// [`ffprobe_report`].
fn ffprobe_command(entries: &str, target: &str) -> Command {
    let mut cmd = Command::new("ffprobe");
    // `entries` may carry further options after the entries themselves.
    let mut entries = entries.split(' ');
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        entries.next().unwrap_or_default(),
    ])
    .args(entries)
    .args(["-of", "compact=p=0", target])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Like [`ffprobe_streams`], in two steps: start ffprobe now (on `target`), read
/// its report later with [`ffprobe_report`].
pub fn spawn_ffprobe_streams(target: &str) -> Child {
    let mut cmd = ffprobe_command(STREAM_ENTRIES, target);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e} (run scripts/test.sh to install it)"))
}

/// Waits for an ffprobe started by [`spawn_ffprobe_streams`] (on `target`) and returns
/// its report, one map per section printed. Panics if ffprobe fails or takes longer
/// than `timeout`.
pub fn ffprobe_report(
    mut child: Child,
    target: &str,
    timeout: Duration,
) -> Vec<BTreeMap<String, String>> {
    // A packet list can outgrow the pipe: read it while ffprobe runs.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut report = String::new();
        let _ = stdout.read_to_string(&mut report);
        report
    });
    let Some(status) = wait_until(&mut child, Instant::now() + timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "ffprobe {target} did not finish within {timeout:?}; stderr:\n{}",
            take_stderr(&mut child)
        );
    };
    let report = reader
        .join()
        .expect("the thread reading ffprobe's report panicked");
    assert!(
        status.success(),
        "ffprobe {target} failed with {status}; stderr:\n{}",
        take_stderr(&mut child)
    );
    report
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split('|')
                .filter_map(|field| field.split_once('='))
                .filter(|(_, value)| *value != "N/A")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Spawns with stdin and stdout closed and stderr captured (for error messages).
/// Keep the client's stderr small (a quiet log level): it is only read once the
/// process has exited, and a full pipe would block it.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e} (run scripts/test.sh to install it)"))
}

/// Waits for `child` to exit. If it is still running after `timeout`, kills it and
/// panics with its stderr, so that no test can hang on a client.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> ExitStatus {
    match wait_until(&mut child, Instant::now() + timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} did not finish within {timeout:?}; stderr:\n{}",
                child.id(),
                take_stderr(&mut child)
            );
        }
    }
}

/// Like [`wait_with_timeout`], and also panics (with stderr) unless the exit status
/// is success. `what` names the process in the message, e.g. "publisher".
pub fn wait_success(mut child: Child, timeout: Duration, what: &str) -> ExitStatus {
    let Some(status) = wait_until(&mut child, Instant::now() + timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not finish within {timeout:?}; stderr:\n{}",
            take_stderr(&mut child)
        );
    };
    assert!(
        status.success(),
        "{what} failed with {status}; stderr:\n{}",
        take_stderr(&mut child)
    );
    status
}

/// Like [`wait_with_timeout`], and also returns what the child wrote to stderr.
pub fn wait_with_stderr(mut child: Child, timeout: Duration) -> (ExitStatus, String) {
    let Some(status) = wait_until(&mut child, Instant::now() + timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "process {} did not finish within {timeout:?}; stderr:\n{}",
            child.id(),
            take_stderr(&mut child)
        );
    };
    (status, take_stderr(&mut child))
}

/// Kills an external client if the test ends (or panics) while it runs.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// Hands the child back, e.g. to `wait_with_timeout`.
    pub fn take(mut self) -> Child {
        self.0.take().expect("the child is taken only once")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks `child` to stop with SIGINT (ffmpeg then finishes its output file; rtmpdump
/// flushes and closes it), waits up to `grace`, then kills it if it is still running.
/// Returns its stderr. Use for players of a live stream, which do not end by
/// themselves.
pub fn stop(mut child: Child, grace: Duration) -> String {
    if let Ok(None) = child.try_wait() {
        // `sh` is always there; procps' `kill` is not on minimal images.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -INT {}", child.id()))
            .status();
        if wait_until(&mut child, Instant::now() + grace).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    take_stderr(&mut child)
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for process {}: {e}", child.id()),
        }
    }
}

/// Everything the (exited) child wrote to stderr.
fn take_stderr(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// Temp dir

/// A fresh directory under the system temp dir, removed on drop (kept, with its path
/// printed, if the test is panicking so the files can be inspected).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("rtmpd-test-{label}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                // Left over from an earlier process with the same pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("keeping {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------
// Comparing streams

/// A player must receive at least this much of the video track (of the audio track
/// for audio-only streams), measured between its first and last timestamp.
pub const MIN_RECEIVED_MS: u32 = 1000;

/// Waits until the FLV a player is still writing to `out` [`holds_enough`]: then
/// a test may stop a looped publisher, which need not wait for a real-time
/// stream to reach any point on a busy machine.
pub fn wait_for_received(out: &Path, timeout: Duration) {
    wait_for(
        &format!("{} to hold a second of stream", out.display()),
        timeout,
        || holds_enough(&flv::parse_lenient(&std::fs::read(out).unwrap_or_default()).1),
    );
}

/// Whether `tags`, received so far, span more than [`MIN_RECEIVED_MS`] of the
/// video track (the audio track for audio-only streams), with a second's margin
/// for what a player may still hold back.
pub fn holds_enough(tags: &[FlvTag]) -> bool {
    let (audio, video) = media_tracks(tags);
    let track = if video.is_empty() { audio } else { video };
    match (track.first(), track.last()) {
        (Some(a), Some(b)) => b.timestamp.wrapping_sub(a.timestamp) > MIN_RECEIVED_MS + 1000,
        _ => false,
    }
}

/// An audio or video sequence header (AAC AudioSpecificConfig, AVC decoder
/// configuration, ...).
pub fn is_sequence_header(tag: &FlvTag) -> bool {
    tag.role() == Some(FrameRole::SequenceHeader)
}

/// The end-of-sequence marker (ffmpeg writes one when it finishes a stream). Whether
/// a player gets it depends on when the server tears the stream down, so the
/// comparison ignores it.
pub fn is_end_of_sequence(tag: &FlvTag) -> bool {
    tag.is_end_of_sequence()
}

/// A video tag flagged as a keyframe: one a decoder can start at, or the
/// end-of-sequence marker (ffmpeg flags it as one).
pub fn is_keyframe(tag: &FlvTag) -> bool {
    tag.role() == Some(FrameRole::Keyframe) || tag.is_end_of_sequence()
}

/// The (audio, video) media tags, without sequence headers, AVC end-of-sequence
/// markers and script tags.
pub fn media_tracks(tags: &[FlvTag]) -> (Vec<FlvTag>, Vec<FlvTag>) {
    let media = |tag_type| {
        tags.iter()
            .filter(|t| t.tag_type == tag_type && !is_sequence_header(t) && !is_end_of_sequence(t))
            .cloned()
            .collect()
    };
    (media(TAG_AUDIO), media(TAG_VIDEO))
}

/// The (audio, video) sequence headers, in order.
pub fn sequence_headers(tags: &[FlvTag]) -> (Vec<FlvTag>, Vec<FlvTag>) {
    let headers = |tag_type| {
        tags.iter()
            .filter(|t| t.tag_type == tag_type && is_sequence_header(t))
            .cloned()
            .collect()
    };
    (headers(TAG_AUDIO), headers(TAG_VIDEO))
}

/// Checks that a player received the published stream intact:
/// - each published sequence header arrives byte-identical, before the first media
///   tag of its track (and no track that was not published appears);
/// - per track, the received media tags are a contiguous run of the published ones
///   with identical data, and the same timestamp deltas;
/// - both tracks are shifted by the same timestamp offset (A/V sync);
/// - the first received video tag is a keyframe;
/// - with `expect_from_start`, each run covers the whole published track; otherwise
///   at least [`MIN_RECEIVED_MS`] of it.
pub fn assert_received_matches(published: &[FlvTag], received: &[FlvTag], expect_from_start: bool) {
    let coverage = if expect_from_start {
        Coverage::Whole
    } else {
        Coverage::Run
    };
    assert_received_covers(published, received, coverage);
}

/// Like [`assert_received_matches`] for a publisher that was stopped part of the
/// way through `published`: each track's run starts with its first published tag
/// and goes on, without a gap, for at least [`MIN_RECEIVED_MS`].
pub fn assert_received_from_start(published: &[FlvTag], received: &[FlvTag]) {
    assert_received_covers(published, received, Coverage::Prefix);
}

/// How much of each published track a player must have received.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// All of it.
    Whole,
    /// A run from its first tag on.
    Prefix,
    /// A run from anywhere.
    Run,
}

fn assert_received_covers(published: &[FlvTag], received: &[FlvTag], coverage: Coverage) {
    let (pub_audio, pub_video) = media_tracks(published);
    let (recv_audio, recv_video) = media_tracks(received);
    let (pub_audio_sh, pub_video_sh) = sequence_headers(published);
    let (recv_audio_sh, recv_video_sh) = sequence_headers(received);

    check_sequence_headers("audio", TAG_AUDIO, &pub_audio_sh, &recv_audio_sh, received);
    check_sequence_headers("video", TAG_VIDEO, &pub_video_sh, &recv_video_sh, received);

    let audio = check_track("audio", &pub_audio, &recv_audio, coverage);
    let video = check_track("video", &pub_video, &recv_video, coverage);

    if let Some(first) = recv_video.first() {
        assert!(
            is_keyframe(first),
            "video: the first received tag is not a keyframe: {}",
            describe(first)
        );
    }
    if let (Some(a), Some(v)) = (audio, video) {
        assert_eq!(
            a, v,
            "A/V sync: received audio is shifted by {a} ms from the published timestamps \
             but video by {v} ms"
        );
    }
    let (name, track) = if pub_video.is_empty() {
        ("audio", &recv_audio)
    } else {
        ("video", &recv_video)
    };
    let span = match (track.first(), track.last()) {
        (Some(first), Some(last)) => last.timestamp.wrapping_sub(first.timestamp),
        _ => 0,
    };
    assert!(
        span >= MIN_RECEIVED_MS,
        "{name}: received only {} tags spanning {span} ms, expected at least {MIN_RECEIVED_MS} ms",
        track.len()
    );
}

fn check_sequence_headers(
    track: &str,
    tag_type: u8,
    published: &[FlvTag],
    received: &[FlvTag],
    all_received: &[FlvTag],
) {
    if published.is_empty() {
        assert!(
            received.is_empty(),
            "{track}: received a sequence header but none was published: {}",
            describe(&received[0])
        );
        return;
    }
    assert!(
        !received.is_empty(),
        "{track}: the sequence header was not received (published: {})",
        describe(&published[0])
    );
    for (i, got) in received.iter().enumerate() {
        if !published.iter().any(|p| p.data == got.data) {
            let want = published.last().unwrap();
            panic!(
                "{track}: received sequence header {i} differs from the published one: {}",
                data_difference(&want.data, &got.data)
            );
        }
    }
    let first_sh = all_received
        .iter()
        .position(|t| t.tag_type == tag_type && is_sequence_header(t));
    let first_media = all_received
        .iter()
        .position(|t| t.tag_type == tag_type && !is_sequence_header(t));
    if let (Some(sh), Some(media)) = (first_sh, first_media) {
        assert!(
            sh < media,
            "{track}: the first media tag (received tag {media}) came before the sequence \
             header (received tag {sh})"
        );
    }
}

/// Compares one track; returns the timestamp offset received − published, if any
/// tag was received.
fn check_track(
    track: &str,
    published: &[FlvTag],
    received: &[FlvTag],
    coverage: Coverage,
) -> Option<u32> {
    if published.is_empty() {
        assert!(
            received.is_empty(),
            "{track}: received {} tags but none were published; first: {}",
            received.len(),
            describe(&received[0])
        );
        return None;
    }
    let Some(first) = received.first() else {
        panic!(
            "{track}: received no tags; {} were published",
            published.len()
        );
    };

    // Where the received run starts in the published track: among the tags with the
    // same data as the first received one, the start that matches the longest.
    let start = (0..published.len())
        .filter(|&p| published[p].data == first.data)
        .max_by_key(|&p| {
            let matching = published[p..]
                .iter()
                .zip(received)
                .take_while(|(a, b)| a.data == b.data)
                .count();
            (matching, std::cmp::Reverse(p))
        })
        .unwrap_or_else(|| {
            panic!(
                "{track}: the first received tag does not occur in the published track \
                 ({} tags): {}",
                published.len(),
                describe(first)
            )
        });

    if coverage != Coverage::Run {
        assert!(
            start == 0,
            "{track}: expected the stream from the start, but the first received tag is \
             published tag {start} of {}",
            published.len()
        );
    }
    for (i, got) in received.iter().enumerate() {
        let p = start + i;
        let Some(want) = published.get(p) else {
            panic!(
                "{track}: received {} tags from published tag {start} on, but only {} were \
                 published; extra received tag {i}: {}",
                received.len(),
                published.len(),
                describe(got)
            );
        };
        assert!(
            want.data == got.data,
            "{track}: received tag {i} differs from published tag {p}: {}\n  published: {}\n  received:  {}",
            data_difference(&want.data, &got.data),
            describe(want),
            describe(got)
        );
        if i > 0 {
            let want_delta = i64::from(want.timestamp) - i64::from(published[p - 1].timestamp);
            let got_delta = i64::from(got.timestamp) - i64::from(received[i - 1].timestamp);
            assert!(
                want_delta == got_delta,
                "{track}: timestamp delta before received tag {i} (published tag {p}) is \
                 {got_delta} ms, published {want_delta} ms (received {} → {}, published {} → {})",
                received[i - 1].timestamp,
                got.timestamp,
                published[p - 1].timestamp,
                want.timestamp
            );
        }
    }
    if coverage == Coverage::Whole {
        assert!(
            received.len() == published.len(),
            "{track}: received {} of {} published tags; the first missing is published tag {}: {}",
            received.len(),
            published.len(),
            received.len(),
            describe(&published[received.len()])
        );
    }
    Some(first.timestamp.wrapping_sub(published[start].timestamp))
}

/// "ts=40 len=1234 data=27 01 00 00 00 65 88 84…" (type included for clarity).
fn describe(tag: &FlvTag) -> String {
    let kind = match tag.tag_type {
        TAG_AUDIO => "audio".to_string(),
        TAG_VIDEO => "video".to_string(),
        other => format!("type {other}"),
    };
    let mut s = format!("{kind} ts={} len={} data=", tag.timestamp, tag.data.len());
    for b in tag.data.iter().take(12) {
        let _ = write!(s, "{b:02x} ");
    }
    if tag.data.len() > 12 {
        s.push('…');
    }
    s.trim_end().to_string()
}

/// Where two byte strings first differ, as a sentence fragment.
fn data_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(k) => format!(
            "lengths {} (published) vs {} (received), first differing byte at {k}: \
             published {:#04x}, received {:#04x}",
            want.len(),
            got.len(),
            want[k],
            got[k]
        ),
        None => format!(
            "lengths {} (published) vs {} (received), identical up to the shorter length",
            want.len(),
            got.len()
        ),
    }
}

// ---------------------------------------------------------------------------------
// Checks of the helpers themselves

mod self_tests {
    use super::*;
    use rtmpd::media::flv::TAG_SCRIPT;

    fn tag(tag_type: u8, timestamp: u32, data: Vec<u8>) -> FlvTag {
        FlvTag {
            tag_type,
            timestamp,
            data,
        }
    }

    /// onMetaData, both sequence headers, then 2 s of 25 fps video (keyframe every 10
    /// frames) interleaved with audio every 23 ms.
    fn published() -> Vec<FlvTag> {
        let mut tags = vec![
            tag(TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData".to_vec()),
            tag(TAG_VIDEO, 0, vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1e]),
            tag(TAG_AUDIO, 0, vec![0xaf, 0, 0x12, 0x10]),
        ];
        let mut audio = (0u32..).map(|n| n * 23);
        let mut next_audio = audio.next().unwrap();
        for n in 0u32..50 {
            let ts = n * 40;
            while next_audio <= ts {
                let id = next_audio.to_be_bytes();
                tags.push(tag(
                    TAG_AUDIO,
                    next_audio,
                    vec![0xaf, 1, id[2], id[3], 0x21],
                ));
                next_audio = audio.next().unwrap();
            }
            let frame_type = if n % 10 == 0 { 0x17 } else { 0x27 };
            tags.push(tag(
                TAG_VIDEO,
                ts,
                vec![frame_type, 1, 0, 0, 0, n as u8, 0x65],
            ));
        }
        tags
    }

    /// What a player joining at the keyframe of frame 10 (400 ms) would get, with
    /// timestamps rebased to 0.
    fn late_join(published: &[FlvTag]) -> Vec<FlvTag> {
        let mut tags: Vec<FlvTag> = published[..3].to_vec();
        tags.extend(
            published[3..]
                .iter()
                .filter(|t| t.timestamp >= 400)
                .map(|t| tag(t.tag_type, t.timestamp - 400, t.data.clone())),
        );
        tags
    }

    fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("the comparison should have failed");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    fn assert_fails(received: Vec<FlvTag>, from_start: bool, expected_message: &str) {
        let published = published();
        let msg = panic_message(move || assert_received_matches(&published, &received, from_start));
        assert!(
            msg.contains(expected_message),
            "expected a message containing {expected_message:?}, got {msg:?}"
        );
    }

    #[test]
    fn comparison_accepts_intact_streams() {
        let published = published();
        assert_received_matches(&published, &published, true);
        assert_received_matches(&published, &late_join(&published), false);
        // An AVC end-of-sequence marker the player did not get.
        let mut with_eos = published.clone();
        with_eos.push(tag(TAG_VIDEO, 2000, vec![0x17, 2, 0, 0, 0]));
        assert_received_matches(&with_eos, &published, true);
        // Audio-only.
        let audio: Vec<FlvTag> = published
            .iter()
            .filter(|t| t.tag_type == TAG_AUDIO)
            .cloned()
            .collect();
        assert_received_matches(&audio, &audio, true);
        // A publisher stopped part of the way: the start without the end.
        let cut: Vec<FlvTag> = published
            .iter()
            .filter(|t| t.timestamp < 1500)
            .cloned()
            .collect();
        assert_received_from_start(&published, &cut);
    }

    #[test]
    fn comparison_rejects_damaged_streams() {
        let p = published();

        let mut r = p.clone();
        r[20].data[4] ^= 0xff;
        assert_fails(r, true, "first differing byte at 4");

        let mut r = p.clone();
        r.remove(30);
        assert_fails(r, true, "differs from published tag");

        assert_fails(late_join(&p), true, "expected the stream from the start");
        let joined = late_join(&p);
        let msg = panic_message(|| assert_received_from_start(&published(), &joined));
        assert!(msg.contains("expected the stream from the start"), "{msg}");

        let mut r = p.clone();
        r.truncate(r.len() - 3);
        assert_fails(r, true, "the first missing is published tag");

        let mut r = late_join(&p);
        r.retain(|t| t.timestamp >= 40 || t.tag_type != TAG_VIDEO || is_sequence_header(t));
        assert_fails(r, false, "video: the first received tag is not a keyframe");

        let mut r = p.clone();
        r.remove(2);
        assert_fails(r, true, "audio: the sequence header was not received");

        let mut r = p.clone();
        r[1].data[8] = 0x1f;
        assert_fails(r, true, "video: received sequence header 0 differs");

        let mut r = p.clone();
        r.swap(1, 3);
        assert_fails(r, true, "came before the sequence header");

        let mut r = p.clone();
        let last = r.len() - 1;
        r[last].timestamp += 1;
        assert_fails(r, true, "timestamp delta before received tag 49");

        let mut r = p.clone();
        for t in r.iter_mut().filter(|t| t.tag_type == TAG_AUDIO) {
            t.timestamp += 100;
        }
        assert_fails(r, true, "A/V sync");

        let r: Vec<FlvTag> = late_join(&p)
            .into_iter()
            .filter(|t| t.timestamp < 500)
            .collect();
        assert_fails(r, false, "expected at least 1000 ms");
    }

    #[test]
    fn wait_with_timeout_kills_hung_processes() {
        let child = Command::new("sleep")
            .arg("120")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let msg = panic_message(move || {
            wait_with_timeout(child, Duration::from_millis(200));
        });
        assert!(msg.contains("did not finish within 200ms"), "{msg}");
        // Killed, not waited out: far less than the sleep, however busy the machine.
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
