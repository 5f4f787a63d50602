//! Recording file names: `{start}` as `YYYYMMDD-HHMMSS-mmm` in UTC (sorts by
//! time, no characters a shell or another OS minds), and the counter a name gets
//! when a file of that name exists already (`...-006-1.flv`, `-2`, ...).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::utc::UtcTime;

/// `{start}` for a recording started at `t`: `20260102-030405-006`.
pub fn start_time(t: SystemTime) -> String {
    let t = UtcTime::from_system(t);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{:03}",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// `path` with counter `n` before its extension: `a/b.flv` → `a/b-2.flv`; 0 is
/// `path` itself.
pub fn with_counter(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_owned();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn start_times_are_utc_to_the_millisecond() {
        let at = |secs: u64, ms: u64| {
            start_time(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "19700101-000000-000");
        // 2000-02-29 23:59:59.999, a leap day in a century year divisible by 400.
        assert_eq!(at(951_868_799, 999), "20000229-235959-999");
        assert_eq!(at(951_868_800, 0), "20000301-000000-000");
        // 2026-01-02 03:04:05.006
        assert_eq!(at(1_767_323_045, 6), "20260102-030405-006");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_400, 0), "21000301-000000-000");
    }

    #[test]
    fn counters_go_before_the_extension() {
        let p = Path::new("live/cam/20260102-030405-006.flv");
        assert_eq!(with_counter(p, 0), p);
        assert_eq!(
            with_counter(p, 2),
            Path::new("live/cam/20260102-030405-006-2.flv")
        );
        assert_eq!(with_counter(Path::new("x"), 1), Path::new("x-1"));
    }
}
