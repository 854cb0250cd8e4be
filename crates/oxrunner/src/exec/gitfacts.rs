//! The repository facts a pipeline context needs (HEAD's commit, the branch, the `origin` URL and its default
//! branch), read from `.git` directly instead of four `git` processes: on a one-job pipeline those processes
//! were a third of `oxrunner exec`'s run.
//!
//! Only the plain layout is read: a `.git` directory with loose or packed refs and a loose HEAD commit. Anything
//! git would interpret further (a linked worktree, `GIT_*` overrides, reftable, `url.*.insteadOf` or `include`
//! in a config git reads, a commit with another encoding, a quoted URL) answers `None` or falls back to git for
//! that one fact, so the result is always what git would say.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;
use oxrunner_pipeline::PipelineContext;

/// A commit object larger than this is left to git (a real one is a few hundred bytes).
const MAX_COMMIT_BYTES: u64 = 1024 * 1024;

/// Environment variables that make git look somewhere else than `<dir>/.git` or read other configuration.
const GIT_OVERRIDES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_NAMESPACE",
];

/// The context of a push pipeline for the repository at `dir`, as `PipelineContext::from_git` would make it;
/// `None` when the repository is not plain enough to read without git.
pub fn context(dir: &Path) -> Option<PipelineContext> {
    if GIT_OVERRIDES.iter().any(|v| std::env::var_os(v).is_some()) {
        return None;
    }
    let git = dir.join(".git");
    if !std::fs::symlink_metadata(&git).is_ok_and(|m| m.is_dir())
        || git.join("commondir").exists()
        || git.join("reftable").exists()
    {
        return None;
    }
    let config = std::fs::read_to_string(git.join("config")).ok()?;
    if rewrites(&config) || global_configs().iter().any(|c| rewrites(c)) {
        return None;
    }
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim_end();
    let (branch, sha) = match head.strip_prefix("ref: ") {
        Some(name) => (
            name.strip_prefix("refs/heads/").map(str::to_string),
            resolve(&git, name)?,
        ),
        None if is_sha(head) => (None, head.to_string()),
        None => return None,
    };
    let mut ctx = PipelineContext::new(dir);
    match read_commit(&git, &sha) {
        Some(c) => {
            ctx.commit_author = Some(c.author);
            ctx.commit_timestamp = Some(c.timestamp);
            ctx.commit_message = Some(c.message);
        }
        None => {
            // A packed commit: git reads it (one process instead of four).
            let out = git_log(dir)?;
            let mut parts = out.splitn(4, '\0');
            if parts.next() != Some(sha.as_str()) {
                return None;
            }
            ctx.commit_author = parts.next().map(str::to_string);
            ctx.commit_timestamp = parts.next().map(str::to_string);
            ctx.commit_message = parts.next().map(str::to_string);
        }
    }
    ctx.sha = Some(sha);
    ctx.ref_name = branch;
    ctx.remote_url = remote_url(&config, "origin");
    ctx.default_branch = std::fs::read_to_string(git.join("refs/remotes/origin/HEAD"))
        .ok()
        .and_then(|t| {
            t.trim_end()
                .strip_prefix("ref: refs/remotes/origin/")
                .map(str::to_string)
        });
    Some(ctx)
}

fn is_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Configuration that changes what `git remote get-url` prints, or pulls in files we would not read.
fn rewrites(config: &str) -> bool {
    let lower = config.to_ascii_lowercase();
    lower.contains("insteadof") || lower.contains("[include")
}

fn global_configs() -> Vec<String> {
    let mut paths: Vec<PathBuf> = vec![PathBuf::from("/etc/gitconfig")];
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".gitconfig"));
        paths.push(Path::new(&home).join(".config/git/config"));
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        paths.push(Path::new(&xdg).join("git/config"));
    }
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// A ref's commit from its loose file or `packed-refs` (a symbolic ref other than HEAD is left to git).
fn resolve(git: &Path, name: &str) -> Option<String> {
    if !name.starts_with("refs/") || name.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    if let Ok(text) = std::fs::read_to_string(git.join(name)) {
        let sha = text.trim_end();
        return is_sha(sha).then(|| sha.to_string());
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
    packed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .find_map(|l| {
            let (sha, refname) = l.split_once(' ')?;
            (refname == name && is_sha(sha)).then(|| sha.to_string())
        })
}

struct Commit {
    author: String,
    timestamp: String,
    message: String,
}

/// HEAD's commit from its loose object: `%an <%ae>`, `%cI` and `%B` as `git log` prints them.
fn read_commit(git: &Path, sha: &str) -> Option<Commit> {
    let path = git.join("objects").join(&sha[..2]).join(&sha[2..]);
    let file = std::fs::File::open(path).ok()?;
    let mut raw = Vec::new();
    ZlibDecoder::new(file)
        .take(MAX_COMMIT_BYTES)
        .read_to_end(&mut raw)
        .ok()?;
    let nul = raw.iter().position(|&b| b == 0)?;
    let header = std::str::from_utf8(&raw[..nul]).ok()?;
    let (kind, len) = header.split_once(' ')?;
    let body = &raw[nul + 1..];
    if kind != "commit" || len.parse::<usize>().ok()? != body.len() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let (headers, message) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut author = None;
    let mut committed = None;
    for line in headers.lines() {
        if let Some(rest) = line.strip_prefix("author ") {
            author = Some(rest);
        } else if let Some(rest) = line.strip_prefix("committer ") {
            committed = Some(rest);
        } else if line.starts_with("encoding ") {
            // git re-encodes such a message for output: leave it to git.
            return None;
        }
    }
    let (name_email, _) = split_ident(author?)?;
    let (_, when) = split_ident(committed?)?;
    Some(Commit {
        author: name_email.to_string(),
        timestamp: iso8601(when)?,
        message: message.trim_end_matches('\n').to_string(),
    })
}

/// `Name <email> 1700000000 +0100` → (`Name <email>`, `1700000000 +0100`).
fn split_ident(ident: &str) -> Option<(&str, &str)> {
    let end = ident.rfind('>')?;
    Some((&ident[..=end], ident[end + 1..].trim()))
}

/// `1700000000 +0100` → `2023-11-14T23:13:20+01:00` (git's `%cI`).
fn iso8601(when: &str) -> Option<String> {
    let (secs, zone) = when.split_once(' ')?;
    let secs: i64 = secs.parse().ok()?;
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    let offset = time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?;
    let at = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .to_offset(offset);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    at.format(&format).ok()
}

/// The first `url` of `[remote "NAME"]` in a repository config; `None` for a value git would unquote or for
/// comments on the line (git reads those; we leave them to `git remote`).
fn remote_url(config: &str, name: &str) -> Option<String> {
    let mut in_section = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let inner = line.trim_start_matches('[').trim_end_matches(']');
            in_section = inner
                .split_once(' ')
                .is_some_and(|(s, sub)| s.eq_ignore_ascii_case("remote") && sub == format!("\"{name}\""));
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("url") {
            let value = value.trim();
            if value.is_empty() || value.contains(['"', '\\', ';', '#']) {
                return None;
            }
            return Some(value.to_string());
        }
    }
    None
}

/// `git log -1` for HEAD, as `PipelineContext::from_git` runs it.
fn git_log(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%H%x00%an <%ae>%x00%cI%x00%B"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committer_dates_as_git_prints_them() {
        assert_eq!(
            iso8601("1700000000 +0100").as_deref(),
            Some("2023-11-14T23:13:20+01:00")
        );
        assert_eq!(
            iso8601("1700000000 -0530").as_deref(),
            Some("2023-11-14T16:43:20-05:30")
        );
        assert_eq!(iso8601("0 +0000").as_deref(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(iso8601("1700000000 0100"), None);
    }

    #[test]
    fn origin_url_from_the_config() {
        let config = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://a/x.git\n[remote \"origin\"]\n\turl = git@gitlab.example.com:group/proj.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n";
        assert_eq!(
            remote_url(config, "origin").as_deref(),
            Some("git@gitlab.example.com:group/proj.git")
        );
        assert_eq!(
            remote_url("[remote \"origin\"]\n url = \"quoted\"\n", "origin"),
            None
        );
        assert_eq!(remote_url("[core]\n", "origin"), None);
        assert!(rewrites("[url \"git@x:\"]\n\tinsteadOf = https://x/\n"));
    }
}
