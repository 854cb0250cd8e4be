//! The shell executor's web terminal: an interactive bash on a fresh pseudo-terminal, as the job's user, in the
//! project directory, with the job's variables in its environment (never on its command line).
//!
//! The shell gets its own session (`setsid --ctty`) and its own process tracking (a [`JobProcesses`]: cgroup or
//! environment marker), not the job's: the driver stops the job's processes before collecting artifacts, while the
//! terminal is meant to stay open until the job ends. Closing the terminal kills everything tracked, because
//! `bash -i` puts background jobs in process groups of their own, out of reach of a hangup of the shell's group.
//!
//! With `--user` the shell starts in `/` and changes to the project directory only after the privilege drop: the
//! job user can replace `CI_PROJECT_DIR` with a link, and root entering it first would hand the user a working
//! directory it could not reach by itself.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, Command};

use crate::error::ExecError;
use crate::jobprocs::{CgroupPlacement, JobProcesses};
use crate::terminal::{TermSize, Terminal, TerminalConn, TerminalControl};
use crate::variables::Variables;

/// How long the terminal's shell has to exit after SIGHUP before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
const SETSID_CANDIDATES: &[&str] = &["/usr/bin/setsid", "/bin/setsid"];
/// Run as the job's user: enter the project directory (`/` when it cannot), then become the shell.
const CD_SCRIPT: &str = r#"cd -- "$1" 2>/dev/null || cd /; shift; exec "$@""#;

/// The process tracking of every terminal opened for a job, so the executor's cleanup can end what a terminal
/// left behind even when its close never ran.
#[derive(Clone, Default, Debug)]
pub(crate) struct TerminalProcs(Arc<Mutex<Vec<JobProcesses>>>);

impl TerminalProcs {
    fn track(&self, procs: JobProcesses) {
        if let Ok(mut all) = self.0.lock() {
            all.push(procs);
        }
    }

    /// Kills every process of every terminal and removes their cgroups.
    pub async fn finish_all(&self) {
        let all = self
            .0
            .lock()
            .map(|mut all| std::mem::take(&mut *all))
            .unwrap_or_default();
        for procs in all {
            procs.finish().await;
        }
    }
}

/// What the shell executor knows when GitLab asks for a terminal.
pub(crate) struct ShellTerminal {
    pub shell: PathBuf,
    pub is_bash: bool,
    pub user: Option<String>,
    pub workdir: PathBuf,
    pub env: TerminalEnv,
    pub procs: TerminalProcs,
}

/// The job's variables for the terminal's environment; their values stay out of `Debug` output.
#[derive(Clone, Default)]
pub(crate) struct TerminalEnv(pub Vec<(String, String)>);

impl std::fmt::Debug for TerminalEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TerminalEnv({} variables)", self.0.len())
    }
}

impl ShellTerminal {
    /// The job's variables as an environment: file variables are left out (their files live only while the
    /// scripts run), as are names and values a process environment cannot carry.
    pub fn job_env(vars: &Variables) -> TerminalEnv {
        TerminalEnv(
            vars.iter()
                .filter(|v| !v.file && is_env_name(&v.key) && !v.value.contains('\0'))
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect(),
        )
    }

    fn command(&self, slave: &OwnedFd, procs: &JobProcesses) -> Result<Command, ExecError> {
        let setsid = SETSID_CANDIDATES
            .iter()
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| ExecError::Other("the web terminal needs `setsid` (util-linux)".into()))?;
        let shell = self.shell.to_string_lossy().into_owned();
        let mut shell_cmd = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            CD_SCRIPT.to_owned(),
            "sh".to_owned(),
            self.workdir.to_string_lossy().into_owned(),
            shell.clone(),
        ];
        if self.is_bash {
            shell_cmd.push("-i".into());
        }
        let (argv, user_env) = match &self.user {
            Some(user) => crate::shell::as_user(user, &shell, shell_cmd)?,
            None => (shell_cmd, Vec::new()),
        };
        let argv = procs.wrap_argv(argv);
        let mut cmd = Command::new(setsid);
        cmd.arg("--ctty").arg("--").args(&argv);
        cmd.envs(self.env.0.iter().map(|(k, v)| (k, v)));
        cmd.envs(user_env);
        cmd.env("TERM", "xterm");
        procs.mark(&mut cmd);
        // Never the project directory: as root that would follow whatever link the job user put there.
        cmd.current_dir("/");
        let stdio = |fd: &OwnedFd| -> Result<Stdio, ExecError> {
            fd.try_clone().map(Stdio::from).map_err(|source| ExecError::Io {
                context: "duplicating the terminal's pty".into(),
                source,
            })
        };
        cmd.stdin(stdio(slave)?)
            .stdout(stdio(slave)?)
            .stderr(stdio(slave)?);
        cmd.kill_on_drop(true);
        Ok(cmd)
    }
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn pty_err(what: &str) -> impl FnOnce(rustix::io::Errno) -> ExecError + '_ {
    move |e| ExecError::Io {
        context: format!("{what} for the web terminal"),
        source: e.into(),
    }
}

/// A new pseudo-terminal pair: the non-blocking master and the slave for the shell.
fn open_pty(size: TermSize) -> Result<(OwnedFd, OwnedFd), ExecError> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(pty_err("opening a pty"))?;
    rustix::pty::grantpt(&master).map_err(pty_err("granting the pty"))?;
    rustix::pty::unlockpt(&master).map_err(pty_err("unlocking the pty"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(pty_err("naming the pty"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(pty_err("opening the pty's terminal side"))?;
    set_size(&master, size)?;
    rustix::io::ioctl_fionbio(&master, true).map_err(pty_err("making the pty non-blocking"))?;
    Ok((master, slave))
}

/// The terminal side belongs to the job's user (group `tty` where there is one), as a login's would: otherwise the
/// user's shell writes to a root-owned device it cannot reopen, and `mesg`, `tty`-checking tools and `script`
/// misbehave.
fn give_to_user(slave: &OwnedFd, user: &str) -> Result<(), ExecError> {
    let account = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| ExecError::Other(format!("cannot look up user {user:?} for the web terminal")))?;
    let group = nix::unistd::Group::from_name("tty")
        .ok()
        .flatten()
        .map_or(account.gid, |g| g.gid);
    nix::unistd::fchown(slave, Some(account.uid), Some(group)).map_err(|e| ExecError::Io {
        context: "handing the web terminal's pty to the job's user".into(),
        source: e.into(),
    })
}

fn set_size(fd: &OwnedFd, size: TermSize) -> Result<(), ExecError> {
    let ws = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws).map_err(pty_err("resizing the pty"))
}

impl Terminal for ShellTerminal {
    fn open(&self, size: TermSize) -> BoxFuture<'_, Result<TerminalConn, ExecError>> {
        Box::pin(async move {
            let (master, slave) = open_pty(size)?;
            if let Some(user) = &self.user {
                give_to_user(&slave, user)?;
            }
            let procs = JobProcesses::new("terminal", &CgroupPlacement::Own);
            self.procs.track(procs.clone());
            let mut cmd = self.command(&slave, &procs)?;
            let child = cmd.spawn().map_err(|source| ExecError::Spawn {
                program: "setsid".into(),
                dir: self.workdir.clone(),
                source,
            })?;
            // Only the shell may hold the terminal side: once it and its children are gone, reads end.
            drop(slave);
            let master = Arc::new(register(master)?);
            let control = PtyControl {
                master: Arc::clone(&master),
                child: Mutex::new(Some(child)),
                procs,
            };
            Ok(TerminalConn {
                output: Box::pin(PtyIo(Arc::clone(&master))),
                input: Box::pin(PtyIo(master)),
                control: Box::new(control),
            })
        })
    }
}

/// `AsyncFd::new` is deprecated because it cannot know whether the fd it watches outlives it (the safe-but-unsound
/// case is a borrowed fd closed behind its back); here it takes the `OwnedFd` itself, so the fd lives exactly as
/// long as the registration, and the only replacement (`register`) is `unsafe`, which the workspace denies.
#[allow(deprecated)]
fn register(master: OwnedFd) -> Result<AsyncFd<OwnedFd>, ExecError> {
    AsyncFd::new(master).map_err(|source| ExecError::Io {
        context: "registering the web terminal's pty".into(),
        source,
    })
}

/// Reads and writes the pty master without blocking a thread.
struct PtyIo(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for PtyIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: the last holder of the terminal side is gone, which is the pty's end of file.
                Ok(Err(e)) if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::IO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for PtyIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct PtyControl {
    master: Arc<AsyncFd<OwnedFd>>,
    child: Mutex<Option<Child>>,
    procs: JobProcesses,
}

impl TerminalControl for PtyControl {
    fn resize(&self, size: TermSize) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async move { set_size(self.master.get_ref(), size) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let child = self.child.lock().ok().and_then(|mut c| c.take());
            let Some(mut child) = child else {
                return;
            };
            // The shell leads its own session and process group (setsid): hang it up like a closed terminal
            // would, then make sure.
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let pgid = Pid::from_raw(pid);
                let _ = killpg(pgid, Signal::SIGHUP);
                if tokio::time::timeout(HANGUP_GRACE, child.wait()).await.is_err() {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                crate::shell::wait_group_gone(pgid, HANGUP_GRACE).await;
            }
            let _ = child.kill().await;
            // What the shell started in process groups of its own (background jobs) is still tracked.
            self.procs.finish().await;
        })
    }
}
