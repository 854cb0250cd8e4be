//! `artifacts:reports:dotenv`: a job's `KEY=VALUE` file becomes variables of the jobs that depend on it.
//! The parsed variables are kept in `.oxrunner/dotenv/<job>.env`, so a later run that starts from a named job
//! still sees what the previous run produced.

use std::path::Path;

/// GitLab's dotenv rules, leniently: blank lines and `#` comments are skipped, keys must be identifiers,
/// one level of matching surrounding quotes is removed. Bad lines are returned as warnings, not errors.
pub fn parse(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            warnings.push(format!("dotenv line {}: expected KEY=VALUE", i + 1));
            continue;
        };
        let k = k.trim();
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            warnings.push(format!("dotenv line {}: invalid variable name {k:?}", i + 1));
            continue;
        }
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)))
            .unwrap_or(v);
        vars.push((k.to_string(), v.to_string()));
    }
    (vars, warnings)
}

/// Stores parsed variables (values never contain newlines: `lines()` split them away).
pub fn store(path: &Path, vars: &[(String, String)]) -> std::io::Result<()> {
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Variables stored for a job, if it produced any.
pub fn load(path: &Path) -> Vec<(String, String)> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).0,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_gitlab() {
        let (vars, warnings) = parse("# c\nA=1\n\nB = \"two words\"\n1X=bad\nnoequals\nC='q'\nD=a=b\n");
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "q".into()),
                ("D".into(), "a=b".into()),
            ]
        );
        assert_eq!(warnings.len(), 2);
    }
}
