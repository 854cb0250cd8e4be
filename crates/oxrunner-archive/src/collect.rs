//! Which files an artifact or cache takes, with gitlab-runner's rules (`commands/helpers/file_archiver.go`):
//! each `paths` entry is a doublestar glob relative to the project directory; every match that is a
//! directory brings its whole subtree; `exclude` globs are tested against each collected path on its own
//! (excluding a directory does not exclude its contents); `untracked` adds what git reports as untracked.
//! Problems with individual paths are warnings, never errors: a job must not fail over them.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use oxrunner_fs::{Dir, Kind, is_link_refusal};

use crate::ArchiveError;

/// Files (and directories, and symlinks) selected for an archive, relative to the project directory and
/// sorted, plus the warnings to print in the job log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Walks the project through a directory handle. On the way to a literal path or a glob's base, links
/// are followed only while they resolve inside the project (`openat2(RESOLVE_BENEATH)`, atomic, so a job
/// swapping directories for links while we walk cannot make us list anything outside); inside the walked
/// tree no link is followed (a link is collected as a link), as gitlab-runner's walk does.
struct Collector<'a> {
    root: &'a Dir,
    exclude: GlobSet,
    files: BTreeSet<PathBuf>,
    warnings: Vec<String>,
}

/// Collect the files for an archive. Only a malformed glob is an error. `project_dir` itself is
/// trusted (see [`oxrunner_fs`]); below it only links that stay inside it are followed, and only on the
/// way to a pattern's literal part. Names are the paths as written, never a link's target.
pub fn collect(
    project_dir: &Path,
    paths: &[String],
    exclude: &[String],
    untracked: bool,
) -> Result<FileSet, ArchiveError> {
    let root = Dir::open_trusted(project_dir)
        .map_err(|e| ArchiveError::io("opening project directory", project_dir, e))?;
    collect_in(&root, paths, exclude, untracked)
}

/// [`collect`] in the project directory `root`.
pub fn collect_in(
    root: &Dir,
    paths: &[String],
    exclude: &[String],
    untracked: bool,
) -> Result<FileSet, ArchiveError> {
    let project_dir = root.path();
    let mut warnings = Vec::new();
    let mut set = GlobSetBuilder::new();
    for pattern in exclude {
        match relative_pattern(project_dir, pattern) {
            Some(rel) if !rel.is_empty() => {
                set.add(build_glob(&rel, pattern)?.glob().clone());
            }
            Some(_) => {}
            None => warnings.push(format!(
                "isExcluded: artifact path is not a subpath of project directory: {pattern}"
            )),
        }
    }
    let exclude = set.build().map_err(|source| ArchiveError::Pattern {
        pattern: exclude.join(", "),
        source,
    })?;
    let mut c = Collector {
        root,
        exclude,
        files: BTreeSet::new(),
        warnings,
    };
    for path in paths {
        c.process_path(path)?;
    }
    if untracked {
        c.process_untracked();
    }
    Ok(FileSet {
        files: c.files.into_iter().collect(),
        warnings: c.warnings,
    })
}

fn build_glob(rel: &str, original: &str) -> Result<GlobMatcher, ArchiveError> {
    GlobBuilder::new(rel)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|source| ArchiveError::Pattern {
            pattern: original.to_owned(),
            source,
        })
}

fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{', '\\'])
}

/// The pattern relative to the project directory with `.`/`..` resolved lexically, or `None` when it
/// points outside. `""` means the project directory itself.
fn relative_pattern(root: &Path, pattern: &str) -> Option<String> {
    let trimmed = pattern.trim();
    let rest = if Path::new(trimmed).is_absolute() {
        let p = Path::new(trimmed);
        let stripped = p.strip_prefix(root).ok()?;
        stripped.to_str()?.to_owned()
    } else {
        trimmed.to_owned()
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in rest.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Collector<'_> {
    fn process_path(&mut self, pattern: &str) -> Result<(), ArchiveError> {
        let Some(rel) = relative_pattern(self.root.path(), pattern) else {
            self.warnings.push(format!(
                "processPath: artifact path is not a subpath of project directory: {pattern}"
            ));
            return Ok(());
        };
        let comps: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let split = comps.iter().position(|c| has_meta(c)).unwrap_or(comps.len());
        let base: PathBuf = comps[..split].iter().collect();
        let display = if rel.is_empty() {
            ".".to_owned()
        } else {
            rel.clone()
        };

        // A literal path's last component is archived as whatever it is (a link stays a link); a glob
        // base is walked into. Either way links on the way there are followed only inside the project.
        let found = if split == comps.len() {
            self.add_literal(&base)
        } else {
            let matcher = build_glob(&rel, pattern)?;
            let depth_limit = (!comps.iter().any(|c| c.contains("**"))).then_some(comps.len());
            self.add_glob(&base, &matcher, depth_limit)
        };
        match found {
            Err(()) => self.warnings.push(format!(
                "{display}: not supported: outside build directory (a symlink on the way is not followed)"
            )),
            Ok(0) => self.warnings.push(format!(
                "{display}: no matching files. Ensure that the artifact path is relative to the working directory ({})",
                self.root.path().display()
            )),
            Ok(_) => {}
        }
        Ok(())
    }

    /// `Err(())` when the way to `rel` leads out of the project (or, without `openat2`, through any
    /// link). Links on the way that stay inside are followed, as gitlab-runner's archiver does; the last
    /// component is taken as whatever it is (a link stays a link).
    fn add_literal(&mut self, rel: &Path) -> Result<usize, ()> {
        let root: &Dir = self.root;
        if rel.as_os_str().is_empty() {
            return Ok(self.add_tree(root, Path::new(""), rel, Kind::Dir));
        }
        let (parent, name) = match root.open_parent_in_tree(rel) {
            Ok(found) => found,
            Err(e) if is_link_refusal(&e) => return Err(()),
            Err(_) => return Ok(0),
        };
        let kind = match parent.lstat(name) {
            Ok(m) => m.kind,
            Err(_) => return Ok(0),
        };
        Ok(self.add_tree(&parent, Path::new(name), rel, kind))
    }

    /// The entries of directory `sub` below `from`, sorted; `None` (with a warning naming `shown`) when
    /// it cannot be listed. No link is followed on the way from `from`.
    fn list(&mut self, from: &Dir, sub: &Path, shown: &Path) -> Option<Vec<(OsString, Kind)>> {
        let listed = from.open_dir(sub).and_then(|d| d.entries());
        match listed {
            Ok(mut entries) => {
                entries.sort();
                Some(entries)
            }
            Err(e) => {
                self.warnings.push(format!("Walking {}: {e}", shown.display()));
                None
            }
        }
    }

    /// `rel` (which is `sub` below `from`) and, if it is a real directory, everything below it, never
    /// through a link; returns how many paths were taken.
    fn add_tree(&mut self, from: &Dir, sub: &Path, rel: &Path, kind: Kind) -> usize {
        let mut found = usize::from(self.take(rel.to_path_buf()));
        if kind != Kind::Dir {
            return found;
        }
        // Explicit stack, and each directory is reopened from `from`: depth costs no descriptors.
        let mut stack = vec![(sub.to_path_buf(), rel.to_path_buf())];
        while let Some((dir_sub, dir_rel)) = stack.pop() {
            let Some(entries) = self.list(from, &dir_sub, &dir_rel) else {
                continue;
            };
            for (name, kind) in entries.into_iter().rev() {
                let child = dir_rel.join(&name);
                if kind == Kind::Dir {
                    stack.push((dir_sub.join(&name), child.clone()));
                }
                if self.take(child) {
                    found += 1;
                }
            }
        }
        found
    }

    /// The matches of a glob below its literal `base`. Reaching the base follows links that stay inside
    /// the project (as gitlab-runner's glob does, the base's own last component included); the walk
    /// below it never enters a linked directory.
    fn add_glob(
        &mut self,
        base: &Path,
        matcher: &GlobMatcher,
        depth_limit: Option<usize>,
    ) -> Result<usize, ()> {
        let root: &Dir = self.root;
        let opened;
        let base_dir = if base.as_os_str().is_empty() {
            root
        } else {
            match root.lstat_path_in_tree(base) {
                Ok(m) if matches!(m.kind, Kind::Dir | Kind::Symlink) => {}
                Err(e) if is_link_refusal(&e) => return Err(()),
                _ => return Ok(0),
            }
            opened = match root.open_dir_in_tree(base) {
                Ok(d) => d,
                Err(e) if is_link_refusal(&e) => return Err(()),
                Err(_) => return Ok(0),
            };
            &opened
        };
        let base_depth = base.components().count();
        let mut found = 0;
        let mut stack = vec![(PathBuf::new(), 0usize)];
        while let Some((sub, depth)) = stack.pop() {
            let Some(entries) = self.list(base_dir, &sub, &base.join(&sub)) else {
                continue;
            };
            for (name, kind) in entries.into_iter().rev() {
                let child = sub.join(&name);
                let rel = base.join(&child);
                if matcher.is_match(&rel) {
                    // A matched directory brings its whole subtree.
                    found += self.add_tree(base_dir, &child, &rel, kind);
                } else if kind == Kind::Dir && depth_limit.is_none_or(|limit| base_depth + depth + 1 < limit)
                {
                    // Without `**` nothing deeper than the pattern itself can match.
                    stack.push((child, depth + 1));
                }
            }
        }
        Ok(found)
    }

    /// Record one path unless an `exclude` pattern matches it.
    fn take(&mut self, rel: PathBuf) -> bool {
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return false;
        }
        if self.exclude.is_match(&rel) {
            return false;
        }
        self.files.insert(rel);
        true
    }

    fn process_untracked(&mut self) {
        let output = crate::untracked::ls_untracked(self.root);
        let output = match output {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                self.warnings
                    .push(format!("untracked: git ls-files failed: {}", stderr.trim()));
                return;
            }
            Err(e) => {
                self.warnings.push(format!("untracked: {e}"));
                return;
            }
        };
        let mut found = 0;
        for raw in output.stdout.split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let rel = PathBuf::from(OsStr::from_bytes(raw));
            if self.root.lstat_path(&rel).is_ok() && self.take(rel) {
                found += 1;
            }
        }
        if found == 0 {
            self.warnings.push("untracked: no files".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_made_relative_and_confined() {
        let root = Path::new("/builds/g/p");
        assert_eq!(relative_pattern(root, "./out/"), Some("out".to_owned()));
        assert_eq!(relative_pattern(root, "out/../bin/*"), Some("bin/*".to_owned()));
        assert_eq!(
            relative_pattern(root, "/builds/g/p/out/**"),
            Some("out/**".to_owned())
        );
        assert_eq!(relative_pattern(root, "."), Some(String::new()));
        assert_eq!(relative_pattern(root, "../x"), None);
        assert_eq!(relative_pattern(root, "/etc/passwd"), None);
    }
}
