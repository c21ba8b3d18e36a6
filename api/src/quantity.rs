//! Kubernetes quantities as exact integers.
//!
//! Quota arithmetic must never round a tenant over its budget, so we work in thousandths of a
//! unit held in an `i128` (enough for exabytes times a thousand) and round fractions *up*,
//! as the API server does. Pure functions only.

use std::fmt;

/// Thousandths of a unit: 1 CPU = 1000, 1 byte = 1000, 1 pod = 1000.
pub type Milli = i128;

/// One whole unit in [`Milli`].
pub const UNIT: Milli = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty quantity")]
    Empty,
    #[error("'{0}' is not a quantity (expected a number with an optional suffix like m, k, Mi, Gi)")]
    Malformed(String),
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Parses `500m`, `4`, `1.5`, `16Gi`, `1e3`, `+2k` into thousandths, rounding fractions up.
pub fn parse(input: &str) -> Result<Milli, ParseError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let malformed = || ParseError::Malformed(input.to_string());
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(malformed());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // Value = digits * 10^(exp10) * 2^(exp2), exactly, before scaling to milli.
    let digits = format!("{int_part}{frac_part}");
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(malformed)?.parse::<i32>().map_err(|_| malformed())?;
            if !(-30..=30).contains(&exp) {
                return Err(ParseError::TooLarge(input.to_string()));
            }
            exp10 += exp;
        }
    }
    let too_large = || ParseError::TooLarge(input.to_string());
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(too_large());
    }
    let mut value: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| malformed())? };
    value = value.checked_mul(1i128 << exp2).ok_or_else(too_large)?;
    // Scale to milli: multiply by 10^(exp10 + 3), rounding a remaining division up.
    let scale = exp10 + 3;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32).ok_or_else(too_large)?).ok_or_else(too_large)?;
    } else {
        let div = 10i128.checked_pow((-scale) as u32).ok_or_else(too_large)?;
        value = (value + div - 1) / div;
    }
    Ok(if negative { -value } else { value })
}

/// Formats thousandths the way the API server would accept and a person would read:
/// `2`, `500m`, and for byte-like resources `16Gi` when exact.
pub fn format(v: Milli, kind: Kind) -> String {
    if v % UNIT != 0 {
        return format!("{v}m");
    }
    let n = v / UNIT;
    if kind == Kind::Bytes && n != 0 {
        for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            let unit = 1i128 << shift;
            if n % unit == 0 {
                return format!("{}{suffix}", n / unit);
            }
        }
    }
    n.to_string()
}

/// How a resource's amounts read best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CPU: millicores are meaningful.
    Cores,
    /// Memory and storage: binary suffixes.
    Bytes,
    /// Objects and extended resources: whole numbers only.
    Count,
}

impl Kind {
    /// The smallest step a quota of this kind is split into.
    pub fn granularity(self) -> Milli {
        match self {
            Kind::Cores => 1,
            Kind::Bytes | Kind::Count => UNIT,
        }
    }
}

/// A quantity with its kind, for display.
pub struct Display(pub Milli, pub Kind);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0, self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases: &[(&str, Milli)] = &[
            ("0", 0),
            ("4", 4000),
            ("500m", 500),
            ("1.5", 1500),
            ("0.1", 100),
            ("1k", 1_000_000),
            ("1Ki", 1_024_000),
            ("16Gi", 16 * (1i128 << 30) * 1000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("100n", 1),
            ("1u", 1),
            ("+2", 2000),
            ("-1", -1000),
            (".5", 500),
            ("1.", 1000),
            ("8Ei", 8 * (1i128 << 60) * 1000),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for s in ["", "abc", "1..2", "1x", "Gi", "1 Gi", "1e", "1e99", "--1", "1.2.3"] {
            assert!(parse(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(4000, Kind::Cores), "4");
        assert_eq!(format(250, Kind::Cores), "250m");
        assert_eq!(format(16 * (1i128 << 30) * 1000, Kind::Bytes), "16Gi");
        assert_eq!(format(1_000_000, Kind::Bytes), "1000");
        assert_eq!(format(0, Kind::Bytes), "0");
        assert_eq!(format(1_024_000, Kind::Count), "1024");
    }

    #[test]
    fn formatting_round_trips() {
        for v in [0, 1, 999, 1000, 1001, 123_456_789, 1i128 << 40] {
            for k in [Kind::Cores, Kind::Bytes, Kind::Count] {
                assert_eq!(parse(&format(v, k)), Ok(v), "{v} {k:?}");
            }
        }
    }
}
