//! Suspendable job environments (`FF_SUSPENDABLE_ENVIRONMENTS`): a job may keep its environment at its end and
//! a later job of the same runner may resume it. The runner hands GitLab a runtime environment key naming the
//! environment; this module owns that key's text form and the rules of who may resume it.
//!
//! The key is gitlab-runner's: `<runner id>/<path-escaped system id>/<query-encoded fields>`, where the fields
//! are the executor's own (the Docker executor's container ids).

use std::fmt;

use crate::feature_flags;
use crate::plan::JobPlan;

/// The feature flag that turns suspending and resuming on.
pub const FLAG: &str = "FF_SUSPENDABLE_ENVIRONMENTS";

/// A job's `suspend_options`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuspendOptions {
    /// Keep the environment when the job succeeds.
    pub on_success: bool,
    /// Keep the environment when the job fails.
    pub on_failure: bool,
    /// The key of an environment to resume instead of preparing a new one (empty: none).
    pub runtime_environment_key: String,
}

impl JobPlan {
    /// Whether the job may suspend its environment at all (the flag is on and it asks to, on some outcome).
    pub fn will_suspend(&self) -> bool {
        feature_flags::is_on(&self.variables, FLAG) && (self.suspend.on_success || self.suspend.on_failure)
    }

    /// The key of the environment this job resumes; `None` without one or with the flag off (the key is then
    /// ignored, as gitlab-runner ignores it).
    pub fn resume_key(&self) -> Option<&str> {
        let key = self.suspend.runtime_environment_key.as_str();
        (feature_flags::is_on(&self.variables, FLAG) && !key.is_empty()).then_some(key)
    }
}

/// A parsed runtime environment key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEnvironmentKey {
    /// The id GitLab gave the runner entry that suspended the environment.
    pub runner_id: i64,
    /// The system id of the runner process's machine.
    pub system_id: String,
    /// The executor's fields, in key order.
    pub fields: Vec<(String, String)>,
}

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    /// A malformed key.
    fn new(msg: impl fmt::Display) -> Self {
        Self(format!("environment key: {msg}"))
    }
}

impl RuntimeEnvironmentKey {
    /// A key for fields an executor returned; the fields are sorted by name, as Go's `url.Values.Encode` does.
    pub fn new(runner_id: i64, system_id: &str, mut fields: Vec<(String, String)>) -> Self {
        fields.sort();
        Self {
            runner_id,
            system_id: system_id.to_owned(),
            fields,
        }
    }

    /// Parses a key with gitlab-runner's rules (and its error texts).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let mut parts = s.splitn(3, '/');
        let (Some(id), Some(system), Some(fields)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyError::new("expected at least two '/' separators"));
        };
        let runner_id: i64 = id
            .parse()
            .map_err(|e| KeyError::new(format!("invalid runner ID: {e}")))?;
        if runner_id <= 0 {
            return Err(KeyError::new("runner ID must be positive"));
        }
        let system_id =
            unescape(system, false).map_err(|e| KeyError::new(format!("invalid system ID encoding: {e}")))?;
        if system_id.is_empty() {
            return Err(KeyError::new("system ID is empty"));
        }
        let fields = parse_query(fields).map_err(|e| KeyError::new(format!("invalid fields: {e}")))?;
        Ok(Self {
            runner_id,
            system_id,
            fields,
        })
    }

    /// Parses `s` and checks that this runner (its id and its machine's system id) issued it; returns the
    /// executor's fields. The messages are gitlab-runner's autoscaler's.
    pub fn parse_for(s: &str, runner_id: i64, system_id: &str) -> Result<Self, KeyError> {
        let key = Self::parse(s)?;
        if key.runner_id != runner_id {
            return Err(KeyError(
                "environment key was not issued by this runner".to_owned(),
            ));
        }
        if key.system_id != system_id {
            return Err(KeyError(
                "environment key was not issued by this machine".to_owned(),
            ));
        }
        Ok(key)
    }

    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for RuntimeEnvironmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/",
            self.runner_id,
            escape(&self.system_id, Mode::PathSegment)
        )?;
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}={}", escape(k, Mode::Query), escape(v, Mode::Query))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Go's `url.PathEscape`.
    PathSegment,
    /// Go's `url.QueryEscape` (space as `+`).
    Query,
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (mode == Mode::PathSegment && matches!(b, b'$' | b'&' | b'+' | b':' | b'=' | b'@'));
        if keep {
            out.push(char::from(b));
        } else if b == b' ' && mode == Mode::Query {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes `%XX` escapes (and `+` for a space in a query); refuses a broken escape and text that is not UTF-8.
fn unescape(s: &str, query: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    // Bytes, not a `&str` slice: the two after `%` may end inside a multi-byte character.
                    .ok_or_else(|| {
                        let bad = String::from_utf8_lossy(&bytes[i..bytes.len().min(i + 3)]);
                        format!("invalid URL escape {bad:?}")
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once unescaped".to_owned())
}

/// Go's `url.ParseQuery`: `&`-separated `name=value` pairs; a `;` is refused.
fn parse_query(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err("invalid semicolon separator in query".to_owned());
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((unescape(k, true)?, unescape(v, true)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_with_escaped_parts() {
        let key = RuntimeEnvironmentKey::new(
            7,
            "s_0123/ab c",
            vec![
                ("service-ids".into(), "a,b".into()),
                ("build-container-id".into(), "x y".into()),
            ],
        );
        let text = key.to_string();
        assert_eq!(text, "7/s_0123%2Fab%20c/build-container-id=x+y&service-ids=a%2Cb");
        assert_eq!(RuntimeEnvironmentKey::parse(&text).unwrap(), key);
        assert_eq!(key.field("service-ids"), Some("a,b"));
    }

    #[test]
    fn malformed_keys_get_upstreams_errors() {
        let err = |s: &str| RuntimeEnvironmentKey::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("1/x"),
            "environment key: expected at least two '/' separators"
        );
        assert!(err("x/s/").starts_with("environment key: invalid runner ID: "));
        assert_eq!(err("0/s/"), "environment key: runner ID must be positive");
        assert_eq!(err("1//a=b"), "environment key: system ID is empty");
        assert!(err("1/%zz/").starts_with("environment key: invalid system ID encoding: "));
        assert!(err("1/s/a=b;c").starts_with("environment key: invalid fields: "));
    }

    #[test]
    fn a_broken_escape_before_a_multi_byte_character_is_an_error_not_a_panic() {
        let err = |s: &str| RuntimeEnvironmentKey::parse(s).unwrap_err().to_string();
        assert!(
            err("1/%aé/x").starts_with("environment key: invalid system ID encoding: invalid URL escape")
        );
        assert!(err("1/s/a=%aé").starts_with("environment key: invalid fields: invalid URL escape"));
        assert!(err("1/s/a=%é").starts_with("environment key: invalid fields: invalid URL escape"));
    }

    #[test]
    fn a_key_of_another_runner_or_machine_is_refused() {
        let key = RuntimeEnvironmentKey::new(5, "s_abc", vec![("k".into(), "v".into())]).to_string();
        assert!(RuntimeEnvironmentKey::parse_for(&key, 5, "s_abc").is_ok());
        assert_eq!(
            RuntimeEnvironmentKey::parse_for(&key, 6, "s_abc")
                .unwrap_err()
                .to_string(),
            "environment key was not issued by this runner"
        );
        assert_eq!(
            RuntimeEnvironmentKey::parse_for(&key, 5, "s_other")
                .unwrap_err()
                .to_string(),
            "environment key was not issued by this machine"
        );
    }
}
