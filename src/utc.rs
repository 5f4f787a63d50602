//! Calendar time in UTC from the system clock, without a date crate: the HTTP
//! `Date` header and the start times in recording names need nothing more.

use std::time::{SystemTime, UNIX_EPOCH};

/// A moment in UTC, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 0 for Monday to 6 for Sunday.
    pub weekday: u32,
}

impl UtcTime {
    /// `t` in UTC; a time before 1970 (a broken clock) counts as 1970-01-01.
    pub fn from_system(t: SystemTime) -> UtcTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = secs / 86_400;
        let of_day = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days as i64);
        UtcTime {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            millis: since.subsec_millis(),
            // 1970-01-01 was a Thursday.
            weekday: ((days + 3) % 7) as u32,
        }
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (month
/// 1..=12, day 1..=31); the inverse of [`civil_from_days`] (Howard Hinnant's).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31); Howard Hinnant's
/// algorithm for the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for z in [-800_000, -1, 0, 59, 60, 11_016, 11_017, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn leap_years_centuries_and_weekdays() {
        let at = |secs: u64, ms: u64| {
            let t = UtcTime::from_system(
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms),
            );
            (
                t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis, t.weekday,
            )
        };
        assert_eq!(at(0, 0), (1970, 1, 1, 0, 0, 0, 0, 3));
        // 2000-02-29 23:59:59.999: a leap day in a century year divisible by 400.
        assert_eq!(at(951_868_799, 999), (2000, 2, 29, 23, 59, 59, 999, 1));
        assert_eq!(at(951_868_800, 0), (2000, 3, 1, 0, 0, 0, 0, 2));
        // 2100 is not a leap year: 28 February is followed by 1 March.
        assert_eq!(at(4_107_542_399, 0), (2100, 2, 28, 23, 59, 59, 0, 6));
        assert_eq!(at(4_107_542_400, 0), (2100, 3, 1, 0, 0, 0, 0, 0));
    }
}
