//! Timestamps: kept as milliseconds since the Unix epoch (cheap to compare and add), written
//! as RFC 3339 (`2026-12-01T11:45:09.123Z`) wherever a person or a client reads them. Reading
//! accepts both, so records written before the switch still load.

use serde::{Deserialize, Deserializer, Serializer};

/// RFC 3339, UTC, millisecond precision. Written by hand rather than through a date
/// library: every commit writes a dozen of these, and this is several times cheaper.
pub fn format(ms: u64) -> String {
    const MAX_MS: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if ms > MAX_MS {
        return ms.to_string();
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
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// An RFC 3339 time as milliseconds since the epoch (times before 1970 are refused).
pub fn parse(text: &str) -> Result<u64, String> {
    let t: jiff::Timestamp =
        text.parse().map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z): {e}"))?;
    u64::try_from(t.as_millisecond()).map_err(|_| format!("{text:?} is before 1970"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Either {
    Ms(u64),
    Text(String),
}

fn from_either<E: serde::de::Error>(e: Either) -> Result<u64, E> {
    match e {
        Either::Ms(ms) => Ok(ms),
        Either::Text(t) => parse(&t).map_err(E::custom),
    }
}

/// `#[serde(with = "crate::model::time")]` for a `u64` of milliseconds.
pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*ms))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    from_either(Either::deserialize(d)?)
}

/// The same, for an `Option<u64>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::format(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<Either>::deserialize(d)?.map(from_either).transpose()
    }
}

#[cfg(test)]
mod tests {
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
            ms += 86_400_000 * 37 + 3_599_999;
        }
    }
}
