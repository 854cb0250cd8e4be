//! Job outcomes and GitLab failure reasons.

use std::fmt;
use std::time::Duration;

/// Why a job failed (runner-api.md §2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The script exited non-zero.
    ScriptFailure,
    /// The runner could not do its work.
    RunnerSystemFailure,
    /// The job timeout was reached.
    JobExecutionTimeout,
    /// An image could not be pulled.
    ImagePullFailure,
    /// Anything else.
    UnknownFailure,
    /// Bad runner configuration.
    RunnerConfigurationError,
    /// An external dependency (registry, cache server, ...) failed.
    RunnerExternalDependencyFailure,
    /// The runner process was interrupted.
    RunnerInterrupted,
    /// The job was canceled.
    JobCanceled,
    /// A dependency's artifacts are missing.
    MissingDependencyFailure,
}

impl FailureReason {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ScriptFailure => "script_failure",
            Self::RunnerSystemFailure => "runner_system_failure",
            Self::JobExecutionTimeout => "job_execution_timeout",
            Self::ImagePullFailure => "image_pull_failure",
            Self::UnknownFailure => "unknown_failure",
            Self::RunnerConfigurationError => "runner_configuration_error",
            Self::RunnerExternalDependencyFailure => "runner_external_dependency_failure",
            Self::RunnerInterrupted => "runner_interrupted",
            Self::JobCanceled => "job_canceled",
            Self::MissingDependencyFailure => "missing_dependency_failure",
        }
    }

    /// The value to send to GitLab: reasons GitLab did not announce in `features.failure_reasons` are mapped to
    /// supported ones the way gitlab-runner's `failure_reason_mapper.go` does.
    pub fn for_gitlab(&self, supported: &[String]) -> &'static str {
        match self {
            Self::ScriptFailure | Self::RunnerSystemFailure | Self::JobExecutionTimeout => self.as_str(),
            _ if supported.iter().any(|s| s == self.as_str()) => self.as_str(),
            Self::ImagePullFailure | Self::RunnerExternalDependencyFailure => "runner_system_failure",
            Self::RunnerConfigurationError => "script_failure",
            _ => "unknown_failure",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of `run_job`. A failing script is an outcome, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// All stages passed.
    Success,
    /// The job failed.
    Failed {
        /// Failure reason (map with [`FailureReason::for_gitlab`] before sending).
        reason: FailureReason,
        /// Exit code of the failing script, if one exited.
        exit_code: Option<i32>,
        /// The text after `Job failed:` in the trace.
        message: String,
    },
}

impl JobOutcome {
    /// True for `Success`.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }

    /// The failure reason, if the job failed.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        match self {
            Self::Success => None,
            Self::Failed { reason, .. } => Some(*reason),
        }
    }

    /// The exit code of the failing script, if any.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Success => None,
            Self::Failed { exit_code, .. } => *exit_code,
        }
    }
}

/// Formats a duration as Go's `time.Duration.String()` does for whole seconds (`1h0m0s`, `2m30s`, `5s`), which
/// gitlab-runner prints in "execution took longer than ...".
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let millis = d.subsec_millis();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let secs = if millis == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{millis:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else if total == 0 && millis == 0 {
        "0s".to_owned()
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_unsupported_reasons() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            FailureReason::ImagePullFailure.for_gitlab(&none),
            "runner_system_failure"
        );
        assert_eq!(
            FailureReason::RunnerConfigurationError.for_gitlab(&none),
            "script_failure"
        );
        assert_eq!(FailureReason::JobCanceled.for_gitlab(&none), "unknown_failure");
        let some = vec!["image_pull_failure".to_owned()];
        assert_eq!(
            FailureReason::ImagePullFailure.for_gitlab(&some),
            "image_pull_failure"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(10_500)), "10.5s");
    }
}
