//! Durations as workflow authors write them: `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1m30s"`.

use std::time::Duration;

/// Parse a duration such as `"250ms"`, `"1.5s"` or `"1m30s"`. The error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: write a number and a unit (ms, s, m, h), e.g. \"250ms\", \"5s\", \"1m30s\""
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let millis_per_unit = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * millis_per_unit / 1_000.0);
    }
    Ok(total)
}

/// Format a duration the way [`parse`] reads it, for messages: `250ms`, `5s`, `1.5s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
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
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in ["", "5", "s", "5 sec", "5x", "-1s", "fast"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_for_messages() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(5)), "5s");
        assert_eq!(format(Duration::from_millis(1_500)), "1.5s");
    }
}
