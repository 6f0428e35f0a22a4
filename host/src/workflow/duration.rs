//! Durations as workflow authors and operators write them: `"250ms"`, `"5s"`, `"1m30s"`,
//! `"2h"`, `"7d"`, `"1.5s"` (jiff's "friendly" format; ISO 8601 `"PT5M"` is read too).
//!
//! Parsing is jiff's, so a value too large to represent is an error, never a panic or a
//! silent wrap. Every caller also gives the largest value it accepts ([`parse_at_most`]):
//! a definition names its limits and says them in its error, so a `timeout = "5124095576000h"`
//! is refused at load time instead of overflowing a deadline at run time.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};

/// One hour.
pub const HOUR: Duration = Duration::from_secs(3_600);
/// One day of 24 hours (durations here are elapsed time, not calendar days).
pub const DAY: Duration = Duration::from_secs(86_400);

/// Parse a non-negative duration. The error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = |why: &str| {
        format!(
            "{text:?} is not a duration{why}: write a number and a unit (ms, s, m, h, d), e.g. \"250ms\", \"5s\", \"1m30s\""
        )
    };
    // jiff reads a bare number as an error too, but "5" deserves the plain message.
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad(""));
    }
    let span: Span = s.parse().map_err(|e: jiff::Error| bad(&format!(" ({e})")))?;
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad(" (months and years have no fixed length; use days)"))?;
    if signed.is_negative() {
        return Err(format!("{text:?} is negative: a duration must be zero or more"));
    }
    Duration::try_from(signed).map_err(|e| bad(&format!(" ({e})")))
}

/// Parse a duration no longer than `max`; the error names the limit.
pub fn parse_at_most(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse(text).map_err(|e| format!("{e} (at most {} here)", format(max)))?;
    if d > max {
        return Err(format!("{text:?} is longer than the largest value allowed here, {}", format(max)));
    }
    Ok(d)
}

/// Format a duration the way [`parse`] reads it, for messages: `250ms`, `5s`, `1.5s`, `2h`,
/// `7d`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    let (day, hour, minute) = (DAY.as_millis(), HOUR.as_millis(), 60_000);
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(day) {
        format!("{}d", ms / day)
    } else if ms.is_multiple_of(hour) {
        format!("{}h", ms / hour)
    } else if ms.is_multiple_of(minute) {
        format!("{}m", ms / minute)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{}s", ms as f64 / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1_500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3_600));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("7d").unwrap(), 7 * DAY);
        assert_eq!(parse("PT5M").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in ["", "5", "s", "5x", "fast", "1 month", "2y"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
        assert!(parse("-1s").unwrap_err().contains("negative"));
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        for huge in ["99999999999999999999h", "5124095576000h", "999999999999999999999999999ms", "1e300s"] {
            assert!(parse(huge).is_err(), "{huge} was accepted");
        }
        let err = parse_at_most("9000h", 365 * DAY).unwrap_err();
        assert!(err.contains("largest value allowed here, 365d"), "{err}");
        assert_eq!(parse_at_most("365d", 365 * DAY).unwrap(), 365 * DAY);
    }

    #[test]
    fn formats_for_messages() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(2 * HOUR), "2h");
        assert_eq!(format(7 * DAY), "7d");
        for d in ["250ms", "5s", "1.5s", "5m", "2h", "7d", "90s"] {
            assert_eq!(format(parse(d).unwrap()), d);
        }
    }
}
