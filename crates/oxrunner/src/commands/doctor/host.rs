//! The host: directories the runner or its jobs write (writable by the right account, free disk) and the local
//! cache store.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::report::Check;
use super::shell::Account;

/// Less free space than this in a builds or cache directory is worth a warning.
const LOW_DISK: u64 = 2 * 1024 * 1024 * 1024;

/// The directory itself when it exists, else the nearest existing ancestor (which the runner would create it in).
fn existing_ancestor(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|p| p.symlink_metadata().is_ok())
}

/// Whether `account` can create and write files in `dir` (creating it and its missing parents if needed): search
/// permission on every existing component, write and search on the last one, on a writable file system.
pub fn writable(what: &str, dir: &Path, account: &Account) -> Check {
    let fail = |cause: String, fix: String| {
        Check::fail(
            format!("{what} {} is not writable by {}", dir.display(), account.name),
            cause,
            fix,
        )
    };
    let Some(base) = existing_ancestor(dir) else {
        return fail(
            "no part of the path exists".into(),
            format!("use an absolute {what}"),
        );
    };
    match std::fs::metadata(base) {
        Ok(m) if !m.is_dir() => {
            return fail(
                format!("{} exists and is not a directory", base.display()),
                format!("remove {} or point {what} elsewhere", base.display()),
            );
        }
        Ok(_) => {}
        Err(e) => {
            return fail(
                format!("{}: {e}", base.display()),
                format!("point {what} to a usable directory"),
            );
        }
    }
    for p in base.ancestors().collect::<Vec<_>>().into_iter().rev() {
        let Ok(m) = std::fs::metadata(p) else { continue };
        let want = if p == base { 3 } else { 1 };
        if !account.may_path(p, &m, want) {
            return fail(
                format!(
                    "{} is owned by uid {} gid {} with mode {:04o}",
                    p.display(),
                    m.uid(),
                    m.gid(),
                    m.mode() & 0o7777
                ),
                format!(
                    "mkdir -p {d} && chown {u} {d}, or set {what} to a directory {u} owns",
                    d = dir.display(),
                    u = account.name
                ),
            );
        }
    }
    if let Ok(st) = nix::sys::statvfs::statvfs(base)
        && st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    {
        return fail(
            format!("{} is on a read-only file system", base.display()),
            format!("point {what} to a writable file system"),
        );
    }
    let state = if base == dir {
        ""
    } else {
        " (created on first use)"
    };
    // The local cache store is one directory for every job of the runner; saying so here keeps it to one line.
    let shared = if what == "cache_dir" {
        ", shared by all concurrent jobs of this runner"
    } else {
        ""
    };
    Check::ok(format!(
        "{what} {} is writable by {}{state}{shared}",
        dir.display(),
        account.name
    ))
}

/// Free space where builds and caches are written.
pub fn disk(dirs: &[(&'static str, PathBuf)]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (what, dir) in dirs {
        let Some(base) = existing_ancestor(dir) else {
            continue;
        };
        let Ok(st) = nix::sys::statvfs::statvfs(base) else {
            continue;
        };
        if seen.contains(&st.filesystem_id()) {
            continue;
        }
        seen.push(st.filesystem_id());
        let free = st.blocks_available().saturating_mul(st.fragment_size());
        let gib = free as f64 / (1024.0 * 1024.0 * 1024.0);
        if free < LOW_DISK {
            out.push(Check::warn(
                format!("disk: only {gib:.1} GiB free for {what} {}", dir.display()),
                "checkouts, caches and artifacts of a job are written there; a full disk fails jobs midway",
                "free space (docker system prune, old builds) or move the directory to a larger file system",
            ));
        } else {
            out.push(Check::ok(format!(
                "disk: {gib:.1} GiB free for {what} {}",
                dir.display()
            )));
        }
    }
    out
}
