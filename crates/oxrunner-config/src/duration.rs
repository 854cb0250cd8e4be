//! Go `time.Duration` strings (`"15m0s"`, `"1h"`, `"1.5s"`), as gitlab-runner writes them.

use std::time::Duration;

/// A string that is not a valid Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (expected e.g. `30s`, `15m0s`, `1h30m`)")]
pub struct DurationError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Go duration string. Negative durations are rejected because no config key
/// gives them a meaning.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.trim();
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err("malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total_nanos += number * nanos_per_unit;
    }
    // Go caps durations at ~292 years; anything beyond is a typo, not a setting.
    if total_nanos > i64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_go_duration("15m0s").ok(), Some(Duration::from_secs(900)));
        assert_eq!(parse_go_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("1h30m").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0").ok(), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "15", "abc", "1x", "-5s", "s", "1..2s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }
}
