#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hint after a stage whose `docker` command found no daemon in the job container (the seed's question).

use crate::support as common;

use oxrunner_core::{Executor, ExitStatus};
use oxrunner_docker::DockerExecutor;

const NO_DAEMON: &str = "echo \"Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\"";

async fn run(script: &str) -> (ExitStatus, String) {
    let mut exec = DockerExecutor::new(common::config(), common::runner());
    let trace = common::Trace::new();
    exec.prepare(&common::plan(801), &trace.writer).await.unwrap();
    let status = common::run(&mut exec, script, &trace).await;
    exec.cleanup().await;
    (status, trace.text())
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_stage_failing_without_a_docker_daemon_gets_the_socket_hint() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let (status, log) = run(&format!("{NO_DAEMON}; exit 1")).await;
    assert_eq!(status, ExitStatus::Code(1), "{log}");
    let hint_at = log
        .find("hint: the job container has no Docker daemon")
        .expect(&log);
    // After the stage's output, not before.
    assert!(
        hint_at > log.find("Is the docker daemon running?").unwrap(),
        "{log}"
    );
    assert!(
        log.contains("add \"/var/run/docker.sock:/var/run/docker.sock\" to [runners.docker] volumes"),
        "{log}"
    );
    assert!(log.contains("`docker:dind` service"), "{log}");
    assert!(log.contains("privileged = true"), "{log}");
    assert!(log.contains("DOCKER_HOST=tcp://docker:2375"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn no_hint_when_the_stage_succeeds_or_fails_for_another_reason() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let (status, log) = run(&format!("{NO_DAEMON}; exit 0")).await;
    assert_eq!(status, ExitStatus::Code(0), "{log}");
    assert!(!log.contains("hint:"), "{log}");
    let (status, log) = run("echo Cannot connect to the registry; exit 2").await;
    assert_eq!(status, ExitStatus::Code(2), "{log}");
    assert!(!log.contains("hint:"), "{log}");
}
