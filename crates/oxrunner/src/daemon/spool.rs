//! The daemon's trace spool directory: job logs wait there until GitLab has them.
//!
//! Root reads these files back and uploads them as job logs, so the directory must be one nobody else
//! can have prepared or can change: a fresh random name (never an existing directory, as a predictable
//! `/tmp/oxrunner-spool-<pid>` would let a local user plant links to `/etc/shadow` in it), mode 0700.
//! The trace sender reopens spool files by path; inside such a directory that path cannot be swapped.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

/// A new spool directory under `parent`, removed when the returned guard is dropped (the daemon keeps it
/// for its whole life).
pub(super) fn create_in(parent: &Path) -> io::Result<TempDir> {
    // `tempdir_in` never reuses an existing directory: it retries `mkdir` on a new random name. Its default
    // mode follows the umask (0755 as a rule), so the mode is given explicitly.
    tempfile::Builder::new()
        .prefix("oxrunner-spool-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_directory_prepared_at_the_old_predictable_name_is_never_used() {
        let tmp = tempfile::tempdir().unwrap();
        let planted = tmp.path().join(format!("oxrunner-spool-{}", std::process::id()));
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();

        let a = create_in(tmp.path()).unwrap();
        let b = create_in(tmp.path()).unwrap();
        for spool in [&a, &b] {
            assert_eq!(spool.path().parent(), Some(tmp.path()));
            assert!(!spool.path().starts_with(&planted), "{}", spool.path().display());
            let name = spool.path().file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("oxrunner-spool-"), "{name}");
            let meta = std::fs::symlink_metadata(spool.path()).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o7777, 0o700);
            assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        }
        assert_ne!(a.path(), b.path());
        assert_eq!(
            std::fs::read_dir(&planted).unwrap().count(),
            0,
            "the planted directory was used"
        );

        let gone = a.path().to_path_buf();
        drop(a);
        assert!(!gone.exists(), "the spool directory outlives the daemon");
    }
}
