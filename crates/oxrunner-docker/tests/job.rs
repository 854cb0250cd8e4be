#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Whole jobs through the core driver (`run_job`) with the Docker executor and the busybox image.

mod common;

use oxrunner_core::{
    FailureReason, GitStrategy, JobCancel, JobOutcome, JobPlan, NoopHooks, Sources, Step, Variable, run_job,
};
use oxrunner_docker::DockerExecutor;

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
    let ctx = common::runner();
    let mut exec = DockerExecutor::new(common::config(), ctx.clone());
    let trace = common::Trace::new();
    let outcome = run_job(plan, &ctx, &mut exec, &NoopHooks, &trace.writer, JobCancel::new()).await;
    (outcome, trace.text(), ctx.short_token)
}

#[tokio::test]
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
