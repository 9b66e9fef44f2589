//! Times on the command line and in the output.
//!
//! `--timestamp` takes what the AWS CLI takes: epoch seconds, decimals allowed
//! (`1700000000.25`), or an RFC 3339 date-time (`2023-11-14T22:13:20.250Z`,
//! `2023-11-14T23:13:20+01:00`). Output prints times as RFC 3339 in UTC with milliseconds,
//! the way the AWS CLI v2 prints `ApproximateArrivalTimestamp`.
//! The calendar arithmetic (proleptic Gregorian, days from 1970-01-01) is Howard
//! Hinnant's `days_from_civil`/`civil_from_days`; it is small enough not to need a crate.

/// Milliseconds in one day.
const DAY_MS: i64 = 86_400_000;

/// Parses epoch seconds or an RFC 3339 date-time into milliseconds since the epoch.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty timestamp".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_epoch_seconds(text);
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "invalid timestamp {text:?}: expected epoch seconds (1700000000.25) or \
             RFC 3339 (2023-11-14T22:13:20.250Z)"
        )
    })
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}+00:00")
}

/// `123` or `123.456789` seconds; digits past the millisecond are dropped.
fn parse_epoch_seconds(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid epoch seconds {text:?}");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.contains('.') {
        return Err(invalid());
    }
    let seconds: i64 = whole.parse().map_err(|_| invalid())?;
    let millis = fraction_ms(fraction).ok_or_else(invalid)?;
    seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(millis))
        .ok_or_else(invalid)
}

/// The milliseconds of a decimal fraction's digits (`"25"` is 250).
fn fraction_ms(digits: &str) -> Option<i64> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for place in 0..3 {
        let digit = digits
            .as_bytes()
            .get(place)
            .map_or(0, |b| i64::from(b - b'0'));
        ms = ms * 10 + digit;
    }
    Some(ms)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)`.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let bytes = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| bytes.get(i) != Some(&c))
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let rest = text.get(19..)?;
    let (millis, zone) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let digits_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            if digits_len == 0 {
                return None;
            }
            let (digits, zone) = after_dot.split_at(digits_len);
            (fraction_ms(digits)?, zone)
        }
        None => (0, rest),
    };
    let offset_ms = zone_offset_ms(zone)?;
    let local_ms = days_from_civil(year, month, day) * DAY_MS
        + ((hour * 60 + minute) * 60 + second) * 1000
        + millis;
    Some(local_ms - offset_ms)
}

/// `Z` is 0; `+HH:MM` and `-HH:MM` are the offset from UTC in ms.
fn zone_offset_ms(zone: &str) -> Option<i64> {
    if zone == "Z" || zone == "z" {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let bytes = zone.as_bytes();
    if zone.len() != 6 || bytes.get(3) != Some(&b':') {
        return None;
    }
    let hours: i64 = zone.get(1..3)?.parse().ok()?;
    let minutes: i64 = zone.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes) * 60_000)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_ms: i64) {
        assert_eq!(parse_ms(text), Ok(expected_ms), "{text}");
    }

    #[test]
    fn epoch_seconds_parse_with_and_without_decimals() {
        check("1700000000", 1_700_000_000_000);
        check("1700000000.25", 1_700_000_000_250);
        check("1700000000.1239", 1_700_000_000_123);
        check("0", 0);
        assert!(parse_ms("1.2.3").is_err());
        assert!(parse_ms(".5").is_err());
    }

    #[test]
    fn rfc3339_parses_with_zone_and_fraction() {
        check("2023-11-14T22:13:20Z", 1_700_000_000_000);
        check("2023-11-14T22:13:20.250Z", 1_700_000_000_250);
        check("2023-11-14T23:13:20.25+01:00", 1_700_000_000_250);
        check("2023-11-14T21:43:20-00:30", 1_700_000_000_000);
        check("1970-01-01T00:00:00Z", 0);
        check("2024-02-29T00:00:00Z", 1_709_164_800_000);
    }

    #[test]
    fn malformed_dates_are_refused() {
        for text in [
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "yesterday",
            "",
        ] {
            assert!(parse_ms(text).is_err(), "{text}");
        }
    }

    #[test]
    fn format_prints_utc_with_milliseconds_and_parses_back() {
        assert_eq!(
            format_ms(1_700_000_000_250),
            "2023-11-14T22:13:20.250+00:00"
        );
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000+00:00");
        for ms in [0, 951_782_400_000, 1_709_164_800_001, 4_102_444_799_999] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms));
        }
    }
}
