//! The job's project directory as a handle the cache and artifact hooks work through.
//!
//! The daemon often runs as root while the job runs as `--user`, who owns everything below
//! `builds_dir`. So only `builds_dir` (configured by the administrator) is opened by path; the project
//! directory is reached from it with no symlink followed at any component (see `oxrunner_fs`), and all
//! archive I/O then happens relative to that handle.

use std::path::Path;

use oxrunner_fs::{Dir, is_link_refusal, is_untrusted_link};

/// Opens (`create`: and makes, if missing) `project_dir`. A project directory outside `builds_dir` is
/// the runner's own scratch copy (executors whose files live elsewhere, see the core's remote staging),
/// private to the runner, so it is its own root of trust. The error is a message for the job log.
pub(crate) fn open_project(builds_dir: &Path, project_dir: &Path, create: bool) -> Result<Dir, String> {
    let opened = match project_dir.strip_prefix(builds_dir) {
        Ok(rel) if !builds_dir.as_os_str().is_empty() => Dir::open_trusted(builds_dir).and_then(|root| {
            if create {
                root.create_dir_all(rel, 0o755)
            } else {
                root.open_dir(rel)
            }
        }),
        _ if create => Dir::create_trusted(project_dir),
        _ => Dir::open_trusted(project_dir),
    };
    opened.map_err(|e| {
        if is_untrusted_link(&e) {
            // Its message names the link and carries its own hint.
            return format!("opening the project directory {}: {e}", project_dir.display());
        }
        let hint = if is_link_refusal(&e) {
            "a symlink stands where the runner expects a directory on the way to the project directory; \
             the runner never follows symlinks there, so remove it"
        } else {
            "check that the project directory exists and that the runner can read it"
        };
        format!(
            "opening the project directory {}: {e}\nhint: {hint}",
            project_dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// `builds_dir` in a directory others can write (here: everyone, as a user's home is to that user)
    /// replaced by a link: the project directory is neither created nor opened through it.
    #[test]
    fn a_builds_dir_link_in_a_writable_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, home.join("builds")).unwrap();
        let builds = home.join("builds");
        let project = builds.join("t1abc/0/group/project");
        for create in [true, false] {
            let err = open_project(&builds, &project, create).unwrap_err();
            assert!(err.contains("not followed") && err.contains("hint:"), "{err}");
            assert_eq!(err.matches("hint:").count(), 1, "{err}");
        }
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
