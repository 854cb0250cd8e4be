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

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

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
    cmd.output()
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
