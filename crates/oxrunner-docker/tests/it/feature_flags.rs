//! Feature flags of the Docker executor against the real engine: FF_NETWORK_PER_BUILD (the job's own network
//! and CI_BUILD_NETWORK_NAME) and FF_USE_INIT_WITH_DOCKER_EXECUTOR (docker's init as PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxrunner_core::{GitStrategy, JobOutcome, JobPlan, Sources, Step, Variable};

use crate::support as common;

fn job(id: i64, script: &[&str], flags: &[(&str, &str)]) -> JobPlan {
    let mut plan = common::plan(id);
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    for (k, v) in flags {
        plan.variables.push(Variable::new(*k, *v));
    }
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

/// Docker's embedded DNS server answers in containers on user-defined networks only.
const DNS_PROBE: &str = "if grep -q '^nameserver 127.0.0.11' /etc/resolv.conf; then echo on-a-job-network; \
                         else echo on-the-default-bridge; fi";

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn network_per_build_gives_a_job_without_services_its_own_network() {
    if common::engine().await.is_none() {
        return;
    }
    let script = [DNS_PROBE, "echo \"network=${CI_BUILD_NETWORK_NAME:-unset}\""];
    let (outcome, log) = run(&job(811, &script, &[])).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\non-the-default-bridge\n"), "{log}");
    assert!(log.contains("\nnetwork=unset\n"), "{log}");

    let plan = job(812, &script, &[("FF_NETWORK_PER_BUILD", "true")]);
    let (outcome, log) = run(&plan).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\non-a-job-network\n"), "{log}");
    // gitlab-runner's name: runner-<short token>-<project id>-<project slot>-<job id>.
    let line = log
        .lines()
        .find(|l| l.starts_with("network=runner-"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.ends_with("-42-0-812"), "{line}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn init_with_docker_executor_runs_dockers_init_as_pid_1() {
    if common::engine().await.is_none() {
        return;
    }
    let script = ["echo \"pid1=$(cat /proc/1/comm)\""];
    let (outcome, log) = run(&job(821, &script, &[])).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!log.contains("pid1=docker-init"), "{log}");

    let plan = job(822, &script, &[("FF_USE_INIT_WITH_DOCKER_EXECUTOR", "true")]);
    let (outcome, log) = run(&plan).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\npid1=docker-init\n"), "{log}");
}
