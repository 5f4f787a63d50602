//! Where log records go and what a line looks like; `main` sets this up once,
//! everything else only calls the `log` macros. Records go to stderr, filtered by
//! `RUST_LOG` (default `info`), in one of three shapes:
//!
//! - `text` elsewhere: env_logger's own line, `[TIME LEVEL target] message`.
//! - `text` under journald (systemd connected our stderr to the journal, which it
//!   says in `JOURNAL_STREAM`): no timestamp, the journal adds its own; each line
//!   starts with the record's syslog priority, `<3>` error, `<4>` warn, `<6>` info,
//!   `<7>` debug and trace, which journald strips and stores, so `journalctl -p
//!   warning` shows warnings and errors only.
//! - `json` (`--log-format json`): one object per line, `time` (RFC 3339, UTC),
//!   `level`, `target` and `message`, for log shippers; under journald it carries
//!   the priority prefix too.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use env_logger::fmt::Formatter;
use log::{Level, Record};

use crate::config::LogFormat;

/// Sends log records to stderr in `format`; call once, before anything logs.
pub fn init(format: LogFormat) {
    let journal = stderr_is_journal();
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match (format, journal) {
        (LogFormat::Text, false) => {}
        (LogFormat::Text, true) => {
            builder.format(write_journal_text);
        }
        (LogFormat::Json, _) => {
            builder.format(move |buf, record| {
                let time = buf.timestamp_micros().to_string();
                if journal {
                    write!(buf, "<{}>", syslog_priority(record.level()))?;
                }
                writeln!(buf, "{}", json_line(&time, record))
            });
        }
    }
    builder.init();
}

/// Says why the server could not start, on one line of stderr whatever `RUST_LOG`
/// says: `rtmpd: ...`, or under journald an error line like the others there
/// (`<3>[ERROR rtmpd] ...`), so `journalctl -p err` shows it.
pub fn fatal(message: &dyn std::fmt::Display) {
    if stderr_is_journal() {
        eprintln!("<{}>[ERROR rtmpd] {message}", syslog_priority(Level::Error));
    } else {
        eprintln!("rtmpd: {message}");
    }
}

/// The syslog priority journald files a record's line under.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<6>[INFO  rtmpd::server] message`: today's line without its timestamp. Every
/// line of a message gets the prefix: journald reads each as a record of its own.
fn write_journal_text(buf: &mut Formatter, record: &Record) -> io::Result<()> {
    let priority = syslog_priority(record.level());
    let message = record.args().to_string();
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("");
    writeln!(
        buf,
        "<{priority}>[{:<5} {}] {first}",
        record.level(),
        record.target()
    )?;
    for line in lines {
        writeln!(buf, "<{priority}>{line}")?;
    }
    Ok(())
}

/// `{"time":...,"level":"info","target":...,"message":...}` (no newline).
fn json_line(time: &str, record: &Record) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"{{"time":{},"level":"{}","target":{},"message":{}}}"#,
        string(time),
        record.level().as_str().to_ascii_lowercase(),
        string(record.target()),
        string(&record.args().to_string()),
    )
}

/// True when systemd connected our stderr to the journal: `JOURNAL_STREAM` names
/// the device and inode of that stream. Compared with stderr itself, because a
/// child of a service inherits the variable even where its stderr went elsewhere.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(stderr).metadata() {
        Ok(meta) => names_stream(&stream.to_string_lossy(), meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// Whether `JOURNAL_STREAM`'s `DEVICE:INODE` is the stream with `dev` and `ino`.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        let p: Vec<u8> = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .map(syslog_priority)
        .to_vec();
        assert_eq!(p, [3, 4, 6, 7, 7]);
    }

    #[test]
    fn journal_stream_must_name_this_stream() {
        assert!(names_stream("64769:1234567", 64769, 1234567));
        assert!(!names_stream("64769:1234567", 64769, 7654321));
        assert!(!names_stream("64769", 64769, 0));
        assert!(!names_stream("x:1", 0, 1));
        assert!(!names_stream("", 0, 0));
    }

    #[test]
    fn json_lines_escape_what_they_carry() {
        let line = json_line(
            "2026-11-30T00:00:00.000001Z",
            &Record::builder()
                .level(Level::Warn)
                .target("rtmpd::server")
                .args(format_args!("peer \"x\"\nsaid \\ {}", 1))
                .build(),
        );
        assert_eq!(line.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "time": "2026-11-30T00:00:00.000001Z",
                "level": "warn",
                "target": "rtmpd::server",
                "message": "peer \"x\"\nsaid \\ 1",
            })
        );
    }
}
