//! GitLab's file wildcards for `include:local` and `cache:key:files`: a repository path matches when the whole
//! path matches the pattern, where `**` stands for any characters (slashes included) and `*` for any characters
//! but `/`. Nothing else is special, unlike a shell glob: `configs/**.yml` finds files in sub-folders, and
//! `configs/**/*.yml` needs at least one folder below `configs/`.

use std::path::Path;

use regex::Regex;

use crate::error::{Loc, PipelineError};

/// Patterns longer than this are refused before a regex is built from them.
const MAX_PATTERN_BYTES: usize = 1024;

pub(crate) fn matcher(pattern: &str, loc: &Loc) -> Result<Regex, PipelineError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(PipelineError::at(
            loc,
            format!("the wildcard pattern is longer than {MAX_PATTERN_BYTES} bytes"),
        ));
    }
    let escaped = regex::escape(pattern);
    let translated = escaped.replace(r"\*\*", ".*").replace(r"\*", "[^/]*");
    Regex::new(&format!("^(?s:{translated})$"))
        .map_err(|e| PipelineError::at(loc, format!("invalid wildcard pattern `{pattern}`: {e}")))
}

/// The repository files `pattern` matches, as paths relative to `root`. Only the folder before the first `*`
/// is walked, so a large untracked tree elsewhere (`node_modules/`) neither slows the search nor uses up the
/// walk's file budget.
pub(crate) fn files_matching(root: &Path, pattern: &str, loc: &Loc) -> Result<Vec<String>, PipelineError> {
    let m = matcher(pattern, loc)?;
    let fixed = &pattern[..pattern.find('*').unwrap_or(pattern.len())];
    let dir = fixed.rsplit_once('/').map_or("", |(d, _)| d);
    if dir.split('/').any(|c| c == ".." || c == ".") {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    crate::rules::walk(&root.join(dir), dir, &mut all);
    Ok(all.into_iter().filter(|f| m.is_match(f)).collect())
}

#[cfg(test)]
mod tests {
    use super::matcher;
    use crate::error::Loc;

    #[test]
    fn stars_and_double_stars() {
        let m = |p: &str, path: &str| matcher(p, &Loc::default()).unwrap().is_match(path);
        assert!(m("configs/*.yml", "configs/a.yml"));
        assert!(!m("configs/*.yml", "configs/sub/a.yml"));
        assert!(m("configs/**.yml", "configs/sub/deeper/a.yml"));
        assert!(m("configs/**.yml", "configs/a.yml"));
        assert!(!m("configs/**/*.yml", "configs/a.yml"));
        assert!(m("configs/**/*.yml", "configs/x/a.yml"));
        assert!(!m("configs/?.yml", "configs/a.yml"));
        assert!(!m("a.yml", "xa.yml"));
    }
}
