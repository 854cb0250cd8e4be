//! The daemon's `resolve_secrets` stage: the job's secrets are resolved before its trace is created, so the
//! trace's masker knows their values from the first byte; the stage's lines are written once the trace exists.

use oxrunner_api::JobResponse;
use oxrunner_core::trace::Masker;
use oxrunner_core::{
    CancellationToken, FailureReason, JobPlan, MaskSet, RunnerContext, TraceWriter, feature_flags,
};

use crate::secrets::{self, LogLine, Resolution, SecretsFailure};

/// What the stage left for the trace: its lines, and the failure that ends the job before the executor.
pub struct SecretsStage {
    lines: Vec<LogLine>,
    pub failure: Option<SecretsFailure>,
}

/// Resolves `job`'s secrets into `plan`'s variables (masked, raw, file per `file:`). `None` when the job has
/// none or is refused before it runs. A runner shutdown (`abort`) ends the stage at once. `$VARIABLE`s in the
/// entries expand against the variables the job's script would see under `ctx` (gitlab-runner's
/// `GetAllVariables`).
pub async fn resolve(
    job: &JobResponse,
    plan: &mut JobPlan,
    ctx: &RunnerContext,
    abort: &CancellationToken,
) -> Option<SecretsStage> {
    // A payload the runner refuses anyway is not worth a login to the secrets server.
    if job.secrets.is_empty() || crate::plan::check(job).is_err() {
        return None;
    }
    let all = oxrunner_core::driver::all_variables_with_file_paths(plan, ctx);
    let resolution = tokio::select! {
        r = secrets::resolve(&job.secrets, &all) => r,
        () = abort.cancelled() => Resolution {
            lines: Vec::new(),
            result: Err(SecretsFailure {
                reason: FailureReason::RunnerSystemFailure,
                message: "resolving secrets: aborted: the runner is shutting down".into(),
            }),
        },
    };
    let failure = match resolution.result {
        Ok(vars) => {
            plan.variables.extend(vars);
            None
        }
        Err(f) => Some(SecretsFailure {
            // The message also reaches the runner's own log, which has no masker: the job's masked values
            // (its ID token, say, expanded into an auth path) are masked here already.
            message: masked(&plan.mask_set(), &f.message),
            reason: f.reason,
        }),
    };
    Some(SecretsStage {
        lines: resolution.lines,
        failure,
    })
}

/// `text` with every value of `set` masked, as the job log would show it. A mask set that cannot be built
/// leaves nothing of the text but its first line's reason class.
fn masked(set: &MaskSet, text: &str) -> String {
    let Ok(mut masker) = Masker::new(set) else {
        return "resolving secrets failed (details withheld: the job's masked values could not be applied)"
            .into();
    };
    let mut out = Vec::with_capacity(text.len());
    masker.write(text.as_bytes(), &mut out);
    masker.flush(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl SecretsStage {
    /// Writes the stage's section to the job log (with the job's section and timestamp settings, which the driver
    /// applies only later).
    pub fn write(&self, trace: &TraceWriter, plan: &JobPlan) {
        trace.set_sections(plan.features.trace_sections);
        trace.set_timestamps(feature_flags::is_on(&plan.variables, "FF_TIMESTAMPS"));
        trace.section_start(secrets::SECTION, secrets::HEADER);
        for line in &self.lines {
            match line {
                LogLine::Println(l) => trace.println(l),
                LogLine::Warning(l) => trace.warning(l),
            }
        }
        trace.section_end(secrets::SECTION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_are_masked_before_they_leave() {
        let set = MaskSet::new(["eyJ-the-id-token-value".to_owned()], &[]);
        assert_eq!(
            masked(&set, "logging in at auth/eyJ-the-id-token-value/login: denied"),
            "logging in at auth/[MASKED]/login: denied"
        );
    }
}
