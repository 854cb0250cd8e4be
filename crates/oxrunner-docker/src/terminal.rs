//! The Docker executor's web terminal: a `docker exec` with a TTY in the job container, as the job's user, in the
//! project directory, with the job's variables in the exec's environment (the API request, never a command line).
//!
//! The container may not run yet when a client comes (it starts with the first stage): opening waits for it, as
//! gitlab-runner does. Closing ends the shell with SIGHUP (then SIGKILL) through a second exec, since the engine has
//! no call to stop an exec. The processes to end are found by an environment marker the terminal's exec carries and
//! its children inherit, never by a pid from a file: the job can write anywhere it can write, and `/tmp` may be
//! read-only. The job container's removal ends whatever cleared its environment.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptions;
use futures::StreamExt;
use futures::future::BoxFuture;
use oxrunner_core::{ExecError, TermSize, Terminal, TerminalConn, TerminalControl};
use tokio_util::io::StreamReader;

/// How long opening waits for the job container to run (gitlab-runner: one minute).
const CONTAINER_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// The variable that marks a terminal's processes; its value is random per terminal.
const MARKER_VAR: &str = "OXRUNNER_TERMINAL";

/// The shell: bash when the image has it (interactive, not a login shell, so the job's PATH stays), else sh.
fn shell_command() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi".to_owned(),
    ]
}

/// Run as the terminal's user in the container with the marker as `$1`: hang up every process carrying it (pid 1, the container's
/// own, never), give them a second, then kill what is left. Only numbers from `/proc` reach `kill`.
const CLOSE_SCRIPT: &str = r#"sig_marked() {
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case $p in ''|*[!0-9]*) continue ;; esac
    [ "$p" -gt 1 ] || continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF "$2=$1"; then kill "-$3" "$p" 2>/dev/null; fi
  done
}
sig_marked "$1" "$2" HUP
sleep 1
sig_marked "$1" "$2" KILL"#;

/// What the executor knows when GitLab asks for a terminal.
pub(crate) struct DockerTerminal {
    pub docker: Docker,
    pub container: String,
    pub user: Option<String>,
    pub workdir: String,
    /// `KEY=value` for the exec.
    pub env: Vec<String>,
}

impl DockerTerminal {
    async fn wait_running(&self) -> Result<(), ExecError> {
        let deadline = tokio::time::Instant::now() + CONTAINER_WAIT;
        loop {
            let running = self
                .docker
                .inspect_container(&self.container, None)
                .await
                .map_err(|e| ExecError::Other(format!("inspecting the job container for the terminal: {e}")))?
                .state
                .and_then(|s| s.running)
                .unwrap_or(false);
            if running {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Other(
                    "the job container did not run within a minute; no terminal".to_owned(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Terminal for DockerTerminal {
    fn open(&self, size: TermSize) -> BoxFuture<'_, Result<TerminalConn, ExecError>> {
        Box::pin(async move {
            self.wait_running().await?;
            let marker = rand_suffix();
            let mut env = self.env.clone();
            env.push("TERM=xterm".to_owned());
            env.push(format!("{MARKER_VAR}={marker}"));
            let config = ExecConfig {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(true),
                user: self.user.clone(),
                working_dir: Some(self.workdir.clone()).filter(|d| !d.is_empty()),
                env: Some(env),
                cmd: Some(shell_command()),
                ..Default::default()
            };
            let api = |what: &'static str| {
                move |e: bollard::errors::Error| ExecError::Other(format!("{what}: {e}"))
            };
            let exec = self
                .docker
                .create_exec(&self.container, config)
                .await
                .map_err(api("creating the terminal exec"))?
                .id;
            let start = StartExecOptions {
                detach: false,
                tty: true,
                output_capacity: None,
            };
            let StartExecResults::Attached { output, input } = self
                .docker
                .start_exec(&exec, Some(start))
                .await
                .map_err(api("starting the terminal exec"))?
            else {
                return Err(ExecError::Other(
                    "the engine started the terminal detached".to_owned(),
                ));
            };
            let control = ExecControl {
                docker: self.docker.clone(),
                container: self.container.clone(),
                user: self.user.clone(),
                exec,
                marker,
            };
            // A fresh exec is 80x24 until told otherwise; the engine refuses a resize before the start.
            let _ = control.resize(size).await;
            let bytes = output.map(|item| item.map(|o| o.into_bytes()).map_err(std::io::Error::other));
            Ok(TerminalConn {
                output: Box::pin(StreamReader::new(bytes)),
                input,
                control: Box::new(control),
            })
        })
    }
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

struct ExecControl {
    docker: Docker,
    container: String,
    /// The terminal's user, whose processes closing ends.
    user: Option<String>,
    exec: String,
    marker: String,
}

/// The exec that ends a terminal: as the terminal's own user, never root. Its `sh` is the image's, the job
/// author's, so a root exec of it would give the job root in the container whenever a terminal closes; the
/// terminal's processes are that user's, so it may signal them.
fn close_exec(user: Option<&str>, marker: &str) -> ExecConfig {
    ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: user.map(str::to_owned),
        cmd: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            CLOSE_SCRIPT.to_owned(),
            "oxrunner-terminal-close".to_owned(),
            marker.to_owned(),
            MARKER_VAR.to_owned(),
        ]),
        ..Default::default()
    }
}

impl TerminalControl for ExecControl {
    fn resize(&self, size: TermSize) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async move {
            let opts = ResizeExecOptions {
                h: i32::from(size.rows),
                w: i32::from(size.cols),
            };
            self.docker
                .resize_exec(&self.exec, opts)
                .await
                .map_err(|e| ExecError::Other(format!("resizing the terminal: {e}")))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let config = close_exec(self.user.as_deref(), &self.marker);
            let Ok(exec) = self.docker.create_exec(&self.container, config).await else {
                return;
            };
            if let Ok(StartExecResults::Attached { mut output, .. }) =
                self.docker.start_exec(&exec.id, None).await
            {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    while output.next().await.is_some() {}
                })
                .await;
            }
        })
    }
}

/// The job's variables as `KEY=value` (file variables are left out: their files exist only while scripts run).
pub(crate) fn job_env(vars: &oxrunner_core::Variables) -> Vec<String> {
    vars.iter()
        .filter(|v| !v.file && !v.key.is_empty() && !v.key.contains('=') && !v.value.contains('\0'))
        .map(|v| format!("{}={}", v.key, v.value))
        .collect()
}

pub(crate) type Shared = Arc<dyn Terminal>;

/// A terminal in a running `container` (what [`crate::DockerExecutor`] offers for its job container), for callers
/// and tests that manage the container themselves.
pub fn container_terminal(
    docker: Docker,
    container: String,
    user: Option<String>,
    workdir: String,
    env: Vec<String>,
) -> Arc<dyn Terminal> {
    Arc::new(DockerTerminal {
        docker,
        container,
        user,
        workdir,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_runs_as_the_terminals_user_never_as_root() {
        let config = close_exec(Some("nobody"), "m-1");
        assert_eq!(config.user.as_deref(), Some("nobody"));
        assert_eq!(close_exec(None, "m-1").user, None);
        let cmd = config.cmd.unwrap_or_default();
        assert_eq!(cmd[3..], ["oxrunner-terminal-close", "m-1", MARKER_VAR]);
    }
}
