//! When the driver asks a suspendable executor to keep the environment (`FF_SUSPENDABLE_ENVIRONMENTS`), against
//! a fake executor that records the call: never after a failed prepare, nor when the file variables may still be
//! in the environment, nor for a runner whose id no key could carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    CancellationToken, ExecError, Executor, ExitStatus, FailureReason, JobCancel, JobOutcome, JobPlan,
    NoopHooks, RunnerContext, Sources, StageCommand, Step, TraceWriter, Variable, When, run_job,
};

/// A suspendable executor whose prepare may fail and whose stages exit with a scripted code.
#[derive(Default)]
struct Suspendable {
    prepare_fails: bool,
    failing_stage: Option<&'static str>,
    suspended: Arc<Mutex<bool>>,
}

impl Executor for Suspendable {
    fn prepare<'a>(
        &'a mut self,
        _plan: &'a JobPlan,
        _trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        let fails = self.prepare_fails;
        Box::pin(async move {
            if fails {
                return Err(ExecError::Build {
                    reason: FailureReason::RunnerSystemFailure,
                    message: "half prepared".into(),
                });
            }
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        _trace: &'a TraceWriter,
        _cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        let code = i32::from(self.failing_stage == Some(cmd.stage.name().as_ref()));
        Box::pin(async move { Ok(ExitStatus::Code(code)) })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn suspend(&mut self) -> BoxFuture<'_, Result<Vec<(String, String)>, ExecError>> {
        *self.suspended.lock().unwrap() = true;
        Box::pin(async { Ok(vec![("build-container-id".into(), "abc".into())]) })
    }

    fn suspendable(&self) -> bool {
        true
    }
}

fn ctx(dir: &std::path::Path, runner_id: i64) -> RunnerContext {
    RunnerContext {
        runner_name: "suspendable".into(),
        runner_id,
        short_token: "abcd1234".into(),
        system_id: "s_0123456789ab".into(),
        executor: "fake".into(),
        builds_dir: dir.join("builds"),
        cache_dir: dir.join("cache"),
        ..RunnerContext::default()
    }
}

fn plan() -> JobPlan {
    let mut plan = JobPlan {
        job_id: 7,
        job_name: "suspend".into(),
        stage: "test".into(),
        project_id: 1,
        project_path: "group/project".into(),
        variables: vec![
            Variable::new("CI_JOB_ID", "7"),
            Variable::new("FF_SUSPENDABLE_ENVIRONMENTS", "true"),
        ]
        .into(),
        sources: Sources {
            repo_url: "https://gitlab.invalid/group/project.git".into(),
            sha: "0123456789012345678901234567890123456789".into(),
            ref_name: "main".into(),
            ..Sources::default()
        },
        steps: vec![Step {
            name: "script".into(),
            script: vec!["make test".into()],
            when: When::OnSuccess,
            ..Step::default()
        }],
        timeout: Duration::from_secs(3600),
        job_token: "job-token".into(),
        ..JobPlan::default()
    };
    plan.suspend.on_success = true;
    plan.suspend.on_failure = true;
    plan
}

async fn run(exec: &mut Suspendable, runner_id: i64) -> (JobOutcome, String) {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan();
    let (trace, handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    let outcome = run_job(
        &plan,
        &ctx(dir.path(), runner_id),
        exec,
        &NoopHooks,
        &trace,
        JobCancel::new(),
    )
    .await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    (outcome, log)
}

#[tokio::test]
async fn a_prepared_job_suspends_and_reports_its_key() {
    let mut exec = Suspendable::default();
    let (outcome, log) = run(&mut exec, 5).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(*exec.suspended.lock().unwrap());
    assert!(
        log.contains("Job environment suspended: 5/s_0123456789ab/build-container-id=abc"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failed_prepare_suspends_nothing() {
    let mut exec = Suspendable {
        prepare_fails: true,
        ..Suspendable::default()
    };
    let (outcome, log) = run(&mut exec, 5).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
    assert!(!*exec.suspended.lock().unwrap(), "{log}");
    assert!(!log.contains("Job environment suspen"), "{log}");
}

#[tokio::test]
async fn file_variables_left_behind_keep_the_environment_from_being_suspended() {
    let mut exec = Suspendable {
        failing_stage: Some("cleanup_file_variables"),
        ..Suspendable::default()
    };
    let (outcome, log) = run(&mut exec, 5).await;
    assert!(log.contains("Cleaning up file based variables failed"), "{log}");
    assert!(!*exec.suspended.lock().unwrap(), "{log}");
    assert_eq!(outcome, JobOutcome::Success, "{log}");
}

#[tokio::test]
async fn a_runner_without_an_id_refuses_to_suspend_with_a_hint() {
    let mut exec = Suspendable::default();
    let (outcome, log) = run(&mut exec, 0).await;
    assert!(!*exec.suspended.lock().unwrap(), "{log}");
    match outcome {
        JobOutcome::Failed {
            reason: FailureReason::RunnerSystemFailure,
            message,
            ..
        } => assert!(
            message.contains("runner id is 0") && message.contains("\nhint: "),
            "{message}"
        ),
        other => panic!("{other:?}\n{log}"),
    }
}
