#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue #15 acceptance, through fake-gitlab and `oxrunner run` on a real engine: with `FF_SUSPENDABLE_ENVIRONMENTS`
//! a Docker job with `suspend_on_success` leaves its container stopped and reports a runtime environment key in
//! its final update; a restarted runner's sweep of leftovers keeps that environment; a job with the key resumes it
//! (a file outside the build directory is still there, and get_sources is skipped) and removes it at its end; a key
//! naming another runner id is refused with upstream's error.

use crate::support::docker as docker_common;

use std::time::Duration;

use docker_common::{
    DockerOpts, Env, IMAGE, Sandbox, docker_available, objects, project_files, wait_no_objects,
};
use fake_gitlab::{FakeGitlab, FakeOptions, ImageSpec, JobSpec, SuspendSpec, VarFlags};

const RUNNER_ID: i64 = 7;

/// A docker runner with an id and the flag on in `[runners.feature_flags]`.
async fn start() -> Env {
    let fake = FakeGitlab::start(FakeOptions {
        long_poll: Duration::from_secs(1),
        trace_update_interval: 1,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let token = fake.create_runner_token("docker-suspend");
    let short = oxrunner_config::short_token(&token);
    let sb = Sandbox::new();
    let base = docker_common::config_toml(&fake.url(), &token, &DockerOpts::default());
    let config = base.replacen(
        "  name = \"docker-e2e\"\n",
        &format!("  name = \"docker-e2e\"\n  id = {RUNNER_ID}\n"),
        1,
    ) + "  [runners.feature_flags]\n    FF_SUSPENDABLE_ENVIRONMENTS = true\n";
    assert!(config.contains(&format!("id = {RUNNER_ID}")), "{config}");
    std::fs::write(sb.config(), config).unwrap();
    let mut env = Env {
        fake,
        sb,
        token,
        short,
        daemon: None,
    };
    env.start_daemon("oxrunner-run.log");
    env
}

fn job(name: &str, script: &[&str], project: i64, suspend: SuspendSpec) -> JobSpec {
    let mut spec = JobSpec::new(name, script)
        .project(project)
        .image(ImageSpec::new(IMAGE));
    spec.suspend = Some(suspend);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_suspended_job_environment_is_resumed_by_the_next_job_with_its_key() {
    if !docker_available() {
        return;
    }
    let mut env = start().await;
    let project = env
        .fake
        .create_project("group/suspend", &project_files(env.sb.dir.path()))
        .unwrap();

    let first = env.fake.enqueue_job(
        job(
            "suspend-me",
            &[
                "mkdir -p /opt && echo written-by-job-one > /opt/marker",
                "cat hello.txt",
                "test -f \"$JOB_ONE_SECRET\" && echo secret-file-exists",
            ],
            project.id,
            SuspendSpec {
                on_success: true,
                ..SuspendSpec::default()
            },
        )
        .variable_with(
            "JOB_ONE_SECRET",
            "s3cr3t-value",
            VarFlags {
                file: true,
                ..VarFlags::default()
            },
        ),
    );
    let done = env.succeeded(first).await;
    let trace = done.trace_text();
    let key = done
        .runtime_environment_key
        .clone()
        .unwrap_or_else(|| panic!("no runtime_environment_key in the final update: {done:?}\n{trace}"));
    assert!(key.starts_with(&format!("{RUNNER_ID}/")), "{key}");
    assert!(key.contains("build-container-id="), "{key}");
    assert!(
        trace.contains(&format!("Job environment suspended: {key}")),
        "{trace}"
    );
    assert!(trace.contains("Getting source from Git repository"), "{trace}");
    assert!(trace.contains("\nsecret-file-exists\n"), "{trace}");
    let kept = objects(&env.short);
    assert!(
        kept.containers.len() == 1 && kept.containers[0].contains("Exited") && kept.volumes.len() == 1,
        "a suspended job keeps its stopped container and build volume: {kept:?}"
    );

    // A runner start sweeps the objects of jobs that no longer run; a suspended environment is not one of them.
    env.daemon().quit().await;
    env.start_daemon("oxrunner-restart.log");

    // A key of runner 8 is not this runner's: refused before anything is created.
    let (_, rest) = key.split_once('/').unwrap();
    let foreign = env.fake.enqueue_job(job(
        "foreign-key",
        &["echo must-not-run"],
        project.id,
        SuspendSpec {
            key: Some(format!("8/{rest}")),
            ..SuspendSpec::default()
        },
    ));
    let refused = env.finished(foreign).await;
    let trace = refused.trace_text();
    assert_eq!(refused.status, "failed", "{trace}");
    assert_eq!(
        refused.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("environment key was not issued by this runner"),
        "{trace}"
    );
    assert!(!trace.contains("must-not-run\n"), "{trace}");
    let still = objects(&env.short);
    assert!(
        still.containers.len() == 1 && still.volumes.len() == 1,
        "the restart and the refused key left the environment alone: {still:?}\n{}",
        env.log()
    );

    let second = env.fake.enqueue_job(job(
        "resume-me",
        &[
            "cat /opt/marker",
            "cat hello.txt",
            // The environment outlived job one, but its file variables did not.
            "ls -A \"$CI_PROJECT_DIR.tmp\"",
            "test ! -e \"$CI_PROJECT_DIR.tmp/JOB_ONE_SECRET\" && echo secret-file-gone",
        ],
        project.id,
        SuspendSpec {
            key: Some(key.clone()),
            ..SuspendSpec::default()
        },
    ));
    let resumed = env.succeeded(second).await;
    let trace = resumed.trace_text();
    assert!(trace.contains("Resuming Docker executor..."), "{trace}");
    assert!(trace.contains("\nwritten-by-job-one\n"), "{trace}");
    assert!(trace.contains("\nhello from the repository\n"), "{trace}");
    assert!(trace.contains("\nsecret-file-gone\n"), "{trace}");
    assert!(!trace.contains("Getting source from Git repository"), "{trace}");
    assert_eq!(resumed.runtime_environment_key, None, "not suspended again");
    // Not suspended again: the resumed job removes the environment at its end.
    let left = wait_no_objects(&env.short, Duration::from_secs(15)).await;
    assert!(
        left.is_empty(),
        "left behind by the resumed job: {left:?}\n{}",
        env.log()
    );
    env.daemon().quit().await;
}
