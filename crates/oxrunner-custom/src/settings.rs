//! `[runners.custom]` resolved into the values the executor uses, with gitlab-runner's defaults.

use std::time::Duration;

use oxrunner_config::CustomConfig;

/// Default `config_exec_timeout`, `prepare_exec_timeout` and `cleanup_exec_timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `graceful_kill_timeout`: time between SIGTERM and SIGKILL.
pub const DEFAULT_GRACEFUL_KILL_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `force_kill_timeout`: time after SIGKILL before the runner gives up on the process.
pub const DEFAULT_FORCE_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A program with its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// Executable (path or name looked up in `PATH`).
    pub exec: String,
    /// Arguments before any the executor adds.
    pub args: Vec<String>,
}

impl Program {
    fn optional(exec: Option<&String>, args: &[String]) -> Option<Self> {
        exec.filter(|e| !e.is_empty()).map(|e| Self {
            exec: e.clone(),
            args: args.to_vec(),
        })
    }
}

/// The custom executor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomSettings {
    /// `config_exec` + `config_args`.
    pub config: Option<Program>,
    /// `config_exec_timeout`.
    pub config_timeout: Duration,
    /// `prepare_exec` + `prepare_args`.
    pub prepare: Option<Program>,
    /// `prepare_exec_timeout`.
    pub prepare_timeout: Duration,
    /// `run_exec` + `run_args` (an empty `exec` fails the job as a configuration error, as gitlab-runner does).
    pub run: Program,
    /// `cleanup_exec` + `cleanup_args`.
    pub cleanup: Option<Program>,
    /// `cleanup_exec_timeout`.
    pub cleanup_timeout: Duration,
    /// `graceful_kill_timeout`.
    pub graceful_kill: Duration,
    /// `force_kill_timeout`.
    pub force_kill: Duration,
}

impl Default for CustomSettings {
    fn default() -> Self {
        Self::from_config(&CustomConfig::default())
    }
}

/// gitlab-runner treats a missing, zero or negative number of seconds as "use the default".
fn seconds_or(value: Option<i64>, default: Duration) -> Duration {
    value
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(default, Duration::from_secs)
}

impl CustomSettings {
    /// Resolves `[runners.custom]`. Every key of the section is used.
    pub fn from_config(c: &CustomConfig) -> Self {
        Self {
            config: Program::optional(c.config_exec.as_ref(), &c.config_args),
            config_timeout: seconds_or(c.config_exec_timeout, DEFAULT_EXEC_TIMEOUT),
            prepare: Program::optional(c.prepare_exec.as_ref(), &c.prepare_args),
            prepare_timeout: seconds_or(c.prepare_exec_timeout, DEFAULT_EXEC_TIMEOUT),
            run: Program {
                exec: c.run_exec.clone(),
                args: c.run_args.clone(),
            },
            cleanup: Program::optional(c.cleanup_exec.as_ref(), &c.cleanup_args),
            cleanup_timeout: seconds_or(c.cleanup_exec_timeout, DEFAULT_EXEC_TIMEOUT),
            graceful_kill: seconds_or(c.graceful_kill_timeout, DEFAULT_GRACEFUL_KILL_TIMEOUT),
            force_kill: seconds_or(c.force_kill_timeout, DEFAULT_FORCE_KILL_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_follow_gitlab_runner() {
        let s = CustomSettings::from_config(&CustomConfig {
            run_exec: "/d/run".into(),
            config_exec: Some(String::new()),
            prepare_exec: Some("/d/prepare".into()),
            prepare_args: vec!["a".into()],
            prepare_exec_timeout: Some(5),
            graceful_kill_timeout: Some(0),
            force_kill_timeout: Some(-3),
            ..Default::default()
        });
        assert_eq!(s.config, None, "an empty config_exec means none");
        assert_eq!(s.config_timeout, DEFAULT_EXEC_TIMEOUT);
        assert_eq!(s.prepare_timeout, Duration::from_secs(5));
        assert_eq!(s.prepare.map(|p| p.args), Some(vec!["a".to_owned()]));
        assert_eq!(s.graceful_kill, DEFAULT_GRACEFUL_KILL_TIMEOUT);
        assert_eq!(s.force_kill, DEFAULT_FORCE_KILL_TIMEOUT);
        assert_eq!(s.run.exec, "/d/run");
    }
}
