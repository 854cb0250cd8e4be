#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue #5 acceptance: a docker job that ends by cancel, timeout or runner SIGTERM leaves no container, network
//! or volume labelled with the runner's short token; a runner killed with SIGKILL leaves them, and the next
//! `oxrunner run` start removes them before it asks for a job. Every test first checks that its runner's objects do
//! exist while the job runs, so "nothing left" can never pass because of a wrong label.

use crate::support::docker as docker_common;

use std::time::Duration;

use docker_common::{
    DockerOpts, Env, IMAGE, LABEL_RUNNER, docker, docker_available, objects, wait_no_objects,
    wait_running_container,
};
use fake_gitlab::{ImageSpec, JobSpec};
use nix::sys::signal::Signal;

/// How many times runners asked the fake for a job so far.
fn job_requests(env: &Env) -> usize {
    env.fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

/// Removal may finish a moment after GitLab hears of the job's end.
const CLEANUP: Duration = Duration::from_secs(15);

/// A docker job that prints a marker and then blocks in the container.
fn sleeper(name: &str) -> JobSpec {
    JobSpec::new(name, &["echo sleeping-now", "sleep 600"])
        .variable("GIT_STRATEGY", "none")
        .image(ImageSpec::new("oxrunner-test/busybox"))
}

/// The same with a service, which puts the job on a per-job network (so networks are checked too).
fn sleeper_with_service(name: &str) -> JobSpec {
    sleeper(name).service(
        ImageSpec::new("oxrunner-test/busybox")
            .alias("sidecar")
            .command(&["sleep", "600"]),
    )
}

/// Waits until the job runs in its container, and checks the runner's labelled objects exist (and a network,
/// when the job has a service).
async fn running(env: &Env, id: i64, with_network: bool) {
    env.wait_trace(id, "sleeping-now").await;
    wait_running_container(&env.short, Duration::from_secs(10)).await;
    let live = objects(&env.short);
    assert!(
        !live.containers.is_empty() && !live.volumes.is_empty(),
        "a running job has a labelled container and build volume: {live:?}"
    );
    if with_network {
        assert!(
            live.containers.len() >= 2 && !live.networks.is_empty(),
            "a job with a service has a labelled service container and network: {live:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn cancel_during_sleep_leaves_no_container_network_or_volume() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    // A runner learns of a cancel from the answer to its next trace PATCH; a job that prints nothing gets only
    // gitlab-runner's 30 s keep-alive PUT. A background ticker keeps the trace moving while `sleep 600` blocks.
    let id = env.fake.enqueue_job(
        JobSpec::new(
            "cancel-me",
            &[
                "(while true; do echo tick; sleep 0.5; done) &",
                "echo sleeping-now",
                "sleep 600",
            ],
        )
        .variable("GIT_STRATEGY", "none")
        .image(ImageSpec::new("oxrunner-test/busybox")),
    );
    running(&env, id, false).await;
    env.fake.cancel_job(id);
    let job = env.finished(id).await;
    assert_eq!(job.status, "canceled", "{}", job.trace_text());
    let left = wait_no_objects(&env.short, CLEANUP).await;
    assert!(
        left.is_empty(),
        "left behind after cancel: {left:?}\n{}",
        env.log()
    );
    env.daemon().quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn job_timeout_leaves_no_container_network_or_volume() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    let id = env.fake.enqueue_job(sleeper("too-slow").timeout(4));
    running(&env, id, false).await;
    let job = env.finished(id).await;
    assert_eq!(job.status, "failed", "{}", job.trace_text());
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("job_execution_timeout"),
        "{}",
        job.trace_text()
    );
    let left = wait_no_objects(&env.short, CLEANUP).await;
    assert!(
        left.is_empty(),
        "left behind after timeout: {left:?}\n{}",
        env.log()
    );
    env.daemon().quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn runner_sigterm_leaves_no_container_network_or_volume() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    let id = env.fake.enqueue_job(sleeper_with_service("interrupted"));
    running(&env, id, true).await;
    env.daemon().signal(Signal::SIGTERM);
    let status = env.daemon().wait(Duration::from_secs(30)).await;
    assert!(
        status.is_some(),
        "the runner did not exit on SIGTERM:\n{}",
        env.log()
    );
    // Nobody is left to clean up once the runner has exited: it must have done it before.
    let left = objects(&env.short);
    assert!(
        left.is_empty(),
        "left behind after SIGTERM: {left:?}\n{}",
        env.log()
    );
    let job = env.fake.job(id).unwrap();
    assert_eq!(job.status, "failed", "the aborted job is reported: {job:?}");
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{}",
        job.trace_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn sigkilled_runner_leftovers_are_removed_at_the_next_start() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    // Another runner's object on the same engine: the start-up cleanup must not touch it.
    let other = format!("{LABEL_RUNNER}=other-{}", &env.short);
    let decoy = docker(&["create", "--label", &other, IMAGE, "true"])
        .trim()
        .to_owned();

    let id = env.fake.enqueue_job(sleeper_with_service("killed"));
    running(&env, id, true).await;
    env.daemon().signal(Signal::SIGKILL);
    assert!(
        env.daemon().wait(Duration::from_secs(10)).await.is_some(),
        "SIGKILL did not end the runner"
    );
    let left = objects(&env.short);
    assert!(
        left.containers.len() >= 2 && !left.volumes.is_empty() && !left.networks.is_empty(),
        "a killed runner cannot clean up, so its objects must still be there: {left:?}"
    );

    // No job is enqueued: the start alone must remove them, before it first asks GitLab for a job.
    let polls_before = job_requests(&env);
    env.start_daemon("oxrunner-restart.log");
    let deadline = tokio::time::Instant::now() + CLEANUP;
    while job_requests(&env) == polls_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted runner never asked for a job; log:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = objects(&env.short);
    assert!(
        left.is_empty(),
        "the restarted runner asked for a job before removing these: {left:?}\nlog:\n{}",
        env.log()
    );
    let decoy_alive = docker(&["ps", "-a", "-q", "--no-trunc", "--filter", &format!("id={decoy}")]);
    docker(&["rm", "-f", &decoy]);
    assert!(
        decoy_alive.contains(&decoy),
        "the start-up cleanup removed another runner's container"
    );
    env.daemon().quit().await;
}
