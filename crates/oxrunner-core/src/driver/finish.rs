//! The end of a job: after_script, then the cache-archive and artifact-upload stages, and the hook dispatch
//! that runs a cache or artifact stage runner-side, staged through a remote executor's files, or in-script.

use tokio::time::Instant;

use super::{DEFAULT_AFTER_SCRIPT_TIMEOUT, Driver, Interrupt, Limits, StageResult, env, guard, remote};
use crate::error::HookError;
use crate::executor::{FileAccess, JobStatus, Stage, StageCtx};
use crate::outcome::{FailureReason, go_duration};
use crate::variables::Variable;

impl Driver<'_> {
    fn job_status_value(&self) -> &'static str {
        match (&self.failure, self.interrupt) {
            (None, _) => "success",
            (_, Some(Interrupt::JobTimeout | Interrupt::ScriptTimeout(_) | Interrupt::StageTimeout(..))) => {
                "timedout"
            }
            (_, Some(Interrupt::Graceful | Interrupt::Abort)) => "canceled",
            (Some(_), None) => "failed",
        }
    }

    pub(super) async fn after_script(&mut self) {
        let Some(step) = self.plan.after_script.as_ref() else {
            return;
        };
        if step.script.iter().all(|l| l.trim().is_empty()) {
            return;
        }
        // As in gitlab-runner, after_script lives inside the job's timeout: once the job timed out it is skipped.
        if Instant::now() >= self.deadline {
            return;
        }
        let timeout = self
            .vars
            .value("RUNNER_AFTER_SCRIPT_TIMEOUT")
            .and_then(env::parse_go_duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_AFTER_SCRIPT_TIMEOUT);
        let mut vars = self.vars.clone();
        vars.push(Variable::new("CI_JOB_STATUS", self.job_status_value()));
        let script = self.scripts(&vars).after_script(step);
        // after_script has its own timeout but, as in gitlab-runner, never outlives the job's timeout.
        let limits = Limits {
            deadline: Some(self.deadline),
            script_deadline: Some((Instant::now() + timeout, Interrupt::ScriptTimeout(timeout))),
            graceful: false,
            abortable: true,
        };
        let ignore_errors = self.vars.bool("AFTER_SCRIPT_IGNORE_ERRORS").unwrap_or(true);
        match self.stage_result(Stage::AfterScript, script, limits).await {
            StageResult::Exit(status) if status.success() => {}
            StageResult::Exit(status) if ignore_errors => self.trace.warning(&format!(
                "after_script failed, but job will continue unaffected: {status}"
            )),
            StageResult::Exit(status) => {
                self.set_failure(FailureReason::ScriptFailure, status.code(), status.to_string());
            }
            StageResult::Interrupted(Interrupt::Abort) => {
                self.fail_interrupted(Interrupt::Abort);
            }
            StageResult::Interrupted(Interrupt::JobTimeout) => {
                self.trace.warning(
                    "after_script could not run to completion because the timeout was exceeded. For more control over job and script timeouts see: https://docs.gitlab.com/ci/runners/configure_runners/#set-script-and-after_script-timeouts",
                );
                if self.failure.is_none() {
                    // gitlab-runner's own wording, Go duration and all ("1h0m0s seconds").
                    let msg = format!(
                        "execution took longer than {} seconds",
                        go_duration(self.plan.effective_timeout())
                    );
                    self.set_failure(FailureReason::JobExecutionTimeout, None, msg);
                }
            }
            StageResult::Interrupted(_) => self
                .trace
                .warning(&format!("after_script timed out after {}", go_duration(timeout))),
            StageResult::Error(err) => {
                self.trace.warning(&format!("after_script failed: {err}"));
            }
        }
    }

    pub(super) async fn archive_and_upload(&mut self) {
        let failed = self.failure.is_some();
        let status = if failed {
            JobStatus::Failed
        } else {
            JobStatus::Success
        };
        if !self.plan.caches.is_empty() {
            let stage = if failed {
                Stage::ArchiveCacheOnFailure
            } else {
                Stage::ArchiveCache
            };
            self.section_start(&stage);
            let res = self.hook(stage.clone(), status).await;
            self.section_end(&stage);
            self.settle_hook(res);
        }
        if !self.plan.artifacts.is_empty() && self.interrupt != Some(Interrupt::Abort) {
            let stage = if failed {
                Stage::UploadArtifactsOnFailure
            } else {
                Stage::UploadArtifactsOnSuccess
            };
            self.section_start(&stage);
            let res = self.hook(stage.clone(), status).await;
            self.section_end(&stage);
            self.settle_hook(res);
        }
    }

    fn settle_hook(&mut self, res: Result<Result<(), HookError>, Interrupt>) {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                self.trace.error(&err.message);
                self.set_failure(
                    err.reason.unwrap_or(FailureReason::ScriptFailure),
                    None,
                    err.message,
                );
            }
            Err(i) => self.fail_interrupted(i),
        }
    }

    /// Runs a hook for `stage`, bounded by abort (and, before after_script, the job timeout and graceful cancel).
    pub(super) async fn hook(
        &mut self,
        stage: Stage,
        status: JobStatus,
    ) -> Result<Result<(), HookError>, Interrupt> {
        let early = matches!(stage, Stage::RestoreCache | Stage::DownloadArtifacts);
        let limits = if early {
            self.job_limits()
        } else {
            Limits {
                deadline: None,
                script_deadline: None,
                graceful: false,
                abortable: true,
            }
        };
        let files = match self.executor.file_access() {
            FileAccess::InScript => return self.inscript_hook(stage, status, limits).await,
            FileAccess::Remote(files) => Some(files),
            FileAccess::Local => None,
        };
        let hook_cancel = self.control.abort.child_token();
        let sctx = StageCtx {
            plan: self.plan,
            runner: &self.ctx,
            stage: stage.clone(),
            project_dir: self.project_dir.clone(),
            tmp_dir: self.tmp_dir.clone(),
            variables: &self.vars,
            status,
            cancel: hook_cancel.clone(),
        };
        let hooks = self.hooks;
        let trace = self.trace;
        let fut = async {
            match &files {
                Some(files) => remote::staged_hook(hooks, files.as_ref(), &sctx, trace).await,
                None => crate::executor::call_hook(hooks, &sctx, trace).await,
            }
        };
        let res = guard(fut, &self.control, limits).await;
        hook_cancel.cancel();
        res
    }
}
