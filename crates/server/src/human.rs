//! Sizes and durations as people write them in configuration: `"128MiB"`, `"16KiB"`,
//! `"24h"`, `"5ms"`. Parsing is strict (a number, optional spaces, a known unit) and
//! checked (no overflow); formatting picks the largest unit that divides exactly, so a
//! value prints the way it would be written and parses back to itself.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written with a binary unit: `B`, `KiB`, `MiB`, `GiB`, `TiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A length of time in ms, written with a unit: `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

/// A time limit that may be switched off: a [`Millis`], or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MillisOrNever(pub Option<Millis>);

const SIZE_UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

const TIME_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl ByteSize {
    /// Parses `"<digits><unit>"`, e.g. `"128MiB"`; a unit is required.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        parse_with_units(
            text,
            &SIZE_UNITS,
            "a size such as \"512B\", \"16KiB\" or \"128MiB\"",
        )
        .map(ByteSize)
    }
}

impl Millis {
    /// Parses `"<digits><unit>"`, e.g. `"24h"` or `"5ms"`; a unit is required.
    pub fn parse(text: &str) -> Result<Millis, String> {
        parse_with_units(
            text,
            &TIME_UNITS,
            "a duration such as \"5ms\", \"10s\" or \"24h\"",
        )
        .map(Millis)
    }
}

impl MillisOrNever {
    /// Parses `"never"` or a duration.
    pub fn parse(text: &str) -> Result<MillisOrNever, String> {
        if text.trim() == "never" {
            return Ok(MillisOrNever(None));
        }
        Millis::parse(text)
            .map(|m| MillisOrNever(Some(m)))
            .map_err(|e| format!("{e}, or \"never\""))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_with_units(self.0, &SIZE_UNITS))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_with_units(self.0, &TIME_UNITS))
    }
}

impl fmt::Display for MillisOrNever {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("never"),
            Some(m) => m.fmt(f),
        }
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_string!(ByteSize);
serde_as_string!(Millis);
serde_as_string!(MillisOrNever);

fn parse_with_units(text: &str, units: &[(&str, u64)], expected: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit = unit.trim_start();
    let bad = || format!("invalid value {text:?}: expected {expected}");
    if digits.is_empty() {
        return Err(bad());
    }
    let scale = units
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(bad)?;
    let number: u64 = digits.parse().map_err(|_| bad())?;
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("value {text:?} is too large"))
}

fn format_with_units(value: u64, units: &[(&str, u64)]) -> String {
    // The smallest unit has scale 1, so some unit always divides; zero prints in it.
    let (name, scale) = units
        .iter()
        .find(|(_, scale)| value != 0 && value % scale == 0)
        .or(units.last())
        .copied()
        .unwrap_or(("", 1));
    format!("{}{name}", value / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_size(text: &str, bytes: u64, canonical: &str) {
        let size = ByteSize::parse(text).unwrap();
        assert_eq!(size, ByteSize(bytes), "{text}");
        assert_eq!(size.to_string(), canonical);
        assert_eq!(ByteSize::parse(canonical).unwrap(), size);
    }

    fn check_time(text: &str, ms: u64, canonical: &str) {
        let time = Millis::parse(text).unwrap();
        assert_eq!(time, Millis(ms), "{text}");
        assert_eq!(time.to_string(), canonical);
        assert_eq!(Millis::parse(canonical).unwrap(), time);
    }

    #[test]
    fn sizes_parse_and_print_in_their_largest_exact_unit() {
        check_size("128MiB", 128 << 20, "128MiB");
        check_size("16 KiB", 16 << 10, "16KiB");
        check_size("1024KiB", 1 << 20, "1MiB");
        check_size("1GiB", 1 << 30, "1GiB");
        check_size("2TiB", 2 << 40, "2TiB");
        check_size("1500B", 1500, "1500B");
        check_size("0B", 0, "0B");
    }

    #[test]
    fn durations_parse_and_print_in_their_largest_exact_unit() {
        check_time("5ms", 5, "5ms");
        check_time("10s", 10_000, "10s");
        check_time("5m", 300_000, "5m");
        check_time("24h", 86_400_000, "1d");
        check_time("36h", 129_600_000, "36h");
        check_time("1500ms", 1_500, "1500ms");
        check_time("0ms", 0, "0ms");
    }

    #[test]
    fn malformed_values_are_refused_with_a_hint() {
        for bad in [
            "",
            "MiB",
            "12",
            "12 mb",
            "1.5MiB",
            "-1KiB",
            "5 parsecs",
            "9999999999999TiB",
        ] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "h", "10", "10 hours", "1.5s", "-5ms"] {
            assert!(Millis::parse(bad).is_err(), "{bad:?}");
        }
        let err = ByteSize::parse("12").unwrap_err();
        assert!(err.contains("128MiB"), "{err}");
    }

    #[test]
    fn never_switches_a_limit_off() {
        assert_eq!(MillisOrNever::parse("never").unwrap(), MillisOrNever(None));
        assert_eq!(
            MillisOrNever::parse("1h").unwrap(),
            MillisOrNever(Some(Millis(3_600_000)))
        );
        assert_eq!(MillisOrNever(None).to_string(), "never");
        assert!(MillisOrNever::parse("sometimes").is_err());
    }
}
