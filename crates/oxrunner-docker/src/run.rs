//! Running one stage: an exec in the (running) job container, the script fed on stdin, the output streamed.
//!
//! The job container is started once, with a shell blocking on its terminal as the main process, and every
//! stage is an exec in it: a container start costs far more than an exec. Compared with gitlab-runner, which
//! restarts the container for every stage:
//! - processes a stage leaves running in the background are killed when it ends (each exec is a session of its
//!   own and the stage wrapper kills what is left of it), but one that moved to another session (`setsid`, a
//!   daemon) survives into the next stage, where a container restart would have killed it;
//! - the environment the image ENTRYPOINT sets up reaches only the main process, not the stage shells.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{KillContainerOptions, WaitContainerOptions};
use futures::StreamExt;
use oxrunner_core::{CancellationToken, ExitStatus, StageCommand, TraceWriter};
use tokio::io::AsyncWriteExt;

use crate::error::DockerError;
use crate::health;
use crate::stop::{self, StopMode};

/// The container command: exec the first shell found, preferring bash (scripts use bash features when present)
/// and falling back to POSIX sh and busybox. The job container runs it on a terminal nobody writes to, so it
/// just keeps the container alive.
pub const DETECT_SHELL: &str = "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; do if [ -x \"$s\" ]; then exec \"$s\"; fi; done; echo 'oxrunner: no shell (bash or sh) found in the image' >&2; exit 1";

/// Each stage's exec: stderr joined to stdout, the same shell choice, the shell reading the script on stdin as a
/// child, then every other process still in the exec's session killed (runc makes each exec a session leader) so
/// that background jobs end with their stage, as they do when the container stops. Builtins only: the image may
/// have nothing else. Field 4 after the command name in `/proc/<pid>/stat` is the session id; zombies are already
/// dead.
///
/// The wrapper outlives a SIGTERM the runner sends to every process on cancel (`stop.rs`): the trap only notes it,
/// and after a cancel the wrapper leaves the remaining processes alone, so that a job's own SIGTERM trap can still
/// finish writing to the log; the runner kills the container once the stage has ended. The trap is a handler, not
/// an ignore, so the job's shell starts with SIGTERM at its default.
///
/// Why `exec 2>&1`: the engine reads an exec's stdout and stderr from two pipes, each copied on its own, so lines
/// the job wrote alternately to the two reach the log out of order. With one pipe for both, as the shell executor
/// has, the log keeps the order of the job's writes. (gitlab-runner copies both streams into the trace too, with
/// the same loss of order.)
const STAGE_SHELL: &str = concat!(
    "exec 2>&1; oxr_term=; trap oxr_term=1 TERM; ",
    "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; ",
    "do [ -x \"$s\" ] && break; s=; done; ",
    "if [ -z \"$s\" ]; then echo 'oxrunner: no shell (bash or sh) found in the image' >&2; exit 1; fi; ",
    "\"$s\"; rc=$?; [ -n \"$oxr_term\" ] && exit $rc; ",
    "read -r me < /proc/$$/stat && set -- ${me##*)} && [ \"$4\" = $$ ] || exit $rc; ",
    "n=0; while [ $n -lt 50 ]; do n=$((n+1)); k=; ",
    "for d in /proc/[0-9]*; do p=${d#/proc/}; [ \"$p\" = $$ ] && continue; ",
    "read -r st < \"$d/stat\" 2>/dev/null || continue; set -- ${st##*)}; ",
    "[ \"$4\" = $$ ] && [ \"$1\" != Z ] && kill -9 \"$p\" 2>/dev/null && k=1; done; ",
    "[ -z \"$k\" ] && break; done; exit $rc"
);

/// Who a stage's exec runs as, and the soft `nofile` limit its shell puts back before the script runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageExec<'a> {
    /// `None` keeps the container's user.
    pub user: Option<&'a str>,
    /// The configured soft limit of `ulimit = {nofile = "soft:hard"}`.
    pub nofile_soft: Option<i64>,
    /// How the stage is stopped on cancel.
    pub stop: StopMode,
}

/// The command of a stage's exec: [`STAGE_SHELL`], after setting the configured soft `nofile` limit again.
///
/// Why: the container's own process gets the configured limits, but an exec's process can start with its soft
/// `nofile` limit raised to the hard one. runc before 1.1.13 / 1.2 (built with Go 1.19 or later, e.g. Debian 12's
/// 1.1.5) sets an exec's limits from outside while the Go runtime of its `runc init` raises its own soft limit
/// to the hard one, and whichever comes last wins (opencontainers/runc#4195); measured here: 15 of 200 plain
/// `docker exec sh -c 'ulimit -n'` printed the hard limit. gitlab-runner runs each stage as the container's
/// own process, so its jobs always see the configured soft limit. Lowering a soft limit needs no privilege, so
/// this works for any job user; a failure is ignored and leaves the engine's value.
pub fn stage_command(nofile_soft: Option<i64>) -> String {
    match nofile_soft.filter(|n| *n >= 0) {
        Some(n) => format!("ulimit -S -n {n} 2>/dev/null; {STAGE_SHELL}"),
        None => STAGE_SHELL.to_owned(),
    }
}

/// What a docker CLI in the job prints when no daemon answers.
const NO_DAEMON: &[u8] = b"Cannot connect to the Docker daemon at";

/// The hint printed after a failed stage whose output showed "Cannot connect to the Docker daemon at" (the
/// seed's question: a `docker` command in a job of the Docker executor).
pub const NO_DAEMON_HINT: &str = "hint: the job container has no Docker daemon of its own, so `docker` commands in the job find none.\n\
hint: either share the host's daemon: add \"/var/run/docker.sock:/var/run/docker.sock\" to [runners.docker] volumes in config.toml,\n\
hint: or run Docker-in-Docker: add a `docker:dind` service to the job, set privileged = true in [runners.docker], and set the job variables DOCKER_HOST=tcp://docker:2375 and DOCKER_TLS_CERTDIR=\"\"";

/// Looks for a fixed byte string in a stream of chunks, also across chunk boundaries, keeping only a tail
/// shorter than the needle.
#[derive(Debug)]
pub(crate) struct Scanner {
    needle: &'static [u8],
    tail: Vec<u8>,
    found: bool,
}

impl Scanner {
    pub(crate) fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            tail: Vec::with_capacity(needle.len()),
            found: false,
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.found || chunk.is_empty() {
            return;
        }
        let keep = self.needle.len().saturating_sub(1);
        // Only a match that straddles the boundary needs the tail: it starts in the tail and ends in the
        // first `keep` bytes of the chunk.
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(&chunk[..chunk.len().min(keep)]);
        if Self::contains(&joined, self.needle) || Self::contains(chunk, self.needle) {
            self.found = true;
            return;
        }
        let source: &[u8] = if chunk.len() >= keep { chunk } else { &joined };
        self.tail = source[source.len().saturating_sub(keep)..].to_vec();
    }

    pub(crate) fn found(&self) -> bool {
        self.found
    }
}

/// The bytes fed to the shell: enter the stage directory (creating it), then the stage script.
fn stdin_payload(cmd: &StageCommand) -> Vec<u8> {
    let dir = cmd.shell_workdir.to_string_lossy();
    let quoted = shlex::try_quote(&dir)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| {
            // try_quote only fails on NUL bytes, which no path can hold; keep a safe fallback anyway.
            "/".to_owned()
        });
    let mut out = format!("mkdir -p {quoted} && cd {quoted} || exit 1\n").into_bytes();
    out.extend_from_slice(cmd.script.as_bytes());
    if !cmd.script.ends_with('\n') {
        out.push(b'\n');
    }
    out
}

/// Kills the job container and returns once the engine has it stopped, so nothing of the stage runs any more.
pub(crate) async fn kill(docker: &Docker, container: &str) {
    let opts = KillContainerOptions {
        signal: "KILL".to_owned(),
    };
    // 409 (not running) and 404 (gone) both mean there is nothing left to stop.
    if let Err(e) = docker.kill_container(container, Some(opts)).await {
        tracing::debug!(error = %e, container, "killing the job container");
    }
    // The default condition ("not-running") answers at once for a stopped container.
    let mut wait = docker.wait_container(container, None::<WaitContainerOptions>);
    if let Some(Err(e)) = wait.next().await
        && !matches!(e, bollard::errors::Error::DockerContainerWaitError { .. })
    {
        tracing::debug!(error = %e, container, "waiting for the killed job container");
    }
}

/// How the exec ended. Its output can end before it does (it may close stdout and stderr and go on), and the
/// engine may record the exit a moment after the output ends, so this polls; `None` when `cancel` fired first.
async fn exec_exit(
    docker: &Docker,
    exec: &str,
    cancel: &CancellationToken,
) -> Result<Option<i64>, DockerError> {
    let mut pause = Duration::from_millis(2);
    loop {
        let info = match docker.inspect_exec(exec).await {
            Ok(info) => info,
            // The engine drops an exec's record when its container stops: the exit is unknown, and the caller
            // finds the stopped container.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Ok(Some(-1));
            }
            Err(e) => return Err(DockerError::api(format!("inspecting exec {exec}"))(e)),
        };
        if info.running != Some(true) {
            return Ok(Some(info.exit_code.unwrap_or(-1)));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Ok(None),
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn is_conflict(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }
    )
}

/// The stage could not run because the container's main process ended (no shell in the image, an ENTRYPOINT
/// that does not run the command it is given, the memory limit): its output and exit code go to the trace.
async fn main_process_ended(docker: &Docker, container: &str, trace: &TraceWriter) -> ExitStatus {
    let code = match docker.inspect_container(container, None).await {
        Ok(info) => info.state.and_then(|s| s.exit_code).unwrap_or(-1),
        Err(e) => {
            tracing::debug!(error = %e, container, "inspecting the stopped job container");
            -1
        }
    };
    let logs = health::recent_logs(docker, container).await;
    if !logs.is_empty() {
        trace.println(&logs);
    }
    trace.println(&format!(
        "oxrunner: the job container's main process ended (exit code {code}), so the stage could not run to its end"
    ));
    trace.println("hint: the image needs sh or bash, and an image ENTRYPOINT must end by running the command it is given (exec \"$@\"); override it with the job's image:entrypoint: [\"\"] otherwise");
    ExitStatus::Code(i32::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1))
}

/// The exec of one stage: its script comes on stdin, its output back on the attached streams.
fn exec_config(how: &StageExec<'_>) -> ExecConfig {
    ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        // Environment, working directory and (by default) user are the container's, as when the stage ran
        // as the container's own command.
        user: how.user.map(str::to_owned),
        cmd: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            stage_command(how.nofile_soft),
        ]),
        ..Default::default()
    }
}

/// Runs `cmd` in the job container, starting it first unless `running` (set on return to whether it still
/// runs). On `cancel` the container is killed; the call returns once it has stopped, and the next stage starts
/// it again.
pub async fn run_stage(
    docker: &Docker,
    container: &str,
    how: StageExec<'_>,
    running: &mut bool,
    cmd: &StageCommand,
    trace: &TraceWriter,
    cancel: CancellationToken,
) -> Result<ExitStatus, DockerError> {
    if !*running {
        docker
            .start_container(container, None)
            .await
            .map_err(DockerError::api(format!("starting container {container}")))?;
        *running = true;
    }
    let exec = match docker.create_exec(container, exec_config(&how)).await {
        Ok(exec) => exec.id,
        Err(e) if is_conflict(&e) => {
            *running = false;
            return Ok(main_process_ended(docker, container, trace).await);
        }
        Err(e) => {
            return Err(DockerError::api(format!(
                "creating an exec in container {container}"
            ))(e));
        }
    };
    let started = match docker.start_exec(&exec, None).await {
        Ok(started) => started,
        // The main process can end between the exec's creation and its start (an entrypoint that exits at once);
        // the engine then refuses the start (a 409 or, from older engines, a 500), and the stage failed like above.
        Err(e) if !container_runs(docker, container).await => {
            tracing::debug!(error = %e, container, "starting a stage after the main process ended");
            *running = false;
            return Ok(main_process_ended(docker, container, trace).await);
        }
        Err(e) => return Err(DockerError::api(format!("starting exec {exec}"))(e)),
    };
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(DockerError::Io {
            context: format!("starting exec {exec}"),
            source: std::io::Error::other("the engine started the stage detached, without its output"),
        });
    };

    // Fed from its own task: a script larger than the pipe buffer must not block reading the output.
    let payload = stdin_payload(cmd);
    let feeder = tokio::spawn(async move {
        let _ = input.write_all(&payload).await;
        let _ = input.shutdown().await;
    });

    let mut stopping = None;
    let mut no_daemon = Scanner::new(NO_DAEMON);
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message })) => {
                    no_daemon.feed(&message);
                    trace.write(&message);
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, container, "exec output stream ended with an error");
                    break;
                }
                None => break,
            },
            _ = cancel.cancelled(), if stopping.is_none() => {
                stopping = Some(stop::begin(docker, container, how.stop, how.user));
            }
        }
    }
    feeder.abort();
    let canceled = stopping.is_some();
    if let Some(stopping) = stopping {
        stop::finish(docker, container, how.stop, stopping).await;
        *running = false;
    }
    trace.flush();
    let code = if canceled {
        None
    } else {
        exec_exit(docker, &exec, &cancel).await?
    };
    let Some(code) = code else {
        if *running {
            kill(docker, container).await;
            *running = false;
        }
        return Ok(ExitStatus::Signal(9));
    };
    if code != 0 && main_process_gone(docker, container, code).await {
        // The main process ended under the stage (an ENTRYPOINT that exits, the memory limit): the stage died
        // with it, and the next stage needs the container started again.
        *running = false;
        return Ok(main_process_ended(docker, container, trace).await);
    }
    if code != 0 && no_daemon.found() {
        for line in NO_DAEMON_HINT.lines() {
            trace.println(line);
        }
    }
    Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(-1)))
}

/// How long a stage that ended as the engine ends one under a dying container waits for the engine to record the
/// end of the main process.
const MAIN_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Whether the main process has ended, after a stage that failed with `code`. When the main process ends, every
/// other process of the container is killed (the stage exits 137), or the stage's process cannot be started any
/// more (126), and the engine may record the stage's end a moment before the container's. For those two codes this
/// waits, bounded, for the container to stop, so that the stage is reported with the main process's exit code and
/// the hint rather than a bare 137 or 126; a script that itself ends so pays the wait on that failure only.
async fn main_process_gone(docker: &Docker, container: &str, code: i64) -> bool {
    if !container_runs(docker, container).await {
        return true;
    }
    if !matches!(code, 126 | 137) {
        return false;
    }
    let mut wait = docker.wait_container(container, None::<WaitContainerOptions>);
    // Its answer (stopped, an error for a non-zero exit code, or the grace running out) only ends the wait; the
    // state is read again either way.
    let _ = tokio::time::timeout(MAIN_EXIT_GRACE, wait.next()).await;
    !container_runs(docker, container).await
}

async fn container_runs(docker: &Docker, container: &str) -> bool {
    match docker.inspect_container(container, None).await {
        Ok(info) => info.state.and_then(|s| s.running).unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut s = Scanner::new(NO_DAEMON);
        for c in chunks {
            s.feed(c);
        }
        s.found()
    }

    #[test]
    fn finds_the_daemon_message_across_chunks() {
        let msg: &[u8] =
            b"x\nCannot connect to the Docker daemon at unix:///var/run/docker.sock. Is it running?\n";
        assert!(scan(&[msg]));
        for split in 1..msg.len() {
            assert!(scan(&[&msg[..split], &msg[split..]]), "split at {split}");
        }
        // One byte at a time: the tail must carry the whole prefix.
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert!(scan(&bytes));
        assert!(!scan(&[b"Cannot connect to the Docker", b" registry at all"]));
        assert!(!scan(&[b"Cannot connect to the ", b"", b"Docker daemon"]));
    }

    /// The engine may start a stage's exec with the soft `nofile` limit raised to the hard one (runc#4195):
    /// here the parent shell does that on purpose before running the exec's command, which must put the
    /// configured soft limit back for the job's script (read on stdin, as in the container).
    #[test]
    fn the_stage_shell_puts_the_configured_soft_nofile_limit_back() {
        let hard: i64 = String::from_utf8(
            std::process::Command::new("sh")
                .args(["-c", "ulimit -H -n"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        assert!(
            hard > 64,
            "the test needs a hard nofile limit above 64, not {hard}"
        );
        let soft = hard / 2;
        let raise_then_run = r#"ulimit -S -n "$(ulimit -H -n)"; exec sh -c "$1""#;
        let out = |nofile_soft: Option<i64>| {
            let mut child = std::process::Command::new("sh")
                .args(["-c", raise_then_run, "raise", &stage_command(nofile_soft)])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"ulimit -S -n\n").unwrap();
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert_eq!(out(Some(soft)), soft.to_string());
        // Without a configured limit the engine's value stays.
        assert_eq!(out(None), hard.to_string());
    }

    #[test]
    fn the_tail_stays_small() {
        let mut s = Scanner::new(NO_DAEMON);
        s.feed(&[b'a'; 100_000]);
        assert!(s.tail.len() < NO_DAEMON.len());
        s.feed(b"bc");
        assert!(s.tail.len() < NO_DAEMON.len());
    }
}
