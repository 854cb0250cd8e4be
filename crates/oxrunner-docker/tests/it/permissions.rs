#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Files copied into the build volume are usable by a non-root job user, as gitlab-runner's `umask 0000` makes
//! them; `FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR` keeps modes and gives the files to the job's user instead.

use crate::support as common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use oxrunner_core::{
    CancellationToken, Executor, GitStrategy, ImageSpec, JobOutcome, JobPlan, Sources, Step, Variable,
};
use oxrunner_docker::DockerExecutor;

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

/// A repository with a plain file, an executable and a sub-directory; returns the plan of a job cloning it and
/// running `script` as `nobody` (the job's `image:docker:user`), with a file variable.
fn nobody_job(origin: &Path, id: i64, script: &[&str]) -> JobPlan {
    git(origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("README"), "readme\n").unwrap();
    std::fs::create_dir(origin.join("bin")).unwrap();
    std::fs::write(origin.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(origin.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    git(origin, &["add", "."]);
    git(origin, &["commit", "-q", "-m", "first"]);
    let sha = git(origin, &["rev-parse", "HEAD"]);

    let mut plan = common::plan(id);
    plan.image = Some(ImageSpec {
        name: common::IMAGE.into(),
        user: Some("nobody".into()),
        ..ImageSpec::default()
    });
    plan.sources = Sources {
        strategy: GitStrategy::Clone,
        repo_url: format!("file://{}", origin.display()).into(),
        sha,
        ref_name: "main".into(),
        refspecs: vec!["+refs/heads/*:refs/origin/heads/*".into()],
        depth: 20,
        ..Sources::default()
    };
    plan.variables
        .push(Variable::new("SECRET_FILE", "file variable content").into_file());
    plan.steps = vec![Step {
        name: "script".into(),
        script: script.iter().map(|s| (*s).to_owned()).collect(),
        ..Step::default()
    }];
    plan
}

async fn run(plan: &JobPlan) -> (JobOutcome, String) {
    let host = tempfile::tempdir().unwrap();
    common::run_job_in(plan, &common::runner(), common::config(), host.path()).await
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_non_root_job_can_change_the_checkout_and_read_file_variables() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let origin = tempfile::tempdir().unwrap();
    let plan = nobody_job(
        origin.path(),
        501,
        &[
            "echo \"uid=$(id -u)\"",
            "echo appended >> README && tail -n 1 README",
            "touch created-by-job && echo created",
            "echo \"modes $(stat -c %a README) $(stat -c %a bin/tool) $(stat -c %a bin) $(stat -c %u README)\"",
            "echo \"variable: $(cat \"$SECRET_FILE\")\"",
        ],
    );
    let (outcome, log) = run(&plan).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("uid=65534\n"), "{log}");
    assert!(log.contains("appended\n") && log.contains("created\n"), "{log}");
    assert!(log.contains("modes 666 777 777 0\n"), "{log}");
    assert!(log.contains("variable: file variable content\n"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_umask_feature_flag_keeps_modes_and_gives_the_files_to_the_job_user() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let origin = tempfile::tempdir().unwrap();
    let mut plan = nobody_job(
        origin.path(),
        502,
        &[
            "echo \"modes $(stat -c %a README) $(stat -c %a bin/tool) $(stat -c %a bin) $(stat -c %u:%g README)\"",
            "echo appended >> README && tail -n 1 README",
            "echo \"variable: $(cat \"$SECRET_FILE\")\"",
        ],
    );
    plan.variables
        .push(Variable::new("FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR", "true"));
    let (outcome, log) = run(&plan).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("modes 644 755 755 65534:65534\n"), "{log}");
    assert!(log.contains("appended\n"), "{log}");
    assert!(log.contains("variable: file variable content\n"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn pushed_files_follow_the_same_rule() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let cfg = oxrunner_config::DockerConfig {
        user: Some("nobody".into()),
        ..common::config()
    };
    let ctx = common::runner();
    let mut exec = DockerExecutor::new(cfg, ctx);
    let trace = common::Trace::new();
    exec.prepare(&common::plan(503), &trace.writer).await.unwrap();
    // A restored cache as the driver stages it: a private file from the runner's side.
    let restored = tempfile::tempdir().unwrap();
    std::fs::create_dir(restored.path().join("vendor")).unwrap();
    std::fs::write(restored.path().join("vendor/lib.txt"), "cached\n").unwrap();
    std::fs::set_permissions(
        restored.path().join("vendor/lib.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let files = exec.files().unwrap();
    files
        .push(restored.path(), Path::new("/builds/group/project"))
        .await
        .unwrap();
    let status = exec
        .run(
            common::step(
                "echo more >> vendor/lib.txt && touch vendor/new && cat vendor/lib.txt && stat -c %a vendor/lib.txt",
                "/builds/group/project",
            ),
            &trace.writer,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let log = trace.text();
    assert!(status.success(), "{log}");
    assert!(log.contains("cached\nmore\n666\n"), "{log}");
    exec.cleanup().await;
}
