//! The single-value job keywords (`when`, `allow_failure`, `retry`, `timeout`, ...): each checks its
//! node and fails with GitLab's own wording, so `jobs::build` only decides which node applies.

use std::time::Duration;

use crate::error::{Loc, PipelineError};
use crate::model::{AllowFailure, Retry, When};
use crate::rules::RuleMatch;
use crate::util::parse_duration;
use crate::yaml::{Map, Node, Val};

fn err(loc: &Loc, m: impl Into<String>) -> PipelineError {
    PipelineError::at(loc, m)
}

/// `None` for `when: never`, which drops the job like an unmatched rule.
pub(crate) fn parse_when(
    rule: &RuleMatch,
    cfg: &Map,
    path: &str,
    loc: &Loc,
) -> Result<Option<When>, PipelineError> {
    let when_node = rule.when.as_ref().or_else(|| cfg.get("when"));
    let when_str = match when_node {
        Some(n) => n
            .as_str()
            .ok_or_else(|| err(&n.loc, format!("{path}:when config should be a string")))?,
        None => "on_success",
    };
    Ok(Some(match when_str {
        "on_success" => When::OnSuccess,
        "on_failure" => When::OnFailure,
        "always" => When::Always,
        "manual" => When::Manual,
        "never" => return Ok(None),
        "delayed" => {
            let sn = rule
                .start_in
                .as_ref()
                .or_else(|| cfg.get("start_in"))
                .ok_or_else(|| {
                    err(
                        when_node.map_or(loc, |n| &n.loc),
                        format!("{path} start in should be specified for delayed job"),
                    )
                })?;
            let d = sn
                .scalar_string()
                .and_then(|s| parse_duration(&s))
                .filter(|d| d.as_secs() <= 7 * 86_400)
                .ok_or_else(|| {
                    err(
                        &sn.loc,
                        format!("{path} start in should be a duration of up to one week"),
                    )
                })?;
            When::Delayed { start_in: d }
        }
        other => {
            return Err(err(
                when_node.map_or(loc, |n| &n.loc),
                format!(
                    "{path} when should be one of: on_success, on_failure, always, manual, delayed, never (got {other})"
                ),
            ));
        }
    }))
}

pub(crate) fn parse_timeout(cfg: &Map, path: &str) -> Result<Option<Duration>, PipelineError> {
    cfg.get("timeout")
        .map(|n| {
            n.scalar_string()
                .and_then(|s| parse_duration(&s))
                .ok_or_else(|| err(&n.loc, format!("{path}:timeout config should be a duration")))
        })
        .transpose()
}

pub(crate) fn parse_interruptible(rule: &RuleMatch, cfg: &Map, path: &str) -> Result<bool, PipelineError> {
    match rule.interruptible.as_ref().or_else(|| cfg.get("interruptible")) {
        Some(Node {
            val: Val::Bool(b), ..
        }) => Ok(*b),
        Some(n) => Err(err(
            &n.loc,
            format!("{path}:interruptible config should be a boolean value"),
        )),
        None => Ok(false),
    }
}

pub(crate) fn parse_coverage(cfg: &Map, path: &str) -> Result<Option<String>, PipelineError> {
    let Some(n) = cfg.get("coverage") else {
        return Ok(None);
    };
    let s = n.as_str().ok_or_else(|| {
        err(
            &n.loc,
            format!("{path}:coverage config should be a regular expression"),
        )
    })?;
    if !(s.starts_with('/') && s.len() > 1 && s.ends_with('/')) {
        return Err(err(
            &n.loc,
            format!("{path}:coverage config must be a regular expression"),
        ));
    }
    Ok(Some(s.to_string()))
}

/// GitLab's default (`Entry::Job#ignored?`) comes from the job's own `when:`: a job written `when: manual` may
/// fail. A rule that does not set `allow_failure` keeps that default, so `when: manual` given only by a rule
/// makes a blocking manual job, while a job that is manual itself stays optional whatever its rules say.
pub(crate) fn allow_failure_for(
    rule: &RuleMatch,
    cfg: &Map,
    path: &str,
) -> Result<AllowFailure, PipelineError> {
    match rule.allow_failure.as_ref().or_else(|| cfg.get("allow_failure")) {
        Some(n) => parse_allow_failure(n, path),
        None if cfg.get("when").and_then(Node::as_str) == Some("manual") => Ok(AllowFailure::Yes),
        None => Ok(AllowFailure::No),
    }
}

fn parse_allow_failure(n: &Node, path: &str) -> Result<AllowFailure, PipelineError> {
    match &n.val {
        Val::Bool(true) => Ok(AllowFailure::Yes),
        Val::Bool(false) => Ok(AllowFailure::No),
        Val::Map(m) => {
            let codes = m.get("exit_codes").ok_or_else(|| {
                err(
                    &n.loc,
                    format!("{path}:allow_failure config should be a hash or a boolean value"),
                )
            })?;
            Ok(AllowFailure::ExitCodes(int_list(
                codes,
                &format!("{path}:allow_failure:exit_codes"),
            )?))
        }
        _ => Err(err(
            &n.loc,
            format!("{path}:allow_failure config should be a hash or a boolean value"),
        )),
    }
}

fn int_list(n: &Node, path: &str) -> Result<Vec<i32>, PipelineError> {
    let one = |x: &Node| match x.val {
        Val::Int(i) => {
            i32::try_from(i).map_err(|_| err(&x.loc, format!("{path} should be an array of integers")))
        }
        _ => Err(err(&x.loc, format!("{path} should be an array of integers"))),
    };
    match &n.val {
        Val::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}

const RETRY_WHEN: &[&str] = &[
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
];

pub(crate) fn parse_retry(n: &Node, path: &str) -> Result<Retry, PipelineError> {
    let max_of = |x: &Node| match x.val {
        Val::Int(i @ 0..=2) => Ok(u32::try_from(i).unwrap_or(0)),
        _ => Err(err(
            &x.loc,
            format!("{path}:retry config must be less than or equal to 2"),
        )),
    };
    match &n.val {
        Val::Int(_) => Ok(Retry {
            max: max_of(n)?,
            ..Retry::default()
        }),
        Val::Map(m) => {
            let max = m.get("max").map(max_of).transpose()?.unwrap_or(0);
            let when = match m.get("when") {
                Some(w) => crate::payload::strings(w, &format!("{path}:retry:when"))?,
                None => Vec::new(),
            };
            if let Some(bad) = when.iter().find(|w| !RETRY_WHEN.contains(&w.as_str())) {
                return Err(err(
                    &n.loc,
                    format!("{path}:retry:when contains unknown values: {bad}"),
                ));
            }
            let exit_codes = m
                .get("exit_codes")
                .map(|c| int_list(c, &format!("{path}:retry:exit_codes")))
                .transpose()?
                .unwrap_or_default();
            Ok(Retry {
                max,
                when,
                exit_codes,
            })
        }
        _ => Err(err(
            &n.loc,
            format!("{path}:retry config has to be either an integer or a hash"),
        )),
    }
}
