//! The shell executor: each stage script runs in a local bash (or sh) reading the script on stdin (a sealed memfd,
//! see [`script_stdin`]), in its own process group, and joins the job's [`JobProcesses`] (its cgroup, or its
//! environment marker), which is how processes that left the group (`setsid`, daemons) and background processes
//! of a successful job are found and killed: on cancel or timeout, before caches and artifacts are collected, and
//! in `cleanup`.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::error::ExecError;
use crate::executor::{Executor, ExitStatus, StageCommand};
use crate::jobprocs::{CgroupPlacement, JobProcesses};
use crate::outcome::FailureReason;
use crate::plan::JobPlan;
use crate::shell_terminal::{ShellTerminal, TerminalEnv, TerminalProcs};
use crate::terminal::Terminal;
use crate::trace::TraceWriter;
use crate::variables::Variables;

/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// How long output is still collected after the shell exited while background processes hold the pipe open.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

const BASH_CANDIDATES: &[&str] = &["/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash"];

/// Runs stage scripts as local processes.
#[derive(Clone, Debug)]
pub struct ShellExecutor {
    shell: PathBuf,
    is_bash: bool,
    login: bool,
    user: Option<String>,
    kill_grace: Duration,
    /// Set by the front end (which records it for start-up recovery) or created in `prepare`.
    procs: Option<JobProcesses>,
    /// The job's variables as an environment, for the web terminal.
    terminal_env: TerminalEnv,
    terminal_procs: TerminalProcs,
    /// `CI_PROJECT_DIR`: where the web terminal starts.
    project_dir: PathBuf,
}

impl Default for ShellExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ShellExecutor {
    /// Uses bash (login shell, as gitlab-runner does) or `sh` when bash is missing.
    pub fn new() -> Self {
        let bash = find_bash();
        Self {
            is_bash: bash.is_some(),
            shell: bash.unwrap_or_else(|| PathBuf::from("/bin/sh")),
            login: true,
            user: None,
            kill_grace: DEFAULT_KILL_GRACE,
            procs: None,
            terminal_env: TerminalEnv::default(),
            terminal_procs: TerminalProcs::default(),
            project_dir: PathBuf::new(),
        }
    }

    /// Tracks the job's processes with `procs` instead of a fresh tracker made in `prepare`.
    pub fn with_processes(mut self, procs: JobProcesses) -> Self {
        self.procs = Some(procs);
        self
    }

    /// Uses a specific shell binary.
    pub fn with_shell(mut self, shell: impl Into<PathBuf>) -> Self {
        self.shell = shell.into();
        self.is_bash = self
            .shell
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("bash"));
        self
    }

    /// Starts bash for user steps and after_script as a login shell (`-l`, the default) or not. Runner stages
    /// always use a non-login shell.
    pub fn with_login_shell(mut self, login: bool) -> Self {
        self.login = login;
        self
    }

    /// Runs scripts as this user (`su`; the runner must be root).
    pub fn with_user(mut self, user: Option<String>) -> Self {
        self.user = user.filter(|u| !u.is_empty());
        self
    }

    /// Time between SIGTERM and SIGKILL on cancellation.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    fn shell_name(&self) -> &'static str {
        if self.is_bash { "bash" } else { "sh" }
    }

    fn command(&self, workdir: &Path, login: bool) -> Result<Command, ExecError> {
        let shell = self.shell.to_string_lossy().into_owned();
        let mut shell_cmd = vec![shell.clone()];
        if self.is_bash && login {
            shell_cmd.push("-l".to_owned());
        }
        let mut user_env = Vec::new();
        let argv = match &self.user {
            None => shell_cmd,
            Some(user) => {
                if !nix::unistd::geteuid().is_root() {
                    return Err(ExecError::Build {
                        reason: FailureReason::RunnerConfigurationError,
                        message: format!(
                            "cannot run the job as user {user:?}: the runner is not running as root\nhint: remove `--user` or start oxrunner as root"
                        ),
                    });
                }
                let (argv, env) = as_user(user, &shell, shell_cmd)?;
                user_env = env;
                argv
            }
        };
        let argv = match &self.procs {
            Some(procs) => procs.wrap_argv(argv),
            None => argv,
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.envs(user_env);
        if let Some(procs) = &self.procs {
            procs.mark(&mut cmd);
        }
        cmd.current_dir(workdir)
            .stdin(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Ok(cmd)
    }

    async fn run_stage(
        &self,
        cmd: StageCommand,
        trace: &TraceWriter,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, ExecError> {
        // As root, making the directory by path would follow any link the job user put on the way
        // (`builds_dir` in that user's home); the trusted walk does not.
        let workdir = cmd.shell_workdir.clone();
        tokio::task::spawn_blocking(move || oxrunner_fs::Dir::create_trusted(&workdir).map(drop))
            .await
            .map_err(std::io::Error::other)
            .and_then(|made| made)
            .map_err(|source| ExecError::Io {
                context: format!("creating {}", cmd.shell_workdir.display()),
                source,
            })?;
        let io_err = |context: &str| {
            let context = context.to_owned();
            move |source| ExecError::Io { context, source }
        };
        let (tx, mut rx) = tokio::net::unix::pipe::pipe().map_err(io_err("creating the output pipe"))?;
        let out_fd: OwnedFd = tx
            .into_blocking_fd()
            .map_err(io_err("preparing the output pipe"))?;
        grow_pipe(&out_fd);
        let err_fd = out_fd.try_clone().map_err(io_err("preparing the output pipe"))?;
        // Only user steps and after_script get the login shell gitlab-runner uses: the runner's own stages
        // (prepare_script, get_sources, clear_worktree, cleanup_file_variables) are fixed scripts that need
        // nothing from a profile, and a login shell costs whatever ~/.profile does (0.45 s with `pyenv init`)
        // three or more times per job.
        let login = self.login && !cmd.predefined;
        let mut command = self.command(&cmd.shell_workdir, login)?;
        // One pipe for stdout and stderr keeps their relative order in the trace.
        command.stdout(Stdio::from(out_fd)).stderr(Stdio::from(err_fd));
        let script = cmd.script.into_bytes();
        let fed_from_file = match script_stdin(&script) {
            Ok(fd) => {
                command.stdin(Stdio::from(fd));
                true
            }
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::info!(error = %e, "stage scripts go through a pipe: no sealed memfd (slower for bash)");
                });
                false
            }
        };
        let spawned = command.spawn();
        // Our copies of the write end must be closed, or the pipe never reaches EOF.
        drop(command);
        let mut child = spawned.map_err(|source| ExecError::Spawn {
            program: self.shell.display().to_string(),
            dir: cmd.shell_workdir.clone(),
            source,
        })?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);

        let mut stdin = child.stdin.take().filter(|_| !fed_from_file);
        let feed = async move {
            if let Some(stdin) = stdin.as_mut() {
                // The shell may exit before reading everything (e.g. `exit 1` early): EPIPE is expected then.
                let _ = stdin.write_all(&script).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let feeder = tokio::spawn(feed);

        let mut buf = vec![0u8; READ_CHUNK];
        let mut eof = false;
        let mut status = None;
        let mut canceled = false;
        while status.is_none() {
            tokio::select! {
                read = rx.read(&mut buf), if !eof => match read {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => {
                        trace.write(&buf[..n]);
                        if n == buf.len() && buf.len() < PIPE_CAPACITY {
                            // A full read means a fast writer: read as much as the pipe holds from now on.
                            buf.resize(PIPE_CAPACITY, 0);
                        }
                    }
                },
                res = child.wait() => {
                    status = Some(res.map_err(io_err("waiting for the shell"))?);
                }
                _ = cancel.cancelled(), if !canceled => {
                    canceled = true;
                    if let Some(procs) = &self.procs {
                        procs.signal_all(Signal::SIGTERM).await;
                    }
                    if let Some(pgid) = pgid {
                        let st = terminate_group(&mut child, pgid, self.kill_grace).await;
                        status = Some(st.map_err(io_err("stopping the shell"))?);
                    }
                }
            }
        }
        feeder.abort();
        if let Some(pgid) = pgid.filter(|_| canceled) {
            wait_group_gone(pgid, self.kill_grace).await;
        }
        if canceled && let Some(procs) = &self.procs {
            // What left the process group (setsid) or ran in the background since an earlier stage.
            procs.kill_all().await;
        }
        // Collect what is still buffered; background processes may hold the pipe open, so bound the wait.
        let drain = async {
            while !eof {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => trace.write(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(OUTPUT_DRAIN_GRACE, drain).await;
        trace.flush();
        let status = status.unwrap_or_else(|| std::process::ExitStatus::from_raw(0));
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            (None, None) => ExitStatus::Code(-1),
        })
    }
}

/// The stage script as a sealed, seekable stdin. bash reads a pipe one byte at a time, since it must not consume
/// what a command of the script may read from stdin itself: a 6 KiB script costs about 6,000 `read` calls. From a
/// seekable file it reads blocks and seeks back to the end of each command before running it, so a command that
/// reads stdin still gets the rest of the script, exactly as from gitlab-runner's pipe. The memfd has no path,
/// and its seals stop the job from rewriting the script its own shell is reading.
fn script_stdin(script: &[u8]) -> std::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::io::{Seek, SeekFrom, Write};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Not executable (kernels since 6.3 log a notice for a memfd that does not say, and refuse one with
    // `vm.memfd_noexec = 2`); older kernels do not know the flag.
    let fd = match rustix::fs::memfd_create("oxrunner-stage-script", flags | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("oxrunner-stage-script", flags)?,
        other => other?,
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(script)?;
    file.seek(SeekFrom::Start(0))?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?;
    Ok(file.into())
}

/// Output pipe capacity asked for (Linux caps unprivileged requests at `/proc/sys/fs/pipe-max-size`, 1 MiB by
/// default). With the default 64 KiB a job printing at full speed blocks, and wakes the runner, every 64 KiB; a
/// larger pipe lets it run ahead so the runner wakes up far less often.
const PIPE_CAPACITY: usize = 1024 * 1024;

/// Initial read size. Only a stage whose reads fill it (a fast writer) gets a pipe-sized buffer: a 1 MiB buffer for
/// every stage stayed resident in the allocator after a burst of small jobs (bench: idle RSS after 200 trivial
/// jobs at concurrent = 64, anonymous 20-26 MiB vs 11 MiB), while 64 KiB reads cost a 1 GiB log about 30% more.
const READ_CHUNK: usize = 64 * 1024;

/// Best effort: a pipe that cannot grow (limit reached, other OS) still works, only with more wake-ups.
fn grow_pipe(fd: &OwnedFd) {
    #[cfg(target_os = "linux")]
    {
        let size = i32::try_from(PIPE_CAPACITY).unwrap_or(i32::MAX);
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// SIGTERM to the group, SIGKILL after `grace`; returns the shell's status.
async fn terminate_group(
    child: &mut Child,
    pgid: Pid,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let _ = killpg(pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(res) => res,
        Err(_) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// Waits until no live (non-zombie) process is left in the group, escalating to SIGKILL after `grace` (also used by
/// executors that run driver programs, so a stopped stage leaves nothing of its group behind).
pub async fn wait_group_gone(pgid: Pid, grace: Duration) {
    let start = tokio::time::Instant::now();
    let mut killed = false;
    while group_alive(pgid) {
        if !killed && start.elapsed() >= grace {
            let _ = killpg(pgid, Signal::SIGKILL);
            killed = true;
        }
        // A process stuck in uninterruptible sleep cannot be waited for forever.
        if start.elapsed() >= grace * 2 + Duration::from_secs(5) {
            tracing::warn!(pgid = pgid.as_raw(), "processes of a stopped job survive SIGKILL");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True while a process of the group is alive. Zombies do not count: they are dead and only wait for a reaper
/// that may never come (PID 1 in a container).
fn group_alive(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None).is_ok();
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may contain spaces and parentheses): state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(pgid.as_raw()) && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

/// The command line that runs `shell_cmd` as `user`, and the variables `su` would set for it.
///
/// `setpriv` (util-linux) changes uid, gid and supplementary groups without opening a PAM session: `su` runs
/// `pam_systemd` on most distributions, which moves the job's shell out of the job's cgroup into a login scope,
/// where the runner could no longer find and stop what the job leaves behind. Like non-login `su`, only HOME,
/// SHELL, USER and LOGNAME change; the rest of the environment (the job's variables come on stdin) is kept. `su`
/// remains the fallback where `setpriv` is missing. Only the shell invocation is on the command line; the script
/// (and its secrets) goes to stdin.
pub(crate) fn as_user(
    user: &str,
    shell: &str,
    shell_cmd: Vec<String>,
) -> Result<(Vec<String>, UserEnv), ExecError> {
    let Some(setpriv) = SETPRIV_CANDIDATES.iter().find(|p| Path::new(p).is_file()) else {
        let mut su = vec![
            "su".to_owned(),
            "-s".to_owned(),
            shell.to_owned(),
            user.to_owned(),
            "-c".to_owned(),
        ];
        // su hands its -c text to the shell: quote each word so arguments with spaces or quotes stay whole.
        su.push(
            shell_cmd
                .iter()
                .map(|w| sh_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        );
        return Ok((su, Vec::new()));
    };
    let account = match nix::unistd::User::from_name(user) {
        Ok(Some(account)) => account,
        Ok(None) => {
            return Err(ExecError::Build {
                reason: FailureReason::RunnerConfigurationError,
                message: format!(
                    "cannot run the job as user {user:?}: no such user\nhint: create the account (useradd {user}) or fix `--user`"
                ),
            });
        }
        Err(e) => {
            return Err(ExecError::Build {
                reason: FailureReason::RunnerSystemFailure,
                message: format!("cannot look up user {user:?}: {e}"),
            });
        }
    };
    let mut argv = vec![
        (*setpriv).to_owned(),
        format!("--reuid={}", account.uid),
        format!("--regid={}", account.gid),
        "--init-groups".to_owned(),
        "--".to_owned(),
    ];
    argv.extend(shell_cmd);
    let env = vec![
        ("HOME".to_owned(), account.dir.to_string_lossy().into_owned()),
        ("SHELL".to_owned(), shell.to_owned()),
        ("USER".to_owned(), account.name.clone()),
        ("LOGNAME".to_owned(), account.name),
    ];
    Ok((argv, env))
}

/// `word` as one single-quoted shell word.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Variables set for a `--user` stage, as `su` sets them.
type UserEnv = Vec<(String, String)>;

const SETPRIV_CANDIDATES: &[&str] = &["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"];

fn find_bash() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("bash"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    BASH_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| p.is_file())
}

impl Executor for ShellExecutor {
    fn job_variables(&mut self, vars: &Variables) {
        self.terminal_env = ShellTerminal::job_env(vars);
        self.project_dir = vars
            .value("CI_PROJECT_DIR")
            .map(PathBuf::from)
            .unwrap_or_default();
    }

    fn terminal(&self) -> Option<Arc<dyn Terminal>> {
        Some(Arc::new(ShellTerminal {
            shell: self.shell.clone(),
            is_bash: self.is_bash,
            user: self.user.clone(),
            workdir: self.project_dir.clone(),
            env: self.terminal_env.clone(),
            procs: self.terminal_procs.clone(),
        }))
    }

    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            trace.println(&format!("Using Shell ({}) executor...", self.shell_name()));
            if self.procs.is_none() {
                let name = format!("job-{}", plan.job_id);
                self.procs = Some(JobProcesses::new(&name, &CgroupPlacement::Own));
            }
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(self.run_stage(cmd, trace, cancel))
    }

    fn stop_job_processes(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some(procs) = &self.procs {
                procs.kill_all().await;
            }
        })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            self.terminal_procs.finish_all().await;
            if let Some(procs) = &self.procs {
                procs.finish().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_quoted_word_reaches_the_shell_whole() {
        for word in ["plain", "two words", "it's", "'", "$HOME \"x\" `y`", ""] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", super::sh_quote(word))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }
}
