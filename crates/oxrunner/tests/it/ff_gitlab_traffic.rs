//! Issue #15: the two feature flags that shape the daemon's own traffic with GitLab, in-process against
//! fake-gitlab on 127.0.0.1 under a paused clock (the harness of `daemon_inprocess.rs`):
//! `FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL` (keep-alive updates of a quiet job follow GitLab's
//! `X-GitLab-Trace-Update-Interval`) and `FF_USE_ADAPTIVE_REQUEST_CONCURRENCY` (how many job requests are open
//! at once). Every assertion counts requests the fake saw; virtual time only spaces them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};
use oxrunner::daemon::signals::Signal;

use crate::daemon_inprocess::{
    InProcess, freeze, gated_job, reported, until, until_clock_runs, until_ticking, write_config,
};
use crate::support::Sandbox;

async fn fake(trace_update_interval: u64, long_poll: Duration) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        long_poll,
        trace_update_interval,
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

fn flag_toml(name: &str, value: Option<bool>) -> String {
    value
        .map(|v| format!("  [runners.feature_flags]\n    {name} = {v}\n"))
        .unwrap_or_default()
}

/// Keep-alive updates (`state: running` with the trace's checksum) the fake got for job `id`.
fn keep_alives(fake: &FakeGitlab, id: i64) -> usize {
    fake.job(id)
        .unwrap()
        .updates
        .iter()
        .filter(|u| u["state"] == "running" && u.get("output").is_some())
        .count()
}

/// Keep-alives sent for a job that prints nothing for ten minutes of virtual time while GitLab asks for a trace
/// update every 60 s.
async fn quiet_job_keep_alives(flag: Option<bool>) -> usize {
    let frozen = freeze();
    let fake = fake(60, Duration::ZERO).await;
    let sb = Sandbox::new();
    let ff = flag_toml("FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL", flag);
    write_config(&fake, &sb, 1, "", &ff);
    let d = InProcess::start(sb.config());
    let (spec, started, gate) = gated_job(&sb, "quiet");
    let id = fake.enqueue_job(spec);
    until("the quiet job to start", || started.exists()).await;
    // The job now waits for the gate in real time; virtual time may run.
    drop(frozen);
    let before = keep_alives(&fake, id);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let during = keep_alives(&fake, id) - before;
    std::fs::write(&gate, "").unwrap();
    until_clock_runs("the job's final update", || reported(&fake, id)).await;
    d.send(Signal::Quit);
    d.exit().await;
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "success", "{}", job.trace_text());
    during
}

/// Without the flag a quiet job is touched every 30 s at most, i.e. at every 60 s update here (9 or 10 in ten
/// minutes); with it every 4 × 60 s = 240 s (twice). The bounds leave room for the first tick's 3 s interval.
#[tokio::test(start_paused = true)]
async fn dynamic_force_send_interval_spaces_keep_alives_by_the_update_interval() {
    let with_flag = quiet_job_keep_alives(Some(true)).await;
    assert!(
        (1..=3).contains(&with_flag),
        "with FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL the keep-alive interval is 240 s: {with_flag} in 600 s"
    );
    let default = quiet_job_keep_alives(None).await;
    assert!(
        default >= 8,
        "without the flag a quiet job is touched at each 60 s tick: {default} in 600 s"
    );
}

/// Job requests the fake has answered or holds.
fn job_requests(fake: &FakeGitlab) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

/// The most job requests open at once while an idle runner with `request_concurrency = 4` made `n` requests
/// against GitLab's long polling (each held for 50 s of virtual time).
async fn idle_request_concurrency(flag: Option<bool>, n: usize) -> usize {
    let fake = fake(3, Duration::from_secs(50)).await;
    let sb = Sandbox::new();
    let runner =
        "  request_concurrency = 4\n".to_string() + &flag_toml("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY", flag);
    write_config(&fake, &sb, 4, "", &runner);
    let d = InProcess::start(sb.config());
    until_clock_runs("the runner's job requests", || job_requests(&fake) >= n).await;
    let most = fake.max_job_requests_in_flight();
    d.send(Signal::Quit);
    d.exit().await;
    most
}

/// Adaptive (the default): an idle runner keeps one request open, whatever `request_concurrency` allows.
/// Without the flag all four request loops hold a long poll at once.
#[tokio::test(start_paused = true)]
async fn adaptive_request_concurrency_settles_at_one_request_when_idle() {
    assert_eq!(
        idle_request_concurrency(None, 12).await,
        1,
        "an idle runner must not keep request_concurrency = 4 long polls open"
    );
    assert_eq!(idle_request_concurrency(Some(false), 12).await, 4);
}

/// Adaptive: jobs received raise the limit (by 10 % each). The runner first idles with one long poll open (a
/// runner that opened more from the start would pass the second half without adapting at all), then jobs arrive,
/// and once the queue is drained more than one long poll is open, up to the rounded-up limit, before empty
/// answers bring it back down.
#[tokio::test(start_paused = true)]
async fn adaptive_request_concurrency_rises_with_jobs() {
    let fake = fake(3, Duration::from_secs(50)).await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 4, "", "  request_concurrency = 4\n");
    let d = InProcess::start(sb.config());
    until_clock_runs("the idle runner's job requests", || job_requests(&fake) >= 6).await;
    assert_eq!(
        fake.max_job_requests_in_flight(),
        1,
        "an idle runner keeps one long poll open before any job arrived"
    );

    let frozen = freeze();
    let ids: Vec<i64> = (0..12)
        .map(|i| {
            fake.enqueue_job(JobSpec::new(&format!("quick-{i}"), &["true"]).variable("GIT_STRATEGY", "none"))
        })
        .collect();
    // Jobs run real processes; virtual time follows real time meanwhile, so no long poll expires early.
    until_ticking("every job's final update", || {
        ids.iter().all(|&id| reported(&fake, id))
    })
    .await;
    drop(frozen);
    until_clock_runs("two job requests open at once", || {
        fake.max_job_requests_in_flight() >= 2
    })
    .await;
    let most = fake.max_job_requests_in_flight();
    assert!(most <= 4, "{most} requests open with request_concurrency = 4");
    d.send(Signal::Quit);
    d.exit().await;
    for id in ids {
        assert_eq!(fake.job(id).unwrap().status, "success");
    }
}
