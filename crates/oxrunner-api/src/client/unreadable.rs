//! A job payload that does not decode: GitLab already counts the job as running on this runner, so the runner
//! must still fail it. Only `id` and `token` are needed for that, and they are read from the raw JSON without
//! the typed model that rejected the payload.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::outcome::{JobRequestOutcome, UnreadableJob};

/// Decodes a 201 body of `POST /jobs/request`: the typed payload, or what is needed to report it failed.
pub(crate) fn decode_job<T: DeserializeOwned>(
    body: &[u8],
    content_type_ok: bool,
    wrap: impl FnOnce(T) -> JobRequestOutcome,
) -> JobRequestOutcome {
    // Like gitlab-runner, a body not labelled application/json is never run, even when it would parse.
    let error = if content_type_ok {
        let de = &mut serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(job) => return wrap(job),
            Err(e) => {
                let path = e.path().to_string();
                let detail = without_values(&e.inner().to_string());
                if path.is_empty() || path == "." {
                    detail
                } else {
                    format!("at `{path}`: {detail}")
                }
            }
        }
    } else {
        "the answer's Content-Type is not application/json".to_string()
    };
    let raw: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| raw.as_ref().and_then(|v| v.get(name));
    JobRequestOutcome::Unreadable(Box::new(UnreadableJob {
        id: field("id").and_then(lenient_id),
        token: field("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        error,
    }))
}

/// GitLab sends a number; a string of digits is accepted too, as a lenient reader should.
fn lenient_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// serde quotes the offending value (`invalid type: string "s3cr3t", expected a sequence`); in a job payload
/// that value can be a masked variable. Quoting is not a safe boundary (a string is printed escaped, an enum
/// variant is not), so for serde's messages that carry a payload value everything between the kind of error
/// and the last `, expected` goes; the JSON path (added by the caller) and the expected type still say what
/// is wrong. Any other message has its quoted spans hidden.
fn without_values(message: &str) -> String {
    const WITH_VALUE: [&str; 4] = [
        "invalid type: ",
        "invalid value: ",
        "unknown variant ",
        "unknown field ",
    ];
    for kind in WITH_VALUE {
        if let Some(rest) = message.strip_prefix(kind) {
            // The expected part comes from our types, never from the payload.
            let expected = rest.rfind(", expected ").map_or("", |at| &rest[at..]);
            return format!("{kind}[value hidden]{expected}");
        }
    }
    hide_quoted(message)
}

/// Replaces every `"…"` (with `\` escapes) and `` `…` `` span's content; an unterminated one hides the rest.
fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    let mut escaped = false;
    for c in message.chars() {
        match open {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => {
                out.push_str("[value hidden]");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
        }
    }
    if let Some(q) = open {
        out.push_str("[value hidden]");
        out.push(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::JobResponse;

    fn decode(body: &str) -> JobRequestOutcome {
        decode_job::<JobResponse>(body.as_bytes(), true, |j| JobRequestOutcome::Job(Box::new(j)))
    }

    fn unreadable(body: &str) -> UnreadableJob {
        match decode(body) {
            JobRequestOutcome::Unreadable(u) => *u,
            other => panic!("expected an unreadable job, got {other:?}"),
        }
    }

    /// serde prints a string value with `{:?}`, so an escaped `\"` inside it must not end the hidden span.
    #[test]
    fn a_quote_inside_a_value_hides_none_of_it() {
        let u = unreadable(r#"{"id": 1, "token": "t", "variables": "abc\"def-SECRET"}"#);
        assert!(!u.error.contains("SECRET"), "a payload value leaked: {}", u.error);
        assert!(!u.error.contains("def"), "a payload value leaked: {}", u.error);
        assert!(u.error.contains("variables"), "{}", u.error);
        assert!(u.error.contains("expected a sequence"), "{}", u.error);
    }

    /// Enum variants are printed with `Display` between backticks: a backtick in the value is not escaped.
    #[test]
    fn a_backtick_inside_an_unknown_variant_hides_none_of_it() {
        let shown = without_values("unknown variant `a`b-SECRET`, expected `x` or `y` at line 1 column 9");
        assert!(!shown.contains("SECRET"), "a payload value leaked: {shown}");
        assert!(shown.contains("expected `x` or `y`"), "{shown}");
    }

    #[test]
    fn a_bad_field_keeps_id_and_token_and_names_the_path_without_the_value() {
        let u = unreadable(
            r#"{"id": 42, "token": "glcbt-abc", "variables": [{"key": "K", "value": 12345678, "masked": true}]}"#,
        );
        assert_eq!(u.id, Some(42));
        assert_eq!(u.token.as_deref(), Some("glcbt-abc"));
        assert!(u.error.contains("variables[0].value"), "{}", u.error);
        assert!(
            !u.error.contains("12345678"),
            "a payload value leaked: {}",
            u.error
        );
        assert!(!format!("{u:?}").contains("glcbt-abc"));
    }

    #[test]
    fn a_string_id_is_read_and_missing_parts_stay_missing() {
        let u = unreadable(r#"{"id": "77", "variables": "oops"}"#);
        assert_eq!((u.id, u.token.as_deref()), (Some(77), None));
        let u = unreadable("not json at all");
        assert_eq!((u.id, u.token), (None, None));
        assert!(!u.error.is_empty());
    }

    #[test]
    fn a_body_not_labelled_json_is_never_run() {
        let body = r#"{"id": 5, "token": "t"}"#;
        match decode_job::<JobResponse>(body.as_bytes(), false, |j| JobRequestOutcome::Job(Box::new(j))) {
            JobRequestOutcome::Unreadable(u) => {
                assert_eq!(u.id, Some(5));
                assert!(u.error.contains("Content-Type"), "{}", u.error);
            }
            other => panic!("expected an unreadable job, got {other:?}"),
        }
    }

    #[test]
    fn quoted_values_are_hidden_even_when_unterminated() {
        // The expected part is our types' own text and stays.
        assert_eq!(
            without_values(r#"invalid type: string "x", expected `y"#),
            "invalid type: [value hidden], expected `y"
        );
        assert_eq!(hide_quoted(r#"bad "x\" y"#), "bad \"[value hidden]\"");
    }
}
