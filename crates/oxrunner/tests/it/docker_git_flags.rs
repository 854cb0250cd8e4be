#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The git feature flags and `FF_ENABLE_JOB_CLEANUP` with the Docker executor, whose checkout is fetched on the
//! runner's host (`script/host_fetch.rs`) and copied into the container: the runner-side git sends the same
//! headers as the shell executor's, and a `clone` job's runner-side checkout is removed after the job under the
//! cleanup flag. Real dockerd, fake-gitlab's git over HTTP.

use crate::support::docker as docker_common;

use docker_common::{DockerOpts, Env, docker_available, project_files, walk};
use fake_gitlab::{ImageSpec, JobSpec, RequestLog};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_runner_side_fetch_sends_the_flags_headers_and_the_cleanup_removes_its_checkout() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    let project = env
        .fake
        .create_project("group/docker-flags", &project_files(env.sb.dir.path()))
        .unwrap();
    let id = env.fake.enqueue_job(
        JobSpec::new("flags", &["cat hello.txt"])
            .image(ImageSpec::new("oxrunner-test/busybox"))
            .project(project.id)
            .variable("GIT_STRATEGY", "clone")
            .variable("FF_USE_GIT_PROACTIVE_AUTH", "true")
            .variable("FF_ENABLE_JOB_CLEANUP", "true"),
    );
    let job = env.succeeded(id).await;
    let trace = job.trace_text();
    assert!(trace.contains("hello from the repository"), "{trace}");

    let requests = env.fake.requests();
    let handed_out: Vec<&RequestLog> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v4/jobs/request") && r.status == 201)
        .collect();
    assert_eq!(handed_out.len(), 1);
    let request_id = handed_out[0].request_id.as_str();
    assert!(
        trace.contains(&format!("Gitaly correlation ID: {request_id}")),
        "{trace}"
    );
    let git: Vec<&RequestLog> = requests.iter().filter(|r| r.path.contains(".git/")).collect();
    assert!(!git.is_empty(), "{trace}");
    for r in &git {
        assert_eq!(r.header("x-gitaly-correlation-id"), Some(request_id), "{r:?}");
    }
    // The runner's git decides: an older one ignores proactive auth, and the job log says so.
    if crate::e2e_git_flags::git_version() >= (2, 46) {
        assert!(git.iter().all(|r| r.status == 200), "{git:#?}");
        assert!(git[0].header("authorization").is_some(), "{:?}", git[0]);
        assert!(!trace.contains("has no effect"), "{trace}");
    } else {
        assert!(
            trace.contains("FF_USE_GIT_PROACTIVE_AUTH (needs git 2.46.0 or later) has no effect"),
            "{trace}"
        );
    }

    // The runner-side checkout (beside config.toml) went with the job.
    let checkouts = walk(&env.sb.path("etc/builds"));
    assert!(
        !checkouts.iter().any(|p| p.ends_with("hello.txt")),
        "a runner-side checkout is left under etc/builds: {checkouts:?}"
    );
    env.daemon().quit().await;
}

/// `fetch` under `FF_ENABLE_JOB_CLEANUP` in an image without git (the Docker design: sources are fetched on the
/// runner): upstream resets the checkout with the helper image's git; here the reset cannot run in the job's
/// container, so the project dir is removed there instead (the next job's sources are copied in whole). Either
/// way the cleanup does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_fetch_cleanup_in_an_image_without_git_does_not_fail() {
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    let project = env
        .fake
        .create_project("group/docker-fetch-cleanup", &project_files(env.sb.dir.path()))
        .unwrap();
    let id = env.fake.enqueue_job(
        JobSpec::new("fetch", &["cat hello.txt", "touch untracked.txt"])
            .image(ImageSpec::new("oxrunner-test/busybox"))
            .project(project.id)
            .variable("GIT_STRATEGY", "fetch")
            .variable("FF_ENABLE_JOB_CLEANUP", "true"),
    );
    let job = env.succeeded(id).await;
    let trace = job.trace_text();
    assert!(trace.contains("hello from the repository"), "{trace}");
    assert!(
        !trace.contains("Cleaning up file based variables failed"),
        "{trace}"
    );
    assert!(!trace.contains("not found"), "{trace}");
    assert!(
        trace.contains("git is not available here: removing the project directory instead of resetting it"),
        "{trace}"
    );
    env.daemon().quit().await;
}
