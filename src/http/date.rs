//! HTTP dates (RFC 9110 §5.6.7): formatting for `Date` and `Last-Modified`,
//! parsing for `If-Modified-Since`.
//!
//! - [`fmt_http_date`] writes the preferred IMF-fixdate,
//!   `Sun, 06 Nov 1994 08:49:37 GMT`, by hand into a fixed 29-byte buffer
//!   (civil-from-days arithmetic, no time-zone database, no allocation
//!   besides the returned `String`).
//! - [`DateCache`] keeps the last formatted second, so the `Date` header of
//!   every response costs a comparison most of the time.
//! - [`parse_http_date`] accepts the three forms a recipient MUST accept:
//!   IMF-fixdate, the obsolete RFC 850 form and ANSI C `asctime()`.
//!
//! Times are whole seconds; years are kept within 0000–9999 so that the
//! output always has the fixed length.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z as Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// Formats `t` as an IMF-fixdate (RFC 9110 §5.6.7), truncated to the second.
pub fn fmt_http_date(t: SystemTime) -> String {
    let mut buf = [0u8; HTTP_DATE_LEN];
    write_imf_fixdate(unix_secs(t), &mut buf);
    // Only ASCII was written.
    String::from_utf8_lossy(&buf).into_owned()
}

/// Parses an HTTP-date in any of the three forms of RFC 9110 §5.6.7.
///
/// Surrounding whitespace is ignored. Names of days and months are
/// case-sensitive, as the grammar says; the day name must be a valid one but
/// is not checked against the date (senders get it wrong, the date itself is
/// what matters). A two-digit RFC 850 year is read as the most recent year
/// with those digits that is not more than 50 years in the future.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    // The clock is read only for the two-digit years of RFC 850.
    parse_at(s, || {
        civil_from_days(unix_secs(SystemTime::now()).div_euclid(86_400)).0
    })
}

/// Caches the `Date` header value for the current second.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: i64,
    text: String,
}

impl DateCache {
    pub fn new() -> Self {
        DateCache {
            secs: i64::MIN,
            text: String::with_capacity(HTTP_DATE_LEN),
        }
    }

    /// The IMF-fixdate for `now`, re-formatted only when the second changed.
    pub fn get(&mut self, now: SystemTime) -> &str {
        let secs = unix_secs(now);
        if secs != self.secs {
            let mut buf = [b' '; HTTP_DATE_LEN];
            write_imf_fixdate(secs, &mut buf);
            self.text.clear();
            self.text
                .push_str(std::str::from_utf8(&buf).expect("an IMF-fixdate is ASCII"));
            self.secs = secs;
        }
        &self.text
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

/// Whole seconds since the epoch, floored (so 0.5 s before it is -1).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    }
}

fn from_unix_secs(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

fn write_imf_fixdate(secs: i64, buf: &mut [u8; HTTP_DATE_LEN]) {
    let secs = secs.clamp(MIN_SECS, MAX_SECS);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wday = (days + 4).rem_euclid(7) as usize;
    let year = year as u32; // within 0..=9999 after the clamp

    buf[0..3].copy_from_slice(DAYS[wday]);
    buf[3..5].copy_from_slice(b", ");
    put2(&mut buf[5..7], day);
    buf[7] = b' ';
    buf[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    buf[11] = b' ';
    put2(&mut buf[12..14], year / 100);
    put2(&mut buf[14..16], year % 100);
    buf[16] = b' ';
    put2(&mut buf[17..19], sod / 3600);
    buf[19] = b':';
    put2(&mut buf[20..22], sod / 60 % 60);
    buf[22] = b':';
    put2(&mut buf[23..25], sod % 60);
    buf[25..29].copy_from_slice(b" GMT");
}

fn put2(dst: &mut [u8], n: u32) {
    dst[0] = b'0' + (n / 10 % 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic
/// Gregorian (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
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

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

fn parse_at(s: &str, now_year: impl FnOnce() -> i64) -> Option<SystemTime> {
    let s = s.trim_matches(|c: char| c == ' ' || c == '\t').as_bytes();
    let (year, month, day, time) = if s.len() == HTTP_DATE_LEN && s[3] == b',' {
        parse_imf(s)?
    } else if s.len() == 24 && s[3] == b' ' {
        parse_asctime(s)?
    } else {
        parse_rfc850(s, now_year())?
    };
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    from_unix_secs(days_from_civil(year, month, day) * 86_400 + i64::from(time))
}

type Parts = (i64, u32, u32, u32);

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf(s: &[u8]) -> Option<Parts> {
    day_name(&s[0..3])?;
    if &s[3..5] != b", " || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' {
        return None;
    }
    if &s[25..] != b" GMT" {
        return None;
    }
    let day = digits(&s[5..7])?;
    let month = month(&s[8..11])?;
    let year = i64::from(digits(&s[12..16])?);
    Some((year, month, day, time_of_day(&s[17..25])?))
}

/// `Sun Nov  6 08:49:37 1994`
fn parse_asctime(s: &[u8]) -> Option<Parts> {
    day_name(&s[0..3])?;
    if s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let month = month(&s[4..7])?;
    let day = match s[8] {
        b' ' => digits(&s[9..10])?,
        _ => digits(&s[8..10])?,
    };
    let year = i64::from(digits(&s[20..24])?);
    Some((year, month, day, time_of_day(&s[11..19])?))
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn parse_rfc850(s: &[u8], now_year: i64) -> Option<Parts> {
    let comma = s.iter().position(|&b| b == b',')?;
    if !LONG_DAYS.iter().any(|d| d.as_bytes() == &s[..comma]) {
        return None;
    }
    let rest = &s[comma..];
    if rest.len() != 24 || &rest[..2] != b", " {
        return None;
    }
    if rest[4] != b'-' || rest[8] != b'-' || rest[11] != b' ' || &rest[20..] != b" GMT" {
        return None;
    }
    let day = digits(&rest[2..4])?;
    let month = month(&rest[5..8])?;
    let yy = i64::from(digits(&rest[9..11])?);
    // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future
    // means the most recent past year with the same last two digits.
    let mut year = now_year - now_year.rem_euclid(100) + yy;
    if year > now_year + 50 {
        year -= 100;
    } else if year <= now_year - 50 {
        year += 100;
    }
    Some((year, month, day, time_of_day(&rest[12..20])?))
}

fn day_name(b: &[u8]) -> Option<usize> {
    DAYS.iter().position(|d| &d[..] == b)
}

fn month(b: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| &m[..] == b)
        .map(|i| i as u32 + 1)
}

/// `hh:mm:ss` as seconds of the day. A leap second (`:60`) is allowed by
/// the grammar; it is read as the last second of its minute.
fn time_of_day(b: &[u8]) -> Option<u32> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s.min(59))
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        from_unix_secs(secs).unwrap()
    }

    #[test]
    fn formats() {
        let table: &[(i64, &str)] = &[
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
            (MAX_SECS, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (MAX_SECS + 1_000_000, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, want) in table {
            assert_eq!(fmt_http_date(at(secs)), want, "{secs}");
        }
    }

    #[test]
    fn formats_truncate_subseconds() {
        let t = at(784_111_777) + Duration::from_millis(999);
        assert_eq!(fmt_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = at(0) - Duration::from_millis(1);
        assert_eq!(fmt_http_date(t), "Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn agrees_with_chrono() {
        let mut secs = MIN_SECS;
        while secs < MAX_SECS {
            let want = chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            assert_eq!(fmt_http_date(at(secs)), want, "{secs}");
            assert_eq!(parse_http_date(&want), Some(at(secs)), "{want}");
            secs += 7_777_777 + secs.rem_euclid(86_400);
        }
    }

    #[test]
    fn parses() {
        let t = Some(at(784_111_777));
        let table: &[(&str, Option<SystemTime>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", t),
            ("  Sun, 06 Nov 1994 08:49:37 GMT\t", t),
            ("Sunday, 06-Nov-94 08:49:37 GMT", t),
            ("Sun Nov  6 08:49:37 1994", t),
            ("Sun Nov 06 08:49:37 1994", t),
            // the day name is not checked against the date
            ("Mon, 06 Nov 1994 08:49:37 GMT", t),
            ("Sun, 06 Nov 1994 08:49:60 GMT", Some(at(784_111_799))),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(UNIX_EPOCH)),
            ("Thu, 29 Feb 2024 23:59:59 GMT", Some(at(1_709_251_199))),
            ("Thu, 31 Dec 1969 23:59:59 GMT", Some(at(-1))),
            ("", None),
            ("garbage", None),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 06 Nov 1994 08:49:37 gmt", None),
            ("sun, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 nov 1994 08:49:37 GMT", None),
            ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 94 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1994 23:60:00 GMT", None),
            ("Sun, 06 Nov 1994 23:59:61 GMT", None),
            ("Sun, 00 Nov 1994 08:49:37 GMT", None),
            ("Sun, 31 Nov 1994 08:49:37 GMT", None),
            ("Sun, 29 Feb 2023 08:49:37 GMT", None),
            ("Sun, 29 Feb 1900 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:3x GMT", None),
            ("Sun, 06 Nov 1994 08-49-37 GMT", None),
            ("Sun, +6 Nov 1994 08:49:37 GMT", None),
            ("Sun,  06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 GMT ", t),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sun, 06-Nov-94 08:49:37 GMT", None),
            ("Sunday 06-Nov-94 08:49:37 GMT", None),
            ("Sun Nov  6 08:49:37 94", None),
            ("Sun Nov   6 08:49:37 1994", None),
            ("Sun Nov  6 08:49:37 1994 GMT", None),
            ("Sun Nov 6  08:49:37 1994", None),
            ("日, 06 Nov 1994 08:49:37 GMT", None),
        ];
        for &(s, want) in table {
            assert_eq!(parse_at(s, || 2024), want, "{s:?}");
        }
    }

    #[test]
    fn rfc850_two_digit_years() {
        let table: &[(&str, i64, i64)] = &[
            ("06-Nov-94", 2024, 1994),
            ("06-Nov-24", 2024, 2024),
            ("06-Nov-74", 2024, 2074),
            ("06-Nov-75", 2024, 1975),
            ("06-Nov-00", 2099, 2100),
            ("06-Nov-49", 2099, 2149),
            ("06-Nov-50", 2099, 2050),
        ];
        for &(date, now_year, year) in table {
            let s = format!("Monday, {date} 00:00:00 GMT");
            let want = days_from_civil(year, 11, 6) * 86_400;
            assert_eq!(
                parse_at(&s, || now_year),
                Some(at(want)),
                "{s} in {now_year}"
            );
        }
    }

    #[test]
    fn round_trips_civil_days() {
        for days in (-800_000..3_000_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn cache_reformats_on_new_second_only() {
        let mut cache = DateCache::new();
        let t = at(784_111_777);
        assert_eq!(cache.get(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            cache.get(t + Duration::from_millis(900)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            cache.get(t + Duration::from_secs(1)),
            "Sun, 06 Nov 1994 08:49:38 GMT"
        );
        assert_eq!(cache.get(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            DateCache::default().get(UNIX_EPOCH),
            fmt_http_date(UNIX_EPOCH)
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_at(&s, || 2024);
        }

        #[test]
        fn fmt_then_parse_is_identity(secs in MIN_SECS..=MAX_SECS) {
            let s = fmt_http_date(at(secs));
            proptest::prop_assert_eq!(s.len(), HTTP_DATE_LEN);
            proptest::prop_assert_eq!(parse_at(&s, || 2024), Some(at(secs)));
        }
    }
}
