//! The job keyword `inputs:` (job inputs, read as `${{ job.inputs.<name> }}` by the runner): each input's
//! `default` becomes the payload's `inputs` entry, typed as GitLab types it, after GitLab's checks (a default is
//! required, of the declared `type`, among `options`, matching `regex`). A local run has no "run with other
//! values" form, so the defaults are the values.

use oxrunner_wire::{JobInput, JobInputValue};

use crate::error::PipelineError;
use crate::yaml::{Node, Val};

const KEYS: &[&str] = &["default", "type", "description", "options", "regex"];

const HINT_SHAPE: &str = "write each job input as `<name>:` with `default:` and optionally `type:` (string, number, \
                          boolean or array), `description:`, `options:` (a list) and `regex:` (for strings)";

pub(crate) fn parse(n: &Node, path: &str) -> Result<Vec<JobInput>, PipelineError> {
    let Some(map) = n.as_map() else {
        return Err(PipelineError::at_hint(
            &n.loc,
            format!("{path}:inputs config should be a hash"),
            HINT_SHAPE,
        ));
    };
    map.iter()
        .map(|(name, spec)| one(name, spec, &format!("{path}:inputs:{name}")))
        .collect()
}

fn one(name: &str, spec: &Node, at: &str) -> Result<JobInput, PipelineError> {
    let Some(cfg) = spec.as_map() else {
        return Err(PipelineError::at_hint(
            &spec.loc,
            format!("{at} config should be a hash"),
            HINT_SHAPE,
        ));
    };
    let unknown: Vec<&str> = cfg
        .keys()
        .map(String::as_str)
        .filter(|k| !KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(PipelineError::at_hint(
            &spec.loc,
            format!("{at} config contains unknown keys: {}", unknown.join(", ")),
            HINT_SHAPE,
        ));
    }
    let Some(default) = cfg.get("default").filter(|d| !d.is_null()) else {
        return Err(PipelineError::at_hint(
            &spec.loc,
            format!("{at} input must have a default value"),
            "every job input needs a `default:` (it is the value a job runs with unless one is given when it is \
             run or retried)",
        ));
    };
    let kind = match cfg.get("type") {
        None => "string".to_string(),
        Some(t) => t.as_str().map(str::to_string).ok_or_else(|| {
            PipelineError::at_hint(
                &t.loc,
                format!("{at}:type should be a string"),
                "job inputs are of type string (the default), number, boolean or array",
            )
        })?,
    };
    let fits = match kind.as_str() {
        "string" => matches!(default.val, Val::Str(_)),
        "number" => matches!(default.val, Val::Int(_) | Val::Float(_)),
        "boolean" => matches!(default.val, Val::Bool(_)),
        "array" => matches!(default.val, Val::Seq(_)),
        other => {
            return Err(PipelineError::at_hint(
                &spec.loc,
                format!("{at} header:type unknown input type `{other}`"),
                "job inputs are of type string (the default), number, boolean or array",
            ));
        }
    };
    if !fits {
        return Err(PipelineError::at_hint(
            &default.loc,
            format!("{at} default value is not a {kind}"),
            format!("make `default:` a {kind} or change `type:`"),
        ));
    }
    let content = default.to_json();
    if let Some(opts) = cfg.get("options") {
        let Some(items) = opts.as_seq() else {
            return Err(PipelineError::at_hint(
                &opts.loc,
                format!("{at}:options should be an array"),
                "list the allowed values, e.g. `options: [a, b]`",
            ));
        };
        if !items.iter().any(|o| same(&o.to_json(), &content)) {
            return Err(PipelineError::at_hint(
                &default.loc,
                format!(
                    "{at} `{}` cannot be used because it is not in the list of allowed options",
                    shown(&content)
                ),
                "make `default:` one of the values listed in `options:`",
            ));
        }
    }
    if let Some(r) = cfg.get("regex") {
        check_regex(r, default, &content, at)?;
    }
    Ok(JobInput {
        key: name.to_string(),
        value: JobInputValue {
            r#type: kind,
            content,
            sensitive: false,
        },
    })
}

fn check_regex(r: &Node, default: &Node, content: &serde_json::Value, at: &str) -> Result<(), PipelineError> {
    let Some(pattern) = r.as_str() else {
        return Err(PipelineError::at_hint(
            &r.loc,
            format!("{at}:regex should be a string"),
            "write the pattern as a quoted string, e.g. `regex: '^[a-z]+$'`",
        ));
    };
    let Some(text) = default.as_str() else {
        return Err(PipelineError::at_hint(
            &r.loc,
            format!("{at} regex is only supported for string inputs"),
            "remove `regex:` or make the input a string",
        ));
    };
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            PipelineError::at_hint(
                &r.loc,
                format!("{at}:regex is not a valid regular expression: {e}"),
                "fix the pattern (Rust regex syntax, which has no look-around or back-references)",
            )
        })?;
    if !re.is_match(text) {
        return Err(PipelineError::at_hint(
            &default.loc,
            format!(
                "{at} `{}` does not match required RegEx pattern `{pattern}`",
                shown(content)
            ),
            "make `default:` match `regex:`",
        ));
    }
    Ok(())
}

/// Whether an option equals the default: numbers by value (`3` and `3.0` are the same number), the rest as JSON.
fn same(option: &serde_json::Value, default: &serde_json::Value) -> bool {
    match (option.as_f64(), default.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => option == default,
    }
}

/// A value as the author wrote it: a string without JSON quotes.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
