//! Stopping a stage on cancel, abort or timeout, in gitlab-runner's two ways (`FF_USE_NATIVE_CONTAINER_STOP`).
//!
//! Without the flag gitlab-runner first sends SIGTERM to every process of the build container (shells do not pass
//! it on to their children) and then stops the container; the job's processes get the engine's stop grace to end.
//! With it, the runner signals nothing itself: the engine's stop sends SIGTERM to PID 1 only and SIGKILL after the
//! grace, so only a PID 1 that handles SIGTERM can shut the job down in an orderly way.
//!
//! Here the stage is an exec beside PID 1 (see `run.rs`), so the first way signals every process but PID 1, and
//! the stage ends when its shell has ended (the grace is the upper bound). gitlab-runner's script shell is PID 1,
//! so its native stop still reaches the job's SIGTERM trap; to keep that, the native way here signals the stage's
//! own processes first (not PID 1's session, nor the web terminal's) and then stops the container through the
//! engine, which signals PID 1. The container is killed after either way, as after any cancelled stage.
//!
//! The signalling shell runs as the stage's user, as gitlab-runner's exec does: it is the image's `sh`, so running
//! it as root would give the job's author root in the container. A container sharing a PID namespace gets no
//! signalling shell at all (see [`StopMode::for_job`]).

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

/// SIGTERM to the stage's processes, for the native stop: gitlab-runner's shell is the container's PID 1 and gets
/// the engine's SIGTERM; ours is a child of the stage's exec, which runc makes a session leader, and the job's
/// script runs in a child of that shell. So: every process without a terminal (the web terminal's have one)
/// outside PID 1's session (the image's own processes, left to the engine's stop) and the signalling shell's own.
/// The exec's wrapper gets it too, so that it leaves the job's trap to finish (see `run.rs`). Fields after the
/// command name in `/proc/<pid>/stat`: state, ppid, pgrp, session, tty. PID 1 is skipped by number too, for a
/// runtime that does not make it a session leader. Builtins only.
const SIGNAL_STAGE: &str = "for d in /proc/[0-9]*; do p=${d#/proc/}; [ \"$p\" = 1 ] && continue; [ \"$p\" = $$ ] && continue; read -r st < \"$d/stat\" 2>/dev/null || continue; set -- ${st##*)}; [ \"$4\" != 1 ] && [ \"$4\" != $$ ] && [ \"$5\" = 0 ] && kill -TERM \"$p\" 2>/dev/null; done; exit 0";

/// How a stage is stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopMode {
    /// The runner sends SIGTERM to the job's processes (gitlab-runner's default).
    #[default]
    SignalProcesses,
    /// `FF_USE_NATIVE_CONTAINER_STOP`: SIGTERM to the stage's processes (gitlab-runner's shell is PID 1), then the
    /// engine's stop, SIGTERM to PID 1.
    Native,
    /// The engine's stop alone, for a container whose PID namespace is shared: what it sees is not only the job's.
    EngineOnly,
}

impl StopMode {
    /// The mode for a job: `FF_USE_NATIVE_CONTAINER_STOP`, and the build container's `pid_mode`. A container that
    /// shares a PID namespace (`host`, `container:<name>`) sees processes that are not the job's, and signalling
    /// every process it sees would end those too (the host's own with `host`); it gets the engine's stop alone,
    /// which signals the container's own PID 1 only.
    pub fn for_job(native: bool, pid_mode: Option<&str>) -> Self {
        let shared_pids = pid_mode.is_some_and(|m| {
            let m = m.trim();
            m == "host" || m.starts_with("container:")
        });
        match (shared_pids, native) {
            (true, _) => Self::EngineOnly,
            (false, true) => Self::Native,
            (false, false) => Self::SignalProcesses,
        }
    }
}

/// Starts stopping the stage; it runs beside the reading of the stage's output, which goes on until the stage's
/// exec ends, and [`finish`] completes it.
/// `user` is the stage's user (`None`: the container's), the one the signalling shell runs as.
pub(crate) fn begin(docker: &Docker, container: &str, mode: StopMode, user: Option<&str>) -> JoinHandle<()> {
    let docker = docker.clone();
    let container = container.to_owned();
    let script = match mode {
        StopMode::SignalProcesses => SIGNAL_ALL,
        StopMode::Native => SIGNAL_STAGE,
        StopMode::EngineOnly => "",
    };
    let config = signal_exec(user, script);
    tokio::spawn(async move {
        if mode == StopMode::EngineOnly {
            engine_stop(&docker, &container).await;
            return;
        }
        if tokio::time::timeout(SIGNAL_BOUND, signal_processes(&docker, &container, config))
            .await
            .is_err()
        {
            tracing::debug!(container, "sending SIGTERM to the job's processes took too long");
        }
        tokio::time::sleep(GRACE).await;
        match mode {
            StopMode::SignalProcesses => kill(&docker, &container).await,
            StopMode::Native | StopMode::EngineOnly => engine_stop(&docker, &container).await,
        }
    })
}

/// The engine's stop: SIGTERM to PID 1, SIGKILL after the engine's grace.
async fn engine_stop(docker: &Docker, container: &str) {
    let opts = StopContainerOptions {
        signal: None,
        t: None,
    };
    // 304 (already stopped) and 404 (gone) leave nothing to stop.
    if let Err(e) = docker.stop_container(container, Some(opts)).await {
        tracing::debug!(error = %e, container, "stopping the job container");
    }
}

/// Completes a stop [`begin`] started, once the stage's exec has ended: after SIGTERM the stage's end is all the
/// grace waits for. The native stop then stops the container through the engine, so that PID 1 gets its SIGTERM
/// (and its grace) too, only once the stage's shell has had its chance: a PID 1 that ends on it ends the container.
/// The container is killed after either, so nothing of the stage runs any more.
pub(crate) async fn finish(docker: &Docker, container: &str, mode: StopMode, stopping: JoinHandle<()>) {
    match mode {
        StopMode::SignalProcesses => stopping.abort(),
        StopMode::Native => {
            stopping.abort();
            engine_stop(docker, container).await;
        }
        // The engine's stop is all there is: the stage ends when the engine has stopped the container.
        StopMode::EngineOnly => {
            if let Err(e) = stopping.await {
                tracing::debug!(error = %e, container, "the container stop task ended abnormally");
            }
        }
    }
    kill(docker, container).await;
}

/// The exec of a signalling `script`, as the stage's user, as gitlab-runner runs it (no user of its own). Never root
/// when the job runs as another user: the `sh` it runs is the image's, which is the job author's, so running it
/// as root would hand root in the container to any job that times out. The stage's processes are that user's
/// own, so it may signal them.
fn signal_exec(user: Option<&str>, script: &str) -> ExecConfig {
    ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: user.map(str::to_owned),
        cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
        ..Default::default()
    }
}

/// Runs a [`signal_exec`] in the container and waits for it to end.
async fn signal_processes(docker: &Docker, container: &str, config: ExecConfig) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signalling_shell_runs_as_the_stages_user_never_as_root() {
        for script in [SIGNAL_ALL, SIGNAL_STAGE] {
            assert_eq!(
                signal_exec(Some("nobody"), script).user.as_deref(),
                Some("nobody")
            );
            assert_eq!(
                signal_exec(Some("1000:1000"), script).user.as_deref(),
                Some("1000:1000")
            );
            // No configured user: the container's own, as the stage's exec.
            assert_eq!(signal_exec(None, script).user, None);
        }
    }

    /// Both scripts run for real against this machine's `/proc`, with `kill` shadowed by a function that only
    /// prints: PID 1 is never chosen, whether or not it leads a session (outside a container it may not).
    #[test]
    fn pid_1_is_never_signalled() {
        for script in [SIGNAL_ALL, SIGNAL_STAGE] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("kill() {{ echo \"K $2\"; }}; {script}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let chosen = String::from_utf8_lossy(&out.stdout);
            assert!(!chosen.lines().any(|l| l == "K 1"), "{script}: {chosen}");
        }
    }

    #[test]
    fn a_shared_pid_namespace_gets_the_engines_stop_not_a_signal_to_every_process() {
        for pid_mode in ["host", " host ", "container:other", "container:0123abc"] {
            for native in [false, true] {
                assert_eq!(
                    StopMode::for_job(native, Some(pid_mode)),
                    StopMode::EngineOnly,
                    "{pid_mode}"
                );
            }
        }
        for pid_mode in [None, Some(""), Some("private")] {
            assert_eq!(
                StopMode::for_job(false, pid_mode),
                StopMode::SignalProcesses,
                "{pid_mode:?}"
            );
            assert_eq!(
                StopMode::for_job(true, pid_mode),
                StopMode::Native,
                "{pid_mode:?}"
            );
        }
    }
}
