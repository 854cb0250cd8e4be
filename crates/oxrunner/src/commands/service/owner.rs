//! The config file `install --init-user U` creates belongs to U: the service runs entirely as U and must be
//! able to read it, and `register` run later as U must be able to replace it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The highest directory above `file` that does not exist yet (what a recursive create is about to make).
pub fn first_missing_dir(file: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut dir = file.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if d.symlink_metadata().is_ok() {
            break;
        }
        missing = Some(d.to_path_buf());
        dir = d.parent();
    }
    missing
}

/// Gives `file`, and the directories from `created` down to its parent, to `user` (and the user's group).
/// A user that does not exist is only warned about: the unit names it and systemd reports it at start.
pub fn give_to(user: &str, file: &Path, created: Option<&Path>) -> anyhow::Result<()> {
    let found =
        nix::unistd::User::from_name(user).with_context(|| format!("cannot look up user `{user}`"))?;
    let Some(u) = found else {
        errln!(
            "WARNING: no user `{user}` on this machine, so {} stays root's\nhint: create the user, then `chown \
             {user}: {}`",
            file.display(),
            file.display()
        );
        return Ok(());
    };
    let (uid, gid) = (Some(u.uid.as_raw()), Some(u.gid.as_raw()));
    if let Some(top) = created {
        for dir in file.ancestors().skip(1) {
            std::os::unix::fs::lchown(dir, uid, gid)
                .with_context(|| format!("cannot give {} to `{user}`", dir.display()))?;
            if dir == top {
                break;
            }
        }
    }
    std::os::unix::fs::lchown(file, uid, gid)
        .with_context(|| format!("cannot give {} to `{user}`", file.display()))
}
