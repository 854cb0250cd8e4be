//! `connection_max_age` end to end: the daemon's requests to fake-gitlab go over new TCP connections once the
//! configured age has passed, and keep reusing one connection under the 15 min default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Daemon, Sandbox, fake, global_toml, quit_ok, shell_runner_toml};
use fake_gitlab::FakeGitlab;
use nix::sys::signal::Signal;

/// Failure guard only: the conditions are polled.
const GUARD: Duration = Duration::from_secs(60);

fn start(fake: &FakeGitlab, sb: &Sandbox, global_extra: &str) -> Daemon {
    let token = fake.create_runner_token("age");
    write_config(fake, sb, &token, global_extra);
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

fn write_config(fake: &FakeGitlab, sb: &Sandbox, token: &str, global_extra: &str) {
    let text =
        global_toml(1, global_extra) + &shell_runner_toml("age", &fake.url(), token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
}

fn job_requests(fake: &FakeGitlab) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

async fn poll_until(what: &str, d: &Daemon, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_older_than_the_maximum_age_are_replaced() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, "connection_max_age = \"1ms\"");
    // Each poll comes after the age has passed, so each one opens a connection of its own.
    poll_until("three connections", &d, || fake.connections() >= 3).await;
    assert!(
        !d.log().contains("connection_max_age"),
        "no warning names the key:\n{}",
        d.log()
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_default_age_the_polls_share_one_connection() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, "");
    poll_until("four job requests", &d, || job_requests(&fake) >= 4).await;
    let polls: std::collections::HashSet<_> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v4/jobs/request"))
        .filter_map(|r| r.peer)
        .collect();
    assert_eq!(polls.len(), 1, "{polls:?}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_a_new_maximum_age_to_the_runners_it_keeps() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("age");
    write_config(&fake, &sb, &token, "");
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    poll_until("two job requests", &d, || job_requests(&fake) >= 2).await;
    assert_eq!(fake.connections(), 1, "{}", d.log());
    // Only the global key changes: the runner is kept, and its polls must follow the new age.
    write_config(&fake, &sb, &token, "connection_max_age = \"1ms\"");
    d.signal(Signal::SIGHUP);
    poll_until("new connections after the reload", &d, || fake.connections() >= 3).await;
    quit_ok(d).await;
}
