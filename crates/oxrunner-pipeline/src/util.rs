//! Small GitLab-compatible helpers: durations, environment slugs.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// GitLab's ChronicDuration-style durations: "3 hours 30 minutes", "1h30m", "90", "1 day", "2 weeks".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_lowercase();
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut chars = s.chars().peekable();
    let mut any = false;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut num = String::new();
        while let Some(c) = chars.peek().copied() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut unit = String::new();
        while let Some(c) = chars.peek().copied() {
            if c.is_ascii_alphabetic() {
                unit.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if num.is_empty() {
            if unit == "and" {
                continue;
            }
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let mult = match unit.as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "wk" | "wks" | "week" | "weeks" => 604_800.0,
            "mo" | "mos" | "month" | "months" => 2_592_000.0,
            "y" | "yr" | "yrs" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += n * mult;
        any = true;
    }
    if !any || !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// `CI_ENVIRONMENT_SLUG`: GitLab's environment slug (24 chars max, starts with a letter, and a stable
/// 6-character suffix whenever the slug had to change the name).
pub fn environment_slug(name: &str) -> String {
    let mut s: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("env-{s}");
    }
    let mut squeezed = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '-' && squeezed.ends_with('-')) {
            squeezed.push(c);
        }
    }
    if squeezed.len() > 24 || squeezed != name {
        let mut short: String = squeezed.chars().take(17).collect();
        if !short.ends_with('-') {
            short.push('-');
        }
        short.push_str(&slug_suffix(name));
        short
    } else {
        squeezed.trim_end_matches('-').to_string()
    }
}

/// Last 6 base-36 digits of the SHA-256 of `name`, read as one big integer.
fn slug_suffix(name: &str) -> String {
    let mut digits: Vec<u8> = Sha256::digest(name.as_bytes()).to_vec();
    let mut out = Vec::new();
    for _ in 0..6 {
        let mut rem: u32 = 0;
        for d in &mut digits {
            let cur = (rem << 8) | u32::from(*d);
            *d = u8::try_from(cur / 36).unwrap_or(0);
            rem = cur % 36;
        }
        out.push(char::from_digit(rem, 36).unwrap_or('0'));
    }
    out.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3 hours"), Some(Duration::from_secs(10800)));
        assert_eq!(parse_duration("30 minutes"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1 day and 2 hours"),
            Some(Duration::from_secs(93600))
        );
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn env_slug_keeps_simple_names() {
        assert_eq!(environment_slug("staging"), "staging");
        let s = environment_slug("review/feature-branch-with-a-long-name");
        assert_eq!(s.len(), 24);
        assert!(s.starts_with("review-feature-br-"));
    }
}
