#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Container settings as the engine sees them, and removal of objects left by jobs that no longer run.

use crate::support as common;

use std::collections::HashSet;

use oxrunner_config::DockerConfig;
use oxrunner_core::{Executor, ExitStatus};
use oxrunner_docker::labels::{LABEL_JOB, LABEL_PROJECT, LABEL_RUNNER};
use oxrunner_docker::{DockerExecutor, remove_leftovers};

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn leftovers_of_finished_jobs_are_removed_running_ones_kept() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let ctx = common::runner();
    let trace = common::Trace::new();
    // Job 201 "crashed": its executor is dropped without cleanup.
    let mut crashed = DockerExecutor::new(common::config(), ctx.clone());
    crashed.prepare(&common::plan(201), &trace.writer).await.unwrap();
    drop(crashed);
    let mut running = DockerExecutor::new(common::config(), ctx.clone());
    running.prepare(&common::plan(202), &trace.writer).await.unwrap();
    let running_id = running.container_id().unwrap().to_owned();

    let removed = remove_leftovers(&docker, &ctx.short_token, &HashSet::from([202]))
        .await
        .unwrap();
    assert_eq!(
        (removed.containers.len(), removed.volumes.len()),
        (1, 1),
        "{removed:?}"
    );
    let (containers, volumes) = common::objects_of(&docker, &ctx.short_token).await;
    assert_eq!(containers, vec![running_id]);
    assert_eq!(volumes.len(), 1);
    assert_eq!(
        common::run(&mut running, "echo still-here", &trace).await,
        ExitStatus::Code(0)
    );

    // At daemon start nothing runs: everything of this runner goes, and a second pass finds nothing.
    let removed = remove_leftovers(&docker, &ctx.short_token, &HashSet::new())
        .await
        .unwrap();
    assert_eq!(
        (removed.containers.len(), removed.volumes.len()),
        (1, 1),
        "{removed:?}"
    );
    assert!(
        remove_leftovers(&docker, &ctx.short_token, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
    running.cleanup().await;
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn container_settings_reach_the_engine() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let ctx = common::runner();
    let cfg = DockerConfig {
        privileged: Some(true),
        shm_size: Some(64 << 20),
        memory: Some("256m".into()),
        cpus: Some("1.5".into()),
        extra_hosts: vec!["gitlab.test:127.0.0.1".into()],
        dns: vec!["127.0.0.53".into()],
        network_mode: Some("bridge".into()),
        user: Some("nobody".into()),
        hostname: Some("job-host".into()),
        ..common::config()
    };
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    let trace = common::Trace::new();
    exec.prepare(&common::plan(203), &trace.writer).await.unwrap();
    let info = docker
        .inspect_container(exec.container_id().unwrap(), None)
        .await
        .unwrap();
    let config = info.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(LABEL_RUNNER), Some(&ctx.short_token));
    assert_eq!(labels.get(LABEL_JOB).map(String::as_str), Some("203"));
    assert_eq!(labels.get(LABEL_PROJECT).map(String::as_str), Some("42"));
    assert_eq!(config.user.as_deref(), Some("nobody"));
    let host = info.host_config.unwrap();
    assert_eq!(host.privileged, Some(true));
    assert_eq!(host.shm_size, Some(64 << 20));
    assert_eq!(host.memory, Some(256 << 20));
    assert_eq!(host.nano_cpus, Some(1_500_000_000));
    assert_eq!(host.extra_hosts, Some(vec!["gitlab.test:127.0.0.1".to_owned()]));
    assert_eq!(host.dns, Some(vec!["127.0.0.53".to_owned()]));
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    // No runner path is bind-mounted: the only bind is the job's own build volume.
    let binds = host.binds.unwrap();
    assert_eq!(binds.len(), 1, "{binds:?}");
    assert!(binds[0].ends_with("-builds:/builds"), "{binds:?}");

    // The job runs as the configured user (and can write in the build volume) and sees the extra host.
    let status = exec
        .run(
            common::step(
                "id -un; hostname; grep gitlab.test /etc/hosts; touch mine",
                "/builds/group/project",
            ),
            &trace.writer,
            oxrunner_core::CancellationToken::new(),
        )
        .await
        .unwrap();
    let text = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert!(
        text.contains("nobody\njob-host\n127.0.0.1\tgitlab.test"),
        "{text}"
    );
    exec.cleanup().await;
}
