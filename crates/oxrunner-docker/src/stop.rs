//! Stopping a stage on cancel, abort or timeout, in gitlab-runner's two ways (`FF_USE_NATIVE_CONTAINER_STOP`).
//!
//! Without the flag gitlab-runner first sends SIGTERM to every process of the build container (shells do not pass
//! it on to their children) and then stops the container; the job's processes get the engine's stop grace to end.
//! With it, the runner signals nothing itself: the engine's stop sends SIGTERM to PID 1 only and SIGKILL after the
//! grace, so only a PID 1 that handles SIGTERM can shut the job down in an orderly way.
//!
//! Here the stage is an exec beside PID 1 (see `run.rs`), so the first way signals every process but PID 1, and
//! the stage ends when its shell has ended (the grace is the upper bound); the container is killed after either
//! way, as after any cancelled stage.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::StopContainerOptions;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::run::kill;

/// The engine's default stop timeout, which gitlab-runner's `ContainerStop` uses (it passes none): how long the
/// job's processes have after SIGTERM before SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// gitlab-runner bounds its SIGTERM exec by 10 s, so a stuck exec cannot hold up the stop.
const SIGNAL_BOUND: Duration = Duration::from_secs(10);

/// SIGTERM to every process of the container but PID 1 (the container's keep-alive shell, or the image's
/// ENTRYPOINT, whose end would kill the job at once) and the signalling shell itself. Builtins only.
const SIGNAL_ALL: &str = "for d in /proc/[0-9]*; do p=${d#/proc/}; [ \"$p\" = 1 ] || [ \"$p\" = $$ ] || kill -TERM \"$p\" 2>/dev/null; done; exit 0";

/// How a stage is stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopMode {
    /// The runner sends SIGTERM to the job's processes (gitlab-runner's default).
    #[default]
    SignalProcesses,
    /// `FF_USE_NATIVE_CONTAINER_STOP`: the engine's stop, SIGTERM to PID 1 only.
    Native,
}

impl StopMode {
    pub fn from_flag(native: bool) -> Self {
        if native {
            Self::Native
        } else {
            Self::SignalProcesses
        }
    }
}

/// Starts stopping the stage; it runs beside the reading of the stage's output, which goes on until the stage's
/// exec ends, and [`finish`] completes it.
pub(crate) fn begin(docker: &Docker, container: &str, mode: StopMode) -> JoinHandle<()> {
    let docker = docker.clone();
    let container = container.to_owned();
    tokio::spawn(async move {
        match mode {
            StopMode::SignalProcesses => {
                if tokio::time::timeout(SIGNAL_BOUND, signal_processes(&docker, &container))
                    .await
                    .is_err()
                {
                    tracing::debug!(container, "sending SIGTERM to the job's processes took too long");
                }
                tokio::time::sleep(GRACE).await;
                kill(&docker, &container).await;
            }
            StopMode::Native => {
                let opts = StopContainerOptions {
                    signal: None,
                    t: None,
                };
                // 304 (already stopped) and 404 (gone) leave nothing to stop.
                if let Err(e) = docker.stop_container(&container, Some(opts)).await {
                    tracing::debug!(error = %e, container, "stopping the job container");
                }
            }
        }
    })
}

/// Completes a stop [`begin`] started, once the stage's exec has ended: after SIGTERM the stage's end is all the
/// grace waits for, while a native stop lasts until the engine has stopped the container. The container is killed
/// after either, so nothing of the stage runs any more.
pub(crate) async fn finish(docker: &Docker, container: &str, mode: StopMode, stopping: JoinHandle<()>) {
    match mode {
        StopMode::SignalProcesses => stopping.abort(),
        StopMode::Native => {
            if let Err(e) = stopping.await {
                tracing::debug!(error = %e, container, "the container stop task ended abnormally");
            }
        }
    }
    kill(docker, container).await;
}

/// Runs [`SIGNAL_ALL`] as root in the container and waits for it to end.
async fn signal_processes(docker: &Docker, container: &str) {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some("0".to_owned()),
        cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), SIGNAL_ALL.to_owned()]),
        ..Default::default()
    };
    let exec = match docker.create_exec(container, config).await {
        Ok(exec) => exec.id,
        Err(e) => {
            tracing::debug!(error = %e, container, "creating the SIGTERM exec");
            return;
        }
    };
    match docker.start_exec(&exec, None).await {
        Ok(StartExecResults::Attached { mut output, .. }) => {
            while let Some(item) = output.next().await {
                if let Ok(LogOutput::StdErr { message }) = item {
                    tracing::debug!(container, output = %String::from_utf8_lossy(&message), "SIGTERM exec");
                }
            }
        }
        Ok(StartExecResults::Detached) => {}
        Err(e) => tracing::debug!(error = %e, container, "starting the SIGTERM exec"),
    }
}
