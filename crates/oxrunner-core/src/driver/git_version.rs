//! The git flags a runner-side git is too old for. `FF_USE_GIT_BUNDLE_URIS` and `FF_USE_GIT_PROACTIVE_AUTH` are
//! git settings that an older git ignores without a word, as it ignores every key it does not know; the job would
//! then run as if the flag were off. Where git runs on the runner's host (the shell executor's scripts, and the
//! runner-side fetch of an executor with remote files) the runner can ask that git its version, and names the
//! flags that cannot apply in one warning. A git inside a job's image cannot be asked before it runs, so those
//! jobs get no warning.
//!
//! The version is asked once per git binary and process: every job would otherwise spawn one more process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::script::git::GitSettings;

/// How long `git --version` may take; a git that does not answer in this time gets no warning.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// `(major, minor, patch)`.
type Version = (u32, u32, u32);

/// The flags that need a newer git than `version`, with the version each needs.
fn unmet(bundle_uris: bool, proactive_auth: bool, version: Version) -> Vec<(&'static str, Version)> {
    // The releases that first read `transfer.bundleURI` and `http.<url>.proactiveAuth`.
    let needs = [
        (bundle_uris, "FF_USE_GIT_BUNDLE_URIS", (2, 40, 0)),
        (proactive_auth, "FF_USE_GIT_PROACTIVE_AUTH", (2, 46, 0)),
    ];
    needs
        .into_iter()
        .filter(|(on, _, need)| *on && version < *need)
        .map(|(_, name, need)| (name, need))
        .collect()
}

/// The warning for the flags `settings` turns on that the runner's git is too old for; `None` when all apply or
/// the git cannot be found or asked (the fetch then fails and says why).
pub(crate) async fn warning(settings: &GitSettings) -> Option<String> {
    if !settings.bundle_uris && !settings.proactive_auth {
        return None;
    }
    let git = find_git(std::env::var_os("PATH")?.as_os_str())?;
    let (version, text) = ask(&git).await?;
    let unmet = unmet(settings.bundle_uris, settings.proactive_auth, version);
    if unmet.is_empty() {
        return None;
    }
    let named: Vec<String> = unmet
        .iter()
        .map(|(name, (a, b, c))| format!("{name} (needs git {a}.{b}.{c} or later)"))
        .collect();
    Some(format!(
        "{} has no effect: {} is {text}, which ignores the setting\nhint: install a newer git on the runner's host, \
         or set the flag to false",
        named.join(" and "),
        git.display()
    ))
}

/// The first executable `git` along `path`, as the shell would run it.
fn find_git(path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("git"))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

type Cache = Mutex<HashMap<PathBuf, Option<(Version, String)>>>;

/// `git --version` of `git`, parsed and as printed; cached per path for the process.
async fn ask(git: &Path) -> Option<(Version, String)> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    if let Ok(known) = cache.lock()
        && let Some(answer) = known.get(git)
    {
        return answer.clone();
    }
    // A blocking thread with a wall-clock bound, not a tokio timer: under a paused clock (the in-process tests) a
    // timer would fire at once while the real process runs, and tokio does not advance time past a blocking task.
    let path = git.to_path_buf();
    let answer = tokio::task::spawn_blocking(move || ask_blocking(&path))
        .await
        .ok()
        .flatten();
    if let Ok(mut known) = cache.lock() {
        known.insert(git.to_path_buf(), answer.clone());
    }
    answer
}

/// `git --version`, waited for at most [`ASK_TIMEOUT`] (then killed).
fn ask_blocking(git: &Path) -> Option<(Version, String)> {
    use std::io::Read;
    let mut child = std::process::Command::new(git)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + ASK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut text = String::new();
    // `git --version` prints one short line: it fits the pipe, so reading after the exit cannot block.
    child.stdout.take()?.read_to_string(&mut text).ok()?;
    let text = text.trim().to_owned();
    status
        .success()
        .then(|| parse(&text).map(|v| (v, text)))
        .flatten()
}

/// `git version 2.39.5` (also `2.39.0.windows.1`, `2.39.5 (Apple Git-143)`) as `(2, 39, 5)`.
fn parse(text: &str) -> Option<Version> {
    let number = text.strip_prefix("git version ")?.split_whitespace().next()?;
    let mut parts = number.split('.').map(|p| {
        p.bytes().take_while(u8::is_ascii_digit).fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        })
    });
    Some((parts.next()?, parts.next()?, parts.next().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_the_usual_spellings() {
        assert_eq!(parse("git version 2.39.5"), Some((2, 39, 5)));
        assert_eq!(parse("git version 2.47.3 (Apple Git-143)"), Some((2, 47, 3)));
        assert_eq!(parse("git version 2.45.0.windows.1"), Some((2, 45, 0)));
        assert_eq!(parse("git version 2.46"), Some((2, 46, 0)));
        assert_eq!(parse("hub version 2.14.2"), None);
    }

    #[test]
    fn only_the_flags_that_are_on_and_too_new_are_named() {
        assert_eq!(
            unmet(true, true, (2, 39, 5)),
            [
                ("FF_USE_GIT_BUNDLE_URIS", (2, 40, 0)),
                ("FF_USE_GIT_PROACTIVE_AUTH", (2, 46, 0))
            ]
        );
        assert_eq!(
            unmet(true, true, (2, 45, 1)),
            [("FF_USE_GIT_PROACTIVE_AUTH", (2, 46, 0))]
        );
        assert!(unmet(true, true, (2, 46, 0)).is_empty());
        assert!(unmet(true, false, (2, 41, 0)).is_empty());
        assert!(unmet(false, false, (1, 8, 0)).is_empty());
    }
}
