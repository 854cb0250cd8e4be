//! Issue 11 item 8: numbers outside what the runner can represent are located load errors, not panics later.

use std::path::Path;

use oxrunner_config::{ConfigError, parse_str};

fn invalid(text: &str) -> (String, usize, usize, String) {
    let err = parse_str(text, Path::new("/etc/gitlab-runner/config.toml")).unwrap_err();
    let shown = err.to_string();
    let ConfigError::Invalid {
        key, line, column, ..
    } = err
    else {
        panic!("expected Invalid, got {err:?}");
    };
    (key, line, column, shown)
}

#[test]
fn concurrent_past_the_job_limit_is_a_located_error_with_a_hint() {
    let (key, line, column, shown) = invalid("check_interval = 3\nconcurrent = 9223372036854775807\n");
    assert_eq!((key.as_str(), line, column), ("concurrent", 2, 14));
    assert!(
        shown.starts_with("/etc/gitlab-runner/config.toml:2:14: invalid value for `concurrent`"),
        "{shown}"
    );
    assert!(
        shown.contains("\nhint: set `concurrent` to a value between 0 and 100000"),
        "{shown}"
    );
}

#[test]
fn runner_counts_and_global_seconds_are_bounded() {
    let runner = |line: &str| format!("concurrent = 4\n[[runners]]\n  name = \"a\"\n  {line}\n");
    let (key, line, ..) = invalid(&runner("request_concurrency = 4000000000"));
    assert_eq!((key.as_str(), line), ("runners[0].request_concurrency", 4));
    let (key, ..) = invalid(&runner("limit = 99999999999"));
    assert_eq!(key, "runners[0].limit");
    let (key, ..) = invalid(&runner("output_limit = 9223372036854775807"));
    assert_eq!(key, "runners[0].output_limit");
    let (key, ..) = invalid("shutdown_timeout = 9223372036854775807\n");
    assert_eq!(key, "shutdown_timeout");
    // Large but sane values still load.
    parse_str(
        &runner("request_concurrency = 4\n  limit = 500"),
        Path::new("c.toml"),
    )
    .unwrap();
}
