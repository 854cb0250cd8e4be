#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Docker executor against the real engine, with the local busybox image.

use crate::support as common;

use std::time::Duration;

use common::{Trace, config, engine, objects_of, plan, plan_with_image, run, runner, step};
use oxrunner_core::{CancellationToken, ExecError, Executor, ExitStatus, FailureReason};
use oxrunner_docker::DockerExecutor;

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn job_sees_variables_and_copied_files_and_runs_in_the_image() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(101), &trace.writer).await.unwrap();
    assert!(
        trace.text().contains("Using docker image sha256:"),
        "{}",
        trace.text()
    );

    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("hello.txt"), "copied from the runner\n").unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/nested.txt"), "nested\n").unwrap();
    exec.copy_to_container(src.path(), "/builds/group/project")
        .await
        .unwrap();

    // The marker file exists only in the test image, not on the host: seeing it proves the script ran there.
    assert!(!std::path::Path::new("/etc/oxrunner-image").exists());
    let status = run(
        &mut exec,
        "echo \"FROM_CONFIG=$FROM_CONFIG\"; pwd; cat hello.txt sub/nested.txt; cat /etc/oxrunner-image; echo made-in-job > out.txt",
        &trace,
    )
    .await;
    let text = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert!(text.contains("FROM_CONFIG=config-value"), "{text}");
    assert!(text.contains("/builds/group/project\n"), "{text}");
    assert!(text.contains("copied from the runner\nnested\n"), "{text}");
    assert!(text.contains("oxrunner busybox test image"), "{text}");

    // State persists in the build volume from one stage to the next, and files come back out.
    let status = run(&mut exec, "cat out.txt >&2", &trace).await;
    assert_eq!(status, ExitStatus::Code(0));
    assert!(trace.text().ends_with("made-in-job\n"), "{}", trace.text());
    let back = tempfile::tempdir().unwrap();
    exec.copy_from_container("/builds/group/project/out.txt", back.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("out.txt")).unwrap(),
        "made-in-job\n"
    );

    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn exit_codes_are_reported_and_the_container_is_reused() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(102), &trace.writer).await.unwrap();
    assert_eq!(
        run(&mut exec, "echo before; exit 3", &trace).await,
        ExitStatus::Code(3)
    );
    assert_eq!(run(&mut exec, "false", &trace).await, ExitStatus::Code(1));
    assert_eq!(run(&mut exec, "true", &trace).await, ExitStatus::Code(0));
    let (containers, volumes) = objects_of(&docker, &ctx.short_token).await;
    assert_eq!((containers.len(), volumes.len()), (1, 1));
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn never_pull_policy_with_a_missing_image_fails_naming_the_image() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let cfg = oxrunner_config::DockerConfig {
        pull_policy: vec!["never".into()],
        ..config()
    };
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    let trace = Trace::new();
    let err = exec
        .prepare(&plan_with_image(103, "oxrunner-test/absent:1.0"), &trace.writer)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), FailureReason::ImagePullFailure);
    let msg = err.to_string();
    assert!(msg.contains("\"oxrunner-test/absent:1.0\""), "{msg}");
    assert!(
        msg.contains("pull_policy is \"never\"") && msg.contains("hint:"),
        "{msg}"
    );
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn allowed_images_refuses_other_job_images() {
    let Some(_docker) = engine().await else { return };
    let cfg = oxrunner_config::DockerConfig {
        allowed_images: vec!["busybox:*".into(), "oxrunner-test/**".into()],
        ..config()
    };
    let trace = Trace::new();
    let mut exec = DockerExecutor::new(cfg.clone(), runner());
    let err = exec
        .prepare(&plan_with_image(104, "alpine:3.20"), &trace.writer)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::Build {
                reason: FailureReason::RunnerConfigurationError,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("\"alpine:3.20\" image is not present on list of allowed images"),
        "{err}"
    );
    exec.cleanup().await;

    let mut exec = DockerExecutor::new(cfg, runner());
    exec.prepare(&plan_with_image(104, common::IMAGE), &trace.writer)
        .await
        .unwrap();
    assert_eq!(run(&mut exec, "echo allowed", &trace).await, ExitStatus::Code(0));
    exec.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn cancel_stops_a_running_job_and_cleanup_leaves_nothing() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(105), &trace.writer).await.unwrap();
    let cancel = CancellationToken::new();
    let fire = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        fire.cancel();
    });
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        exec.run(
            step("echo started; sleep 600", "/builds/group/project"),
            &trace.writer,
            cancel,
        ),
    )
    .await
    .expect("cancel must end the stage")
    .unwrap();
    assert_eq!(status, ExitStatus::Signal(9));
    assert!(trace.text().contains("started"));
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn seed_volumes_mount_the_docker_socket_and_a_cache_volume() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let cfg = oxrunner_config::DockerConfig {
        volumes: vec![
            "/cache".into(),
            "/var/run/docker.sock:/var/run/docker.sock".into(),
        ],
        ..config()
    };
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(106), &trace.writer).await.unwrap();
    let info = docker
        .inspect_container(exec.container_id().unwrap(), None)
        .await
        .unwrap();
    let cache_volume = info
        .mounts
        .unwrap()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some("/cache"))
        .and_then(|m| m.name)
        .expect("an anonymous volume at /cache");
    let status = run(
        &mut exec,
        "test -S /var/run/docker.sock && echo socket-ok; test -d /cache && echo cache-ok; touch /cache/x",
        &trace,
    )
    .await;
    let text = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert!(text.contains("socket-ok") && text.contains("cache-ok"), "{text}");
    exec.cleanup().await;
    assert!(
        docker.inspect_volume(&cache_volume).await.is_err(),
        "anonymous volume left behind"
    );
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_fresh_build_volume_is_reported_to_the_driver() {
    let Some(docker) = engine().await else { return };
    let trace = Trace::new();
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    exec.prepare(&plan(107), &trace.writer).await.unwrap();
    let facts = exec.environment();
    let id = exec.container_id().unwrap().to_owned();
    assert!(facts.fresh_build_dir && facts.tmp_dir_dies_with_job, "{facts:?}");
    assert_eq!(facts.hostname.as_deref(), Some(&id[..12]));
    // What the driver then spares the scripts for: the project dir, its parents and its `.tmp`, open to any user.
    let status = run(
        &mut exec,
        "stat -c '%a %n' /builds/group /builds/group/project /builds/group/project.tmp",
        &trace,
    )
    .await;
    let text = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    for dir in [
        "/builds/group\n",
        "/builds/group/project\n",
        "/builds/group/project.tmp\n",
    ] {
        assert!(text.contains(&format!("777 {dir}")), "{dir:?} in:\n{text}");
    }
    exec.cleanup().await;

    // `<project>.tmp` on a volume that outlives the job: neither fact holds, so the driver runs the scripts.
    let kept = format!("oxrunner-test-{}", uuid::Uuid::new_v4().simple());
    let cfg = oxrunner_config::DockerConfig {
        volumes: vec![format!("{kept}:/builds/group")],
        ..config()
    };
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    exec.prepare(&plan(107), &trace.writer).await.unwrap();
    let facts = exec.environment();
    exec.cleanup().await;
    docker
        .remove_volume(&kept, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .unwrap();
    assert!(
        !facts.fresh_build_dir && !facts.tmp_dir_dies_with_job,
        "{facts:?}"
    );
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}
