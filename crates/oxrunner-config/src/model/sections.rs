//! Small runner sub-tables: `[runners.custom_build_dir]`, `[runners.artifact]`, `[runners.custom]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_go_duration;

/// Default `[runners.artifact] upload_timeout`.
pub const DEFAULT_ARTIFACT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `[runners.artifact] response_header_timeout`.
pub const DEFAULT_ARTIFACT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(600);

/// `[runners.custom_build_dir]`: lets jobs pick `GIT_CLONE_PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomBuildDir {
    /// `None` = executor default (enabled for docker/kubernetes/custom, disabled for shell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `[runners.artifact]`: HTTP timeouts for artifact uploads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactConfig {
    /// Go duration for the whole upload (default 1h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_timeout: Option<String>,
    /// Go duration to wait for response headers (default 10m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_timeout: Option<String>,
}

impl ArtifactConfig {
    /// Upload timeout with its default.
    pub fn upload_timeout(&self) -> Duration {
        duration_or(self.upload_timeout.as_deref(), DEFAULT_ARTIFACT_UPLOAD_TIMEOUT)
    }

    /// Response header timeout with its default.
    pub fn response_header_timeout(&self) -> Duration {
        duration_or(
            self.response_header_timeout.as_deref(),
            DEFAULT_ARTIFACT_RESPONSE_HEADER_TIMEOUT,
        )
    }
}

fn duration_or(value: Option<&str>, default: Duration) -> Duration {
    value
        .and_then(|s| parse_go_duration(s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
}

/// `[runners.custom]`: the custom executor's driver programs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomConfig {
    /// Program printing JSON configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_exec: Option<String>,
    /// Arguments of `config_exec`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_args: Vec<String>,
    /// Seconds `config_exec` may run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_exec_timeout: Option<i64>,
    /// Program preparing the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepare_exec: Option<String>,
    /// Arguments of `prepare_exec`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prepare_args: Vec<String>,
    /// Seconds `prepare_exec` may run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepare_exec_timeout: Option<i64>,
    /// Program running each stage's script (required by the executor).
    pub run_exec: String,
    /// Arguments of `run_exec` (before script path and stage name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub run_args: Vec<String>,
    /// Program cleaning up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_exec: Option<String>,
    /// Arguments of `cleanup_exec`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleanup_args: Vec<String>,
    /// Seconds `cleanup_exec` may run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_exec_timeout: Option<i64>,
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_kill_timeout: Option<i64>,
    /// Seconds after SIGKILL before giving up on the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_kill_timeout: Option<i64>,
}
