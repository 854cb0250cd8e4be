//! Error types of the core crate.

use std::path::PathBuf;

use crate::outcome::FailureReason;

/// An executor could not do its work (not a script failure: those are exit statuses).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Starting the shell failed.
    #[error(
        "starting `{program}` in {dir} failed: {source}\nhint: check that the shell exists and the directory is writable by the runner user"
    )]
    Spawn {
        /// Program that could not start.
        program: String,
        /// Working directory.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file-system or pipe error while running a stage.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (with the path).
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// An error the executor classified itself (e.g. an image pull failure); not retried by the driver.
    #[error("{message}")]
    Build {
        /// Reason to report.
        reason: FailureReason,
        /// Message for the trace.
        message: String,
    },
    /// Any other executor failure (reported as a runner system failure, retried where gitlab-runner retries).
    #[error("{0}")]
    Other(String),
}

impl ExecError {
    /// The failure reason this error maps to.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Build { reason, .. } => *reason,
            _ => FailureReason::RunnerSystemFailure,
        }
    }

    /// True for errors that retrying cannot fix (`BuildError` in gitlab-runner).
    pub fn is_build_error(&self) -> bool {
        matches!(self, Self::Build { .. })
    }
}

/// A `JobHooks` operation (cache, artifacts) failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    /// Reason to report if this fails the job (`None`: script_failure).
    pub reason: Option<FailureReason>,
    /// Message for the trace (e.g. "too large archive" with a hint).
    pub message: String,
}

impl HookError {
    /// An error with a message and the default reason.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            reason: None,
            message: message.into(),
        }
    }

    /// An error with an explicit failure reason.
    pub fn with_reason(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason: Some(reason),
            message: message.into(),
        }
    }
}
