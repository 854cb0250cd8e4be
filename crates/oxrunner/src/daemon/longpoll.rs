//! The start/reload check for a `concurrent` too low for the runners that long-poll.
//!
//! Each request loop holds one of the `concurrent` slots while GitLab (Workhorse) keeps its request open, up to
//! the instance's long-polling timeout (50 s by default). With fewer slots than polling runners, a runner can find
//! every slot held by the others' idle polls and its job waits out their timeout. gitlab-runner warns about this
//! at start and on every reload; the headline is the same, so searches for it lead to the same advice.

use oxrunner_config::{Config, RunnerConfig};

/// Executors whose runners request jobs (see `Daemon::apply`).
fn polls(runner: &RunnerConfig) -> bool {
    !runner.token.expose().is_empty() && crate::executors::supported(&runner.executor_kind())
}

/// The warning to log for `config`, if any.
pub fn warning(config: &Config) -> Option<String> {
    let polling = config.runners.iter().filter(|r| polls(r)).count();
    let concurrent = usize::try_from(config.concurrent.max(1)).unwrap_or(1);
    if polling < 2 || concurrent >= polling {
        return None;
    }
    Some(format!(
        "CONFIGURATION: Long polling issues detected.\n\
         `concurrent` ({concurrent}) is lower than the number of runners that ask GitLab for jobs ({polling}): \
         while GitLab holds one runner's job request open, another runner may find no free slot and its job waits \
         up to the long-polling timeout (50 s by default) before it starts.\n\
         hint: set `concurrent` to at least {} (one slot per runner, plus one so a runner that just took a job can \
         ask again at once); see https://docs.gitlab.com/runner/configuration/advanced-configuration/#long-polling-issues",
        polling + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(token: &str, executor: &str) -> RunnerConfig {
        RunnerConfig {
            token: token.into(),
            executor: executor.to_string(),
            ..RunnerConfig::default()
        }
    }

    fn config(concurrent: i64, runners: Vec<RunnerConfig>) -> Config {
        Config {
            concurrent,
            runners,
            ..Config::default()
        }
    }

    #[test]
    fn warns_only_when_polling_runners_outnumber_concurrent() {
        let two = || vec![runner("glrt-a", "shell"), runner("glrt-b", "docker")];
        let text = warning(&config(1, two())).unwrap_or_default();
        assert!(
            text.starts_with("CONFIGURATION: Long polling issues detected."),
            "{text}"
        );
        assert!(
            text.contains("`concurrent` (1)") && text.contains("at least 3"),
            "{text}"
        );
        assert!(warning(&config(2, two())).is_none());
        assert!(warning(&config(1, vec![runner("glrt-a", "shell")])).is_none());
        // Entries that never poll (no token, unsupported executor) do not count.
        let idle = vec![
            runner("glrt-a", "shell"),
            runner("", "shell"),
            runner("glrt-c", "kubernetes"),
        ];
        assert!(warning(&config(1, idle)).is_none());
    }
}
