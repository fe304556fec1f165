//! Event-time parsing: the raw `ts` field comes as an integer, a numeric
//! string or an RFC 3339 date, in milliseconds or seconds.

/// Below this an integer timestamp is taken as seconds (1e11 ms is 1973; in
/// seconds it is the year 5138).
const SECONDS_LIMIT: i64 = 100_000_000_000;

/// Normalises an integer timestamp to milliseconds.
pub fn normalise_ms(ts: i64) -> Option<i64> {
    if ts < 0 {
        None
    } else if ts < SECONDS_LIMIT {
        ts.checked_mul(1000)
    } else {
        Some(ts)
    }
}

/// Parses a string timestamp: digits (ms or s) or RFC 3339
/// (`2023-11-14T22:13:20.123Z`, `...+08:00`). Returns ms since the epoch.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().and_then(normalise_ms);
    }
    parse_rfc3339_ms(text)
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1, i + 3)? * 60 + num(i + 4, i + 6)?;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_strings_in_ms_or_seconds() {
        assert_eq!(parse_timestamp_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_timestamp_ms(" 1700000000 "), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp_ms("99999999999999999999"), None);
        assert_eq!(normalise_ms(-5), None);
    }

    #[test]
    fn rfc3339_with_fraction_and_offsets() {
        assert_eq!(parse_timestamp_ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(parse_timestamp_ms("2023-11-14T22:13:20.1Z"), Some(1_700_000_000_100));
        assert_eq!(parse_timestamp_ms("2023-11-15T06:13:20.123456+08:00"), Some(1_700_000_000_123));
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for s in ["", "yesterday", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20+0800", "２０２３-11-14T22:13:20Z", "2023-11-14T22:13:20Zjunk"] {
            assert_eq!(parse_timestamp_ms(s), None, "{s:?}");
        }
    }
}
