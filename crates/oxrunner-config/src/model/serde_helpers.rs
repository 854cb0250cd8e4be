//! Field encodings that gitlab-runner's TOML library accepts but serde does not by default.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Go's zero `time.Time`, which gitlab-runner writes for "never" (`token_expires_at`).
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `pull_policy = "always"` and `pull_policy = ["always", "if-not-present"]` are both valid.
pub(crate) fn string_or_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Reads a TOML datetime (or an RFC 3339 string); Go's zero time means "not set".
pub(crate) fn deserialize_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let text = match toml::Value::deserialize(d)? {
        toml::Value::Datetime(dt) => dt.to_string(),
        toml::Value::String(s) => s,
        other => {
            return Err(de::Error::custom(format!(
                "expected an RFC 3339 datetime, found {}",
                other.type_str()
            )));
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = OffsetDateTime::parse(&text, &Rfc3339)
        .map_err(|e| de::Error::custom(format!("invalid datetime `{text}`: {e}")))?;
    if parsed.year() <= 1 {
        return Ok(None);
    }
    Ok(Some(parsed))
}

/// Writes a TOML datetime; `None` becomes Go's zero time so the key is always present,
/// as in files written by gitlab-runner.
pub(crate) fn serialize_time<S: Serializer>(value: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    let text = match value {
        Some(t) => t
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(serde::ser::Error::custom)?,
        None => ZERO_TIME.to_owned(),
    };
    let dt = toml::value::Datetime::from_str(&text).map_err(serde::ser::Error::custom)?;
    serde::Serialize::serialize(&dt, s)
}

/// Converts a time to the TOML datetime written in the file.
pub(crate) fn toml_datetime(value: Option<OffsetDateTime>) -> Option<toml_edit::Datetime> {
    let text = match value {
        Some(t) => t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()?,
        None => ZERO_TIME.to_owned(),
    };
    toml_edit::Datetime::from_str(&text).ok()
}
