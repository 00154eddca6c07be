//! `strftime_now` for chat templates: a C `strftime` subset over UTC, with `CLEX_DATE`
//! to pin the date in tests.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{Error, ErrorKind};

/// Civil date (y, m, d) from days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Seconds since the epoch: from `CLEX_DATE` (`YYYY-MM-DD`, optionally followed by
/// `THH:MM:SS` or ` HH:MM:SS`) when set, for reproducible tests; otherwise the clock (UTC).
fn now_secs() -> Result<i64, Error> {
    if let Ok(s) = std::env::var("CLEX_DATE") {
        let bad = || {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("CLEX_DATE={s:?} is not YYYY-MM-DD[THH:MM:SS]"),
            )
        };
        let num = |r: std::ops::Range<usize>| {
            s.get(r).and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad)
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        let hms = if s.len() >= 19 {
            num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?
        } else {
            0
        };
        return Ok(days_from_civil(y, m as u32, d as u32) * 86_400 + hms);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(now.as_secs() as i64)
}

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
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// C `strftime` subset over a UTC timestamp: `%Y %y %m %d %e %H %I %M %S %p %B %b %h %A
/// %a %j %F %T %%`, with glibc's `%-X` (no padding). Unknown directives are kept verbatim.
pub fn format_time(fmt: &str, secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |out: &mut String, v: i64, w: usize| {
            let _ = if no_pad {
                write!(out, "{v}")
            } else {
                write!(out, "{v:0w$}")
            };
        };
        match spec {
            Some('Y') => num(&mut out, y, 0),
            Some('y') => num(&mut out, y.rem_euclid(100), 2),
            Some('m') => num(&mut out, m.into(), 2),
            Some('d') => num(&mut out, d.into(), 2),
            Some('e') => out.push_str(&if no_pad {
                d.to_string()
            } else {
                format!("{d:2}")
            }),
            Some('H') => num(&mut out, hh, 2),
            Some('I') => num(&mut out, (hh + 11) % 12 + 1, 2),
            Some('M') => num(&mut out, mm, 2),
            Some('S') => num(&mut out, ss, 2),
            Some('j') => num(&mut out, yday, 3),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b') | Some('h') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('F') => out.push_str(&format!("{y:04}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

pub(super) fn strftime_now(fmt: String) -> Result<String, Error> {
    Ok(format_time(&fmt, now_secs()?))
}
