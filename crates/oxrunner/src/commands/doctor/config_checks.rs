//! Checks of config.toml itself: it parses, the lint warnings, its mode, and per runner the token and the keys this
//! build does not act on.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oxrunner_config::{Config, Loaded, RunnerConfig};
use time::OffsetDateTime;

use super::report::{Check, Section};

/// Tokens closer than this to their expiry get a warning.
const EXPIRY_WARNING: time::Duration = time::Duration::days(7);

/// Loads the file, recording each finding in `s`; `None` when it cannot be used at all.
pub fn load(path: &Path, s: &mut Section) -> Option<Loaded> {
    let loaded = match oxrunner_config::load(path) {
        Ok(l) => l,
        Err(e) => {
            let text = e.to_string();
            let (cause, fix) = match text.split_once("\nhint: ") {
                Some((c, h)) => (c.to_string(), h.to_string()),
                None => (
                    text,
                    "correct the file, then run oxrunner doctor again".to_string(),
                ),
            };
            s.push(Check::fail("config.toml cannot be loaded", cause, fix));
            return None;
        }
    };
    s.push(Check::ok("config.toml parses"));
    if loaded.warnings.is_empty() {
        s.push(Check::ok("no unknown keys or suspicious values"));
    }
    for w in &loaded.warnings {
        s.push(Check::warn(
            format!("config lint: {}", w.key),
            w.to_string(),
            format!("correct or remove `{}` at line {}", w.key, w.line),
        ));
    }
    s.push(mode(path));
    for line in crate::daemon::unsupported::global(&loaded.config) {
        s.push(unsupported(&line));
    }
    Some(loaded)
}

fn mode(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                Check::ok(format!("mode {mode:04o}: only its owner can read the tokens"))
            } else {
                Check::warn(
                    format!("mode {mode:04o}: other users can read config.toml"),
                    "config.toml holds the runner tokens; anyone who reads them can take the runner's jobs",
                    format!("chmod 600 {}", path.display()),
                )
            }
        }
        Err(e) => Check::fail(
            "cannot read the file's mode",
            e.to_string(),
            "run doctor as the user that owns config.toml",
        ),
    }
}

fn unsupported(line: &str) -> Check {
    let (cause, fix) = match line.split_once("\nhint: ") {
        Some((c, h)) => (c.to_string(), h.to_string()),
        None => (
            line.to_string(),
            "remove the key, or expect gitlab-runner's behaviour for it to be missing".to_string(),
        ),
    };
    let what = cause.lines().next().unwrap_or_default().to_string();
    Check::warn(format!("not supported by this build: {what}"), cause, fix)
}

/// The runner's token and the keys of its entry this build does not act on.
pub fn runner(_config: &Config, r: &RunnerConfig) -> Vec<Check> {
    let mut out = vec![token(r, OffsetDateTime::now_utc())];
    // The cache check (`cache.rs`) has its own line for an unsupported Type and for a broken S3 section (a ✗
    // there, with the fix), so the daemon's wording of both is left out here.
    for line in crate::daemon::unsupported::runner(r)
        .into_iter()
        .filter(|l| !l.contains("[runners.cache] Type") && !l.contains("the shared cache is not used"))
    {
        out.push(unsupported(&line));
    }
    out
}

fn token(r: &RunnerConfig, now: OffsetDateTime) -> Check {
    let register = format!(
        "create a new runner token in GitLab (Settings > CI/CD > Runners) and run: oxrunner register --url {} --token glrt-...",
        oxrunner_api::redact::redact_url(&r.url)
    );
    if r.token.expose().trim().is_empty() {
        return Check::fail(
            "no token",
            format!("runner \"{}\" has token = \"\"", r.name),
            register,
        );
    }
    let short = r.short_token();
    match r.token_expires_at {
        Some(at) if at.unix_timestamp() > 0 && at <= now => Check::fail(
            format!("token {short} expired at {at}"),
            "GitLab refuses an expired token: the runner gets no jobs",
            register,
        ),
        Some(at) if at.unix_timestamp() > 0 && at - now < EXPIRY_WARNING => Check::warn(
            format!("token {short} expires at {at}"),
            "the token expires within a week; the running service renews it, a stopped one does not",
            "keep `oxrunner run` running so it renews the token, or register again after it expires",
        ),
        _ => Check::ok(format!("token {short} present and not expired")),
    }
}
