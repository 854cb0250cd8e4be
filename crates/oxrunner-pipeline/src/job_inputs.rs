//! The job keyword `inputs:` (job inputs, read as `${{ job.inputs.<name> }}` by the runner): each input's
//! `default` becomes the payload's `inputs` entry, typed as GitLab types it, after GitLab's checks (a default is
//! required, of the declared `type`, among `options`, matching `regex`). A local run has no "run with other
//! values" form, so the defaults are the values.

use oxrunner_wire::{JobInput, JobInputValue};

use crate::error::PipelineError;
use crate::yaml::{Node, Val};

const KEYS: &[&str] = &["default", "type", "description", "options", "regex"];

pub(crate) fn parse(n: &Node, path: &str) -> Result<Vec<JobInput>, PipelineError> {
    let Some(map) = n.as_map() else {
        return Err(PipelineError::at(
            &n.loc,
            format!("{path}:inputs config should be a hash"),
        ));
    };
    map.iter()
        .map(|(name, spec)| one(name, spec, &format!("{path}:inputs:{name}")))
        .collect()
}

fn one(name: &str, spec: &Node, at: &str) -> Result<JobInput, PipelineError> {
    let Some(cfg) = spec.as_map() else {
        return Err(PipelineError::at(
            &spec.loc,
            format!("{at} config should be a hash"),
        ));
    };
    let unknown: Vec<&str> = cfg
        .keys()
        .map(String::as_str)
        .filter(|k| !KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(PipelineError::at(
            &spec.loc,
            format!("{at} config contains unknown keys: {}", unknown.join(", ")),
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
        Some(t) => t
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PipelineError::at(&t.loc, format!("{at}:type should be a string")))?,
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
        return Err(PipelineError::at(
            &default.loc,
            format!("{at} default value is not a {kind}"),
        ));
    }
    let content = default.to_json();
    if let Some(opts) = cfg.get("options") {
        let Some(items) = opts.as_seq() else {
            return Err(PipelineError::at(
                &opts.loc,
                format!("{at}:options should be an array"),
            ));
        };
        if !items.iter().any(|o| o.to_json() == content) {
            return Err(PipelineError::at(
                &default.loc,
                format!("{at} `{content}` cannot be used because it is not in the list of allowed options"),
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
        return Err(PipelineError::at(
            &r.loc,
            format!("{at}:regex should be a string"),
        ));
    };
    let Some(text) = default.as_str() else {
        return Err(PipelineError::at(
            &r.loc,
            format!("{at} regex is only supported for string inputs"),
        ));
    };
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            PipelineError::at(
                &r.loc,
                format!("{at}:regex is not a valid regular expression: {e}"),
            )
        })?;
    if !re.is_match(text) {
        return Err(PipelineError::at(
            &default.loc,
            format!("{at} `{content}` does not match required RegEx pattern `{pattern}`"),
        ));
    }
    Ok(())
}
