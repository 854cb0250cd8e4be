//! One call of a driver program: its environment, where its output goes, its timeout, how it is stopped
//! (SIGTERM to its process group, SIGKILL after `graceful_kill_timeout`, give up after `force_kill_timeout`) and
//! what its exit code means.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use oxrunner_core::shell::wait_group_gone;
use oxrunner_core::{ExecError, ExitStatus, FailureReason, JobProcesses, TraceWriter};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Exit code a driver uses for a failed job script (`$BUILD_FAILURE_EXIT_CODE`).
pub const BUILD_FAILURE_EXIT_CODE: i32 = 1;
/// Exit code a driver uses for a failure of its own (`$SYSTEM_FAILURE_EXIT_CODE`).
pub const SYSTEM_FAILURE_EXIT_CODE: i32 = 2;

/// Most of a captured stream that is kept (config_exec's JSON, cleanup_exec's output for the runner's log).
const CAPTURE_LIMIT: usize = 1024 * 1024;
/// How long output is still read after the program exited while something it started holds the pipe open.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Where a stream of the program goes.
#[derive(Clone, Copy)]
pub enum Out<'a> {
    /// Into the job log (masked by the trace writer).
    Trace(&'a TraceWriter),
    /// Kept in memory (bounded) for the caller.
    Capture,
}

/// Signal timing when a call is stopped.
#[derive(Clone, Copy, Debug)]
pub struct KillTimeouts {
    /// SIGTERM → SIGKILL.
    pub graceful: Duration,
    /// SIGKILL → give up.
    pub force: Duration,
}

/// One program call.
pub struct Call<'a> {
    /// What the caller calls the program in messages (`run_exec`, `config_exec`, ...).
    pub what: &'a str,
    /// Executable.
    pub program: &'a str,
    /// Arguments (never secrets: those go into `env`).
    pub args: &'a [String],
    /// Added to the runner's own environment.
    pub env: &'a [(String, String)],
    /// Working directory.
    pub dir: &'a Path,
    /// Destination of stdout.
    pub stdout: Out<'a>,
    /// Destination of stderr.
    pub stderr: Out<'a>,
    /// The call is stopped after this long.
    pub timeout: Option<Duration>,
    /// Stops the call when fired.
    pub cancel: CancellationToken,
    /// Signal timing for stopping.
    pub kill: KillTimeouts,
    /// The job's process tracking: the program joins it (what is left of the job is killed after cleanup_exec).
    pub procs: Option<&'a JobProcesses>,
    /// Where a call whose future is dropped registers its stopping thread (so cleanup_exec can wait for it).
    pub stops: Option<&'a BackgroundStops>,
}

/// The threads stopping dropped calls of one job.
#[derive(Clone, Debug, Default)]
pub struct BackgroundStops(std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>);

impl BackgroundStops {
    fn push(&self, handle: std::thread::JoinHandle<()>) {
        if let Ok(mut list) = self.0.lock() {
            list.push(handle);
        }
    }

    /// Waits until every dropped call's group is stopped (each thread ends after at most graceful + force).
    pub async fn wait(&self) {
        let handles: Vec<_> = match self.0.lock() {
            Ok(mut list) => list.drain(..).collect(),
            Err(_) => return,
        };
        if handles.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }
}

/// Why a call was stopped before it ended by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// `cancel` fired.
    Canceled,
    /// `timeout` passed.
    TimedOut(Duration),
}

/// How a call ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit status of the program.
    pub status: ExitStatus,
    /// Captured stdout (empty unless `Out::Capture`).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty unless `Out::Capture`).
    pub stderr: Vec<u8>,
    /// Set when the runner stopped the program.
    pub stopped: Option<Stopped>,
}

/// The running program. If the call's future is dropped mid-way (the driver stopped waiting: a cancel or timeout
/// of config_exec or prepare_exec), its process group is stopped the same graceful way as a canceled call, on a
/// thread of its own, instead of a SIGKILL at once: a driver's `trap ... TERM` still gets to clean up.
struct Running {
    child: Option<Child>,
    /// Copies of the read ends of stdout and stderr: a stopped driver that prints (bash reporting its killed
    /// `sleep`) must not die of SIGPIPE before its trap ran, so the stopping thread keeps reading (and drops) it.
    pipes: Vec<std::os::fd::OwnedFd>,
    pgid: Option<Pid>,
    kill: KillTimeouts,
    stops: Option<BackgroundStops>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let (Some(child), Some(pgid)) = (self.child.take(), self.pgid) else {
            return;
        };
        // The thread reaps the leader itself: tokio must not reap it (and free its pid, which is the group's id)
        // while the group is still being signalled.
        std::mem::forget(child);
        let thread = stop_in_background(pgid, self.kill, std::mem::take(&mut self.pipes));
        if let (Some(stops), Some(thread)) = (&self.stops, thread) {
            stops.push(thread);
        }
    }
}

/// SIGTERM to the group, SIGKILL after `graceful`, give up after `force`; the group leader is reaped here.
fn stop_in_background(
    pgid: Pid,
    kill: KillTimeouts,
    pipes: Vec<std::os::fd::OwnedFd>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("oxrunner-stop-driver-call".into())
        .spawn(move || {
            let _ = killpg(pgid, Signal::SIGTERM);
            if reaped_within(pgid, kill.graceful, &pipes) {
                return;
            }
            let _ = killpg(pgid, Signal::SIGKILL);
            if !reaped_within(pgid, kill.force, &pipes) {
                tracing::warn!(
                    pgid = pgid.as_raw(),
                    "a stopped driver call still runs {}s after SIGKILL; the runner gives up waiting for it",
                    kill.force.as_secs()
                );
            }
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(err) => {
            // Without a thread the group cannot get its grace period; it must not be left running either.
            tracing::warn!(error = %err, "no thread to stop a driver call gracefully; killing it");
            let _ = killpg(pgid, Signal::SIGKILL);
            None
        }
    }
}

/// Polls (on its own thread, never a runtime's) until `pid` exited and was reaped, reading away what the group
/// prints meanwhile (the pipes are non-blocking: tokio set them so).
fn reaped_within(pid: Pid, limit: Duration, pipes: &[std::os::fd::OwnedFd]) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let end = std::time::Instant::now() + limit;
    let mut sink = [0u8; 16 * 1024];
    loop {
        for fd in pipes {
            while matches!(nix::unistd::read(fd, &mut sink), Ok(n) if n > 0) {}
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // Exited (now reaped), or not a child of ours any more: nothing is left to wait for.
            _ => return true,
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Call<'_> {
    fn command(&self) -> Command {
        let mut argv = vec![self.program.to_owned()];
        argv.extend(self.args.iter().cloned());
        let argv = match self.procs {
            Some(procs) => procs.wrap_argv(argv),
            None => argv,
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(procs) = self.procs {
            procs.mark(&mut cmd);
        }
        cmd.current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        cmd
    }

    /// Runs the program to its end, or stops it (cancel, timeout) and waits until nothing of its group runs.
    pub async fn run(self) -> Result<Finished, ExecError> {
        let mut child = self.command().spawn().map_err(|source| ExecError::Build {
            reason: FailureReason::RunnerSystemFailure,
            message: format!(
                "starting {} `{}` failed: {source}\nhint: check [runners.custom] {}: the program must exist and be \
                 executable by the runner user",
                self.what, self.program, self.what
            ),
        })?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let pipes = [
            stdout.as_ref().map(std::os::fd::AsFd::as_fd),
            stderr.as_ref().map(std::os::fd::AsFd::as_fd),
        ]
        .into_iter()
        .flatten()
        .filter_map(|fd| fd.try_clone_to_owned().ok())
        .collect();
        let mut running = Running {
            child: Some(child),
            pipes,
            pgid,
            kill: self.kill,
            stops: self.stops.cloned(),
        };
        let child = running
            .child
            .as_mut()
            .ok_or_else(|| ExecError::Other(format!("{} lost its process", self.what)))?;
        let reading = async {
            let (a, b) = tokio::join!(pump(stdout, self.stdout), pump(stderr, self.stderr));
            (a, b)
        };
        tokio::pin!(reading);
        let mut output = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline = self.timeout.map_or(far, |t| tokio::time::Instant::now() + t);
        let mut stopped = None;
        let status = loop {
            tokio::select! {
                out = &mut reading, if output.is_none() => output = Some(out),
                res = child.wait() => break res.map_err(|source| ExecError::Io {
                    context: format!("waiting for {} `{}`", self.what, self.program),
                    source,
                })?,
                _ = self.cancel.cancelled(), if stopped.is_none() => stopped = Some(Stopped::Canceled),
                _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                    stopped = self.timeout.map(Stopped::TimedOut);
                }
            }
            if stopped.is_some() {
                break self.stop(child, pgid).await?;
            }
        };
        // Reaped: nothing is left for the drop to stop.
        running.child = None;
        running.pipes.clear();
        // Only this call's group: what an earlier call (prepare_exec) started to live until cleanup_exec stays;
        // the job's leftovers are killed after cleanup_exec.
        if let (Some(pgid), Some(_)) = (pgid, stopped) {
            wait_group_gone(pgid, self.kill.force).await;
        }
        let (stdout, stderr) = match output {
            Some(out) => out,
            None => tokio::time::timeout(OUTPUT_DRAIN_GRACE, reading)
                .await
                .unwrap_or_default(),
        };
        if let Out::Trace(trace) = self.stdout {
            trace.flush();
        }
        Ok(Finished {
            status: match (status.code(), status.signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(sig)) => ExitStatus::Signal(sig),
                (None, None) => ExitStatus::Code(-1),
            },
            stdout,
            stderr,
            stopped,
        })
    }

    /// SIGTERM to the group, SIGKILL after the graceful timeout, an error after the force timeout.
    async fn stop(
        &self,
        child: &mut Child,
        pgid: Option<Pid>,
    ) -> Result<std::process::ExitStatus, ExecError> {
        let Some(pgid) = pgid else {
            return child.wait().await.map_err(|source| ExecError::Io {
                context: format!("waiting for {}", self.what),
                source,
            });
        };
        let _ = killpg(pgid, Signal::SIGTERM);
        if let Ok(res) = tokio::time::timeout(self.kill.graceful, child.wait()).await {
            return res.map_err(|source| ExecError::Io {
                context: format!("stopping {}", self.what),
                source,
            });
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        match tokio::time::timeout(self.kill.force, child.wait()).await {
            Ok(res) => res.map_err(|source| ExecError::Io {
                context: format!("stopping {}", self.what),
                source,
            }),
            Err(_) => Err(ExecError::Other(format!(
                "{} (PID {}) still runs {}s after SIGKILL; the runner gives up waiting for it\nhint: a process \
                 stuck in the kernel (uninterruptible I/O) cannot be killed; check the driver's host",
                self.what,
                pgid.as_raw(),
                self.kill.force.as_secs()
            ))),
        }
    }
}

/// Copies a stream into its destination; returns what was captured.
async fn pump(stream: Option<impl AsyncRead + Unpin>, out: Out<'_>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => match out {
                Out::Trace(trace) => trace.write(&buf[..n]),
                Out::Capture => {
                    let room = CAPTURE_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            },
        }
    }
}

/// What a driver's exit means (gitlab-runner's custom executor contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Exit code 0.
    Success,
    /// `$BUILD_FAILURE_EXIT_CODE`: the job's script failed, with this exit code for the job.
    BuildFailure(i32),
    /// `$SYSTEM_FAILURE_EXIT_CODE`, any other code, a signal or an unreadable exit-code file: the runner's side
    /// failed (reported as `runner_system_failure`).
    SystemFailure(String),
}

/// Maps a driver's exit status. `code_file` is the content of `$BUILD_EXIT_CODE_FILE`, if the driver wrote it:
/// its first line replaces the job's exit code on a build failure.
pub fn verdict(status: ExitStatus, code_file: Option<&str>) -> Verdict {
    match status {
        ExitStatus::Code(0) => Verdict::Success,
        ExitStatus::Code(BUILD_FAILURE_EXIT_CODE) => match code_file {
            None => Verdict::BuildFailure(BUILD_FAILURE_EXIT_CODE),
            Some(text) => match text.lines().next().map(str::trim).and_then(|l| l.parse().ok()) {
                Some(code) => Verdict::BuildFailure(code),
                None => Verdict::SystemFailure(unknown(SYSTEM_FAILURE_EXIT_CODE, &status)),
            },
        },
        ExitStatus::Code(SYSTEM_FAILURE_EXIT_CODE) => Verdict::SystemFailure(status.to_string()),
        ExitStatus::Code(code) => Verdict::SystemFailure(unknown(code, &status)),
        ExitStatus::Signal(_) => Verdict::SystemFailure(unknown(-1, &status)),
    }
}

fn unknown(code: i32, status: &ExitStatus) -> String {
    format!(
        "unknown Custom executor executable exit code {code}; executable execution terminated with: {status}\n\
         hint: a driver exits with $BUILD_FAILURE_EXIT_CODE when the job's script failed and with \
         $SYSTEM_FAILURE_EXIT_CODE when it failed itself"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash<'a>(script: &'a [String], dir: &'a Path, cancel: &CancellationToken) -> Call<'a> {
        Call {
            what: "run_exec",
            program: "bash",
            args: script,
            env: &[],
            dir,
            stdout: Out::Capture,
            stderr: Out::Capture,
            timeout: None,
            cancel: cancel.clone(),
            kill: KillTimeouts {
                graceful: Duration::from_millis(300),
                force: Duration::from_secs(5),
            },
            procs: None,
            stops: None,
        }
    }

    async fn wait_lines(path: &Path, n: usize) -> Vec<i32> {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.len() >= n {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn alive(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rfind(')')
            .is_some_and(|i| !matches!(stat[i + 1..].split_whitespace().next(), Some("Z" | "X")))
    }

    /// Cancel: SIGTERM to the whole group first (the trap runs), then SIGKILL for the program that ignored it; the
    /// call returns only once nothing of the group is left.
    #[tokio::test]
    async fn cancel_terms_the_group_then_kills_what_ignores_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let log = dir.path().join("trap.log");
        let script = vec![
            "-c".to_owned(),
            format!(
                "trap 'echo term >> {l}' TERM; echo $$ > {p}; sleep 300 & echo $! >> {p}; while :; do sleep 0.05; done",
                l = log.display(),
                p = pids.display()
            ),
        ];
        let cancel = CancellationToken::new();
        let (done, pids) = tokio::join!(bash(&script, dir.path(), &cancel).run(), async {
            let pids = wait_lines(&pids, 2).await;
            cancel.cancel();
            pids
        });
        let done = done.unwrap();
        assert_eq!(done.stopped, Some(Stopped::Canceled));
        assert_eq!(
            done.status,
            ExitStatus::Signal(9),
            "SIGTERM was ignored, so SIGKILL ended it"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().trim(), "term");
        for pid in pids {
            assert!(!alive(pid), "{pid} of the stopped group still runs");
        }
    }

    /// The driver drops a config_exec/prepare_exec future (the job was canceled or timed out): the group still gets
    /// SIGTERM first (its trap runs) instead of SIGKILL at once.
    #[tokio::test]
    async fn a_dropped_call_terms_its_group_before_any_kill() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let log = dir.path().join("trap.log");
        let script = vec![
            "-c".to_owned(),
            format!(
                "trap 'echo term >> {l}; exit 0' TERM; echo $$ > {p}; while :; do sleep 0.05; done",
                l = log.display(),
                p = pids.display()
            ),
        ];
        let cancel = CancellationToken::new();
        let pid = tokio::select! {
            res = bash(&script, dir.path(), &cancel).run() => panic!("the call ended by itself: {res:?}"),
            pids = wait_lines(&pids, 1) => pids[0],
        };
        // The future is gone; the group is stopped on its own thread.
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            std::fs::read_to_string(&log).unwrap_or_default().trim(),
            "term",
            "the dropped call's group was killed without SIGTERM"
        );
    }

    /// Stopping one call stops its own group only: what an earlier call of the job (prepare_exec) started to live
    /// until cleanup_exec survives; the job's end removes it.
    #[tokio::test]
    async fn stopping_a_call_leaves_what_an_earlier_call_started() {
        let dir = tempfile::tempdir().unwrap();
        let procs = JobProcesses::new("oxrt-custom-call", &oxrunner_core::CgroupPlacement::Own);
        let vm = dir.path().join("vm.pid");
        let prepare = vec![
            "-c".to_owned(),
            format!("nohup sleep 300 >/dev/null 2>&1 & echo $! > {}", vm.display()),
        ];
        let cancel = CancellationToken::new();
        let mut call = bash(&prepare, dir.path(), &cancel);
        call.procs = Some(&procs);
        assert_eq!(call.run().await.unwrap().status, ExitStatus::Code(0));
        let vm_pid = wait_lines(&vm, 1).await[0];

        let started = dir.path().join("run.pid");
        let run = vec![
            "-c".to_owned(),
            format!("echo $$ > {}; while :; do sleep 0.05; done", started.display()),
        ];
        let mut call = bash(&run, dir.path(), &cancel);
        call.procs = Some(&procs);
        let (done, _) = tokio::join!(call.run(), async {
            wait_lines(&started, 1).await;
            cancel.cancel();
        });
        assert_eq!(done.unwrap().stopped, Some(Stopped::Canceled));
        assert!(
            alive(vm_pid),
            "stopping run_exec killed what prepare_exec started"
        );

        procs.finish().await;
        assert!(!alive(vm_pid), "the job's end left {vm_pid} running");
    }

    #[tokio::test]
    async fn timeout_stops_the_program_and_output_is_captured() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![
            "-c".to_owned(),
            "echo out; echo err >&2; exec sleep 300".to_owned(),
        ];
        let cancel = CancellationToken::new();
        let mut call = bash(&script, dir.path(), &cancel);
        call.timeout = Some(Duration::from_millis(300));
        let done = call.run().await.unwrap();
        assert_eq!(done.stopped, Some(Stopped::TimedOut(Duration::from_millis(300))));
        assert_eq!(done.status, ExitStatus::Signal(15));
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_system_failure_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let mut call = bash(&[], dir.path(), &cancel);
        call.program = "/nonexistent/oxrunner-driver";
        let err = call.run().await.unwrap_err();
        assert_eq!(err.reason(), FailureReason::RunnerSystemFailure);
        assert!(err.to_string().contains("\nhint: "), "{err}");
    }

    #[test]
    fn exit_codes_map_as_gitlab_runner_maps_them() {
        assert_eq!(verdict(ExitStatus::Code(0), None), Verdict::Success);
        assert_eq!(verdict(ExitStatus::Code(1), None), Verdict::BuildFailure(1));
        assert_eq!(
            verdict(ExitStatus::Code(1), Some("42\nx")),
            Verdict::BuildFailure(42)
        );
        assert_eq!(
            verdict(ExitStatus::Code(1), Some(" 7 \n")),
            Verdict::BuildFailure(7)
        );
        let Verdict::SystemFailure(msg) = verdict(ExitStatus::Code(1), Some("not a number")) else {
            panic!("an unreadable exit-code file is a system failure");
        };
        assert!(msg.contains("exit code 2"), "{msg}");
        assert_eq!(
            verdict(ExitStatus::Code(2), Some("42")),
            Verdict::SystemFailure("exit status 2".into())
        );
        let Verdict::SystemFailure(msg) = verdict(ExitStatus::Code(3), None) else {
            panic!("an unknown exit code is a system failure");
        };
        assert!(
            msg.starts_with("unknown Custom executor executable exit code 3;"),
            "{msg}"
        );
        assert!(msg.contains("\nhint: "), "{msg}");
        assert!(matches!(
            verdict(ExitStatus::Signal(9), None),
            Verdict::SystemFailure(_)
        ));
    }
}
