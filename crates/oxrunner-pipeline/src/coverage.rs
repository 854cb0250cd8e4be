//! A job's `coverage:` value, read from its log as GitLab reads it (`Gitlab::Ci::Trace::Stream#extract_coverage`):
//! the last line where the regular expression matches and yields a number wins; the candidate text is the last
//! capture group of the line's last match (the whole match without groups), and the value is the first number
//! in it (`\d+(\.\d+)?`). Each line is matched without its line ending (GitLab chomps it, so a regex ending
//! in `$` works), and when the log's first line carries the `FF_TIMESTAMPS` header, the header's 32 characters
//! are cut from every line first, as GitLab does.

use std::io::BufRead;
use std::sync::LazyLock;

use regex::Regex;

/// GitLab ignores a log line past this length for coverage as well (its untrusted-regexp input limit is far
/// larger, but a line this long is never a coverage summary).
const MAX_LINE_BYTES: usize = 1024 * 1024;

static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d+(\.\d+)?").ok());

/// GitLab's `TIMESTAMP_HEADER_REGEX`: RFC 3339 time with microseconds, stream number, `E`/`O`, `+`/` `.
/// Searched for anywhere in the first line, as GitLab does.
static TIMESTAMP_HEADER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z [0-9a-f]{2}[EO][+ ]",
    )
    .ok()
});

/// Characters GitLab cuts from each line of a timestamped log.
const TIMESTAMP_HEADER_CHARS: usize = 32;

/// Ruby's `String#chomp`: one trailing `\r\n`, `\n` or `\r`.
fn chomp(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

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
    let mut timestamped = None;
    loop {
        line.clear();
        match log.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE_BYTES {
            continue;
        }
        let text = String::from_utf8_lossy(chomp(&line));
        let strip =
            *timestamped.get_or_insert_with(|| TIMESTAMP_HEADER.as_ref().is_some_and(|h| h.is_match(&text)));
        let text = if strip {
            text.char_indices()
                .nth(TIMESTAMP_HEADER_CHARS)
                .map_or("", |(i, _)| &text[i..])
        } else {
            &text
        };
        let Some(caps) = re.captures_iter(text).last() else {
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
