//! Apple-epoch dates: chat.db stores nanoseconds since 2001-01-01T00:00:00Z; the wire shows
//! RFC 3339 with milliseconds and `Z`. Also the relative offsets of scenario files (`"-2h"`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Unix time of the Apple epoch (2001-01-01T00:00:00Z).
pub const APPLE_EPOCH_UNIX: i64 = 978_307_200;
const NS: i64 = 1_000_000_000;

/// Apple-epoch nanoseconds of a point in time; `None` if it does not fit in i64.
pub fn apple_ns_from_datetime(dt: DateTime<Utc>) -> Option<i64> {
    let secs = dt.timestamp().checked_sub(APPLE_EPOCH_UNIX)?;
    secs.checked_mul(NS)?
        .checked_add(i64::from(dt.timestamp_subsec_nanos()))
}

/// The point in time of Apple-epoch nanoseconds.
pub fn datetime_from_apple_ns(apple_ns: i64) -> DateTime<Utc> {
    let secs = apple_ns.div_euclid(NS) + APPLE_EPOCH_UNIX;
    let nanos = apple_ns.rem_euclid(NS) as u32;
    DateTime::from_timestamp(secs, nanos).unwrap_or_default()
}

/// Now, in Apple-epoch nanoseconds (the one clock read of the world layer).
pub fn now_apple_ns() -> i64 {
    apple_ns_from_datetime(Utc::now()).unwrap_or(0)
}

/// `2026-01-15T18:04:05.123Z` (milliseconds truncated, always UTC).
pub fn iso8601(apple_ns: i64) -> String {
    datetime_from_apple_ns(apple_ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 internet date-time with a zone (`Z` or `±hh:mm`), fraction optional.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let dt = DateTime::parse_from_rfc3339(s.trim()).ok()?;
    apple_ns_from_datetime(dt.with_timezone(&Utc))
}

/// A signed duration like `-2h`, `-1d3h30m`, `+90s`, `-500ms`, `now` (= 0), in nanoseconds.
/// Units: `w`, `d`, `h`, `m`, `s`, `ms`. The sign is required except for `now`.
pub fn parse_relative(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "now" {
        return Some(0);
    }
    let (sign, mut rest) = match s.as_bytes().first()? {
        b'-' => (-1i64, &s[1..]),
        b'+' => (1i64, &s[1..]),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ns, len) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else {
            match rest.as_bytes().first()? {
                b'w' => (7 * 86_400 * NS, 1),
                b'd' => (86_400 * NS, 1),
                b'h' => (3_600 * NS, 1),
                b'm' => (60 * NS, 1),
                b's' => (NS, 1),
                _ => return None,
            }
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit_ns)?)?;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn apple_epoch_is_2001() {
        assert_eq!(iso8601(0), "2001-01-01T00:00:00.000Z");
        assert_eq!(parse_iso8601("2001-01-01T00:00:00Z"), Some(0));
        // 2026-01-15T18:04:05.123Z is unix 1768500245.123
        let ns = (1_768_500_245 - APPLE_EPOCH_UNIX) * NS + 123_000_000;
        assert_eq!(iso8601(ns), "2026-01-15T18:04:05.123Z");
        assert_eq!(parse_iso8601("2026-01-15T18:04:05.123Z"), Some(ns));
        assert_eq!(parse_iso8601("2026-01-15T20:04:05.123+02:00"), Some(ns));
    }

    #[test]
    fn milliseconds_truncate_and_pre_epoch_works() {
        assert_eq!(iso8601(999_999), "2001-01-01T00:00:00.000Z");
        assert_eq!(iso8601(-1), "2000-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_zone_less_and_junk() {
        for bad in ["yesterday", "", "123", "2026-01-15T18:04:05", "2026-01-15"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn relative_offsets() {
        assert_eq!(parse_relative("-2h"), Some(-2 * 3600 * NS));
        assert_eq!(
            parse_relative("+1d3h30m"),
            Some((86_400 + 3 * 3600 + 1800) * NS)
        );
        assert_eq!(parse_relative("-500ms"), Some(-500_000_000));
        assert_eq!(parse_relative("now"), Some(0));
        for bad in ["2h", "-", "-2x", "-h", ""] {
            assert_eq!(parse_relative(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn iso_round_trips_at_millisecond_precision(ms in -9_000_000_000_000i64..9_000_000_000_000i64) {
            let ns = ms * 1_000_000;
            let s = iso8601(ns);
            prop_assert_eq!(parse_iso8601(&s), Some(ns));
            prop_assert_eq!(iso8601(parse_iso8601(&s).unwrap()), s);
        }

        #[test]
        fn iso_truncates_sub_millisecond(ns in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            let back = parse_iso8601(&iso8601(ns)).unwrap();
            prop_assert_eq!(back, ns.div_euclid(1_000_000) * 1_000_000);
        }
    }
}
