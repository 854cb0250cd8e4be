//! Suspendable environments in the driver (`FF_SUSPENDABLE_ENVIRONMENTS`, gitlab-runner's `common/build.go`): a job
//! that resumes an environment skips get_sources (its checkout is still there), and a job whose outcome matches
//! its `suspend_options` asks the executor to keep the environment, after the terminal wait and before the
//! executor's cleanup. The key goes to the final update through the trace writer.

use super::{Driver, Failure};
use crate::error::ExecError;
use crate::outcome::FailureReason;
use crate::suspend::RuntimeEnvironmentKey;

impl Driver<'_> {
    /// True when get_sources is skipped because the job resumes an environment. gitlab-runner says so in the
    /// runner's log only; the job's log shows no get_sources section.
    pub(super) fn skips_sources(&self) -> bool {
        if self.plan.resume_key().is_none() {
            return false;
        }
        tracing::info!(
            job = self.plan.job_id,
            "Skipping stage get_sources: resuming suspended environment"
        );
        true
    }

    /// A job that carries a key to resume needs an executor that resumes; gitlab-runner's executors without
    /// suspend support would run it without its sources, so it is refused before anything starts.
    pub(super) fn check_resumable(&self) -> Result<(), ExecError> {
        if self.plan.resume_key().is_none() || self.executor.suspendable() {
            return Ok(());
        }
        Err(ExecError::Build {
            reason: FailureReason::RunnerConfigurationError,
            message: format!(
                "the job resumes a suspended environment, but the {} executor does not support suspend/resume\nhint: \
                 run jobs with suspend_options on a runner with the docker executor, or turn \
                 FF_SUSPENDABLE_ENVIRONMENTS off",
                self.ctx.executor
            ),
        })
    }

    /// gitlab-runner's `ShouldSuspend`: a job that succeeded, or failed in a script or the runner's work (not a
    /// cancel, timeout or abort), when its `suspend_options` ask for that outcome.
    /// Like upstream, only an environment that `prepare` set up completely, and (oxrunner's addition) only one
    /// whose file variables were removed: the secrets they hold must not wait in it for the job that resumes it.
    pub(super) fn should_suspend(&self) -> bool {
        if !self.plan.will_suspend() || !self.prepared || self.file_variables_left {
            return false;
        }
        match &self.failure {
            None => self.plan.suspend.on_success,
            Some(f) => {
                self.plan.suspend.on_failure
                    && self.interrupt.is_none()
                    && !matches!(
                        f.reason,
                        FailureReason::JobCanceled | FailureReason::JobExecutionTimeout
                    )
            }
        }
    }

    /// Suspends the environment when the job asks for it. A failed suspend fails a job that had succeeded (the
    /// user asked for an environment to resume and will not get it) as a runner system failure.
    pub(super) async fn suspend_if_asked(&mut self) {
        if !self.should_suspend() {
            return;
        }
        let result = if self.ctx.runner_id <= 0 && self.executor.suspendable() {
            // A key carries the runner id and parse refuses one <= 0: the environment could never be resumed and
            // would only be kept. Nothing is stopped; the executor's cleanup removes it.
            Err(ExecError::Other(format!(
                "the runner id is {}, so no key could resume the environment\nhint: the [[runners]] entry in \
                 config.toml needs the id GitLab returned at registration (register the runner again, or set id)",
                self.ctx.runner_id
            )))
        } else if self.executor.suspendable() {
            self.executor.suspend().await
        } else {
            Err(ExecError::Other(crate::executor::UNSUSPENDABLE.to_owned()))
        };
        let error = match result {
            Ok(fields) => {
                let key =
                    RuntimeEnvironmentKey::new(self.ctx.runner_id, &self.ctx.system_id, fields).to_string();
                self.trace.info(&format!("Job environment suspended: {key}"));
                self.trace.set_runtime_environment_key(key);
                return;
            }
            Err(err) if !self.executor.suspendable() => {
                self.trace
                    .warning("Job environment suspension not supported by executor");
                err.to_string()
            }
            Err(err) => {
                self.trace
                    .warning(&format!("Job environment suspension failed: {err}"));
                format!("suspending environment: {err}")
            }
        };
        if self.failure.is_none() {
            self.failure = Some(Failure {
                reason: FailureReason::RunnerSystemFailure,
                exit_code: None,
                message: error,
            });
        }
    }
}
