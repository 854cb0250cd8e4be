#![allow(clippy::unwrap_used, clippy::expect_used)]
//! FF_USE_NATIVE_CONTAINER_STOP against the real engine: without it a cancelled job's processes get SIGTERM from
//! the runner (a job's own trap runs and writes to the log), with it the stage's processes get SIGTERM (as
//! upstream's shell, PID 1 there, does) but PID 1 only from the engine's stop (here an image ENTRYPOINT that traps
//! SIGTERM and leaves a mark in the build volume).

use crate::support as common;

use std::time::Duration;

use common::{Trace, config, engine, objects_of, plan, runner};
use oxrunner_core::{
    GitStrategy, ImageSpec, JobCancel, JobOutcome, NoopHooks, Sources, Step, Variable, run_job,
};
use oxrunner_docker::DockerExecutor;

/// Guards against a hang only; no timing is asserted.
const HANG: Duration = Duration::from_secs(120);

/// The job traps SIGTERM and says so; the marker is quoted apart so the echoed command line never matches it.
const TRAPPING: &str = "trap 'echo TERM_\"TRAPPED\"; exit 0' TERM; echo started; sleep 30 & wait";

/// PID 1: keeps the container up (the stages are execs beside it) and, on SIGTERM, marks the build volume and exits.
const ENTRYPOINT: &[&str] = &[
    "sh",
    "-c",
    "trap 'echo pid1-got-sigterm > /builds/pid1-term; exit 0' TERM; while :; do sleep 1; done",
    "--",
];

/// Runs a job whose script traps SIGTERM, cancels it gracefully once it has started (or lets `timeout` end it),
/// and returns the outcome and the log.
async fn cancelled_job(job_id: i64, native: Option<&str>, timeout: Option<Duration>) -> (JobOutcome, String) {
    cancelled_job_as(job_id, native, timeout, None).await
}

/// [`cancelled_job`] with `[runners.docker] user`.
async fn cancelled_job_as(
    job_id: i64,
    native: Option<&str>,
    timeout: Option<Duration>,
    user: Option<&str>,
) -> (JobOutcome, String) {
    let ctx = runner();
    let mut plan = plan(job_id);
    plan.image = Some(ImageSpec {
        name: common::IMAGE.into(),
        entrypoint: ENTRYPOINT.iter().map(|s| (*s).to_owned()).collect(),
        ..ImageSpec::default()
    });
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    if let Some(value) = native {
        plan.variables
            .push(Variable::new("FF_USE_NATIVE_CONTAINER_STOP", value));
    }
    plan.steps = vec![Step {
        name: "script".into(),
        script: vec![TRAPPING.into()],
        timeout,
        ..Step::default()
    }];
    plan.after_script = Some(Step {
        name: "after_script".into(),
        script: vec!["echo after-script-ran; cat /builds/pid1-term 2>/dev/null || echo no-pid1-term".into()],
        ..Step::default()
    });
    let mut config = config();
    config.user = user.map(str::to_owned);
    let mut exec = DockerExecutor::new(config, ctx.clone());
    let trace = Trace::new();
    let cancel = JobCancel::new();
    let fire = async {
        if timeout.is_some() {
            return;
        }
        while !trace.text().lines().any(|l| l == "started") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.graceful.cancel();
    };
    let job = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace.writer, cancel.clone());
    let (outcome, ()) = tokio::time::timeout(HANG, async { tokio::join!(job, fire) })
        .await
        .expect("the cancel must end the job");
    (outcome, trace.text())
}

fn trapped(log: &str) -> bool {
    log.lines().any(|l| l == "TERM_TRAPPED")
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn without_the_flag_the_runner_sends_sigterm_to_the_jobs_processes() {
    let Some(docker) = engine().await else { return };
    for (job_id, flag) in [(841, None), (842, Some("false"))] {
        let (outcome, log) = cancelled_job(job_id, flag, None).await;
        assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
        assert!(trapped(&log), "the job's SIGTERM trap must run:\n{log}");
        assert!(log.contains("after-script-ran"), "{log}");
        // PID 1 (the image's process here, the runner's keep-alive shell otherwise) is left alone.
        assert!(log.contains("\nno-pid1-term\n"), "{log}");
    }
    // As a configured user the runner's SIGTERM (sent as that user, never as root) still reaches the job.
    let (outcome, log) = cancelled_job_as(844, None, None, Some("nobody")).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
    assert!(
        trapped(&log),
        "the job's SIGTERM trap must run as user nobody:\n{log}"
    );
    // A script timeout stops the stage the same way.
    let (_, log) = cancelled_job(843, None, Some(Duration::from_secs(3))).await;
    assert!(
        trapped(&log),
        "the job's SIGTERM trap must run on a timeout:\n{log}"
    );
    assert_eq!(objects_of(&docker, &runner().short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn with_the_flag_the_stages_shell_and_pid_1_get_sigterm() {
    // gitlab-runner's Test_FF_USE_NATIVE_CONTAINER_STOP: the script's own TERM trap runs on a cancel and on a script
    // timeout (its shell is PID 1 there; here the stage's processes get it beside PID 1), and the engine's stop
    // still signals PID 1.
    let Some(docker) = engine().await else { return };
    let (outcome, log) = cancelled_job(845, Some("true"), None).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
    assert!(trapped(&log), "the stage's shell must get SIGTERM:\n{log}");
    assert!(log.contains("after-script-ran"), "{log}");
    assert!(
        log.contains("\npid1-got-sigterm\n"),
        "the engine's stop must signal PID 1:\n{log}"
    );
    let (_, log) = cancelled_job(846, Some("true"), Some(Duration::from_secs(3))).await;
    assert!(
        trapped(&log),
        "the stage's shell must get SIGTERM on a timeout:\n{log}"
    );
    assert_eq!(objects_of(&docker, &runner().short_token).await, (vec![], vec![]));
}
