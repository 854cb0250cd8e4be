//! One error type for the crate. Every variant names the path it concerns so a job log line is actionable
//! without a backtrace; user-facing variants carry a `hint:` line.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("writing archive output: {0}")]
    Write(#[source] io::Error),

    #[error("reading zip archive {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    #[error(
        "zip archive {archive}: entry {entry:?} {reason}; nothing was extracted\n\
         hint: entries like this could write outside the project, and runners never produce them; \
         recreate the archive from the job's files"
    )]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: &'static str,
    },

    #[error(
        "extracting {archive}: {path} is {reason}\n\
         hint: remove it from the project directory before restoring, or exclude it from the cache/artifact paths"
    )]
    UnsafeTarget {
        archive: PathBuf,
        path: PathBuf,
        reason: &'static str,
    },

    #[error(
        "invalid glob pattern {pattern:?}: {source}\nhint: check `paths`/`exclude` of the job definition"
    )]
    Pattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },

    #[error(
        "unknown compression level {0:?}\n\
         hint: use one of fastest, fast, default, slow, slowest"
    )]
    UnknownLevel(String),

    #[error("only one file can be sent as raw, got {0}\nhint: give raw artifacts (reports) a single path")]
    TooManyRawFiles(usize),

    #[error("{0} is not a regular file\nhint: gzip artifacts can only hold regular files")]
    NotRegularFile(PathBuf),

    #[error(
        "cache key {0:?} is empty after sanitisation\n\
         hint: set `cache:key` to a value with at least one non-blank path segment"
    )]
    InvalidCacheKey(String),

    #[error("project slug {0:?} cannot be used as a cache directory name")]
    InvalidProjectSlug(String),

    #[error("archive worker thread panicked")]
    WorkerPanic,
}

impl ArchiveError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
