//! Reading `config.toml`: syntax and type errors with positions, unknown-key warnings,
//! `$VAR` expansion of `url` and `token`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::duration::parse_go_duration;
use crate::error::{ConfigError, ConfigWarning};
use crate::expand::expand_env;
use crate::lint::{self, Entry, Seg};
use crate::model::executor::ExecutorKind;
use crate::model::global::Config;
use crate::model::runner::KNOWN_SHELLS;
use crate::secret::Secret;

/// A parsed configuration and the problems that did not prevent loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Unknown keys and suspicious values, in file order.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads and parses the file at `path`, which must exist.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses `text`; `origin` is only used in messages.
pub fn parse_str(text: &str, origin: &Path) -> Result<Loaded, ConfigError> {
    Source {
        text,
        origin,
        prefix_len: 0,
    }
    .parse()
}

/// Parses a documentation-style fragment such as a lone `[runners.docker]` table: when
/// `runners` is a plain table rather than `[[runners]]`, it is read as the only runner.
/// Positions in errors and warnings refer to `text` as given.
pub fn parse_fragment(text: &str, origin: &Path) -> Result<Loaded, ConfigError> {
    let runners_is_table = toml_edit::Document::parse(text)
        .ok()
        .is_some_and(|doc| doc.get("runners").is_some_and(toml_edit::Item::is_table));
    if !runners_is_table {
        return parse_str(text, origin);
    }
    const PREFIX: &str = "[[runners]]\n";
    let wrapped = format!("{PREFIX}{text}");
    Source {
        text: &wrapped,
        origin,
        prefix_len: PREFIX.len(),
    }
    .parse()
}

struct Source<'a> {
    text: &'a str,
    origin: &'a Path,
    /// Bytes added in front of the user's text (fragments); subtracted from positions.
    prefix_len: usize,
}

impl Source<'_> {
    fn parse(&self) -> Result<Loaded, ConfigError> {
        let doc = toml_edit::Document::parse(self.text).map_err(|e| {
            let (line, column) = self.position(e.span().map_or(0, |s| s.start));
            ConfigError::Syntax {
                path: self.origin.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let entries = lint::collect_entries(doc.as_table());
        let mut config: Config = toml_edit::de::from_str(self.text).map_err(|e| {
            let span = e.span();
            let (key, line, column) = match span.as_ref().and_then(|s| innermost(&entries, s)) {
                Some(entry) => {
                    let (line, column) = self.position(value_start(entry));
                    (lint::full_key(&entry.path), line, column)
                }
                None => {
                    let (line, column) = self.position(span.map_or(0, |s| s.start));
                    (String::new(), line, column)
                }
            };
            let mut message = e.message().trim().to_owned();
            if is_secret_key(&key) {
                message = redact_quoted(&message);
            }
            ConfigError::Invalid {
                path: self.origin.to_owned(),
                line,
                column,
                hint: invalid_hint(&key, &message),
                key,
                message,
            }
        })?;
        self.check_durations(&config, &entries)?;
        if let Some(bad) = crate::ranges::check(&config) {
            return Err(self.out_of_range(&entries, bad));
        }
        expand_credentials(&mut config);

        let mut warnings = self.unknown_keys(&entries);
        warnings.extend(self.value_warnings(&config, &entries));
        warnings.sort_by_key(|w| (w.line, w.column));
        Ok(Loaded { config, warnings })
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let (line, column) = line_column(self.text, offset);
        if self.prefix_len == 0 {
            return (line, column);
        }
        // The prefix is exactly one line, so only the line number moves.
        (line.saturating_sub(1).max(1), column)
    }

    fn warning(&self, entry: Option<&Entry>, path: &[Seg], message: String) -> ConfigWarning {
        let offset = entry
            .and_then(|e| e.key_span.clone().or_else(|| e.value_span.clone()))
            .map_or(0, |s| s.start);
        let (line, column) = self.position(offset);
        ConfigWarning {
            path: self.origin.to_owned(),
            key: lint::full_key(path),
            line,
            column,
            message,
        }
    }

    fn unknown_keys(&self, entries: &[Entry]) -> Vec<ConfigWarning> {
        entries
            .iter()
            .filter_map(|entry| {
                let unknown = lint::check_path(&entry.path)?;
                let mut message = format!("unknown key `{}` (ignored)", lint::plain_key(&entry.path));
                if let Some(s) = unknown.suggestion {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                Some(self.warning(Some(entry), &entry.path, message))
            })
            .collect()
    }

    fn value_warnings(&self, config: &Config, entries: &[Entry]) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let find = |path: &[Seg]| entries.iter().find(|e| e.path == path);
        if config.concurrent < 1 {
            let path = [Seg::Key("concurrent".into())];
            out.push(self.warning(
                find(&path),
                &path,
                format!(
                    "`concurrent` is {}; no job can run until it is at least 1",
                    config.concurrent
                ),
            ));
        }
        for (i, runner) in config.runners.iter().enumerate() {
            let at = |key: &str| vec![Seg::Key("runners".into()), Seg::Index(i), Seg::Key(key.into())];
            if !runner.executor.is_empty() && !runner.executor_kind().is_known() {
                let path = at("executor");
                out.push(self.value_warning(
                    find(&path),
                    &path,
                    format!(
                        "unknown executor `{}` (expected one of {})",
                        runner.executor,
                        ExecutorKind::KNOWN.map(|k| k.to_string()).join(", ")
                    ),
                ));
            }
            for (key, value) in [
                ("limit", runner.limit),
                ("request_concurrency", runner.request_concurrency),
            ] {
                if config.concurrent > 0 && value > config.concurrent {
                    let path = at(key);
                    out.push(self.value_warning(
                        find(&path),
                        &path,
                        format!(
                            "`{key}` ({value}) is greater than `concurrent` ({}); only {} job(s) can run at once",
                            config.concurrent, config.concurrent
                        ),
                    ));
                }
            }
            if let Some(shell) = runner.shell.as_deref().filter(|s| !s.is_empty())
                && !KNOWN_SHELLS.contains(&shell)
            {
                let path = at("shell");
                out.push(self.value_warning(
                    find(&path),
                    &path,
                    format!(
                        "unsupported shell `{shell}` (expected one of {})",
                        KNOWN_SHELLS.join(", ")
                    ),
                ));
            }
        }
        out
    }

    fn value_warning(&self, entry: Option<&Entry>, path: &[Seg], message: String) -> ConfigWarning {
        let mut w = self.warning(entry, path, message);
        if let Some(span) = entry.and_then(|e| e.value_span.clone()) {
            (w.line, w.column) = self.position(span.start);
        }
        w
    }

    fn out_of_range(&self, entries: &[Entry], bad: crate::ranges::OutOfRange) -> ConfigError {
        let offset = entries
            .iter()
            .find(|en| en.path == bad.path)
            .map_or(0, value_start);
        let (line, column) = self.position(offset);
        ConfigError::Invalid {
            path: self.origin.to_owned(),
            line,
            column,
            key: lint::full_key(&bad.path),
            message: bad.message,
            hint: bad.hint,
        }
    }

    fn check_durations(&self, config: &Config, entries: &[Entry]) -> Result<(), ConfigError> {
        let mut checks: Vec<(Vec<Seg>, Option<&str>)> = vec![(
            vec![Seg::Key("connection_max_age".into())],
            config.connection_max_age.as_deref(),
        )];
        for (i, r) in config.runners.iter().enumerate() {
            let path = |keys: &[&str]| {
                let mut p = vec![Seg::Key("runners".into()), Seg::Index(i)];
                p.extend(keys.iter().map(|k| Seg::Key((*k).to_owned())));
                p
            };
            checks.push((path(&["unhealthy_interval"]), r.unhealthy_interval.as_deref()));
            checks.push((path(&["prepare_timeout"]), r.prepare_timeout.as_deref()));
            checks.push((path(&["get_sources_timeout"]), r.get_sources_timeout.as_deref()));
            if let Some(a) = &r.artifact {
                checks.push((path(&["artifact", "upload_timeout"]), a.upload_timeout.as_deref()));
                checks.push((
                    path(&["artifact", "response_header_timeout"]),
                    a.response_header_timeout.as_deref(),
                ));
            }
        }
        for (path, value) in checks {
            let Some(value) = value else { continue };
            if let Err(e) = parse_go_duration(value) {
                let offset = entries
                    .iter()
                    .find(|en| en.path == path)
                    .and_then(|en| en.value_span.clone())
                    .map_or(0, |s| s.start);
                let (line, column) = self.position(offset);
                return Err(ConfigError::Invalid {
                    path: self.origin.to_owned(),
                    line,
                    column,
                    key: lint::full_key(&path),
                    message: e.to_string(),
                    hint: "durations are Go duration strings such as \"30s\", \"15m0s\" or \"1h30m\""
                        .to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Keys whose values must not be echoed in error messages.
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(
        last,
        "token"
            | "bearer_token"
            | "AccessKey"
            | "SecretKey"
            | "SessionToken"
            | "PrivateKey"
            | "AccountKey"
            | "password"
    )
}

/// Replaces every `"..."` and `` `...` `` span with `[REDACTED]`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push_str("[REDACTED]");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
        }
    }
    out
}

fn invalid_hint(key: &str, message: &str) -> String {
    if key == "runners" && message.contains("expected a sequence") {
        return "each runner is an entry of an array of tables: write `[[runners]]` (double brackets)"
            .to_owned();
    }
    if key.ends_with("token_obtained_at") || key.ends_with("token_expires_at") {
        return format!("`{key}` is an RFC 3339 datetime such as 2026-01-31T12:00:00Z (unquoted)");
    }
    let shown = if key.is_empty() { "this value" } else { key };
    format!("see the gitlab-runner `config.toml` reference for the expected type of `{shown}`")
}

fn value_start(entry: &Entry) -> usize {
    entry
        .value_span
        .as_ref()
        .or(entry.key_span.as_ref())
        .map_or(0, |s| s.start)
}

/// The entry whose value most tightly encloses `span`: the key a type error belongs to.
fn innermost<'e>(entries: &'e [Entry], span: &Range<usize>) -> Option<&'e Entry> {
    entries
        .iter()
        .filter(|e| {
            e.value_span
                .as_ref()
                .is_some_and(|v| v.start <= span.start && span.start < v.end.max(v.start + 1))
        })
        .min_by_key(|e| e.value_span.as_ref().map_or(usize::MAX, |v| v.end - v.start))
}

/// gitlab-runner expands `$VAR` in these two fields only.
fn expand_credentials(config: &mut Config) {
    for runner in &mut config.runners {
        if runner.url.contains('$') {
            runner.url = expand_env(&runner.url);
        }
        if runner.token.expose().contains('$') {
            runner.token = Secret::new(expand_env(runner.token.expose()));
        }
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Where to look for `config.toml` when `--config` is not given: `/etc/gitlab-runner` for root,
/// `~/.gitlab-runner` otherwise (gitlab-runner's rule).
pub fn default_config_path() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/etc/gitlab-runner/config.toml");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".gitlab-runner").join("config.toml")
}

/// `<config dir>/certs`, where `<host>.crt`, `<host>.auth.crt` and `<host>.auth.key` are
/// looked up when a runner has no `tls-ca-file`.
pub fn certs_dir(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
        .join("certs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_chars() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 6), (2, 1));
        assert_eq!(line_column(t, t.find('=').map_or(0, |_| 10)), (2, 4));
    }

    #[test]
    fn certs_dir_is_next_to_config() {
        assert_eq!(
            certs_dir(Path::new("/etc/gitlab-runner/config.toml")),
            PathBuf::from("/etc/gitlab-runner/certs")
        );
        assert_eq!(certs_dir(Path::new("config.toml")), PathBuf::from("./certs"));
    }
}
