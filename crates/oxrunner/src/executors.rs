//! The one table from an executor kind to the `Executor` that runs a job's stage scripts, used by `run` (the
//! daemon) and `exec`. A new executor is one arm in [`executor_for`] plus its name in [`SUPPORTED`]; kinds without
//! an arm are refused by name, never run by another executor.

use oxrunner_config::{CustomConfig, DockerConfig, ExecutorKind};
use oxrunner_core::{Executor, JobProcesses, RunnerContext, ShellExecutor};
use oxrunner_custom::{CustomExecutor, CustomSettings};
use oxrunner_docker::DockerExecutor;

/// The kinds this build can run, in the order messages list them.
pub const SUPPORTED: &[ExecutorKind] = &[ExecutorKind::Shell, ExecutorKind::Docker, ExecutorKind::Custom];

/// True when [`executor_for`] builds an executor for `kind`.
pub fn supported(kind: &ExecutorKind) -> bool {
    SUPPORTED.contains(kind)
}

/// True when the executor for `kind` offers the web terminal (`Executor::terminal`), so the daemon may advertise
/// `session`/`terminal` for it. A custom executor's driver has no way to say it can give a shell.
pub fn offers_terminal(kind: &ExecutorKind) -> bool {
    matches!(kind, ExecutorKind::Shell | ExecutorKind::Docker)
}

/// `shell, docker`: for messages and prompts.
pub fn supported_names() -> String {
    SUPPORTED
        .iter()
        .map(ExecutorKind::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A kind this build has no executor for.
#[derive(Debug, thiserror::Error)]
#[error(
    "executor `{0}` is not supported by this oxrunner build (supported: {names})\nhint: set executor to one of {names}",
    names = supported_names()
)]
pub struct UnsupportedExecutor(pub ExecutorKind);

/// What a front end knows that one of the executors may need; each arm takes its part.
pub struct ExecutorSetup<'a> {
    pub ctx: &'a RunnerContext,
    /// `[runners.docker]` (exec: its local defaults).
    pub docker: DockerConfig,
    /// Daemon: containers are removed after the final update, off the job's critical path.
    pub background_cleanup: bool,
    /// Shell: run the scripts as this user (`--user`).
    pub user: Option<String>,
    /// Shell: track every process the job starts.
    pub processes: Option<JobProcesses>,
    /// Shell: `shell = "sh"` runs the scripts with `/bin/sh` instead of bash.
    pub posix_sh: bool,
    /// Shell: a login shell (the daemon, like gitlab-runner) or not (`exec` already runs in the user's session).
    pub login_shell: bool,
    /// `[runners.custom]`: the custom executor's driver programs.
    pub custom: Option<CustomConfig>,
    /// Custom: the job payload as JSON, for the drivers' `JOB_RESPONSE_FILE`.
    pub job_response: Option<Vec<u8>>,
}

/// The executor for `kind`, or the reason there is none.
pub fn executor_for(
    kind: &ExecutorKind,
    setup: ExecutorSetup<'_>,
) -> Result<Box<dyn Executor>, UnsupportedExecutor> {
    match kind {
        ExecutorKind::Shell => Ok(Box::new(shell(setup))),
        ExecutorKind::Docker => Ok(Box::new(docker(setup))),
        ExecutorKind::Custom => Ok(Box::new(custom(setup))),
        other => Err(UnsupportedExecutor(other.clone())),
    }
}

fn shell(setup: ExecutorSetup<'_>) -> ShellExecutor {
    let mut executor = ShellExecutor::new()
        .with_user(setup.user)
        .with_login_shell(setup.login_shell);
    if let Some(procs) = setup.processes {
        executor = executor.with_processes(procs);
    }
    if setup.posix_sh {
        executor = executor.with_shell("/bin/sh");
    }
    executor
}

fn custom(setup: ExecutorSetup<'_>) -> CustomExecutor {
    let config = setup.custom.unwrap_or_default();
    let mut executor = CustomExecutor::new(CustomSettings::from_config(&config));
    if let Some(json) = setup.job_response {
        executor = executor.with_job_response(json);
    }
    if let Some(procs) = setup.processes {
        executor = executor.with_processes(procs);
    }
    executor
}

fn docker(setup: ExecutorSetup<'_>) -> DockerExecutor {
    let mut executor = DockerExecutor::new(setup.docker, setup.ctx.clone());
    if setup.background_cleanup {
        executor = executor.with_background_cleanup();
    }
    executor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(ctx: &RunnerContext) -> ExecutorSetup<'_> {
        ExecutorSetup {
            ctx,
            docker: DockerConfig::default(),
            background_cleanup: false,
            user: None,
            processes: None,
            posix_sh: false,
            login_shell: false,
            custom: None,
            job_response: None,
        }
    }

    #[test]
    fn kinds_without_an_executor_are_refused_by_name() {
        let ctx = RunnerContext::default();
        for kind in ExecutorKind::KNOWN
            .into_iter()
            .chain([ExecutorKind::parse("qemu")])
        {
            match executor_for(&kind, setup(&ctx)) {
                Ok(_) => assert!(supported(&kind), "{kind} built without being listed as supported"),
                Err(e) => {
                    assert!(
                        !supported(&kind),
                        "{kind} is listed as supported but has no executor"
                    );
                    let text = e.to_string();
                    assert!(
                        text.contains(&format!("`{kind}`")) && text.contains("\nhint: "),
                        "{text}"
                    );
                }
            }
        }
    }
}
