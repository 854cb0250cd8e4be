//! Editing `config.toml` in place the way `register`, `unregister` and token rotation do:
//! comments, layout and keys oxrunner does not know survive every edit.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

use crate::error::ConfigError;
use crate::load::{Loaded, line_column, parse_str};
use crate::model::docker::DockerConfig;
use crate::model::executor::ExecutorKind;
use crate::model::global::{Config, DEFAULT_SESSION_TIMEOUT};
use crate::model::runner::RunnerConfig;
use crate::model::serde_helpers::toml_datetime;

/// Indentation gitlab-runner uses per nesting level below `[[runners]]`.
const INDENT: &str = "  ";

/// An editable `config.toml`.
#[derive(Clone)]
pub struct ConfigDocument {
    path: PathBuf,
    doc: DocumentMut,
}

// The document holds runner tokens in plain text, so only its shape is printable.
impl std::fmt::Debug for ConfigDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDocument")
            .field("path", &self.path)
            .field("runners", &self.runner_count())
            .finish_non_exhaustive()
    }
}

impl ConfigDocument {
    /// Opens `path`, or starts the file gitlab-runner's `NewConfig` would write when it does
    /// not exist (`concurrent = 1`, `check_interval = 0`, `[session_server]
    /// session_timeout = 1800`). An existing file must parse and type-check.
    pub fn open_or_new(path: &Path) -> Result<ConfigDocument, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_owned(),
                    doc: new_document(),
                });
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            // gitlab-runner loads an empty file as `NewConfig` and saves it in full.
            return Ok(Self {
                path: path.to_owned(),
                doc: new_document(),
            });
        }
        // Validates syntax and types with positions before any edit is attempted.
        parse_str(&text, path)?;
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            let (line, column) = line_column(&text, e.span().map_or(0, |s| s.start));
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file this document is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document as TOML text, exactly as [`ConfigDocument::save`] writes it.
    pub fn to_toml_string(&self) -> String {
        self.doc.to_string()
    }

    /// The typed view of the current content (with `$VAR` expansion, as on load).
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.loaded().map(|l| l.config)
    }

    /// Like [`ConfigDocument::config`], with the warnings a load would report.
    pub fn loaded(&self) -> Result<Loaded, ConfigError> {
        parse_str(&self.doc.to_string(), &self.path)
    }

    /// Appends a `[[runners]]` entry with the keys gitlab-runner's `register` writes: the
    /// credentials, the executor, an (empty) `[runners.cache]`, and for docker executors a
    /// `[runners.docker]` with its always-written zero values and the `/cache` volume.
    ///
    /// Encoding the model cannot fail for the types it contains; should it ever, the entry is
    /// still written with the credentials and executor (see [`ConfigDocument::try_append_runner`]
    /// to get the error instead).
    pub fn append_runner(&mut self, runner: &RunnerConfig) {
        if let Err(e) = self.try_append_runner(runner) {
            tracing::error!(error = %e, "writing the runner with its credentials and executor only");
            let mut table = minimal_runner_table(runner);
            indent(&mut table, 1);
            self.push_runner(table);
        }
    }

    /// [`ConfigDocument::append_runner`], reporting an encoding failure instead of falling
    /// back to the minimal entry.
    pub fn try_append_runner(&mut self, runner: &RunnerConfig) -> Result<(), ConfigError> {
        let prepared = register_shape(runner);
        let mut table = encode_runner(&prepared)?;
        indent(&mut table, 1);
        self.push_runner(table);
        Ok(())
    }

    fn push_runner(&mut self, mut table: Table) {
        if !self.doc.as_table().is_empty() {
            // gitlab-runner separates each `[[runners]]` from what precedes it by a blank line.
            table.decor_mut().set_prefix("\n");
        }
        let mut next_position = max_position(self.doc.as_table()) + 1;
        assign_positions(&mut table, &mut next_position);

        let root = self.doc.as_table_mut();
        match root.get_mut("runners") {
            Some(Item::ArrayOfTables(runners)) => runners.push(table),
            _ => {
                let mut runners = ArrayOfTables::new();
                runners.push(table);
                root.insert("runners", Item::ArrayOfTables(runners));
            }
        }
    }

    /// Removes every runner for which `pred` is true and returns how many were removed.
    /// When the document no longer type-checks nothing is removed (0), because the
    /// predicate could not be evaluated reliably.
    pub fn remove_runners(&mut self, pred: impl Fn(&RunnerConfig) -> bool) -> usize {
        let Ok(config) = self.config() else {
            return 0;
        };
        let Some(Item::ArrayOfTables(runners)) = self.doc.as_table_mut().get_mut("runners") else {
            return 0;
        };
        let doomed: Vec<usize> = config
            .runners
            .iter()
            .enumerate()
            .filter(|(_, r)| pred(r))
            .map(|(i, _)| i)
            .collect();
        for i in doomed.iter().rev() {
            runners.remove(*i);
        }
        if runners.is_empty() {
            self.doc.as_table_mut().remove("runners");
        }
        doomed.len()
    }

    /// Replaces the token of runner `index` after a token reset, keeping the comments and
    /// formatting around each value.
    pub fn set_runner_token(
        &mut self,
        index: usize,
        token: &str,
        obtained_at: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(), ConfigError> {
        let count = self.runner_count();
        let runner = match self.doc.as_table_mut().get_mut("runners") {
            Some(Item::ArrayOfTables(runners)) => runners.get_mut(index),
            _ => None,
        };
        let Some(runner) = runner else {
            return Err(ConfigError::NoSuchRunner {
                path: self.path.clone(),
                index,
                count,
            });
        };
        set_keeping_decor(runner, "token", toml_edit::Value::from(token));
        for (key, at) in [
            ("token_obtained_at", obtained_at),
            ("token_expires_at", expires_at),
        ] {
            if let Some(dt) = toml_datetime(at) {
                set_keeping_decor(runner, key, toml_edit::Value::from(dt));
            }
        }
        Ok(())
    }

    /// Number of `[[runners]]` entries.
    pub fn runner_count(&self) -> usize {
        match self.doc.get("runners") {
            Some(Item::ArrayOfTables(runners)) => runners.len(),
            _ => 0,
        }
    }

    /// Writes the file atomically: a temporary file in the same directory, fsync, rename.
    /// The file gets mode 0600 and a missing directory is created with mode 0700, because the
    /// file holds runner tokens.
    pub fn save(&self) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write {
            path: self.path.clone(),
            source,
        };
        // Replace the file a symlink points to, not the link itself (gitlab-runner writes
        // through links, and packagers link /etc/gitlab-runner/config.toml elsewhere).
        let target = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&self.path).map_err(write_err)?,
            _ => self.path.clone(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(write_err)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.toml.")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(write_err)?;
        keep_owner(&target, tmp.as_file()).map_err(write_err)?;
        tmp.write_all(self.doc.to_string().as_bytes())
            .map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(&target).map_err(|e| write_err(e.error))?;
        // The rename is only durable once the directory entry is on disk.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Root replacing another user's file (`sudo oxrunner register` over a service user's config) gives the new
/// file the old one's owner: a rename would otherwise leave it root's, and the service could no longer read it.
fn keep_owner(target: &Path, tmp: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::metadata(target) {
        Ok(old) => std::os::unix::fs::fchown(tmp, Some(old.uid()), Some(old.gid())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn new_document() -> DocumentMut {
    let mut doc = DocumentMut::new();
    doc["concurrent"] = toml_edit::value(1);
    doc["check_interval"] = toml_edit::value(0);
    let mut session = Table::new();
    session.insert("session_timeout", toml_edit::value(DEFAULT_SESSION_TIMEOUT));
    indent(&mut session, 1);
    session.decor_mut().set_prefix("\n");
    doc.insert("session_server", Item::Table(session));
    doc
}

/// Applies what register does to a runner before writing it (`commands/register.go`).
fn register_shape(runner: &RunnerConfig) -> RunnerConfig {
    let mut r = runner.clone();
    if r.cache.is_none() {
        r.cache = Some(Default::default());
    }
    if r.is_docker_executor() {
        let windows = r.executor_kind() == ExecutorKind::DockerWindows;
        if windows && r.shell.is_none() {
            r.shell = Some("pwsh".to_owned());
        }
        let d = r.docker.get_or_insert_with(DockerConfig::default);
        // gitlab-runner writes these even when zero (no `omitempty` on the Go fields).
        d.tls_verify.get_or_insert(false);
        d.image.get_or_insert_with(String::new);
        d.privileged.get_or_insert(false);
        d.disable_entrypoint_overwrite.get_or_insert(false);
        d.oom_kill_disable.get_or_insert(false);
        d.disable_cache.get_or_insert(false);
        d.shm_size.get_or_insert(0);
        d.network_mtu.get_or_insert(0);
        if d.disable_cache != Some(true) && !d.has_cache_volume() {
            let cache = if windows { "c:\\cache" } else { "/cache" };
            if !d.volumes.iter().any(|v| v.eq_ignore_ascii_case(cache)) {
                d.volumes.push(cache.to_owned());
            }
        }
    } else {
        r.docker = None;
    }
    if r.executor_kind() != ExecutorKind::Kubernetes {
        r.kubernetes = None;
    }
    if r.executor_kind() != ExecutorKind::Custom {
        r.custom = None;
    }
    r
}

/// Serializes one runner into a standard table with sub-tables as `[runners.x]` headers.
fn encode_runner(runner: &RunnerConfig) -> Result<Table, ConfigError> {
    #[derive(Serialize)]
    struct Wrapper<'a> {
        runners: [&'a RunnerConfig; 1],
    }
    let encode_err = |message: String| ConfigError::Encode {
        name: runner.name.clone(),
        message,
    };
    let text = toml::to_string(&Wrapper { runners: [runner] }).map_err(|e| encode_err(e.to_string()))?;
    let mut doc = text
        .parse::<DocumentMut>()
        .map_err(|e| encode_err(e.to_string()))?;
    match doc.as_table_mut().remove("runners") {
        Some(Item::ArrayOfTables(mut a)) if !a.is_empty() => {
            let mut table = Table::new();
            std::mem::swap(
                &mut table,
                a.get_mut(0).ok_or_else(|| encode_err("empty".into()))?,
            );
            Ok(table)
        }
        _ => Err(encode_err(
            "serializer did not produce a [[runners]] table".into(),
        )),
    }
}

/// The keys without which a runner cannot work, built without serde.
fn minimal_runner_table(runner: &RunnerConfig) -> Table {
    let mut t = Table::new();
    t.insert("name", toml_edit::value(runner.name.as_str()));
    t.insert("url", toml_edit::value(runner.url.as_str()));
    t.insert("id", toml_edit::value(runner.id));
    t.insert("token", toml_edit::value(runner.token.expose()));
    for (key, at) in [
        ("token_obtained_at", runner.token_obtained_at),
        ("token_expires_at", runner.token_expires_at),
    ] {
        if let Some(dt) = toml_datetime(at) {
            t.insert(key, toml_edit::value(dt));
        }
    }
    t.insert("executor", toml_edit::value(runner.executor.as_str()));
    t
}

/// Two spaces per level, as in files written by gitlab-runner.
fn indent(table: &mut Table, depth: usize) {
    let pad = INDENT.repeat(depth);
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    for key in keys {
        let is_table = matches!(
            table.get(&key),
            Some(Item::Table(_)) | Some(Item::ArrayOfTables(_))
        );
        if !is_table && let Some(mut k) = table.key_mut(&key) {
            k.leaf_decor_mut().set_prefix(pad.clone());
        }
        match table.get_mut(&key) {
            Some(Item::Table(sub)) => {
                sub.decor_mut().set_prefix(pad.clone());
                indent(sub, depth + 1);
            }
            Some(Item::ArrayOfTables(subs)) => {
                for sub in subs.iter_mut() {
                    sub.decor_mut().set_prefix(pad.clone());
                    indent(sub, depth + 1);
                }
            }
            _ => {}
        }
    }
}

fn max_position(table: &Table) -> isize {
    let mut max = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        match item {
            Item::Table(t) => max = max.max(max_position(t)),
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    max = max.max(max_position(t));
                }
            }
            _ => {}
        }
    }
    max
}

/// Gives the new tables explicit positions after everything already in the file, so the
/// runner is written at the end and its sub-tables stay under it.
fn assign_positions(table: &mut Table, next: &mut isize) {
    table.set_position(Some(*next));
    *next += 1;
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => assign_positions(t, next),
            Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    assign_positions(t, next);
                }
            }
            _ => {}
        }
    }
}

/// Sets `key` while keeping the whitespace and comments around the old value; assigning a
/// fresh value would drop an inline trailing comment (toml_edit caveat).
fn set_keeping_decor(table: &mut Table, key: &str, mut value: toml_edit::Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *value.decor_mut() = decor;
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
            let depth_pad = table
                .iter()
                .next()
                .and_then(|(k, _)| table.key(k))
                .and_then(|k| k.leaf_decor().prefix())
                .and_then(|p| p.as_str())
                .map(str::to_owned);
            if let (Some(pad), Some(mut k)) = (depth_pad, table.key_mut(key)) {
                k.leaf_decor_mut().set_prefix(pad);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn minimal_table_has_credentials_and_executor() {
        let r = RunnerConfig {
            name: "n".into(),
            url: "https://gitlab.example.com/".into(),
            id: 7,
            token: Secret::new("glrt-abc"),
            executor: "shell".into(),
            ..RunnerConfig::default()
        };
        let mut doc = DocumentMut::new();
        let mut runners = ArrayOfTables::new();
        runners.push(minimal_runner_table(&r));
        doc.insert("runners", Item::ArrayOfTables(runners));
        let parsed = crate::parse_str(&doc.to_string(), Path::new("c.toml")).map(|l| l.config);
        let Ok(config) = parsed else {
            panic!("minimal table does not parse: {parsed:?}");
        };
        assert_eq!(config.runners[0].token.expose(), "glrt-abc");
        assert_eq!(config.runners[0].id, 7);
        assert_eq!(config.runners[0].executor, "shell");
        assert!(
            doc.to_string()
                .contains("token_expires_at = 0001-01-01T00:00:00Z")
        );
    }
}
