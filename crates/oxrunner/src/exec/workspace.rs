//! Each job's private copy of the repository under `.oxrunner/builds/<job>/`.
//!
//! Files are copied with `std::fs::copy`, which on Linux uses `copy_file_range` (a reflink on btrfs/XFS, an
//! in-kernel copy elsewhere). Hard links are not used: a job appending to a file would then write into the
//! user's tree. `.git` gets its own refs, config and index, and borrows the user's object store through
//! `objects/info/alternates`, so `git` works in scripts without copying history and without touching the
//! user's repository.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("git {args} failed in {}: {detail}\nhint: oxrunner exec needs a git repository with at least one commit", dir.display())]
    Git {
        args: String,
        dir: PathBuf,
        detail: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WorkspaceError + 'a {
    move |source| WorkspaceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Which files a job sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshot {
    /// Tracked and untracked-but-not-ignored files as they are on disk now.
    WorkingTree,
    /// Only what is committed at HEAD.
    Committed,
}

/// The files to copy, relative to `repo`. `.oxrunner/` is never part of it.
pub fn list_files(repo: &Path, snapshot: Snapshot) -> Result<Vec<PathBuf>, WorkspaceError> {
    let args: &[&str] = match snapshot {
        Snapshot::WorkingTree => &["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        Snapshot::Committed => &["ls-tree", "-r", "-z", "--name-only", "--full-tree", "HEAD"],
    };
    let out = git(repo, args)?;
    let mut files: Vec<PathBuf> = out
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .filter(|p| !p.starts_with(".oxrunner"))
        .collect();
    files.dedup();
    Ok(files)
}

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, WorkspaceError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| WorkspaceError::Git {
            args: args.join(" "),
            dir: repo.to_path_buf(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(WorkspaceError::Git {
            args: args.join(" "),
            dir: repo.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn git_path(repo: &Path, args: &[&str]) -> Result<PathBuf, WorkspaceError> {
    let out = git(repo, args)?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
}

/// Builds a fresh copy of `repo` at `dest` (anything there before is removed).
pub fn prepare(
    repo: &Path,
    dest: &Path,
    files: &[PathBuf],
    snapshot: Snapshot,
) -> Result<(), WorkspaceError> {
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(io_err("remove the old build directory", dest))?;
    }
    fs::create_dir_all(dest).map_err(io_err("create", dest))?;
    match snapshot {
        Snapshot::WorkingTree => {
            for rel in files {
                copy_entry(&repo.join(rel), &dest.join(rel))?;
            }
        }
        Snapshot::Committed => {
            // Committed content may differ from the disk: write blobs out of git instead of copying.
            let status = Command::new("sh")
                .arg("-c")
                .arg("git -C \"$1\" archive --format=tar HEAD | tar -x -C \"$2\"")
                .arg("sh")
                .arg(repo)
                .arg(dest)
                .status()
                .map_err(io_err("run git archive into", dest))?;
            if !status.success() {
                return Err(WorkspaceError::Git {
                    args: "archive HEAD".into(),
                    dir: repo.to_path_buf(),
                    detail: format!("exited with {status}"),
                });
            }
        }
    }
    let src_git = repo.join(".git");
    if src_git.is_dir() {
        link_git(&src_git, &dest.join(".git"))?;
    } else if src_git.is_file() {
        // A linked worktree: shared refs and objects live in the common dir, HEAD and index in its own dir.
        let own = git_path(repo, &["rev-parse", "--absolute-git-dir"])?;
        let common = git_path(repo, &["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
        let dest_git = dest.join(".git");
        link_git(&common, &dest_git)?;
        for name in ["HEAD", "index"] {
            let from = own.join(name);
            if from.exists() {
                fs::copy(&from, dest_git.join(name)).map_err(io_err("copy", &from))?;
            }
        }
    }
    if dest.join(".git").is_dir() && snapshot == Snapshot::Committed {
        git(dest, &["read-tree", "HEAD"])?;
    }
    Ok(())
}

/// One tracked path: files are copied, symlinks recreated, directories (submodules) copied recursively.
fn copy_entry(src: &Path, dest: &Path) -> Result<(), WorkspaceError> {
    let meta = match fs::symlink_metadata(src) {
        Ok(m) => m,
        // Deleted in the working tree but still in the index: the job sees the deletion, as the user does.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", src)(e)),
    };
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("read link", src))?;
        std::os::unix::fs::symlink(&target, dest).map_err(io_err("create link", dest))?;
    } else if ft.is_dir() {
        fs::create_dir_all(dest).map_err(io_err("create", dest))?;
        for entry in fs::read_dir(src).map_err(io_err("read", src))? {
            let entry = entry.map_err(io_err("read", src))?;
            copy_entry(&entry.path(), &dest.join(entry.file_name()))?;
        }
    } else if ft.is_file() {
        fs::copy(src, dest).map_err(io_err("copy", src))?;
    }
    Ok(())
}

/// A `.git` with copied refs, config and index that reads objects from the user's store.
fn link_git(src: &Path, dest: &Path) -> Result<(), WorkspaceError> {
    fs::create_dir_all(dest.join("objects/info")).map_err(io_err("create", dest))?;
    fs::create_dir_all(dest.join("objects/pack")).map_err(io_err("create", dest))?;
    for entry in fs::read_dir(src).map_err(io_err("read", src))? {
        let entry = entry.map_err(io_err("read", src))?;
        let name = entry.file_name();
        // Objects are shared; reflogs and LFS/module stores are large and not needed by a job.
        // `description`, `COMMIT_EDITMSG` and the hook samples do nothing; each file is an inode to create, and on
        // a busy file system creating one costs more than copying it (BENCHMARKS.md).
        if matches!(
            name.to_str(),
            Some(
                "objects"
                    | "logs"
                    | "lfs"
                    | "modules"
                    | "worktrees"
                    | "index.lock"
                    | "description"
                    | "COMMIT_EDITMSG"
            )
        ) {
            continue;
        }
        // A link or file named `hooks` is copied as it is (`copy_entry`), only a real directory is filtered.
        if name == "hooks" && entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_hooks(&entry.path(), &dest.join(&name))?;
            continue;
        }
        copy_entry(&entry.path(), &dest.join(&name))?;
    }
    let objects = fs::canonicalize(src.join("objects")).map_err(io_err("resolve", src))?;
    let mut alternates = objects.to_string_lossy().into_owned();
    // The user's own alternates must stay reachable too.
    if let Ok(extra) = fs::read_to_string(objects.join("info/alternates")) {
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            let p = Path::new(line.trim());
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                objects.join(p)
            };
            alternates.push('\n');
            alternates.push_str(&abs.to_string_lossy());
        }
    }
    alternates.push('\n');
    let path = dest.join("objects/info/alternates");
    fs::write(&path, alternates).map_err(io_err("write", &path))
}

/// The user's hooks (a job's `git commit` runs them, as in the user's tree), without git's inert `*.sample` files.
fn copy_hooks(src: &Path, dest: &Path) -> Result<(), WorkspaceError> {
    fs::create_dir_all(dest).map_err(io_err("create", dest))?;
    for entry in fs::read_dir(src).map_err(io_err("read", src))? {
        let entry = entry.map_err(io_err("read", src))?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".sample") {
            continue;
        }
        copy_entry(&entry.path(), &dest.join(&name))?;
    }
    Ok(())
}

/// Makes the copy's `.git` self-contained: the objects it borrows through `objects/info/alternates` are hard-linked
/// (copied across file systems) into its own store, and the alternates file goes. A container cannot follow
/// alternates that point at the user's paths, so Docker jobs need this for `git` to work in their scripts. Object
/// files never change once written, so sharing them by link is safe.
pub fn own_objects(dest: &Path) -> Result<(), WorkspaceError> {
    let objects = dest.join(".git/objects");
    let list = objects.join("info/alternates");
    let Ok(text) = fs::read_to_string(&list) else {
        return Ok(());
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        link_tree(Path::new(line), &objects)?;
    }
    fs::remove_file(&list).map_err(io_err("remove", &list))
}

/// Links every file under `src` (loose objects, packs) into the same place under `dest`, skipping `info/`.
fn link_tree(src: &Path, dest: &Path) -> Result<(), WorkspaceError> {
    let entries = match fs::read_dir(src) {
        Ok(e) => e,
        // A stale alternate: git itself ignores it with a warning.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", src)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("read", src))?;
        let name = entry.file_name();
        if name == "info" {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(&name));
        let ft = entry.file_type().map_err(io_err("read", &from))?;
        if ft.is_dir() {
            fs::create_dir_all(&to).map_err(io_err("create", &to))?;
            link_tree(&from, &to)?;
        } else if ft.is_file() && !to.exists() && fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io_err("copy", &from))?;
        }
    }
    Ok(())
}

/// A job name as one directory name: anything outside `[A-Za-z0-9._-]` becomes `_`.
pub fn dir_name(job: &str) -> String {
    let s: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() { "job".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_become_single_directory_names() {
        assert_eq!(dir_name("build"), "build");
        assert_eq!(dir_name("test: [en, pg]"), "test___en__pg_");
        assert_eq!(dir_name("../x"), "_x");
        assert_eq!(dir_name(".."), "job");
        assert_eq!(dir_name("a/b 1/2"), "a_b_1_2");
    }

    #[test]
    fn the_state_directory_is_never_copied() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let ok = |args: &[&str]| {
            let st = Command::new("git").arg("-C").arg(p).args(args).status().unwrap();
            assert!(st.success(), "git {args:?}");
        };
        ok(&["init", "-q"]);
        fs::create_dir_all(p.join(".oxrunner/logs")).unwrap();
        fs::write(p.join(".oxrunner/logs/x.log"), "log").unwrap();
        fs::write(p.join("a.txt"), "a").unwrap();
        let files = list_files(p, Snapshot::WorkingTree).unwrap();
        assert_eq!(files, vec![PathBuf::from("a.txt")]);
    }
}
