//! Cache and artifact stages for executors whose job environment the runner cannot reach
//! ([`FileAccess::InScript`](crate::executor::FileAccess)): the job hooks render the stage as a script (calls to
//! the runner binary's helper commands), and it runs like any other stage script, under the same timeouts and
//! cancellation. What a failed script means is the stage's rule, applied by the callers in `mod.rs` and `finish.rs` exactly as for
//! the runner-side hooks: a restore failure is a warning, a download or upload failure fails the job.

use super::{Driver, Interrupt, Limits, StageResult};
use crate::error::HookError;
use crate::executor::{JobStatus, Stage, StageCtx};
use crate::outcome::FailureReason;

impl Driver<'_> {
    /// Renders and runs `stage` in the job environment; the result has the shape of a runner-side hook's.
    pub(super) async fn inscript_hook(
        &mut self,
        stage: Stage,
        status: JobStatus,
        limits: Limits,
    ) -> Result<Result<(), HookError>, Interrupt> {
        let rendered = {
            let sctx = StageCtx {
                plan: self.plan,
                runner: &self.ctx,
                stage: stage.clone(),
                project_dir: self.project_dir.clone(),
                tmp_dir: self.tmp_dir.clone(),
                variables: &self.vars,
                status,
                cancel: self.control.abort.child_token(),
            };
            self.hooks.stage_script(&sctx, self.trace)
        };
        let body = match rendered {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Ok(())),
            Err(err) => return Ok(Err(err)),
        };
        let script = self.scripts(&self.vars).transfer_stage(&body);
        match self.run_script(stage.clone(), script, limits).await {
            StageResult::Exit(status) if status.success() => Ok(Ok(())),
            // The helper commands printed why; the job log only needs the stage and how it ended.
            StageResult::Exit(status) => Ok(Err(HookError::with_reason(
                FailureReason::ScriptFailure,
                format!("the {stage} stage failed: {status}"),
            ))),
            StageResult::Interrupted(i) => Err(i),
            StageResult::Error(err) => Ok(Err(HookError::with_reason(err.reason(), err.to_string()))),
        }
    }
}
