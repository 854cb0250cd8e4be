#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Whole jobs through the core driver (`run_job`) with the Docker executor and the busybox image.

use crate::support as common;

use oxrunner_core::{FailureReason, GitStrategy, JobOutcome, JobPlan, Sources, Step, Variable};
use std::path::Path;
use std::process::Command;

fn job(id: i64, script: &[&str]) -> JobPlan {
    let mut plan = common::plan(id);
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    plan.variables
        .push(Variable::new("GREETING", "hello from the job"));
    plan.steps = vec![Step {
        name: "script".into(),
        script: script.iter().map(|s| (*s).to_owned()).collect(),
        ..Step::default()
    }];
    plan
}

async fn run(plan: &JobPlan) -> (JobOutcome, String, String) {
    let host = tempfile::tempdir().unwrap();
    run_in(plan, host.path()).await
}

async fn run_in(plan: &JobPlan, host_builds: &Path) -> (JobOutcome, String, String) {
    let ctx = common::runner();
    let (outcome, log) = common::run_job_in(plan, &ctx, common::config(), host_builds).await;
    (outcome, log, ctx.short_token)
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_job_runs_its_script_in_the_container_and_succeeds() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let (outcome, log, runner) = run(&job(
        301,
        &["echo \"$GREETING in $CI_PROJECT_DIR\"", "cat /etc/oxrunner-image"],
    ))
    .await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("hello from the job in /builds/group/project"),
        "{log}"
    );
    assert!(log.contains("oxrunner busybox test image"), "{log}");
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_failing_script_fails_the_job_with_script_failure() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let (outcome, log, runner) = run(&job(302, &["echo before", "exit 4", "echo never-printed"])).await;
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                reason: FailureReason::ScriptFailure,
                exit_code: Some(4),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(
        log.contains("before") && !log.contains("never-printed\n"),
        "{log}"
    );
    assert!(log.contains("Job failed: exit status 4"), "{log}");
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn sources_are_fetched_on_the_runner_and_copied_into_an_image_without_git() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(origin.path().join("hello.txt"), "committed content\n").unwrap();
    git(origin.path(), &["add", "hello.txt"]);
    git(origin.path(), &["commit", "-q", "-m", "first"]);
    let sha = git(origin.path(), &["rev-parse", "HEAD"]);

    let mut plan = job(
        303,
        &[
            "cat hello.txt",
            "test -d .git && echo has-git-dir",
            "command -v git || echo no-git-in-image",
        ],
    );
    plan.sources = Sources {
        strategy: GitStrategy::Clone,
        repo_url: format!("file://{}", origin.path().display()).into(),
        sha: sha.clone(),
        ref_name: "main".into(),
        refspecs: vec!["+refs/heads/*:refs/origin/heads/*".into()],
        depth: 20,
        ..Sources::default()
    };
    let host = tempfile::tempdir().unwrap();
    let (outcome, log, runner) = run_in(&plan, host.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("committed content\n"), "{log}");
    assert!(
        log.contains("has-git-dir\n") && log.contains("no-git-in-image\n"),
        "{log}"
    );
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
    // The runner-side checkout stays for the next job of the slot (incremental fetch).
    let kept = common::checkout_dir(host.path(), &plan, &common::runner_with_token(&runner));
    assert_eq!(git(&kept, &["rev-parse", "HEAD"]), sha);
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_failed_fetch_is_retried_from_a_cleared_runner_side_checkout() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let missing = tempfile::tempdir().unwrap();
    let mut plan = job(304, &["echo never"]);
    plan.sources = Sources {
        strategy: GitStrategy::Fetch,
        repo_url: format!("file://{}/absent", missing.path().display()).into(),
        sha: "0000000000000000000000000000000000000000".into(),
        ref_name: "main".into(),
        get_sources_attempts: 2,
        ..Sources::default()
    };
    let host = tempfile::tempdir().unwrap();
    let ctx = common::runner();
    let stale = common::checkout_dir(host.path(), &plan, &ctx);
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("stale.txt"), "from an older job").unwrap();

    let (outcome, log) = common::run_job_in(&plan, &ctx, common::config(), host.path()).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{log}");
    assert!(log.contains("retrying in 5s (attempt 2 of 2)"), "{log}");
    assert!(!log.contains("never\n"), "{log}");
    assert!(!stale.join("stale.txt").exists(), "{log}");
}

/// A repository with one commit of `hello.txt`; returns its directory and the commit.
fn origin_repo() -> (tempfile::TempDir, String) {
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(origin.path().join("hello.txt"), "committed content\n").unwrap();
    git(origin.path(), &["add", "hello.txt"]);
    git(origin.path(), &["commit", "-q", "-m", "first"]);
    let sha = git(origin.path(), &["rev-parse", "HEAD"]);
    (origin, sha)
}

fn git_sources(origin: &Path, sha: &str) -> Sources {
    Sources {
        strategy: GitStrategy::Fetch,
        repo_url: format!("file://{}", origin.display()).into(),
        sha: sha.to_owned(),
        ref_name: "main".into(),
        refspecs: vec!["+refs/heads/*:refs/origin/heads/*".into()],
        ..Sources::default()
    }
}

/// Byte offsets of each needle in `log`, failing with the log when one is missing.
fn positions(log: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| {
            log.find(n)
                .unwrap_or_else(|| panic!("{n:?} missing from the log:\n{log}"))
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn get_sources_hooks_run_in_the_job_container_around_the_checkout() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let (origin, sha) = origin_repo();
    let mut plan = job(305, &["echo script-ran"]);
    plan.sources = git_sources(origin.path(), &sha);
    plan.sources.pre_get_sources_script = vec![
        "echo \"job-pre: $GREETING in $(pwd); image $(cat /etc/oxrunner-image)\"".into(),
        "test ! -e \"$CI_PROJECT_DIR/hello.txt\" && echo job-pre-before-checkout".into(),
    ];
    plan.sources.post_get_sources_script = vec!["echo \"job-post: $(pwd) has $(cat hello.txt)\"".into()];
    let ctx = oxrunner_core::RunnerContext {
        pre_get_sources_script: Some("echo \"runner-pre: $GREETING as $(id -u)\"".into()),
        post_get_sources_script: Some("echo \"runner-post: $(pwd)\"".into()),
        ..common::runner()
    };
    // The hooks run as the job's user, not as the runner's.
    let config = oxrunner_config::DockerConfig {
        user: Some("nobody".into()),
        ..common::config()
    };
    let host = tempfile::tempdir().unwrap();
    let (outcome, log) = common::run_job_in(&plan, &ctx, config, host.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let order = positions(
        &log,
        &[
            "runner-pre: hello from the job as 65534\n",
            "job-pre: hello from the job in /builds; image oxrunner busybox test image\n",
            "job-pre-before-checkout\n",
            "Checking out ",
            "job-post: /builds/group/project has committed content\n",
            "runner-post: /builds/group/project\n",
            "script-ran\n",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order {order:?}:\n{log}"
    );
    // The job's hooks are echoed like script lines; the runner's are not.
    assert!(
        log.contains("$ echo \"job-post: $(pwd) has $(cat hello.txt)\""),
        "{log}"
    );
    assert!(!log.contains("not supported by the docker executor"), "{log}");
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_failing_pre_get_sources_hook_fails_the_job_before_the_fetch() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let (origin, sha) = origin_repo();
    let mut plan = job(306, &["echo never-ran"]);
    plan.sources = git_sources(origin.path(), &sha);
    plan.sources.pre_get_sources_script = vec!["echo job-pre-fails".into(), "exit 3".into()];
    plan.sources.post_get_sources_script = vec!["echo never-post".into()];
    let host = tempfile::tempdir().unwrap();
    let (outcome, log, runner) = run_in(&plan, host.path()).await;
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                reason: FailureReason::ScriptFailure,
                exit_code: Some(3),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(log.contains("job-pre-fails\n"), "{log}");
    for absent in ["Fetching changes", "never-post\n", "never-ran\n"] {
        assert!(!log.contains(absent), "{absent:?} in:\n{log}");
    }
    let checkout = common::checkout_dir(host.path(), &plan, &common::runner_with_token(&runner));
    assert!(
        !checkout.exists(),
        "the runner fetched anyway: {}",
        checkout.display()
    );
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_failing_runner_post_get_sources_hook_fails_get_sources() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let (origin, sha) = origin_repo();
    let mut plan = job(307, &["echo never-ran"]);
    plan.sources = git_sources(origin.path(), &sha);
    let ctx = oxrunner_core::RunnerContext {
        post_get_sources_script: Some("echo runner-post-fails; exit 5".into()),
        ..common::runner()
    };
    let host = tempfile::tempdir().unwrap();
    let (outcome, log) = common::run_job_in(&plan, &ctx, common::config(), host.path()).await;
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                exit_code: Some(5),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(
        log.contains("Checking out ") && log.contains("runner-post-fails\n"),
        "{log}"
    );
    assert!(!log.contains("never-ran\n"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn runner_get_sources_hooks_also_run_in_the_container_without_git() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    // `job` uses GIT_STRATEGY none: the stage runs in the container as rendered, runner hooks included.
    let plan = job(308, &["echo script-ran"]);
    let ctx = oxrunner_core::RunnerContext {
        pre_get_sources_script: Some("echo \"runner-pre: $GREETING in $(cat /etc/oxrunner-image)\"".into()),
        post_get_sources_script: Some("echo \"runner-post: $(pwd)\"".into()),
        ..common::runner()
    };
    let host = tempfile::tempdir().unwrap();
    let (outcome, log) = common::run_job_in(&plan, &ctx, common::config(), host.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let order = positions(
        &log,
        &[
            "runner-pre: hello from the job in oxrunner busybox test image\n",
            "Skipping Git repository setup",
            "runner-post: /builds/group/project\n",
            "script-ran\n",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order {order:?}:\n{log}"
    );
}
