//! One benchmark run against one server: publishers (synthetic or an FLV file),
//! players that verify what they receive, or churn workers that connect, play
//! and leave in a loop; the server process sampled from /proc around a measured
//! window. The result is a JSON document ([`crate::report`] prints it).
//!
//! Timeline: publishers start and publish; after a second the server's idle
//! footprint is sampled; players are started at `ramp_rate` per second and all
//! must have connected (or failed) before the warm-up; then the measured window
//! runs for `duration`, and only what happens inside it counts for throughput,
//! latency, skipped frames and server CPU. Connect times and the time to the
//! first keyframe are per player, whenever they happen.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::flvfile::{is_measured, track_of, FlvFile, SendLog};
use super::play::{short, PlayError, PlayTarget, Player};
use super::procfs::{self, ProcSample};
use super::stats::{round3, summary, Histogram};
use super::synthetic::{self as syn, classify, Schedule, Stamp, SyntheticConfig, TagKind, Track};
use rtmpd::client::{Client, ClientError, ClientOptions, RtmpUrl};
use rtmpd::rtmp::message as msg;

/// What the publishers send.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic(SyntheticConfig),
    Flv { path: PathBuf, file: Arc<FlvFile> },
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `rtmp://host:port/app/name`, where the publishers publish; with several
    /// publishers the streams are `name-0`, `name-1`, ...
    pub url: RtmpUrl,
    /// How and where the players (and churn workers) play those streams.
    pub play: PlayTarget,
    /// Free text naming the scenario, copied to the report.
    pub label: String,
    /// Short id of the scenario (`scripts/bench.sh` numbers them), for targets.
    pub scenario: Option<String>,
    /// Which server this is (rtmpd, nginx-rtmp, ...), copied to the report.
    pub server_name: String,
    /// What this run is in its scenario's comparison: the column it gets (the
    /// server, plus its protocol or flags where runs of one server are compared).
    pub contender: String,
    /// The server process to sample; no server metrics without it.
    pub server_pid: Option<u32>,
    pub publishers: usize,
    /// Players per published stream.
    pub players: usize,
    /// Workers that connect, play until the first media frame and disconnect,
    /// over and over.
    pub churn: usize,
    pub source: Source,
    pub duration: Duration,
    pub warmup: Duration,
    /// Players started per second.
    pub ramp_rate: f64,
    /// Connect/handshake/reply timeout of every client.
    pub timeout: Duration,
    /// Stack of each player and churn thread.
    pub stack_kib: usize,
    pub chunk_size: u32,
}

impl BenchConfig {
    pub fn stream_name(&self, stream: usize) -> String {
        let base = if self.url.name.is_empty() {
            "bench"
        } else {
            &self.url.name
        };
        if self.publishers == 1 {
            base.to_owned()
        } else {
            format!("{base}-{stream}")
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: self.timeout,
            chunk_size: self.chunk_size,
            ..ClientOptions::default()
        }
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;
/// How long a player blocks in one read before it looks at the phase again.
const READ_POLL: Duration = Duration::from_millis(500);
/// How often the server is sampled in the window.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// A publisher this late on its schedule counts a late frame.
const LATE: Duration = Duration::from_millis(50);
/// A player that received less than this share of what its publisher sent in the
/// window is slow. One at or above it that skipped nothing and stayed connected
/// played at full rate (the window's edges cut a few frames either way).
const FULL_RATE: f64 = 0.9;

struct Shared {
    epoch: Instant,
    phase: AtomicU8,
    stop_publishers: AtomicBool,
    /// Players done connecting, successfully or not.
    players_ready: AtomicUsize,
    flv: Option<(Arc<FlvFile>, SendLog)>,
    /// Per publisher: when its last send completed (ns since the epoch).
    last_send_ns: Vec<AtomicU64>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn count_error(errors: &mut HashMap<String, u64>, e: String) {
    *errors.entry(e).or_default() += 1;
}

// ---------------------------------------------------------------------------
// Publishers

#[derive(Debug, Default)]
struct PublisherStats {
    error: Option<String>,
    /// Frames (audio + video) and media bytes sent, in the window.
    frames_window: u64,
    bytes_window: u64,
    frames: u64,
    /// How far behind schedule a frame was sent or finished sending.
    max_lag: Duration,
    late_frames: u64,
}

impl PublisherStats {
    fn sent(&mut self, shared: &Shared, stream: usize, bytes: usize) {
        shared.last_send_ns[stream].store(shared.now_ns(), Ordering::Relaxed);
        self.frames += 1;
        if shared.phase() == MEASURE {
            self.frames_window += 1;
            self.bytes_window += bytes as u64;
        }
    }

    /// After a send: how far past its due time the frame was fully written (the
    /// server not reading holds the write).
    fn blocked(&mut self, due: Instant) {
        if let Some(late) = Instant::now().checked_duration_since(due) {
            self.lag(late);
        }
    }

    fn lag(&mut self, lag: Duration) {
        self.max_lag = self.max_lag.max(lag);
        if lag > LATE {
            self.late_frames += 1;
        }
    }
}

/// Sleeps until `deadline`, or notes how late we already are.
fn wait_until(deadline: Instant, stats: &mut PublisherStats) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    } else {
        stats.lag(now - deadline);
    }
}

fn publisher(
    shared: Arc<Shared>,
    cfg: Arc<BenchConfig>,
    stream: usize,
    ready: mpsc::Sender<Result<(), String>>,
) -> PublisherStats {
    let mut stats = PublisherStats::default();
    let name = cfg.stream_name(stream);
    let client = Client::connect(&cfg.url, &cfg.client_options()).and_then(|mut c| {
        c.publish(&name)?;
        Ok(c)
    });
    let mut client = match client {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let e = format!("publish {name}: {}", short(&e));
            let _ = ready.send(Err(e.clone()));
            stats.error = Some(e);
            return stats;
        }
    };
    let result = match &cfg.source {
        Source::Synthetic(syn_cfg) => {
            publish_synthetic(&shared, &mut client, stream, syn_cfg, &mut stats)
        }
        Source::Flv { file, .. } => publish_flv(&shared, &mut client, stream, file, &mut stats),
    };
    if let Err(e) = result {
        stats.error = Some(format!("publish {name} failed midway: {}", short(&e)));
    }
    client.close();
    stats
}

fn publish_synthetic(
    shared: &Shared,
    client: &mut Client,
    stream: usize,
    cfg: &SyntheticConfig,
    stats: &mut PublisherStats,
) -> Result<(), ClientError> {
    let (key_size, inter_size) = cfg.video_frame_sizes();
    let audio_size = cfg.audio_frame_size();
    let gop = u64::from(cfg.gop.max(1));
    client.send_metadata(0, &cfg.metadata())?;
    client.send_media(msg::VIDEO, 0, &syn::avc_sequence_header())?;
    if cfg.audio_kbit > 0 {
        client.send_media(msg::AUDIO, 0, &syn::aac_sequence_header())?;
    }
    let mut schedule = Schedule::new(cfg);
    let mut buf = Vec::with_capacity(key_size);
    let start = Instant::now();
    while !shared.stop_publishers.load(Ordering::Relaxed) {
        let due = schedule.next_due();
        wait_until(start + Duration::from_nanos(due.at_ns), stats);
        let stamp = Stamp {
            stream: stream as u32,
            seq: due.index,
            sent_ns: shared.now_ns(),
        };
        match due.track {
            Track::Video => {
                let key = due.index % gop == 0;
                let size = if key { key_size } else { inter_size };
                syn::video_frame(&mut buf, key, size, stamp);
            }
            Track::Audio => syn::audio_frame(&mut buf, audio_size, stamp),
        }
        let timestamp = (due.at_ns / 1_000_000) as u32;
        client.send_media(due.track.type_id(), timestamp, &buf)?;
        stats.sent(shared, stream, buf.len());
        stats.blocked(start + Duration::from_nanos(due.at_ns));
    }
    Ok(())
}

fn publish_flv(
    shared: &Shared,
    client: &mut Client,
    stream: usize,
    file: &FlvFile,
    stats: &mut PublisherStats,
) -> Result<(), ClientError> {
    let log = &shared.flv.as_ref().expect("FLV runs have a send log").1;
    let first = file.tags.iter().map(|t| t.timestamp).min().unwrap_or(0);
    let mut seq = [0u64; 2];
    let start = Instant::now();
    for round in 0u64.. {
        for (i, tag) in file.tags.iter().enumerate() {
            if shared.stop_publishers.load(Ordering::Relaxed) {
                return Ok(());
            }
            let media = is_measured(tag);
            // Metadata and sequence headers go out once, like an encoder's.
            if round > 0 && !media {
                continue;
            }
            let at_ms = u64::from(tag.timestamp - first) + round * u64::from(file.loop_ms);
            wait_until(start + Duration::from_millis(at_ms), stats);
            let timestamp = at_ms as u32;
            match tag.tag_type {
                msg::DATA_AMF0 => client.send_metadata(timestamp, &tag.data)?,
                msg::AUDIO | msg::VIDEO => {
                    if file.unique[i] {
                        let track = track_of(tag).index();
                        log.note(stream, i, seq[track], shared.now_ns());
                        seq[track] += 1;
                    }
                    client.send_media(tag.tag_type, timestamp, &tag.data)?;
                    if media {
                        stats.sent(shared, stream, tag.data.len());
                        stats.blocked(start + Duration::from_millis(at_ms));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Players

#[derive(Debug, Default)]
struct PlayerStats {
    stream: usize,
    connected: bool,
    /// Why it could not connect, or why it lost the connection.
    error: Option<String>,
    lost: bool,
    play_start_ms: Option<f64>,
    first_keyframe_ms: Option<f64>,
    frames: u64,
    bytes: u64,
    frames_window: u64,
    bytes_window: u64,
    skipped_window: u64,
    skipped: u64,
    out_of_order: u64,
    /// Stamped frames of another stream.
    foreign: u64,
    /// Media frames that carry no stamp (synthetic) or are not recognised (FLV).
    unstamped: u64,
    /// Inter frames received before the first keyframe: undecodable.
    before_keyframe: u64,
    /// The first keyframe came without a video sequence header before it.
    no_sequence_header: bool,
    /// A gap in the video not followed by a keyframe: undecodable until the next.
    resync_not_key: u64,
    timeouts: u64,
    latency_us: Histogram,
    last_seq: [Option<u64>; 2],
    saw_video_header: bool,
}

impl PlayerStats {
    fn media(&mut self, shared: &Shared, type_id: u8, payload: &[u8], t0: Instant) {
        let now_ns = shared.now_ns();
        let in_window = shared.phase() == MEASURE;
        let kind = classify(type_id, payload);
        match kind {
            TagKind::SequenceHeader(Track::Video) => self.saw_video_header = true,
            TagKind::Keyframe if self.first_keyframe_ms.is_none() => {
                self.first_keyframe_ms = Some(ms(t0.elapsed()));
                self.no_sequence_header = !self.saw_video_header;
            }
            TagKind::InterFrame if self.first_keyframe_ms.is_none() => self.before_keyframe += 1,
            _ => {}
        }
        if matches!(kind, TagKind::SequenceHeader(_) | TagKind::Other) {
            return;
        }
        self.frames += 1;
        self.bytes += payload.len() as u64;
        if in_window {
            self.frames_window += 1;
            self.bytes_window += payload.len() as u64;
        }
        let stamp = match &shared.flv {
            None => syn::parse_stamp(type_id, payload),
            Some((file, log)) => file
                .lookup(type_id, payload)
                .and_then(|tag| log.stamp(self.stream, tag)),
        };
        let Some(stamp) = stamp else {
            self.unstamped += 1;
            return;
        };
        if stamp.stream as usize != self.stream {
            self.foreign += 1;
            return;
        }
        let track = if type_id == msg::VIDEO {
            Track::Video
        } else {
            Track::Audio
        };
        let last = &mut self.last_seq[track.index()];
        match *last {
            Some(l) if stamp.seq > l + 1 => {
                let gap = stamp.seq - l - 1;
                self.skipped += gap;
                if in_window {
                    self.skipped_window += gap;
                }
                if track == Track::Video && kind != TagKind::Keyframe {
                    self.resync_not_key += 1;
                }
            }
            Some(l) if stamp.seq <= l => {
                self.out_of_order += 1;
                return;
            }
            _ => {}
        }
        *last = Some(stamp.seq);
        if in_window {
            self.latency_us
                .record(now_ns.saturating_sub(stamp.sent_ns) / 1000);
        }
    }
}

fn player(shared: Arc<Shared>, cfg: Arc<BenchConfig>, stream: usize) -> PlayerStats {
    let mut stats = PlayerStats {
        stream,
        ..PlayerStats::default()
    };
    let t0 = Instant::now();
    let name = cfg.stream_name(stream);
    let player = Player::connect(&cfg.play, &name, &cfg.client_options());
    shared.players_ready.fetch_add(1, Ordering::Relaxed);
    let mut player = match player {
        Ok(p) => p,
        Err(e) => {
            stats.error = Some(e.to_string());
            return stats;
        }
    };
    stats.connected = true;
    stats.play_start_ms = Some(ms(t0.elapsed()));
    let _ = player.set_timeout(READ_POLL);
    while shared.phase() != STOP {
        match player.read(&mut |type_id, payload| stats.media(&shared, type_id, payload, t0)) {
            Ok(()) => {}
            Err(PlayError::Timeout) => stats.timeouts += 1,
            Err(PlayError::Failed(e)) => {
                if shared.phase() != STOP {
                    stats.lost = true;
                    stats.error = Some(e);
                }
                break;
            }
        }
    }
    stats
}

// ---------------------------------------------------------------------------
// Churn

#[derive(Debug, Default)]
struct ChurnStats {
    cycles: u64,
    failures: u64,
    errors: HashMap<String, u64>,
    play_start_ms: Vec<f64>,
    first_media_ms: Vec<f64>,
}

/// Connect, play, wait for the first media frame, drop the connection; again.
fn churner(shared: Arc<Shared>, cfg: Arc<BenchConfig>, worker: usize) -> ChurnStats {
    let mut stats = ChurnStats::default();
    let name = cfg.stream_name(worker % cfg.publishers.max(1));
    let opts = cfg.client_options();
    while shared.phase() != STOP {
        let counted = shared.phase() == MEASURE;
        let t0 = Instant::now();
        let result = Player::connect(&cfg.play, &name, &opts).and_then(|mut p| {
            let play_start = t0.elapsed();
            let mut media = false;
            while !media {
                p.read(&mut |_, _| media = true)?;
            }
            Ok((play_start, t0.elapsed()))
        });
        if !counted {
            continue;
        }
        match result {
            Ok((play_start, first_media)) => {
                stats.cycles += 1;
                stats.play_start_ms.push(ms(play_start));
                stats.first_media_ms.push(ms(first_media));
            }
            Err(e) => {
                stats.failures += 1;
                count_error(&mut stats.errors, e.to_string());
                // Do not spin on a server that refuses at once.
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    stats
}

// ---------------------------------------------------------------------------
// The run

/// Samples of the server during the window: the largest RSS and thread count.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    rss_kb: u64,
    threads: u64,
    samples: u64,
}

fn sample_pid(pid: Option<u32>, ticks: u64) -> Option<ProcSample> {
    procfs::sample(&pid?.to_string(), ticks).ok()
}

fn spawn_sized<T: Send + 'static>(
    name: String,
    stack_kib: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name)
        .stack_size(stack_kib * 1024)
        .spawn(f)
}

fn top_errors(errors: &HashMap<String, u64>) -> Value {
    let mut v: Vec<(&String, &u64)> = errors.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    Value::Object(
        v.into_iter()
            .take(5)
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect(),
    )
}

/// Runs one scenario and returns its report. Fails only when nothing could be
/// measured (no publisher could publish).
pub fn run(cfg: BenchConfig, log: &dyn Fn(&str)) -> Result<Value, String> {
    let cfg = Arc::new(cfg);
    let ticks = procfs::clock_ticks();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let load_start = procfs::loadavg();
    let flv = match &cfg.source {
        Source::Flv { file, .. } => {
            Some((file.clone(), SendLog::new(cfg.publishers, file.tags.len())))
        }
        Source::Synthetic(_) => None,
    };
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        phase: AtomicU8::new(WARMUP),
        stop_publishers: AtomicBool::new(false),
        players_ready: AtomicUsize::new(0),
        flv,
        last_send_ns: (0..cfg.publishers).map(|_| AtomicU64::new(0)).collect(),
    });
    let server_start = sample_pid(cfg.server_pid, ticks);
    if cfg.server_pid.is_some() && server_start.is_none() {
        return Err(format!(
            "cannot read /proc/{}/stat: is the server running?",
            cfg.server_pid.unwrap_or(0)
        ));
    }

    // Publishers.
    log(&format!("starting {} publisher(s)", cfg.publishers));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut publishers = Vec::new();
    let mut publisher_errors = HashMap::new();
    for stream in 0..cfg.publishers {
        let (shared, cfg2, tx) = (shared.clone(), cfg.clone(), ready_tx.clone());
        match spawn_sized(format!("publisher {stream}"), 256, move || {
            publisher(shared, cfg2, stream, tx)
        }) {
            Ok(h) => publishers.push(h),
            Err(e) => count_error(&mut publisher_errors, format!("thread: {e}")),
        }
    }
    drop(ready_tx);
    let mut publishing = 0;
    for _ in 0..publishers.len() {
        match ready_rx.recv_timeout(cfg.timeout + Duration::from_secs(5)) {
            Ok(Ok(())) => publishing += 1,
            Ok(Err(e)) => count_error(&mut publisher_errors, e),
            Err(_) => break,
        }
    }
    if publishing == 0 {
        shared.stop_publishers.store(true, Ordering::Relaxed);
        shared.phase.store(STOP, Ordering::Relaxed);
        for h in publishers {
            let _ = h.join();
        }
        return Err(format!(
            "no publisher could publish: {}",
            top_errors(&publisher_errors)
        ));
    }
    thread::sleep(Duration::from_secs(1));
    let server_idle = sample_pid(cfg.server_pid, ticks);

    // Players, paced.
    let total_players = cfg.publishers * cfg.players;
    log(&format!(
        "starting {total_players} player(s) at {} per second",
        cfg.ramp_rate
    ));
    let ramp_start = Instant::now();
    let mut players = Vec::with_capacity(total_players);
    let mut spawn_errors = HashMap::new();
    for i in 0..total_players {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / cfg.ramp_rate.max(0.001));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let (shared, cfg2) = (shared.clone(), cfg.clone());
        let stream = i % cfg.publishers;
        match spawn_sized(format!("player {i}"), cfg.stack_kib, move || {
            player(shared, cfg2, stream)
        }) {
            Ok(h) => players.push(h),
            Err(e) => {
                // Out of threads or memory: the rest would fail the same way.
                count_error(
                    &mut spawn_errors,
                    format!("cannot start a player thread: {e}"),
                );
                break;
            }
        }
    }
    let ramp_deadline = Instant::now() + cfg.timeout * 2 + Duration::from_secs(10);
    while shared.players_ready.load(Ordering::Relaxed) < players.len()
        && Instant::now() < ramp_deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    let ramp = ramp_start.elapsed();
    let still_connecting = players.len() - shared.players_ready.load(Ordering::Relaxed);

    // Churn workers start with the warm-up; only cycles begun in the window count.
    let mut churners = Vec::new();
    for w in 0..cfg.churn {
        let (shared, cfg2) = (shared.clone(), cfg.clone());
        match spawn_sized(format!("churn {w}"), cfg.stack_kib, move || {
            churner(shared, cfg2, w)
        }) {
            Ok(h) => churners.push(h),
            Err(e) => count_error(
                &mut spawn_errors,
                format!("cannot start a churn thread: {e}"),
            ),
        }
    }

    log(&format!(
        "{} of {total_players} player(s) connected in {:.1} s; warm-up {:.0} s",
        shared.players_ready.load(Ordering::Relaxed),
        ramp.as_secs_f64(),
        cfg.warmup.as_secs_f64()
    ));
    thread::sleep(cfg.warmup);

    // The measured window.
    let bench_0 = procfs::sample("self", ticks).ok();
    let server_0 = sample_pid(cfg.server_pid, ticks);
    let machine_0 = procfs::machine_cpu(ticks);
    shared.phase.store(MEASURE, Ordering::Relaxed);
    let window_start = Instant::now();
    let peaks = Arc::new(Mutex::new(Peaks::default()));
    let sampler = {
        let (shared, peaks, pid) = (shared.clone(), peaks.clone(), cfg.server_pid);
        thread::spawn(move || {
            let mut bench_threads = 0;
            while shared.phase() == MEASURE {
                if let Some(s) = sample_pid(pid, ticks) {
                    let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                    p.rss_kb = p.rss_kb.max(s.rss_kb);
                    p.threads = p.threads.max(s.threads);
                    p.samples += 1;
                }
                if let Ok(me) = procfs::sample("self", ticks) {
                    bench_threads = bench_threads.max(me.threads);
                }
                thread::sleep(SAMPLE_EVERY);
            }
            bench_threads
        })
    };
    log(&format!(
        "measuring for {:.0} s",
        cfg.duration.as_secs_f64()
    ));
    thread::sleep(cfg.duration);
    let server_1 = sample_pid(cfg.server_pid, ticks);
    let bench_1 = procfs::sample("self", ticks).ok();
    let machine_1 = procfs::machine_cpu(ticks);
    shared.phase.store(STOP, Ordering::Relaxed);
    let window = window_start.elapsed();
    // Publishers whose last send has not completed for a while: blocked in a write
    // because the server is not reading (their lag is otherwise never seen).
    let now_ns = shared.now_ns();
    let stalls: Vec<u64> = shared
        .last_send_ns
        .iter()
        .map(|t| now_ns.saturating_sub(t.load(Ordering::Relaxed)))
        .collect();
    let load_end = procfs::loadavg();
    let bench_threads = sampler.join().unwrap_or(0);

    log("stopping");
    let player_stats: Vec<PlayerStats> = players
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let churn_stats: Vec<ChurnStats> = churners
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    shared.stop_publishers.store(true, Ordering::Relaxed);
    let publisher_stats: Vec<PublisherStats> = publishers
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    // Let the server notice the disconnects before looking at it again.
    thread::sleep(Duration::from_secs(1));
    let server_after = sample_pid(cfg.server_pid, ticks);

    let window_s = window.as_secs_f64();
    let mut report = json!({
        "tool": "rtmpd-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "label": cfg.label,
        "scenario": cfg.scenario,
        "server_name": cfg.server_name,
        "contender": cfg.contender,
        "url": cfg.url.to_string(),
        "play_url": cfg.play.url(&cfg.stream_name(0)),
        "started_unix": started_unix,
        "config": config_json(&cfg, total_players),
        "machine": {
            "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
        },
        "machine_window": machine_json(machine_0, machine_1, window),
    });
    let r = report.as_object_mut().expect("an object");

    // Publishers.
    let mut frames_sent = vec![0u64; cfg.publishers];
    let mut bytes_sent = vec![0u64; cfg.publishers];
    let mut failed_midway = 0;
    let mut max_lag = Duration::ZERO;
    let mut late = 0;
    for (i, p) in publisher_stats.iter().enumerate() {
        frames_sent[i] = p.frames_window;
        bytes_sent[i] = p.bytes_window;
        max_lag = max_lag.max(p.max_lag);
        late += p.late_frames;
        if let Some(e) = &p.error {
            if p.frames > 0 {
                failed_midway += 1;
                count_error(&mut publisher_errors, e.clone());
            }
        }
    }
    let scheduled_per_s = match &cfg.source {
        Source::Synthetic(s) => {
            let audio = if s.audio_kbit > 0 {
                s.audio_frames_per_sec()
            } else {
                0.0
            };
            Some(f64::from(s.fps) + audio)
        }
        Source::Flv { file, .. } => {
            let media = file.tags.iter().filter(|t| is_measured(t)).count();
            Some(media as f64 * 1000.0 / f64::from(file.loop_ms.max(1)))
        }
    };
    let sent_ratio = scheduled_per_s.filter(|_| publishing > 0).map(|r| {
        round3(frames_sent.iter().sum::<u64>() as f64 / (r * window_s * publishing as f64))
    });
    let stall_limit = 1_000_000_000;
    r.insert(
        "publishers".into(),
        json!({
            "requested": cfg.publishers,
            "publishing": publishing,
            "sent_ratio": sent_ratio,
            "stalled_at_end": stalls.iter().filter(|&&s| s > stall_limit).count(),
            "max_stall_at_end_ms": round3(stalls.iter().copied().max().unwrap_or(0) as f64 / 1e6),
            "failed_midway": failed_midway,
            "errors": top_errors(&publisher_errors),
            "frames_sent_window": frames_sent.iter().sum::<u64>(),
            "media_bytes_sent_window": bytes_sent.iter().sum::<u64>(),
            "max_schedule_lag_ms": round3(ms(max_lag)),
            "late_frames": late,
        }),
    );

    // Players.
    let mut errors = spawn_errors;
    let mut latency = Histogram::new();
    let (mut play_start, mut first_key, mut throughput) = (Vec::new(), Vec::new(), Vec::new());
    let mut expected = 0u64;
    let (mut slow, mut full_rate) = (0u64, 0u64);
    let sum = |f: fn(&PlayerStats) -> u64| player_stats.iter().map(f).sum::<u64>();
    let frames = sum(|p| p.frames_window);
    let media_bytes = sum(|p| p.bytes_window);
    let skipped = sum(|p| p.skipped_window);
    let skipped_total = sum(|p| p.skipped);
    let out_of_order = sum(|p| p.out_of_order);
    let foreign = sum(|p| p.foreign);
    let unstamped = sum(|p| p.unstamped);
    let before_key = sum(|p| p.before_keyframe);
    let resync = sum(|p| p.resync_not_key);
    let timeouts = sum(|p| p.timeouts);
    let no_header = sum(|p| u64::from(p.no_sequence_header));
    let no_keyframe = sum(|p| u64::from(p.connected && p.first_keyframe_ms.is_none()));
    let connected = sum(|p| u64::from(p.connected));
    let lost = sum(|p| u64::from(p.lost));
    for p in &player_stats {
        if let Some(e) = &p.error {
            count_error(&mut errors, e.clone());
        }
        if !p.connected {
            continue;
        }
        latency.merge(&p.latency_us);
        play_start.extend(p.play_start_ms);
        first_key.extend(p.first_keyframe_ms);
        let kbit = p.bytes_window as f64 * 8.0 / window_s / 1000.0;
        throughput.push(kbit);
        expected += frames_sent[p.stream];
        let sent_kbit = bytes_sent[p.stream] as f64 * 8.0 / window_s / 1000.0;
        if kbit < FULL_RATE * sent_kbit {
            slow += 1;
        } else if !p.lost && p.skipped_window == 0 {
            full_rate += 1;
        }
    }
    r.insert(
        "players".into(),
        json!({
            "requested": total_players,
            "started": player_stats.len(),
            "connected": connected,
            "failed": player_stats.len() as u64 - connected,
            "still_connecting_after_ramp": still_connecting,
            "lost_during_run": lost,
            "errors": top_errors(&errors),
            "ramp_s": round3(ramp.as_secs_f64()),
        }),
    );
    let delivered_ratio = (expected > 0).then(|| round3(frames as f64 / expected as f64));
    r.insert(
        "delivery".into(),
        json!({
            "window_s": round3(window_s),
            "frames": frames,
            "media_bytes": media_bytes,
            "aggregate_mbit_s": round3(media_bytes as f64 * 8.0 / window_s / 1e6),
            "expected_frames": expected,
            "delivered_ratio": delivered_ratio,
            "skipped_frames": skipped,
            "skipped_frames_whole_run": skipped_total,
            "out_of_order": out_of_order,
            "foreign_stream": foreign,
            "unrecognised": unstamped,
            "inter_frames_before_first_keyframe": before_key,
            "keyframe_without_sequence_header": no_header,
            "players_without_keyframe": no_keyframe,
            "gap_not_resumed_at_keyframe": resync,
            "read_timeouts": timeouts,
            "throughput_kbit_s": summary(&throughput),
            "slow_players": slow,
            "full_rate_players": full_rate,
            "full_rate_share": (total_players > 0).then(|| round3(full_rate as f64 / total_players as f64)),
        }),
    );
    r.insert("latency_ms".into(), latency.summary_ms());
    r.insert("play_start_ms".into(), summary(&play_start));
    r.insert("first_keyframe_ms".into(), summary(&first_key));

    // Churn.
    let churn = if cfg.churn > 0 {
        let mut errors = HashMap::new();
        let (mut cycles, mut failures) = (0, 0);
        let (mut ps, mut fm) = (Vec::new(), Vec::new());
        for c in &churn_stats {
            cycles += c.cycles;
            failures += c.failures;
            ps.extend(&c.play_start_ms);
            fm.extend(&c.first_media_ms);
            for (e, n) in &c.errors {
                *errors.entry(e.clone()).or_default() += n;
            }
        }
        json!({
            "workers": cfg.churn,
            "cycles": cycles,
            "failures": failures,
            "cycles_per_s": round3(cycles as f64 / window_s),
            "errors": top_errors(&errors),
            "play_start_ms": summary(&ps),
            "first_media_ms": summary(&fm),
        })
    } else {
        Value::Null
    };

    // The server.
    let server = match (server_idle, server_0, server_1) {
        (Some(idle), Some(s0), Some(s1)) => {
            let cpu = s1.cpu_seconds - s0.cpu_seconds;
            let gb = media_bytes as f64 / 1e9;
            let p = *peaks.lock().unwrap_or_else(|e| e.into_inner());
            let rss_loaded = p.rss_kb.max(s1.rss_kb);
            let per_player = (connected > 0)
                .then(|| round3(rss_loaded.saturating_sub(idle.rss_kb) as f64 / connected as f64));
            let cycles = churn["cycles"].as_u64().unwrap_or(0);
            json!({
                "pid": cfg.server_pid,
                "cpu_s": round3(cpu),
                "cpu_pct": round3(cpu / window_s * 100.0),
                "cpu_s_per_gb": (gb > 0.001).then(|| round3(cpu / gb)),
                "cpu_ms_per_churn_cycle": (cycles > 0).then(|| round3(cpu * 1000.0 / cycles as f64)),
                "cpu_s_whole_run": server_after.map(|a| round3(a.cpu_seconds - server_start.map_or(0.0, |s| s.cpu_seconds))),
                "rss_start_kb": server_start.map(|s| s.rss_kb),
                "rss_idle_kb": idle.rss_kb,
                "rss_loaded_kb": rss_loaded,
                "rss_per_player_kb": per_player,
                "rss_after_kb": server_after.map(|a| a.rss_kb),
                "hwm_kb": server_after.map_or(s1.hwm_kb, |a| a.hwm_kb.max(s1.hwm_kb)),
                "threads_idle": idle.threads,
                "threads_max": p.threads.max(s1.threads),
                "threads_after": server_after.map(|a| a.threads),
                "samples": p.samples,
            })
        }
        _ => Value::Null,
    };
    r.insert("churn".into(), churn);
    r.insert("server".into(), server);
    r.insert(
        "bench".into(),
        match (bench_0, bench_1) {
            (Some(a), Some(b)) => json!({
                "cpu_s": round3(b.cpu_seconds - a.cpu_seconds),
                "cpu_pct": round3((b.cpu_seconds - a.cpu_seconds) / window_s * 100.0),
                "rss_kb": b.rss_kb,
                "threads_max": bench_threads.max(b.threads),
            }),
            _ => Value::Null,
        },
    );
    // What neither the server nor the bench used: other processes, softirq threads.
    let busy = report
        .pointer("/machine_window/busy_cpu_s")
        .and_then(Value::as_f64);
    let server_cpu = report.pointer("/server/cpu_s").and_then(Value::as_f64);
    let bench_cpu = report.pointer("/bench/cpu_s").and_then(Value::as_f64);
    if let (Some(busy), Some(server), Some(bench)) = (busy, server_cpu, bench_cpu) {
        report["machine_window"]["other_cpu_s"] = json!(round3(busy - server - bench));
    }
    Ok(report)
}

/// The whole machine's CPU use over the window (all cores): busy seconds and
/// idle percent. Busy time of other processes and of the kernel's softirq
/// threads is in here but in neither the server's nor the bench's figures.
fn machine_json(a: Option<(f64, f64)>, b: Option<(f64, f64)>, window: Duration) -> Value {
    match (a, b) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            let busy = busy1 - busy0;
            json!({
                "busy_cpu_s": round3(busy),
                "idle_pct": round3((1.0 - busy / (total1 - total0)) * 100.0),
                "capacity_cpu_s": round3(window.as_secs_f64()
                    * thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64),
            })
        }
        _ => Value::Null,
    }
}

fn config_json(cfg: &BenchConfig, total_players: usize) -> Value {
    let mut c = json!({
        "protocol": cfg.play.protocol.name(),
        "publishers": cfg.publishers,
        "players_per_stream": cfg.players,
        "players_total": total_players,
        "churn_workers": cfg.churn,
        "duration_s": cfg.duration.as_secs_f64(),
        "warmup_s": cfg.warmup.as_secs_f64(),
        "ramp_rate": cfg.ramp_rate,
        "timeout_s": cfg.timeout.as_secs_f64(),
        "stack_kib": cfg.stack_kib,
        "chunk_size": cfg.chunk_size,
    });
    let o = c.as_object_mut().expect("an object");
    match &cfg.source {
        Source::Synthetic(s) => {
            let (key, inter) = s.video_frame_sizes();
            o.insert("source".into(), json!("synthetic"));
            o.insert("bitrate_kbit".into(), json!(s.bitrate_kbit));
            o.insert("audio_kbit".into(), json!(s.audio_kbit));
            o.insert("fps".into(), json!(s.fps));
            o.insert("gop_frames".into(), json!(s.gop));
            o.insert("keyframe_bytes".into(), json!(key));
            o.insert("inter_frame_bytes".into(), json!(inter));
            o.insert(
                "audio_frame_bytes".into(),
                json!((s.audio_kbit > 0).then(|| s.audio_frame_size())),
            );
        }
        Source::Flv { path, file } => {
            o.insert("source".into(), json!(format!("flv:{}", path.display())));
            o.insert("flv_tags".into(), json!(file.tags.len()));
            o.insert("flv_measured_tags".into(), json!(file.measured()));
            o.insert("flv_loop_ms".into(), json!(file.loop_ms));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(phase: u8) -> Shared {
        Shared {
            epoch: Instant::now(),
            phase: AtomicU8::new(phase),
            stop_publishers: AtomicBool::new(false),
            players_ready: AtomicUsize::new(0),
            flv: None,
            last_send_ns: Vec::new(),
        }
    }

    fn video(key: bool, stream: u32, seq: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        syn::video_frame(
            &mut buf,
            key,
            100,
            Stamp {
                stream,
                seq,
                sent_ns: 0,
            },
        );
        buf
    }

    #[test]
    fn players_count_gaps_reordering_and_undecodable_starts() {
        let s = shared(MEASURE);
        let t0 = Instant::now();
        let mut p = PlayerStats {
            stream: 1,
            ..PlayerStats::default()
        };
        p.media(&s, msg::VIDEO, &video(false, 1, 0), t0);
        assert_eq!(p.before_keyframe, 1, "an inter frame before any keyframe");
        p.media(&s, msg::VIDEO, &syn::avc_sequence_header(), t0);
        p.media(&s, msg::VIDEO, &video(true, 1, 1), t0);
        assert!(p.first_keyframe_ms.is_some() && !p.no_sequence_header);
        p.media(&s, msg::VIDEO, &video(false, 1, 4), t0);
        assert_eq!((p.skipped_window, p.resync_not_key), (2, 1));
        p.media(&s, msg::VIDEO, &video(true, 1, 9), t0);
        assert_eq!(
            (p.skipped_window, p.resync_not_key),
            (6, 1),
            "resumed at a keyframe"
        );
        p.media(&s, msg::VIDEO, &video(false, 1, 9), t0);
        p.media(&s, msg::VIDEO, &video(false, 0, 10), t0);
        p.media(&s, msg::AUDIO, &[0xaf, 0x01, 1, 2, 3], t0);
        assert_eq!((p.out_of_order, p.foreign, p.unstamped), (1, 1, 1));
        // Audio has its own sequence.
        let mut audio = Vec::new();
        syn::audio_frame(
            &mut audio,
            50,
            Stamp {
                stream: 1,
                seq: 0,
                sent_ns: 0,
            },
        );
        p.media(&s, msg::AUDIO, &audio, t0);
        assert_eq!(p.skipped_window, 6);
        assert_eq!(p.frames_window, 8, "sequence headers are not frames");
        assert_eq!(p.latency_us.count(), 5);

        // Outside the window only the whole-run counters move.
        let warm = shared(WARMUP);
        let mut q = PlayerStats::default();
        q.media(&warm, msg::VIDEO, &video(true, 0, 0), t0);
        q.media(&warm, msg::VIDEO, &video(false, 0, 5), t0);
        assert!(q.no_sequence_header);
        assert_eq!((q.skipped, q.skipped_window, q.frames_window), (4, 0, 0));
        assert_eq!(q.latency_us.count(), 0);
    }

    #[test]
    fn stream_names() {
        let mut cfg = BenchConfig {
            url: RtmpUrl::parse("rtmp://127.0.0.1/live/x").unwrap(),
            play: PlayTarget {
                protocol: crate::play::Protocol::Rtmp,
                host: "127.0.0.1".into(),
                port: 1935,
                app: "live".into(),
            },
            label: String::new(),
            scenario: None,
            server_name: String::new(),
            contender: String::new(),
            server_pid: None,
            publishers: 1,
            players: 1,
            churn: 0,
            source: Source::Synthetic(SyntheticConfig::default()),
            duration: Duration::ZERO,
            warmup: Duration::ZERO,
            ramp_rate: 1.0,
            timeout: Duration::from_secs(1),
            stack_kib: 128,
            chunk_size: 4096,
        };
        assert_eq!(cfg.stream_name(0), "x");
        cfg.publishers = 3;
        assert_eq!(cfg.stream_name(2), "x-2");
        cfg.url = RtmpUrl::parse("rtmp://127.0.0.1/live").unwrap();
        assert_eq!(cfg.stream_name(1), "bench-1");
    }
}
