//! What the bench reads about a server process from /proc: CPU time of all its
//! threads (`/proc/PID/stat` utime + stime), resident memory now and at its peak
//! and the thread count (`/proc/PID/status`).

use std::fs;
use std::io;
use std::process::Command;

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

/// utime and stime (clock ticks) from the text of `/proc/PID/stat`. The command
/// name in parentheses may contain spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// VmRSS, VmHWM (KiB) and Threads from the text of `/proc/PID/status`; fields
/// that are missing (a kernel thread has no Vm lines) are 0.
pub fn parse_status(text: &str) -> (u64, u64, u64) {
    let (mut rss, mut hwm, mut threads) = (0, 0, 0);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = || {
            value
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "VmRSS" => rss = number(),
            "VmHWM" => hwm = number(),
            "Threads" => threads = number(),
            _ => {}
        }
    }
    (rss, hwm, threads)
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
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_stat(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let (rss_kb, hwm_kb, threads) = parse_status(&status);
    Ok(ProcSample {
        cpu_seconds: (utime + stime) as f64 / ticks_per_sec.max(1) as f64,
        rss_kb,
        hwm_kb,
        threads,
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
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (rtmp (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 269 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((731, 269)));
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_rss_peak_and_threads() {
        let status = "Name:\trtmpd\nVmPeak:\t  900000 kB\nVmHWM:\t   52000 kB\n\
                      VmRSS:\t   48123 kB\nThreads:\t1003\nSigQ:\t0/96365\n";
        assert_eq!(parse_status(status), (48123, 52000, 1003));
        assert_eq!(parse_status("Name:\tkthreadd\nThreads:\t1\n"), (0, 0, 1));
    }

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
