//! What the bench reads from /proc: a server process's CPU time of all its
//! threads, resident memory now and at its peak and its thread count (parsed by
//! `rtmpd::procfs`), and the whole machine's CPU time and load.

use std::fs;
use std::io;
use std::process::Command;

use rtmpd::procfs;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// utime + stime of every thread, living and exited, in seconds.
    pub cpu_seconds: f64,
    /// VmRSS, KiB.
    pub rss_kb: u64,
    /// VmHWM (peak RSS since the process started), KiB.
    pub hwm_kb: u64,
    pub threads: u64,
}

/// Busy and total CPU time of the whole machine, in clock ticks, from the first
/// line of `/proc/stat` (`cpu user nice system idle iowait irq softirq steal ...`);
/// idle and iowait are the only ticks that are not busy. Guest time is already
/// counted in user and nice.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 5 {
        return None;
    }
    let total: u64 = ticks.iter().sum();
    let idle = ticks[3] + ticks[4];
    Some((total - idle, total))
}

/// Busy and total CPU seconds of the whole machine so far (all cores).
pub fn machine_cpu(ticks_per_sec: u64) -> Option<(f64, f64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let (busy, total) = parse_proc_stat(&text)?;
    let t = ticks_per_sec.max(1) as f64;
    Some((busy as f64 / t, total as f64 / t))
}

/// The first number of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be asked.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Samples a process; `pid` is a number or `self`.
pub fn sample(pid: &str, ticks_per_sec: u64) -> io::Result<ProcSample> {
    let ticks = procfs::cpu_ticks(pid)?;
    let status = procfs::Status::read(pid)?;
    Ok(ProcSample {
        cpu_seconds: ticks as f64 / ticks_per_sec.max(1) as f64,
        rss_kb: status.rss_kib.unwrap_or(0),
        hwm_kb: status.hwm_kib.unwrap_or(0),
        threads: status.threads.unwrap_or(0),
    })
}

/// The 1-minute load average, if readable.
pub fn loadavg() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_counts_everything_but_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 20 3 7 1 0 0\ncpu0 50 2 25 400 10 1 3 0 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((166, 986)));
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
        let (busy, total) = machine_cpu(clock_ticks()).expect("/proc/stat is readable");
        assert!(busy <= total && total > 0.0);
    }

    #[test]
    fn loadavg_and_self() {
        assert_eq!(parse_loadavg("3.10 3.37 2.67 3/124 2539\n"), Some(3.10));
        assert_eq!(parse_loadavg(""), None);
        let me = sample("self", clock_ticks()).expect("/proc/self is readable");
        assert!(me.threads >= 1 && me.rss_kb > 0);
        assert!(clock_ticks() > 0);
    }
}
