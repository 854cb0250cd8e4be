//! Errors and warnings produced while reading and writing `config.toml`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why `config.toml` (or the system id file next to it) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read {}: {source}\nhint: {}", path.display(), read_hint(source))]
    Read {
        /// File that was read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error(
        "{}:{line}:{column}: invalid TOML: {message}\nhint: fix the syntax at that position (unclosed `[` or `\"` are the usual cause), then run the command again"
    , path.display())]
    Syntax {
        /// File that was parsed.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// The file is valid TOML but a value has the wrong type or an impossible value.
    #[error("{}:{line}:{column}: invalid value for `{key}`: {message}\nhint: {hint}", path.display())]
    Invalid {
        /// File that was parsed.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// Dotted key path, e.g. `runners[0].docker.shm_size`.
        key: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Writing the file (or its directory) failed.
    #[error("cannot write {}: {source}\nhint: check that the directory exists and is writable by this user (the file is written with mode 0600)", path.display())]
    Write {
        /// File that was written.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A runner entry could not be turned into TOML.
    #[error("cannot encode runner `{name}` as TOML: {message}")]
    Encode {
        /// Name of the runner entry.
        name: String,
        /// Serializer message.
        message: String,
    },
    /// No `[[runners]]` entry at the given index.
    #[error("{}: there is no runner #{index} (the file has {count} `[[runners]]` entries)", path.display())]
    NoSuchRunner {
        /// File the document came from.
        path: PathBuf,
        /// Requested index.
        index: usize,
        /// Number of runners in the document.
        count: usize,
    },
}

fn read_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::NotFound => {
            "register a runner first (`oxrunner register`) or pass the right file with `--config`"
        }
        io::ErrorKind::PermissionDenied => {
            "the file is mode 0600; run as the user that owns it, or as root for /etc/gitlab-runner"
        }
        io::ErrorKind::InvalidData => "the file must be UTF-8 text",
        _ => "check the path given with `--config`",
    }
}

/// A problem that does not stop the runner, e.g. an unknown (misspelled) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// File the warning is about.
    pub path: PathBuf,
    /// Full dotted key path with array indices, e.g. `runners[0].docker.colume`.
    pub key: String,
    /// 1-based line of the key.
    pub line: usize,
    /// 1-based column of the key.
    pub column: usize,
    /// Human-readable text, e.g. ``unknown key `runners.docker.colume` (ignored)``.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}
