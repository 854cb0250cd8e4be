//! Which executor a local job runs on: jobs with `image:` run in Docker when an engine answers (as on GitLab),
//! everything else in a local shell; `--executor` forces one for all jobs.

use std::time::Duration;

use anyhow::bail;
use oxrunner_config::{DockerConfig, ExecutorKind};
use oxrunner_core::{Executor, JobProcesses, RunnerContext};

use crate::executors::{ExecutorSetup, UnsupportedExecutor, executor_for};

use super::output::Console;

/// How long `exec` waits for the Docker engine to answer before running `image:` jobs in the shell.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every job in the shell; `image:` is ignored with a warning.
    Shell,
    /// Jobs with `image:` in Docker, the others in the shell.
    Images,
    /// Every job in Docker (`--executor docker`); a job without `image:` fails with the executor's hint.
    Docker,
    /// Every job through the custom executor's driver (`--executor custom`): the driver decides where it runs.
    Custom,
}

impl Mode {
    /// True when the job (which has `image` or not) runs in a container.
    pub fn docker_for(self, has_image: bool) -> bool {
        match self {
            Self::Shell | Self::Custom => false,
            Self::Images => has_image,
            Self::Docker => true,
        }
    }

    /// The executor of a job that runs in a container (`in_docker`, from [`Mode::docker_for`]) or not.
    pub fn kind_for(self, in_docker: bool) -> ExecutorKind {
        match self {
            _ if in_docker => ExecutorKind::Docker,
            Self::Custom => ExecutorKind::Custom,
            _ => ExecutorKind::Shell,
        }
    }
}

/// Settles the mode once per run. Only an explicit `--executor docker` fails when no engine answers; the default
/// falls back to the shell with a note, so `oxrunner exec` works on machines without Docker.
pub async fn choose(executor: Option<&str>, any_image: bool, console: &Console) -> anyhow::Result<Mode> {
    let config = config();
    match executor.map(ExecutorKind::parse) {
        Some(ExecutorKind::Shell) => Ok(Mode::Shell),
        Some(ExecutorKind::Docker) => match probe(&config).await {
            Ok(()) => Ok(Mode::Docker),
            Err(e) => bail!("{e}"),
        },
        Some(ExecutorKind::Custom) => Ok(Mode::Custom),
        Some(other) => {
            bail!(
                "unknown executor {other:?}\nhint: oxrunner exec supports --executor shell, docker or custom"
            )
        }
        None if !any_image => Ok(Mode::Shell),
        None => match probe(&config).await {
            Ok(()) => Ok(Mode::Images),
            Err(e) => {
                let first = e.lines().next().unwrap_or_default().to_owned();
                console.note(&format!(
                    "WARNING: jobs with `image:` run in this machine's shell: {first}\n\
                     hint: start a Docker daemon (or set DOCKER_HOST) to run them in their images, or pass \
                     --executor shell to say this is intended"
                ));
                Ok(Mode::Shell)
            }
        },
    }
}

async fn probe(config: &DockerConfig) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, oxrunner_docker::connect(config)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the Docker engine did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Local runs take images already present and pull only missing ones: a laptop may be offline, and GitLab's
/// default `always` would make every job wait for the registry.
fn config() -> DockerConfig {
    DockerConfig {
        pull_policy: vec!["if-not-present".to_owned()],
        ..DockerConfig::default()
    }
}

/// True for the `--executor` names `exec` runs (the kinds of [`Mode`]).
pub fn runs_locally(name: &str) -> bool {
    matches!(
        ExecutorKind::parse(name),
        ExecutorKind::Shell | ExecutorKind::Docker | ExecutorKind::Custom
    )
}

/// The executor for one local job (its files come from the plan's local source directory).
pub fn executor(
    kind: &ExecutorKind,
    ctx: &RunnerContext,
    processes: JobProcesses,
    custom: Option<oxrunner_config::CustomConfig>,
    job_response: Option<Vec<u8>>,
) -> Result<Box<dyn Executor>, UnsupportedExecutor> {
    let setup = ExecutorSetup {
        ctx,
        docker: config(),
        background_cleanup: false,
        user: None,
        processes: Some(processes),
        posix_sh: false,
        // `oxrunner exec` already runs in the user's environment, and sourcing the profiles again costs a second
        // per stage on some machines.
        login_shell: false,
        custom,
        job_response,
    };
    let executor = executor_for(kind, setup)?;
    Ok(match kind {
        ExecutorKind::Shell => Box::new(super::local_shell::LocalShell::new(executor)),
        _ => executor,
    })
}
