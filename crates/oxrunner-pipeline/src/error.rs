//! Errors and warnings. Every user-facing error names the file, line and column it comes from, because
//! a pipeline is usually spread over several included files and "job x is invalid" alone is not enough.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A position in a CI file (line and column are 1-based).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(file: &Arc<str>, line: usize, col: usize) -> Loc {
        Loc {
            file: Arc::clone(file),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A problem in the CI configuration itself.
    #[error("{loc}: {message}{}", hint_line(.hint))]
    Config {
        loc: Loc,
        message: String,
        hint: Option<String>,
    },
    /// A pipeline-level problem that has no single source position (for example a cycle across jobs).
    #[error("{message}{}", hint_line(.hint))]
    Pipeline { message: String, hint: Option<String> },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("git {args}: {message}{}", hint_line(.hint))]
    Git {
        args: String,
        message: String,
        hint: Option<String>,
    },
}

fn hint_line(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\nhint: {h}"),
        None => String::new(),
    }
}

impl PipelineError {
    pub fn at(loc: &Loc, message: impl Into<String>) -> PipelineError {
        PipelineError::Config {
            loc: loc.clone(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn at_hint(loc: &Loc, message: impl Into<String>, hint: impl Into<String>) -> PipelineError {
        PipelineError::Config {
            loc: loc.clone(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn pipeline(message: impl Into<String>) -> PipelineError {
        PipelineError::Pipeline {
            message: message.into(),
            hint: None,
        }
    }

    /// The message without location or hint (what GitLab itself would print).
    pub fn message(&self) -> String {
        match self {
            PipelineError::Config { message, .. } | PipelineError::Pipeline { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }

    pub fn location(&self) -> Option<&Loc> {
        match self {
            PipelineError::Config { loc, .. } => Some(loc),
            _ => None,
        }
    }
}

/// Something GitLab accepts but the user most likely did not mean, or that cannot work locally.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub location: Option<String>,
    pub message: String,
}

impl Warning {
    pub fn at(loc: &Loc, message: impl Into<String>) -> Warning {
        Warning {
            location: Some(loc.to_string()),
            message: message.into(),
        }
    }

    pub fn global(message: impl Into<String>) -> Warning {
        Warning {
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: warning: {}", self.message),
            None => write!(f, "warning: {}", self.message),
        }
    }
}
