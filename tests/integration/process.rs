//! `rtmpd` as a child process of the tests: the real binary on free ports,
//! logging at info level to a file, for tests that look at its threads, its log,
//! its exit status or how it takes signals.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rtmpd::client::RtmpUrl;
use rtmpd::procfs;

use crate::support::*;

/// How long to wait for what the server does at once: a bound on hangs only,
/// generous for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `rtmpd` started by the test, on 127.0.0.1 and free ports, logging at info level
/// to a file. Killed when dropped.
pub struct ServerProcess {
    child: Child,
    dir: TempDir,
    log: PathBuf,
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
pub struct ProcStatus {
    pub threads: u64,
    pub rss_kib: u64,
}

impl ServerProcess {
    /// Runs `rtmpd ARGS` with its descriptor limit raised to 8192 (or the hard
    /// limit, if lower), and waits until it listens.
    pub fn start(label: &str, http: bool, args: &[&str]) -> ServerProcess {
        Self::start_with(label, http, args, |_, _| {})
    }

    /// `start`, with `configure` adding to the command (environment, say) once the
    /// log file that will be its stderr exists.
    pub fn start_with(
        label: &str,
        http: bool,
        args: &[&str],
        configure: impl FnOnce(&mut Command, &File),
    ) -> ServerProcess {
        let mut server = Self::spawn(label, http, args, configure);
        server.wait_listening(http);
        server
    }

    /// Starts the server like `start_with` but returns at once, before it listens
    /// (`addr` and `http` are unknown until [`ServerProcess::wait_listening`]).
    pub fn spawn(
        label: &str,
        http: bool,
        args: &[&str],
        configure: impl FnOnce(&mut Command, &File),
    ) -> ServerProcess {
        let dir = TempDir::new(label);
        let log = dir.join("rtmpd.log");
        let log_file = File::create(&log).expect("creating the server log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@""#)
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_rtmpd"))
            .args(["--listen", "127.0.0.1:0", "--http"])
            .arg(if http { "127.0.0.1:0" } else { "off" })
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file.try_clone().expect("the server log"));
        configure(&mut cmd, &log_file);
        let child = cmd.spawn().expect("starting rtmpd");
        ServerProcess {
            child,
            dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
        }
    }

    /// Waits until the log says where the server listens (HTTP too if `http`).
    pub fn wait_listening(&mut self, http: bool) {
        let mut found = None;
        wait_for("rtmpd to listen", TIMEOUT, || {
            let log = self.log();
            found = listening(&log, "RTMP").zip(Some(listening(&log, "HTTP")));
            matches!(found, Some((_, h)) if h.is_some() || !http)
        });
        (self.addr, self.http) = found.unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` ("TERM", "INT", ...) to the server.
    pub fn signal(&self, signal: &str) {
        // `sh` is always there; procps' `kill` is not on minimal images.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.child.id()))
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Waits for the server to exit; panics (with its log) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() >= deadline => {
                    panic!("rtmpd did not exit within {timeout:?}")
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for rtmpd: {e}"),
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.addr)
    }

    pub fn rtmp_url(&self, path: &str) -> RtmpUrl {
        RtmpUrl::parse(&format!("rtmp://{}/{path}", self.addr)).expect("a valid URL")
    }

    pub fn status(&self) -> ProcStatus {
        let pid = self.child.id();
        let status =
            procfs::Status::read(pid).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |value: Option<u64>, name: &str| {
            value.unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        ProcStatus {
            threads: field(status.threads, "Threads:"),
            rss_kib: field(status.rss_kib, "VmRSS:"),
        }
    }

    /// Panics if the server wrote a panic message to its log.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(
            !log.contains("panicked"),
            "the server panicked:\n{}",
            log.lines()
                .filter(|l| l.contains("panicked"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Waits until the log has a warning line naming `peer` and containing `text`.
    pub fn wait_for_warning(&self, peer: SocketAddr, text: &str) {
        let needle = format!("{peer}: ");
        wait_for(
            &format!("a warning naming {peer} with {text:?}"),
            TIMEOUT,
            || {
                self.log()
                    .lines()
                    .any(|l| l.contains(" WARN ") && l.contains(&needle) && l.contains(text))
            },
        );
    }

    /// Waits until the log says "PEER: WHAT PATH" (play, publish).
    pub fn wait_for_log(&self, what: &str, path: &str) {
        let needle = format!(": {what} {path}");
        wait_for(&format!("{what} {path} in the log"), TIMEOUT, || {
            self.log().contains(&needle)
        });
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "rtmpd log ({}), last lines:\n{}",
                self.dir.path().display(),
                self.log()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// The server's status once its thread count has not changed for 200 ms.
pub fn settled_status(server: &ServerProcess) -> ProcStatus {
    let mut last = server.status();
    let mut since = Instant::now();
    wait_for("the thread count to settle", TIMEOUT, || {
        let now = server.status();
        if now.threads != last.threads {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_millis(200)
    });
    server.status()
}

/// The address from "listening for KIND on ADDR" in the log (a text or a JSON log).
pub fn listening(log: &str, kind: &str) -> Option<SocketAddr> {
    let marker = format!("listening for {kind} on ");
    let at = log.find(&marker)? + marker.len();
    let word = log[at..].split_whitespace().next()?;
    word.trim_end_matches(['"', '}']).parse().ok()
}

/// The soft limit on open files of this process.
pub fn own_fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}
