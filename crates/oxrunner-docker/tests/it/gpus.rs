//! `gpus` reaches the engine as a device request. This machine has no GPU, so the engine's refusal to start the
//! job container (naming the requested capabilities) is the proof that the request was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxrunner_core::{GitStrategy, JobOutcome, Sources, Step};

use crate::support as common;

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn gpus_all_is_requested_from_the_engine() {
    if common::engine().await.is_none() {
        return;
    }
    let mut plan = common::plan(831);
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    plan.steps = vec![Step {
        name: "script".into(),
        script: vec!["echo no-gpu-needed".into()],
        ..Step::default()
    }];
    let host = tempfile::tempdir().unwrap();
    let (outcome, log) = common::run_job_in(&plan, &common::runner(), common::config(), host.path()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");

    let config = oxrunner_config::DockerConfig {
        gpus: Some("all".into()),
        ..common::config()
    };
    let (outcome, log) = common::run_job_in(&plan, &common::runner(), config, host.path()).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
    assert!(
        log.contains("could not select device driver") && log.contains("[[gpu]]"),
        "{log}"
    );
}
