//! What prepare tells the driver about a fresh job container (`Executor::environment`): the host name the job
//! sees, and the directories prepare makes on a fresh build volume. With them the driver prints what a stage would
//! only print and spares its exec (about 50 ms, a third of a trivial job's own time).

use std::path::{Path, PathBuf};

/// The container's hostname as `$(hostname)` prints it inside: the configured one, else the engine's default (the
/// first 12 characters of the container id).
pub(crate) fn container_hostname(configured: Option<&str>, container_id: &str) -> String {
    match configured.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => container_id.chars().take(12).collect(),
    }
}

/// The directories from below `builds_dir` down to `project_dir`, outermost first (what `mkdir -p` would create).
pub(crate) fn dirs_down_to(builds_dir: &Path, project_dir: &Path) -> Vec<PathBuf> {
    let Ok(rel) = project_dir.strip_prefix(builds_dir) else {
        return Vec::new();
    };
    let mut dir = builds_dir.to_path_buf();
    rel.components()
        .map(|c| {
            dir.push(c);
            dir.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_the_engine() {
        assert_eq!(container_hostname(None, "0123456789abcdef"), "0123456789ab");
        assert_eq!(container_hostname(Some(" ci-box "), "0123456789abcdef"), "ci-box");
        assert_eq!(container_hostname(Some(""), "abc"), "abc");
    }

    #[test]
    fn the_project_dir_and_its_parents_are_listed_outermost_first() {
        assert_eq!(
            dirs_down_to(Path::new("/builds"), Path::new("/builds/group/sub/project")),
            vec![
                PathBuf::from("/builds/group"),
                PathBuf::from("/builds/group/sub"),
                PathBuf::from("/builds/group/sub/project"),
            ]
        );
        assert!(dirs_down_to(Path::new("/builds"), Path::new("/elsewhere/p")).is_empty());
    }
}
