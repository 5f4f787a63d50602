//! What Linux's /proc says about a process: its CPU time (`/proc/PID/stat`), memory
//! and thread count (`/proc/PID/status`) and open descriptors (`/proc/PID/fd`).
//! The metrics endpoint reads its own process; the bench and the tests read a
//! server's. The parsers work on the files' text and are unit-tested on it.

use std::fmt::Display;
use std::fs;
use std::io;

/// Clock ticks per second of the CPU times in `/proc/PID/stat` (USER_HZ), which
/// the kernel fixes at 100 for user space on every architecture Linux supports.
pub const USER_HZ: u64 = 100;

/// The fields of `/proc/PID/status` we use; `None` where a field is missing (a
/// kernel thread has no Vm lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// VmRSS: resident memory now, KiB.
    pub rss_kib: Option<u64>,
    /// VmHWM: peak resident memory since the process started, KiB.
    pub hwm_kib: Option<u64>,
    /// VmSize: virtual memory, KiB.
    pub size_kib: Option<u64>,
    pub threads: Option<u64>,
}

impl Status {
    /// Reads `/proc/PID/status`; `pid` is a number or `self`.
    pub fn read(pid: impl Display) -> io::Result<Status> {
        Ok(Status::parse(&fs::read_to_string(format!(
            "/proc/{pid}/status"
        ))?))
    }

    /// The fields from the text of a status file.
    pub fn parse(text: &str) -> Status {
        let mut status = Status::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let number = value
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            match name {
                "VmRSS" => status.rss_kib = number,
                "VmHWM" => status.hwm_kib = number,
                "VmSize" => status.size_kib = number,
                "Threads" => status.threads = number,
                _ => {}
            }
        }
        status
    }
}

/// utime and stime (clock ticks, see [`USER_HZ`]) of every thread of a process,
/// living and exited, from the text of `/proc/PID/stat`. The command name in
/// parentheses may contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// utime + stime of a process in clock ticks; `pid` is a number or `self`.
pub fn cpu_ticks(pid: impl Display) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable stat"))?;
    Ok(utime + stime)
}

/// Descriptors the process has open; `pid` is a number or `self`.
pub fn open_fds(pid: impl Display) -> io::Result<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd"))?;
    // Reading our own table, the directory handle being read counts itself.
    let own = pid.to_string() == "self";
    Ok((dir.count() as u64).saturating_sub(u64::from(own)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_memory_and_threads() {
        let status =
            "Name:\trtmpd\nVmPeak:\t  900000 kB\nVmSize:\t  123456 kB\nVmHWM:\t   52000 kB\n\
                      VmRSS:\t   48123 kB\nThreads:\t1003\nSigQ:\t0/96365\n";
        assert_eq!(
            Status::parse(status),
            Status {
                rss_kib: Some(48123),
                hwm_kib: Some(52000),
                size_kib: Some(123_456),
                threads: Some(1003),
            }
        );
        assert_eq!(
            Status::parse("Name:\tkthreadd\nThreads:\t1\n"),
            Status {
                threads: Some(1),
                ..Status::default()
            }
        );
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (rtmp (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 269 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((731, 269)));
        let stat =
            "4242 (rt mpd) (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 100 0 0";
        assert_eq!(parse_stat(stat), Some((250, 50)));
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_visible_on_linux() {
        if cfg!(target_os = "linux") {
            let s = Status::read("self").unwrap();
            assert!(s.threads.unwrap() >= 1);
            assert!(s.rss_kib.unwrap() > 0);
            assert!(cpu_ticks("self").is_ok());
            assert!(open_fds("self").unwrap() >= 3);
            assert!(Status::read(std::process::id()).unwrap().threads.is_some());
        }
    }
}
