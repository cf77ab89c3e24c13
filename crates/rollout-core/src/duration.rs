//! Durations written the way Compose writes them (Go's `time.ParseDuration`):
//! `10s`, `1m30s`, `500ms`, `1.5h`, `2us`. A bare `0` is zero; any other bare
//! number is refused, because Compose would not know its unit either.

use std::time::Duration;

/// Why a duration string was refused. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration")]
    Empty,
    /// A number had no unit after it.
    #[error("duration {0:?} has a number without a unit\nhint: write it with a unit, such as 10s, 1m30s or 500ms")]
    MissingUnit(String),
    /// The unit is not one of ns, us, µs, ms, s, m, h.
    #[error(
        "duration {input:?} has an unknown unit {unit:?}\nhint: units are ns, us, ms, s, m and h"
    )]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// Something other than digits, a dot and a unit.
    #[error("duration {0:?} is not a duration\nhint: write it as 10s, 1m30s or 500ms")]
    Invalid(String),
    /// Negative durations make no sense for waiting.
    #[error("duration {0:?} is negative")]
    Negative(String),
    /// Larger than any wait we would honour.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a Compose duration such as `1m30s`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::Invalid(input.to_string()));
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let (unit, next) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_string(),
                    unit: unit.to_string(),
                })
            }
        };
        total = total
            .checked_add(scaled(num, nanos_per_unit, input)?)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `num` (digits with at most one dot) times `unit` nanoseconds, truncated.
fn scaled(num: &str, unit: u128, input: &str) -> Result<u128, DurationError> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(DurationError::Invalid(input.to_string()));
    }
    let overflow = || DurationError::Overflow(input.to_string());
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| overflow())?
    };
    let mut value = whole.checked_mul(unit).ok_or_else(overflow)?;
    let mut scale = unit;
    for digit in frac.bytes().take(18) {
        scale /= 10;
        value += u128::from(digit - b'0') * scale;
    }
    Ok(value)
}

/// Formats a duration the way Compose files write it: `1m30s`, `500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let nanos = d.as_nanos();
    if nanos % 1_000_000_000 != 0 && d < Duration::from_secs(1) {
        return if nanos % 1_000_000 == 0 {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let sub_ms = d.subsec_millis();
    if sub_ms > 0 {
        out.push_str(&format!("{s}.{sub_ms:03}s"));
        // Trim trailing zeros of the fraction, keeping the unit.
        while out.ends_with("0s") && out.contains('.') {
            out.truncate(out.len() - 2);
            out.push('s');
        }
    } else if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_forms() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::new(3723, 4_000_000))
        );
    }

    #[test]
    fn refuses_bad_forms_with_the_input_quoted() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::Invalid(_))
        ));
        let msg = parse_duration("10x").unwrap_err().to_string();
        assert!(msg.contains("\"10x\""), "{msg}");
    }

    #[test]
    fn formats_back() {
        for s in ["10s", "1m30s", "500ms", "1h", "0s", "1.5s", "2h0m1s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}

/// Serde helpers: a duration as a Compose string (`"1m30s"`).
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` as `1m30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads `1m30s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers: an optional duration as a Compose string or null.
pub mod serde_duration_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `Some(d)` as `1m30s`, `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads `1m30s` or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
