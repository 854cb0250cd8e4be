//! Which files an artifact or cache takes, with gitlab-runner's rules (`commands/helpers/file_archiver.go`):
//! each `paths` entry is a doublestar glob relative to the project directory; every match that is a
//! directory brings its whole subtree; `exclude` globs are tested against each collected path on its own
//! (excluding a directory does not exclude its contents); `untracked` adds what git reports as untracked.
//! Problems with individual paths are warnings, never errors: a job must not fail over them.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use crate::ArchiveError;

/// Files (and directories, and symlinks) selected for an archive, relative to the project directory and
/// sorted, plus the warnings to print in the job log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

struct Collector<'a> {
    root: &'a Path,
    canonical_root: PathBuf,
    exclude: GlobSet,
    files: BTreeSet<PathBuf>,
    warnings: Vec<String>,
}

/// Collect the files for an archive. Only a malformed glob is an error.
pub fn collect(
    project_dir: &Path,
    paths: &[String],
    exclude: &[String],
    untracked: bool,
) -> Result<FileSet, ArchiveError> {
    let canonical_root = fs::canonicalize(project_dir)
        .map_err(|e| ArchiveError::io("resolving project directory", project_dir, e))?;
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
        root: project_dir,
        canonical_root,
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
        let Some(rel) = relative_pattern(self.root, pattern) else {
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

        let literal = split == comps.len();
        // A literal path's last component is archived as whatever it is (a link stays a link); a glob
        // base is walked into, so it must not lead outside either.
        if !self.inside_project(&base, !literal) {
            self.warnings
                .push(format!("{display}: not supported: outside build directory"));
            return Ok(());
        }
        let found = if literal {
            self.add_literal(&base)
        } else {
            let matcher = build_glob(&rel, pattern)?;
            let depth_limit = (!comps.iter().any(|c| c.contains("**"))).then_some(comps.len());
            self.add_glob(&base, &matcher, depth_limit)
        };
        if found == 0 {
            self.warnings.push(format!(
                "{display}: no matching files. Ensure that the artifact path is relative to the working directory ({})",
                self.root.display()
            ));
        }
        Ok(())
    }

    /// Every existing ancestor of `rel` (and `rel` itself when `include_last`) must resolve inside the
    /// project, so a symlinked directory cannot smuggle outside files into an archive.
    fn inside_project(&self, rel: &Path, include_last: bool) -> bool {
        let mut cur = self.root.to_path_buf();
        let count = rel.components().count();
        for (i, comp) in rel.components().enumerate() {
            cur.push(comp);
            if i + 1 == count && !include_last {
                break;
            }
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(&cur) {
                    Ok(real) if real.starts_with(&self.canonical_root) => {}
                    // A dangling link is archived as a link, never followed.
                    Err(_) => {}
                    Ok(_) => return false,
                },
                _ => {}
            }
        }
        true
    }

    fn add_literal(&mut self, rel: &Path) -> usize {
        let full = self.root.join(rel);
        if fs::symlink_metadata(&full).is_err() {
            return 0;
        }
        self.add_tree(rel)
    }

    /// `rel` and, if it is a real directory, everything below it; returns how many paths were taken.
    fn add_tree(&mut self, rel: &Path) -> usize {
        let mut found = 0;
        let walker = WalkDir::new(self.root.join(rel))
            .follow_links(false)
            .follow_root_links(false)
            .sort_by_file_name();
        for entry in walker {
            match entry {
                Ok(entry) => {
                    if let Ok(r) = entry.path().strip_prefix(self.root) {
                        let r = r.to_path_buf();
                        if self.take(r) {
                            found += 1;
                        }
                    }
                }
                Err(e) => self.warnings.push(format!("Walking {}: {e}", rel.display())),
            }
        }
        found
    }

    fn add_glob(&mut self, base: &Path, matcher: &GlobMatcher, depth_limit: Option<usize>) -> usize {
        let base_dir = self.root.join(base);
        if !base_dir.is_dir() {
            return 0;
        }
        let base_depth = base.components().count();
        let mut found = 0;
        // Depth of the matched directory whose subtree we are inside, if any.
        let mut inside: Option<usize> = None;
        let mut it = WalkDir::new(&base_dir)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.warnings.push(format!("Walking {}: {e}", base.display()));
                    continue;
                }
            };
            let depth = entry.depth();
            if inside.is_some_and(|d| depth <= d) {
                inside = None;
            }
            let Ok(rel) = entry.path().strip_prefix(self.root).map(Path::to_path_buf) else {
                continue;
            };
            if inside.is_some() || matcher.is_match(&rel) {
                if inside.is_none() && entry.file_type().is_dir() {
                    inside = Some(depth);
                }
                if self.take(rel) {
                    found += 1;
                }
            } else if entry.file_type().is_dir()
                && depth_limit.is_some_and(|limit| base_depth + depth >= limit)
            {
                // Without `**` nothing deeper than the pattern itself can match.
                it.skip_current_dir();
            }
        }
        found
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
        let output = Command::new("git")
            .args(["ls-files", "--others", "--exclude-standard", "-z"])
            .current_dir(self.root)
            .output();
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
            if fs::symlink_metadata(self.root.join(&rel)).is_ok() && self.take(rel) {
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
