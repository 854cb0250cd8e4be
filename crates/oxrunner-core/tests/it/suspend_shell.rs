//! `FF_SUSPENDABLE_ENVIRONMENTS` on an executor that cannot suspend (the shell executor), as gitlab-runner treats
//! one: a job that asks to suspend gets a warning, and a successful one fails as a runner system failure; a job
//! that carries a key to resume is refused before anything runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxrunner_core::{FailureReason, JobCancel, JobOutcome, JobPlan, SuspendOptions, Variable};

use crate::job::env;

fn flag_on(mut plan: JobPlan) -> JobPlan {
    plan.variables
        .push(Variable::new("FF_SUSPENDABLE_ENVIRONMENTS", "true"));
    plan
}

const WARNING: &str = "Job environment suspension not supported by executor";

#[tokio::test]
async fn a_shell_job_asking_to_suspend_warns_and_fails_as_a_system_failure() {
    let env = env();
    let mut plan = flag_on(env.plan(&["echo job-ran"]));
    plan.suspend = SuspendOptions {
        on_success: true,
        ..SuspendOptions::default()
    };
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(log.contains("\njob-ran\n"), "{log}");
    assert!(log.contains(WARNING), "{log}");
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: "executor does not support suspend/resume".into(),
        },
        "{log}"
    );

    // Without the flag the options mean nothing, as upstream.
    plan.variables = env.plan(&[]).variables;
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!log.contains(WARNING), "{log}");
}

#[tokio::test]
async fn only_the_asked_outcome_suspends_and_a_failed_job_keeps_its_reason() {
    let env = env();
    // suspend_on_failure only: a successful job is not suspended.
    let mut plan = flag_on(env.plan(&["echo fine"]));
    plan.suspend.on_failure = true;
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!log.contains(WARNING), "{log}");

    // A failed job asking to suspend on failure: the warning, and the script's failure stays the reason.
    let mut plan = flag_on(env.plan(&["exit 3"]));
    plan.suspend.on_failure = true;
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(log.contains(WARNING), "{log}");
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                reason: FailureReason::ScriptFailure,
                exit_code: Some(3),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
}

#[tokio::test]
async fn a_shell_job_with_a_key_to_resume_is_refused_before_it_runs() {
    let env = env();
    let mut plan = flag_on(env.plan(&["echo must-not-run"]));
    plan.suspend.runtime_environment_key = "1/s_0123456789ab/build-container-id=abc".into();
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(!log.contains("\nmust-not-run\n"), "{log}");
    match outcome {
        JobOutcome::Failed {
            reason: FailureReason::RunnerConfigurationError,
            message,
            ..
        } => assert!(
            message.contains("executor does not support suspend/resume")
                && !message.contains("executor executor")
                && message.contains("\nhint: "),
            "{message}"
        ),
        other => panic!("{other:?}\n{log}"),
    }
}

/// A job that asks to suspend on both outcomes; the warning shows whether the driver tried to suspend.
fn on_both(plan: JobPlan) -> JobPlan {
    let mut plan = flag_on(plan);
    plan.suspend.on_success = true;
    plan.suspend.on_failure = true;
    plan
}

#[tokio::test]
async fn a_cancelled_job_does_not_try_to_suspend() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let plan = on_both(env.plan(&[&format!("touch '{}'; sleep 600", marker.display())]));
    let control = JobCancel::new();
    let graceful = control.graceful.clone();
    tokio::spawn(async move {
        while !marker.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        graceful.cancel();
    });
    let (outcome, log) = env.run(&plan, control).await;
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                reason: FailureReason::JobCanceled,
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(!log.contains(WARNING), "{log}");
}

#[tokio::test]
async fn a_timed_out_job_does_not_try_to_suspend() {
    let env = env();
    let mut plan = on_both(env.plan(&["sleep 600"]));
    plan.timeout = std::time::Duration::from_secs(2);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                reason: FailureReason::JobExecutionTimeout,
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(!log.contains(WARNING), "{log}");
}
