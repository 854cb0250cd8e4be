//! Removing a directory of the runner's own without waiting for it: the directory is renamed to a unique name
//! beside it (a rename within one directory is atomic and takes no time whatever the tree's size), so its path is
//! free for the next job at once, and the tree is deleted on a blocking thread. `remove_dir_all` removes links,
//! never what they point to.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Renames `dir` away and deletes it in the background. A missing `dir` is not an error.
pub(super) async fn remove_in_background(dir: &Path) -> io::Result<()> {
    let doomed = doomed_name(dir)?;
    match tokio::fs::rename(dir, &doomed).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(dir = %doomed.display(), error = %e, "removing a runner-side checkout");
        }
    });
    Ok(())
}

/// `.<name>.removing-<pid>-<n>` beside `dir`: hidden, and unique within the process and among processes.
fn doomed_name(dir: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"));
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut doomed = std::ffi::OsString::from(".");
    doomed.push(name);
    doomed.push(format!(".removing-{}-{n}", std::process::id()));
    Ok(parent.join(doomed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_path_is_free_at_once_and_the_tree_goes_in_the_background() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("project");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/file"), "x").unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        remove_in_background(&dir).await.unwrap();
        assert!(std::fs::symlink_metadata(&dir).is_err());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_dir(root.path()).unwrap().count() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the renamed tree was never removed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "k");
        // Nothing there: nothing to do.
        remove_in_background(&dir).await.unwrap();
    }
}
