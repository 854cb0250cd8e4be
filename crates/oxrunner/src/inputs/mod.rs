//! Job inputs interpolation (`FF_ENABLE_JOB_INPUTS_INTERPOLATION`): the `${{ job.inputs.<name> }}` expressions in
//! the job fields gitlab-runner interpolates are replaced by their values before the job runs.
//!
//! As upstream: the fields are the `script` and `after_script` steps, the image and each service (name, command,
//! entrypoint, pull_policy, executor options' platform and user), each artifact (name, paths, exclude, when,
//! expire_in) and each cache (key, policy, paths, when, fallback_keys). A job without inputs is left untouched
//! even where it contains `${{`. Every input must have a key, non-null content and a type (string, number,
//! boolean, array, struct) its content matches. A result that depends on a sensitive input is refused: upstream
//! does not support them in interpolations yet, and a script would print them.
//!
//! The language is in `parse.rs` (syntax) and `eval.rs` (meaning); `value.rs` holds the values.

mod budget;
mod eval;
mod parse;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bounds;
mod value;

use std::rc::Rc;

use oxrunner_api::{Image, JobInput, JobResponse};

use self::eval::Context;
use self::value::{Kind, Val, Value};

/// The feature flag that switches interpolation (on by default, as upstream).
pub const FLAG: &str = "FF_ENABLE_JOB_INPUTS_INTERPOLATION";

/// Which way an interpolation failed, as upstream's metric labels them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An input is malformed (no key, null content, unknown type, content of another type).
    InvalidInput,
    Parse,
    Evaluation,
    SensitiveUnsupported,
    /// The interpolation itself failed (a panic): the runner's fault, not the job's.
    Internal,
}

impl FailureKind {
    /// The `error_type` label of `gitlab_runner_job_inputs_interpolation_failures_total`; `None` for a malformed
    /// input, which upstream refuses while reading the payload, before any interpolation is counted.
    pub fn metric_label(self) -> Option<&'static str> {
        match self {
            // Upstream recovers a panic into a system failure without counting it.
            FailureKind::InvalidInput | FailureKind::Internal => None,
            FailureKind::Parse => Some("parse"),
            FailureKind::Evaluation => Some("evaluation"),
            FailureKind::SensitiveUnsupported => Some("sensitive_unsupported"),
        }
    }
}

/// A failed interpolation; its text starts with upstream's `failed to interpolate job inputs:` and names the field
/// and the expression, never an input's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to interpolate job inputs: {message}")]
pub struct InputsError {
    pub kind: FailureKind,
    pub message: String,
}

impl InputsError {
    /// The job's failure reason.
    pub fn reason(&self) -> oxrunner_core::FailureReason {
        match self.kind {
            FailureKind::Internal => oxrunner_core::FailureReason::RunnerSystemFailure,
            _ => oxrunner_core::FailureReason::RunnerConfigurationError,
        }
    }

    /// What to tell the job's author.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            FailureKind::InvalidInput => {
                "hint: GitLab sent a malformed `inputs` entry for this job; check the job's `inputs:` definitions \
                 (each needs a default of its declared type)"
            }
            FailureKind::SensitiveUnsupported => {
                "hint: sensitive job inputs cannot be used in `${{ }}` expressions yet; pass the value as a masked \
                 CI/CD variable instead"
            }
            FailureKind::Internal => {
                "hint: this is a bug in oxrunner, not in the job; please report it with the job's `${{ }}` \
                 expressions (retrying will fail the same way)"
            }
            FailureKind::Parse | FailureKind::Evaluation => {
                "hint: check the `${{ }}` expressions of the job's script, image, services, artifacts and cache \
                 against its inputs (read them as `job.inputs.<name>`); write `\\${{` for a literal `${{`, or set \
                 FF_ENABLE_JOB_INPUTS_INTERPOLATION=false to leave them as they are"
            }
        }
    }
}

/// What an interpolation did: how many fields held an expression and were interpolated (upstream's
/// `gitlab_runner_job_inputs_interpolations_total` counts these), whether any field's text changed (a `\${{`
/// escape changes it without an expression), and the error that stopped it, if any.
#[derive(Debug, Default)]
pub struct Report {
    pub interpolated: u64,
    pub changed: bool,
    pub failure: Option<InputsError>,
}

/// Interpolates `job`'s inputs into its fields in place. On failure the job is left partly interpolated: the
/// caller fails it without running anything.
pub fn interpolate(job: &mut JobResponse) -> Report {
    let mut report = Report::default();
    if job.inputs.is_empty() {
        return report;
    }
    let ctx = match context(&job.inputs) {
        Ok(ctx) => ctx,
        Err(e) => {
            report.failure = Some(e);
            return report;
        }
    };
    let mut w = Walker {
        ctx,
        report: &mut report,
        raw: 0,
        produced: 0,
    };
    if let Err(e) = w.job(job) {
        w.report.failure = Some(e);
    }
    report
}

fn invalid(message: String) -> InputsError {
    InputsError {
        kind: FailureKind::InvalidInput,
        message,
    }
}

/// Checks each input as upstream does and builds the `job.inputs` object.
fn context(inputs: &[JobInput]) -> Result<Context, InputsError> {
    let mut entries: Vec<(String, Val)> = Vec::with_capacity(inputs.len());
    let mut seen = std::collections::HashSet::with_capacity(inputs.len());
    for input in inputs {
        if input.key.is_empty() {
            return Err(invalid("input without key".into()));
        }
        let key = &input.key;
        let content = Val::from_json(&input.value.content, input.value.sensitive);
        if content.kind() == Kind::Null {
            return Err(invalid(format!("input {key:?} is null, must have valid value")));
        }
        let announced = match input.value.r#type.as_str() {
            "string" => Kind::String,
            "number" => Kind::Number,
            "boolean" => Kind::Bool,
            "array" => Kind::Array,
            "struct" => Kind::Object,
            other => {
                return Err(invalid(format!(
                    "invalid type {other:?} for input {key:?}: type is unknown"
                )));
            }
        };
        if announced != content.kind() {
            return Err(invalid(format!(
                "mismatching type of input {key:?}. Announced {:?}, but got {:?}",
                announced.name(),
                content.kind().name()
            )));
        }
        // Upstream looks an input up by the first entry with its key; later ones are never read.
        if seen.insert(key.as_str()) {
            entries.push((key.clone(), content));
        }
    }
    // A container is marked when any part is: printing `job.inputs` whole would print a sensitive one.
    let sensitive = entries.iter().any(|(_, v)| v.sensitive);
    Ok(Context::new(
        Val::plain(Value::Object(Rc::new(entries))).taint(sensitive),
    ))
}

struct Walker<'r> {
    ctx: Context,
    report: &'r mut Report,
    /// Bytes of the interpolated fields before and after: their total is bounded per job.
    raw: usize,
    produced: usize,
}

impl Walker<'_> {
    fn job(&mut self, job: &mut JobResponse) -> Result<(), InputsError> {
        for (i, step) in job.steps.iter_mut().enumerate() {
            // Upstream interpolates only these two steps (not `release` and the like).
            if step.name == "script" || step.name == "after_script" {
                self.list(&mut step.script, &format!("steps[{i}] ({}).script", step.name))?;
            }
        }
        self.image(&mut job.image, "image")?;
        for (i, svc) in job.services.iter_mut().enumerate() {
            self.image(svc, &format!("services[{i}]"))?;
        }
        for (i, a) in job.artifacts.iter_mut().enumerate() {
            let at = format!("artifacts[{i}]");
            self.field(&mut a.name, &format!("{at}.name"))?;
            self.list(&mut a.paths, &format!("{at}.paths"))?;
            self.list(&mut a.exclude, &format!("{at}.exclude"))?;
            self.field(&mut a.when, &format!("{at}.when"))?;
            self.field(&mut a.expire_in, &format!("{at}.expire_in"))?;
        }
        for (i, c) in job.cache.iter_mut().enumerate() {
            let at = format!("cache[{i}]");
            self.field(&mut c.key, &format!("{at}.key"))?;
            self.field(&mut c.policy, &format!("{at}.policy"))?;
            self.list(&mut c.paths, &format!("{at}.paths"))?;
            self.field(&mut c.when, &format!("{at}.when"))?;
            self.list(&mut c.fallback_keys, &format!("{at}.fallback_keys"))?;
        }
        Ok(())
    }

    fn image(&mut self, img: &mut Image, at: &str) -> Result<(), InputsError> {
        self.field(&mut img.name, &format!("{at}.name"))?;
        self.list(&mut img.command, &format!("{at}.command"))?;
        self.list(&mut img.entrypoint, &format!("{at}.entrypoint"))?;
        self.list(&mut img.pull_policy, &format!("{at}.pull_policy"))?;
        let opts = &mut img.executor_opts;
        self.field(
            &mut opts.docker.platform,
            &format!("{at}.executor_opts.docker.platform"),
        )?;
        self.field(&mut opts.docker.user, &format!("{at}.executor_opts.docker.user"))?;
        self.field(
            &mut opts.kubernetes.user,
            &format!("{at}.executor_opts.kubernetes.user"),
        )
    }

    fn list(&mut self, items: &mut [String], at: &str) -> Result<(), InputsError> {
        for (i, s) in items.iter_mut().enumerate() {
            self.field(s, &format!("{at}[{i}]"))?;
        }
        Ok(())
    }

    fn field(&mut self, text: &mut String, at: &str) -> Result<(), InputsError> {
        // Upstream parses every field; text without `${{` can hold no expression and no escape, so it is skipped.
        if !text.contains("${{") {
            return Ok(());
        }
        let fail = |kind, what: String| InputsError {
            kind,
            message: format!("{at}: {what}"),
        };
        let sensitive = || {
            fail(
                FailureKind::SensitiveUnsupported,
                "sensitive inputs are unsupported in interpolations yet".into(),
            )
        };
        let segments = parse::parse_template(text).map_err(|e| fail(FailureKind::Parse, e.0))?;
        let has_expr = segments.iter().any(|s| matches!(s, parse::Segment::Expr { .. }));
        self.ctx.take_observed();
        let out = match self.ctx.render(&segments) {
            Ok(out) => out,
            // Whether an expression fails after looking at a secret could tell something about the secret.
            Err(_) if self.ctx.take_observed() => return Err(sensitive()),
            Err(e) => return Err(fail(FailureKind::Evaluation, e.0)),
        };
        if out.sensitive {
            return Err(sensitive());
        }
        if let Value::String(s) = &out.v {
            self.raw += text.len();
            self.produced += s.len();
            let limit = budget::JOB_OUTPUT_BASE + budget::JOB_OUTPUT_FACTOR * self.raw;
            if self.produced > limit {
                return Err(fail(
                    FailureKind::Evaluation,
                    format!(
                        "all interpolated fields of the job together are longer than {} MiB plus {} times their \
                         text",
                        budget::JOB_OUTPUT_BASE >> 20,
                        budget::JOB_OUTPUT_FACTOR
                    ),
                ));
            }
            if **s != **text {
                self.report.changed = true;
                *text = s.to_string();
            }
        }
        if has_expr {
            self.report.interpolated += 1;
        }
        Ok(())
    }
}

/// The daemon's (and `exec`'s) step before a job runs, on a blocking thread since its work grows with the job's
/// input. A job with inputs has them checked whatever the flag: upstream refuses a malformed `inputs` payload
/// while reading it. When `FF_ENABLE_JOB_INPUTS_INTERPOLATION` is on for the job (its resolved flags are in
/// `plan.variables`), the fields are interpolated and `plan` is rebuilt from the result whenever a field changed
/// (keeping the plan's resolved variables). Returns the payload to run and the report.
pub async fn apply(
    job: Box<JobResponse>,
    plan: &mut oxrunner_core::JobPlan,
    ca_chain: Option<String>,
) -> (Box<JobResponse>, Report) {
    if job.inputs.is_empty() {
        return (job, Report::default());
    }
    let on = oxrunner_core::feature_flags::is_on(&plan.variables, FLAG);
    let mut copy = job.clone();
    let done = tokio::task::spawn_blocking(move || {
        let report = if on {
            interpolate(&mut copy)
        } else {
            Report {
                failure: context(&copy.inputs).err(),
                ..Report::default()
            }
        };
        (copy, report)
    })
    .await;
    let (interpolated, report) = match done {
        Ok(done) => done,
        Err(err) => {
            let report = Report {
                failure: Some(InputsError {
                    kind: FailureKind::Internal,
                    message: format!("the interpolation stopped: {err}"),
                }),
                ..Report::default()
            };
            return (job, report);
        }
    };
    if report.failure.is_none() && report.changed {
        let variables = std::mem::take(&mut plan.variables);
        *plan = crate::plan::job_plan(&interpolated, ca_chain);
        plan.variables = variables;
    }
    (interpolated, report)
}

/// A failed interpolation fails the job as upstream does (before anything runs, reason
/// `runner_configuration_error`, or `runner_system_failure` for a panic), with the error and a hint in the job
/// log.
pub fn failed_outcome(
    report: &Report,
    trace: &oxrunner_core::TraceWriter,
) -> Option<oxrunner_core::JobOutcome> {
    let e = report.failure.as_ref()?;
    trace.error(&format!("Job failed: {e}"));
    trace.println(e.hint());
    Some(oxrunner_core::JobOutcome::Failed {
        reason: e.reason(),
        exit_code: None,
        message: e.to_string(),
    })
}
