//! Timestamps: kept as milliseconds since the Unix epoch (cheap to compare and add), written
//! as RFC 3339 (`2026-12-01T11:45:09.123Z`) wherever a person or a client reads them. Reading
//! accepts both, so records written before the switch still load.

use serde::{Deserialize, Deserializer, Serializer};

/// RFC 3339, UTC, millisecond precision.
pub fn format(ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(ms.min(i64::MAX as u64) as i64) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
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
}
