//! Numbers the runner turns into counts and durations must fit what it can represent. A value outside its
//! range is a located load error, so the daemon refuses it at start and a reload keeps the running
//! configuration, instead of panicking (a semaphore past its permit limit) or starting millions of request loops.

use crate::lint::Seg;
use crate::model::global::Config;

/// The most jobs one process is asked to hold at once (`concurrent`, `limit`). Far past what one host can run,
/// and small enough that every count derived from it (semaphore permits, slot tables) stays representable.
pub const MAX_JOBS: i64 = 100_000;

/// The most job requests one runner entry keeps open at once. Each is a held HTTP request to GitLab; GitLab's
/// own advice is 2-4.
pub const MAX_REQUEST_CONCURRENCY: i64 = 1_000;

/// The longest duration in seconds: what Go's `time.Duration` holds, past which gitlab-runner's own arithmetic
/// wraps around (292 years).
pub const MAX_SECONDS: i64 = i64::MAX / 1_000_000_000;

/// `output_limit` is in KiB; above this its size in bytes no longer fits a signed 64-bit count.
pub const MAX_OUTPUT_LIMIT_KIB: i64 = i64::MAX / 1024;

/// A value outside its range: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutOfRange {
    pub path: Vec<Seg>,
    pub message: String,
    pub hint: String,
}

struct Check<'a> {
    path: Vec<Seg>,
    value: i64,
    max: i64,
    what: &'a str,
}

/// The first out-of-range number of `config`, in file order of the checks (global keys, then each runner).
pub(crate) fn check(config: &Config) -> Option<OutOfRange> {
    let key = |k: &str| vec![Seg::Key(k.to_owned())];
    let mut checks = vec![
        Check {
            path: key("concurrent"),
            value: config.concurrent,
            max: MAX_JOBS,
            what: "jobs",
        },
        Check {
            path: key("check_interval"),
            value: config.check_interval,
            max: MAX_SECONDS,
            what: "seconds",
        },
        Check {
            path: key("shutdown_timeout"),
            value: config.shutdown_timeout,
            max: MAX_SECONDS,
            what: "seconds",
        },
    ];
    if let Some(s) = &config.session_server {
        checks.push(Check {
            path: vec![
                Seg::Key("session_server".into()),
                Seg::Key("session_timeout".into()),
            ],
            value: s.session_timeout,
            max: MAX_SECONDS,
            what: "seconds",
        });
    }
    for (i, r) in config.runners.iter().enumerate() {
        let at = |k: &str| vec![Seg::Key("runners".into()), Seg::Index(i), Seg::Key(k.to_owned())];
        let counts = [
            ("limit", r.limit, MAX_JOBS, "jobs"),
            (
                "request_concurrency",
                r.request_concurrency,
                MAX_REQUEST_CONCURRENCY,
                "requests",
            ),
            ("output_limit", r.output_limit, MAX_OUTPUT_LIMIT_KIB, "KiB"),
            (
                "unhealthy_requests_limit",
                r.unhealthy_requests_limit.unwrap_or(0),
                i64::from(u32::MAX),
                "requests",
            ),
            (
                "job_status_final_update_retry_limit",
                r.job_status_final_update_retry_limit.unwrap_or(0),
                i64::from(u32::MAX),
                "tries",
            ),
        ];
        for (k, value, max, what) in counts {
            checks.push(Check {
                path: at(k),
                value,
                max,
                what,
            });
        }
    }
    checks.into_iter().find(|c| c.value > c.max).map(|c| {
        let name = match c.path.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => String::new(),
        };
        OutOfRange {
            message: format!("{} is out of range (at most {} {})", c.value, c.max, c.what),
            hint: format!("set `{name}` to a value between 0 and {}", c.max),
            path: c.path,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::runner::RunnerConfig;

    fn with_runner(f: impl FnOnce(&mut RunnerConfig)) -> Config {
        let mut r = RunnerConfig::default();
        f(&mut r);
        Config {
            runners: vec![r],
            ..Config::default()
        }
    }

    #[test]
    fn values_in_range_pass_and_the_first_offender_is_named() {
        assert_eq!(check(&Config::default()), None);
        let big = Config {
            concurrent: MAX_JOBS + 1,
            ..Config::default()
        };
        let p = check(&big).unwrap_or_else(|| panic!("no error"));
        assert_eq!(p.path, vec![Seg::Key("concurrent".into())]);
        assert!(p.message.contains("100001"), "{}", p.message);
        let p = check(&with_runner(|r| r.request_concurrency = 4_000_000_000))
            .unwrap_or_else(|| panic!("no error"));
        assert_eq!(p.path.last(), Some(&Seg::Key("request_concurrency".into())));
        assert_eq!(
            check(&with_runner(|r| r.limit = -1)),
            None,
            "a negative limit means no limit"
        );
    }
}
