//! `strftime_now(format)` for templates: the current local time formatted like Python's
//! `datetime.now().strftime(format)` (C-locale names). Local time comes from the C library on
//! Unix; elsewhere UTC is used.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
    /// 0 = Monday .. 6 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub yday: u32,
    /// Offset from UTC in seconds (east positive).
    pub utc_offset: i64,
    pub zone: String,
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's civil-from-days algorithm.
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

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl DateTime {
    /// The UTC date-time of a Unix timestamp.
    pub fn from_unix_utc(secs: i64, microsecond: u32) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_extra = u32::from(month > 2 && is_leap(year));
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            microsecond,
            // 1970-01-01 was a Thursday (3 when Monday is 0).
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: CUMULATIVE[(month - 1) as usize] + day + leap_extra,
            utc_offset: 0,
            zone: "UTC".into(),
        }
    }

    /// The current local time (UTC where the platform offers no local time zone).
    pub fn now() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = i64::try_from(now.as_secs()).unwrap_or(0);
        local_time(secs, now.subsec_micros())
            .unwrap_or_else(|| Self::from_unix_utc(secs, now.subsec_micros()))
    }

    /// Python `strftime` with the C locale. Unknown directives are copied through.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(mut d) = chars.next() else {
                out.push('%');
                break;
            };
            // glibc/BSD extension that Python passes through: `%-d` drops the padding.
            let no_pad = d == '-';
            if no_pad {
                match chars.next() {
                    Some(next) => d = next,
                    None => {
                        out.push_str("%-");
                        break;
                    }
                }
            }
            let field_start = out.len();
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let day_name = DAYS[(self.weekday % 7) as usize];
            let month_name = MONTHS[((self.month + 11) % 12) as usize];
            let _ = match d {
                'a' => write!(out, "{}", &day_name[..3]),
                'A' => write!(out, "{day_name}"),
                'w' => write!(out, "{}", (self.weekday + 1) % 7),
                'd' => write!(out, "{:02}", self.day),
                'e' => write!(out, "{:>2}", self.day),
                'b' | 'h' => write!(out, "{}", &month_name[..3]),
                'B' => write!(out, "{month_name}"),
                'm' => write!(out, "{:02}", self.month),
                'y' => write!(out, "{:02}", self.year.rem_euclid(100)),
                'Y' => write!(out, "{}", self.year),
                'H' => write!(out, "{:02}", self.hour),
                'I' => write!(out, "{hour12:02}"),
                'p' => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
                'M' => write!(out, "{:02}", self.minute),
                'S' => write!(out, "{:02}", self.second),
                'f' => write!(out, "{:06}", self.microsecond),
                'j' => write!(out, "{:03}", self.yday),
                'z' => {
                    let sign = if self.utc_offset < 0 { '-' } else { '+' };
                    let off = self.utc_offset.abs();
                    write!(out, "{sign}{:02}{:02}", off / 3600, off % 3600 / 60)
                }
                'Z' => write!(out, "{}", self.zone),
                'F' => write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day),
                'T' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                'D' => write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                ),
                'c' => write!(
                    out,
                    "{} {} {:>2} {:02}:{:02}:{:02} {}",
                    &day_name[..3],
                    &month_name[..3],
                    self.day,
                    self.hour,
                    self.minute,
                    self.second,
                    self.year
                ),
                'x' => write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                ),
                'X' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                '%' => write!(out, "%"),
                other => write!(out, "%{}{other}", if no_pad { "-" } else { "" }),
            };
            if no_pad && d.is_ascii_alphabetic() {
                let field = out.split_off(field_start);
                let trimmed = field.trim_start_matches(['0', ' ']);
                out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
            }
        }
        out
    }
}

#[cfg(unix)]
fn local_time(secs: i64, microsecond: u32) -> Option<DateTime> {
    // time_t is 32 bits on some targets, so the conversion is not always a no-op.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: `tm` is plain data; localtime_r only writes into it and returns null on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let res = unsafe { libc::localtime_r(&t, &mut tm) };
    if res.is_null() {
        return None;
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points at a NUL-terminated static string owned by the C library.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some(DateTime {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec.min(59) as u32,
        microsecond,
        weekday: ((tm.tm_wday + 6) % 7) as u32,
        yday: (tm.tm_yday + 1) as u32,
        utc_offset: tm.tm_gmtoff as i64,
        zone,
    })
}

#[cfg(not(unix))]
fn local_time(_secs: i64, _microsecond: u32) -> Option<DateTime> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        // 2024-07-26 14:05:09 UTC, a Friday.
        let t = DateTime::from_unix_utc(1_722_002_709, 42);
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            t.strftime("%A %B %-d %j %I%p %% %-m %-H"),
            "Friday July 26 208 02PM % 7 14"
        );
        assert_eq!(
            t.strftime("%F %T %z %Z %f %w"),
            "2024-07-26 14:05:09 +0000 UTC 000042 5"
        );
        assert_eq!(t.strftime("trailing %"), "trailing %");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(
            DateTime::from_unix_utc(0, 0).strftime("%Y-%m-%d %a %j"),
            "1970-01-01 Thu 001"
        );
        // 2000-02-29 (leap day) and 2000-12-31.
        assert_eq!(
            DateTime::from_unix_utc(951_782_400, 0).strftime("%Y-%m-%d %j"),
            "2000-02-29 060"
        );
        assert_eq!(
            DateTime::from_unix_utc(978_220_800, 0).strftime("%Y-%m-%d %j %a"),
            "2000-12-31 366 Sun"
        );
    }

    #[test]
    fn now_is_sane() {
        let now = DateTime::now();
        assert!(now.year >= 2024 && (1..=12).contains(&now.month) && (1..=31).contains(&now.day));
    }
}
