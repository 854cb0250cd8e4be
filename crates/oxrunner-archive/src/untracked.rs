//! `git ls-files --others` for `untracked`, run so that nothing in the project can make git execute a
//! program or read files with the runner's rights.
//!
//! The project's `.git` belongs to the job: its `config` can name programs git runs on a plain
//! `ls-files` (`core.fsmonitor`, a lazy fetch in a partial clone through `core.sshCommand` or a remote's
//! `uploadpack`, hooks on an index write), and the daemon is often root. Two defences, both always on:
//! - git runs as the owner of the project directory (or of its `.git`) when the runner is root and
//!   that owner is not: the job's config then gets the job user's rights only, and git's
//!   `safe.directory` check passes because the repository is git's own user's. This is what
//!   gitlab-runner does by running its helper as the job user.
//! - every key that can run a program on this command is overridden on the command line (which wins over
//!   every config file), system and global config are not read, no inherited `GIT_*` variable is
//!   passed on, and `--git-dir`/`--work-tree` are explicit so `core.worktree` cannot send git elsewhere.
//!
//! A root-owned project (the Docker executor's scratch copy, unpacked by root; or a root shell runner
//! without `--user`) keeps root: switching to `nobody` would make git refuse the root-owned repository
//! (`safe.directory`) and miss files only root can read, and the scratch copy is private to the runner,
//! so the overrides above are the defence there.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oxrunner_fs::Dir;

/// Config keys forced on the command line, each with why.
const OVERRIDES: &[&str] = &[
    // Runs a hook (or starts a daemon) on every index read.
    "core.fsmonitor=false",
    // Makes ls-files write the index, which would run `post-index-change`.
    "core.untrackedCache=false",
    "core.hooksPath=/dev/null",
    // A partial clone fetches missing objects, through whatever transport the config names.
    "protocol.allow=never",
    // The daemon's own (root's) ignore file is not the job's; gitlab-runner's helper has none either.
    "core.excludesFile=/dev/null",
];

/// The untracked, not ignored files of the project `root` holds, NUL-separated, relative to it.
pub(crate) fn ls_untracked(root: &Dir) -> io::Result<Output> {
    let mut cmd = Command::new("git");
    cmd.arg("--no-pager");
    for kv in OVERRIDES {
        cmd.args(["-c", kv]);
    }
    // Relative to the working directory below: the handle we hold, whatever its path leads to by now.
    cmd.args(["--git-dir=.git", "--work-tree=."])
        .args(["ls-files", "--others", "--exclude-standard", "-z"])
        .current_dir(root.proc_path())
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some((uid, gid)) = run_as(root)? {
        cmd.uid(uid).gid(gid);
        // The job user's HOME is not ours to choose; git must not look in root's.
        cmd.env("HOME", "/nonexistent");
    }
    output_within(cmd, LS_FILES_LIMIT)
}

/// How long `git ls-files` may take. The job controls what git opens: a FIFO named `.gitignore` (or in
/// `info/exclude`) blocks git's read forever, and nothing in the job is left to open its other end.
const LS_FILES_LIMIT: Duration = Duration::from_secs(300);

/// `cmd.output()`, but the process is killed (and a `TimedOut` error returned) after `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> io::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "git ls-files did not finish within {} s and was stopped (is an ignore file a FIFO?)",
                    limit.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The user and group git must run as: the owner of the project directory, else of its `.git`, when
/// the runner is root and that owner is not. `None` keeps the runner's own user.
fn run_as(root: &Dir) -> io::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let project = root.meta()?;
    if project.uid != 0 {
        return Ok(Some((project.uid, project.gid)));
    }
    match root.lstat_path(Path::new(".git")) {
        Ok(git) if git.uid != 0 => Ok(Some((git.uid, git.gid))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_hangs_is_stopped_at_the_limit() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let err = output_within(cmd, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    #[test]
    fn output_is_collected_as_before() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'a\\0b\\0'; echo oops >&2"]);
        let out = output_within(cmd, Duration::from_secs(30)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"a\0b\0");
        assert_eq!(out.stderr, b"oops\n");
    }
}
