//! Timestamps: kept as milliseconds since the Unix epoch (cheap to compare and add), written
//! as RFC 3339 (`2026-12-01T11:45:09.123Z`) wherever a person or a client reads them. Reading
//! accepts both, so records written before the switch still load.

use serde::{Deserializer, Serializer};

/// RFC 3339, UTC, millisecond precision. Written by hand rather than through a date
/// library or `format!`: every commit writes a dozen of these, and this is several times
/// cheaper.
pub fn format(ms: u64) -> String {
    let mut buf = [0u8; 24];
    match write(ms, &mut buf) {
        Some(text) => text.to_owned(),
        None => ms.to_string(),
    }
}

/// [`format`] into `buf`; `None` past the year 9999.
fn write(ms: u64, buf: &mut [u8; 24]) -> Option<&str> {
    const MAX_MS: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if ms > MAX_MS {
        return None;
    }
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000);
    fn digits(out: &mut [u8], mut n: u64) {
        for d in out.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    *buf = *b"0000-00-00T00:00:00.000Z";
    digits(&mut buf[0..4], year as u64);
    digits(&mut buf[5..7], month as u64);
    digits(&mut buf[8..10], day as u64);
    digits(&mut buf[11..13], h);
    digits(&mut buf[14..16], m);
    digits(&mut buf[17..19], s);
    digits(&mut buf[20..23], milli);
    std::str::from_utf8(buf).ok()
}

/// An RFC 3339 time as milliseconds since the epoch (times before 1970 are refused).
pub fn parse(text: &str) -> Result<u64, String> {
    if let Some(ms) = parse_own(text) {
        return Ok(ms);
    }
    let t: jiff::Timestamp =
        text.parse().map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z): {e}"))?;
    u64::try_from(t.as_millisecond()).map_err(|_| format!("{text:?} is before 1970"))
}

/// The exact form [`format`] writes (`2026-12-01T11:45:09.123Z`), read without a date
/// library: records are read back far more often than people type times. Anything else is
/// `None` (and goes to the full parser).
fn parse_own(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 || &b[4..5] != b"-" || &b[7..8] != b"-" || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    // A civil date to days since 1970-01-01 (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + m) * 60 + s).ok().map(|secs| secs * 1_000 + milli as u64)
}

/// Reads a time as milliseconds or as RFC 3339 text, straight from the deserializer (no
/// buffering of an untagged enum).
struct Visitor;

impl serde::de::Visitor<'_> for Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 time or milliseconds since the epoch")
    }

    fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<u64, E> {
        Ok(ms)
    }

    fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<u64, E> {
        u64::try_from(ms).map_err(|_| E::custom(format!("{ms} is before 1970")))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<u64, E> {
        parse(text).map_err(E::custom)
    }
}

/// `#[serde(with = "crate::model::time")]` for a `u64` of milliseconds.
pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 24];
    match write(*ms, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&ms.to_string()),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Visitor)
}

/// The same, for an `Option<u64>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::serialize(ms, s),
            None => s.serialize_none(),
        }
    }

    struct OptionVisitor;

    impl<'de> serde::de::Visitor<'de> for OptionVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 time, milliseconds since the epoch, or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_what_others_write_too() {
        assert_eq!(super::parse("2026-12-01T11:45:09Z"), Ok(1_796_125_509_000));
        assert_eq!(super::parse("2026-12-01T12:45:09.123+01:00"), Ok(1_796_125_509_123));
        assert_eq!(super::parse_own("2026-02-30T00:00:00.000Z"), None);
        assert!(super::parse("2026-02-30T00:00:00.000Z").is_err());
        assert!(super::parse("1969-12-31T23:59:59.000Z").is_err());
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(with = "super")]
            at: u64,
            #[serde(default, with = "super::option")]
            due: Option<u64>,
        }
        let t: T = serde_json::from_str(r#"{"at": 5, "due": null}"#).unwrap();
        assert_eq!((t.at, t.due), (5, None));
        let t: T = serde_json::from_str(r#"{"at": "1970-01-01T00:00:01.000Z", "due": 7}"#).unwrap();
        assert_eq!((t.at, t.due), (1_000, Some(7)));
        let t: T = serde_json::from_str(r#"{"at": 1}"#).unwrap();
        assert_eq!(t.due, None);
    }

    #[test]
    fn round_trips() {
        let ms = 1_796_125_509_123;
        let text = super::format(ms);
        assert_eq!(text, "2026-12-01T11:45:09.123Z");
        assert_eq!(super::parse(&text), Ok(ms));
        assert!(super::parse("yesterday").is_err());
    }

    #[test]
    fn formats_as_jiff_does() {
        for ms in [0, 1, 951_782_400_000, 1_709_164_800_000, 4_102_444_799_999, 1_796_125_509_123, 253_402_207_200_000]
        {
            let t = jiff::Timestamp::from_millisecond(ms as i64).unwrap();
            assert_eq!(super::format(ms), format!("{t:.3}"), "{ms}");
        }
        let mut ms = 0u64;
        while ms < 4_102_444_800_000 {
            let t = jiff::Timestamp::from_millisecond(ms as i64).unwrap();
            assert_eq!(super::format(ms), format!("{t:.3}"), "{ms}");
            assert_eq!(super::parse_own(&super::format(ms)), Some(ms), "{ms}");
            ms += 86_400_000 * 37 + 3_599_999;
        }
    }
}
