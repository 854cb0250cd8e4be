//! A job's `coverage:` value, read from its log as GitLab reads it (`Gitlab::Ci::Trace::Stream#extract_coverage`):
//! the last line where the regular expression matches and yields a number wins; the candidate text is the last
//! capture group of the line's last match (the whole match without groups), and the value is the first number
//! in it (`\d+(\.\d+)?`).

use std::io::BufRead;
use std::sync::LazyLock;

use regex::Regex;

/// GitLab ignores a log line past this length for coverage as well (its untrusted-regexp input limit is far
/// larger, but a line this long is never a coverage summary).
const MAX_LINE_BYTES: usize = 1024 * 1024;

static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d+(\.\d+)?").ok());

/// The regular expression of a `coverage: /.../` keyword, without its slashes; `None` when it does not compile.
pub fn coverage_regex(keyword: &str) -> Option<Regex> {
    let inner = keyword
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or(keyword);
    regex::RegexBuilder::new(inner).size_limit(1 << 20).build().ok()
}

/// The coverage GitLab would record for a job whose log is `log`, for `coverage: keyword`.
pub fn extract_coverage(keyword: &str, mut log: impl BufRead) -> Option<String> {
    let re = coverage_regex(keyword)?;
    let number = NUMBER.as_ref()?;
    let mut found = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match log.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE_BYTES {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some(caps) = re.captures_iter(&text).last() else {
            continue;
        };
        let candidate = if caps.len() > 1 {
            caps.iter().skip(1).last().flatten().map(|m| m.as_str())
        } else {
            caps.get(0).map(|m| m.as_str())
        };
        if let Some(n) = candidate.and_then(|c| number.find(c)) {
            found = Some(n.as_str().to_string());
        }
    }
    found
}
