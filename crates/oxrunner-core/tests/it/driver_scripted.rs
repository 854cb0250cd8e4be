//! The driver against a scripted fake executor: it records every call and answers each stage with a scripted
//! result (an exit code, an executor error, or hanging until cancelled). No bash runs, and the clock is paused, so
//! stage order, hook calls, job and script timeouts, graceful cancel versus abort and the after_script rules are
//! checked exactly and at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CacheSpec, CancellationToken, Dependency, ExecError, Executor, ExitStatus,
    FailureReason, HookError, JobCancel, JobHooks, JobOutcome, JobPlan, JobStatus, NoopHooks, RunnerContext,
    Sources, StageCommand, StageCtx, Step, TraceWriter, Variable, When, run_job,
};
use tokio::time::Instant;

/// What the fake executor does for a stage.
#[derive(Clone, Debug)]
enum Reply {
    Exit(i32),
    /// `ExecError::Other`, which the driver reports as a runner system failure.
    Error(&'static str),
    /// Runs until its cancel token fires, then ends as killed (SIGKILL), as a real executor's stage would.
    Hang,
}

/// One recorded call: `prepare`, a stage name, `stop_job_processes` or `cleanup`, with the virtual time it came.
#[derive(Clone, Debug)]
struct Call {
    what: String,
    script: String,
    at: Duration,
}

#[derive(Clone)]
struct Scripted {
    replies: HashMap<String, Reply>,
    calls: Arc<Mutex<Vec<Call>>>,
    start: Instant,
}

impl Scripted {
    fn new(replies: &[(&str, Reply)]) -> Scripted {
        Scripted {
            replies: replies
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            calls: Arc::default(),
            start: Instant::now(),
        }
    }

    fn record(&self, what: &str, script: &str) {
        self.calls.lock().unwrap().push(Call {
            what: what.to_string(),
            script: script.to_string(),
            at: self.start.elapsed(),
        });
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.what.clone())
            .collect()
    }

    fn call(&self, what: &str) -> Option<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.what == what)
            .cloned()
    }
}

impl Executor for Scripted {
    fn prepare<'a>(
        &'a mut self,
        _plan: &'a JobPlan,
        _trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        self.record("prepare", "");
        let hang = matches!(self.replies.get("prepare"), Some(Reply::Hang));
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        _trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        let name = cmd.stage.name().into_owned();
        self.record(&name, &cmd.script);
        let reply = self.replies.get(&name).cloned().unwrap_or(Reply::Exit(0));
        Box::pin(async move {
            match reply {
                Reply::Exit(code) => Ok(ExitStatus::Code(code)),
                Reply::Error(msg) => Err(ExecError::Other(msg.into())),
                Reply::Hang => {
                    cancel.cancelled().await;
                    Ok(ExitStatus::Signal(9))
                }
            }
        })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.record("cleanup", "");
        Box::pin(async {})
    }

    fn stop_job_processes(&mut self) -> BoxFuture<'_, ()> {
        self.record("stop_job_processes", "");
        Box::pin(async {})
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ctx(&self) -> RunnerContext {
        RunnerContext {
            runner_name: "scripted".into(),
            short_token: "abcd1234".into(),
            system_id: "s_0123456789ab".into(),
            executor: "scripted".into(),
            builds_dir: self.dir.path().join("builds"),
            cache_dir: self.dir.path().join("cache"),
            ..RunnerContext::default()
        }
    }

    fn plan(&self) -> JobPlan {
        JobPlan {
            job_id: 7,
            job_name: "scripted".into(),
            stage: "test".into(),
            project_id: 1,
            project_path: "group/project".into(),
            variables: vec![Variable::new("CI_JOB_ID", "7")].into(),
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
            after_script: Some(Step {
                name: "after_script".into(),
                script: vec!["echo after".into()],
                when: When::Always,
                ..Step::default()
            }),
            timeout: Duration::from_secs(3600),
            job_token: "job-token".into(),
            ..JobPlan::default()
        }
    }

    async fn run(&self, plan: &JobPlan, exec: &mut Scripted, control: JobCancel) -> (JobOutcome, String) {
        let (trace, handle) = TraceWriter::new(self.dir.path(), plan.mask_set(), 0).unwrap();
        let outcome = run_job(plan, &self.ctx(), exec, &NoopHooks, &trace, control).await;
        handle.finish().await;
        let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
        (outcome, log)
    }
}

/// The stages gitlab-runner runs for a job without caches or artifacts, in its order.
const SUCCESS_ORDER: &[&str] = &[
    "prepare",
    "prepare_script",
    "get_sources",
    "step_script",
    "after_script",
    "stop_job_processes",
    "cleanup_file_variables",
    "cleanup",
];

#[tokio::test(start_paused = true)]
async fn stages_run_in_order_and_the_job_succeeds() {
    let env = Env::new();
    let mut exec = Scripted::new(&[]);
    let (outcome, log) = env.run(&env.plan(), &mut exec, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(exec.calls(), SUCCESS_ORDER, "{log}");
    assert!(log.contains("Job succeeded"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_is_a_script_failure_and_after_script_still_runs() {
    let env = Env::new();
    let mut exec = Scripted::new(&[("step_script", Reply::Exit(3))]);
    let (outcome, log) = env.run(&env.plan(), &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::ScriptFailure),
        "{log}"
    );
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                exit_code: Some(3),
                ..
            }
        ),
        "{outcome:?}"
    );
    let after = exec
        .call("after_script")
        .expect("after_script must run after a failure");
    assert!(
        after.script.contains("failed"),
        "CI_JOB_STATUS=failed expected:\n{}",
        after.script
    );
    assert!(exec.calls().contains(&"cleanup".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_failing_after_script_does_not_fail_the_job() {
    let env = Env::new();
    let mut exec = Scripted::new(&[("after_script", Reply::Exit(1))]);
    let (outcome, log) = env.run(&env.plan(), &mut exec, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
}

#[tokio::test(start_paused = true)]
async fn a_later_step_is_skipped_after_a_failure_unless_its_when_says_otherwise() {
    let env = Env::new();
    let mut plan = env.plan();
    plan.steps.push(Step {
        name: "on_success".into(),
        script: vec!["never".into()],
        when: When::OnSuccess,
        ..Step::default()
    });
    plan.steps.push(Step {
        name: "on_failure".into(),
        script: vec!["cleanup-things".into()],
        when: When::OnFailure,
        ..Step::default()
    });
    let mut exec = Scripted::new(&[("step_script", Reply::Exit(2))]);
    let (outcome, log) = env.run(&plan, &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::ScriptFailure),
        "{log}"
    );
    let calls = exec.calls();
    assert!(!calls.contains(&"step_on_success".to_string()), "{calls:?}");
    assert!(calls.contains(&"step_on_failure".to_string()), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn the_job_timeout_stops_a_hanging_step_and_skips_after_script() {
    let env = Env::new();
    let mut plan = env.plan();
    plan.timeout = Duration::from_secs(600);
    let mut exec = Scripted::new(&[("step_script", Reply::Hang)]);
    let started = Instant::now();
    let (outcome, log) = env.run(&plan, &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::JobExecutionTimeout),
        "{log}"
    );
    // The deadline is the job's timeout to the second, counted from the job's start.
    assert_eq!(started.elapsed(), Duration::from_secs(600), "{log}");
    let calls = exec.calls();
    // gitlab-runner runs after_script within the job's timeout, so a timed-out job has no time left for it.
    assert!(!calls.contains(&"after_script".to_string()), "{calls:?}");
    assert!(calls.contains(&"cleanup_file_variables".to_string()), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("cleanup"));
}

#[tokio::test(start_paused = true)]
async fn the_script_timeout_stops_the_step_and_after_script_sees_timedout() {
    let env = Env::new();
    let mut plan = env.plan();
    plan.variables.push(Variable::new("RUNNER_SCRIPT_TIMEOUT", "2m"));
    let mut exec = Scripted::new(&[("step_script", Reply::Hang)]);
    let (outcome, log) = env.run(&plan, &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::JobExecutionTimeout,
            exit_code: None,
            message: "script execution took longer than 2m0s seconds".into()
        },
        "{log}"
    );
    let step = exec.call("step_script").unwrap();
    let after = exec
        .call("after_script")
        .expect("after_script runs after a script timeout");
    assert_eq!(after.at - step.at, Duration::from_secs(120));
    assert!(after.script.contains("timedout"), "{}", after.script);
}

#[tokio::test(start_paused = true)]
async fn the_after_script_timeout_bounds_a_hanging_after_script() {
    let env = Env::new();
    let mut plan = env.plan();
    plan.variables
        .push(Variable::new("RUNNER_AFTER_SCRIPT_TIMEOUT", "30s"));
    let mut exec = Scripted::new(&[("after_script", Reply::Hang)]);
    let (outcome, log) = env.run(&plan, &mut exec, JobCancel::new()).await;
    // A hanging after_script does not change a successful job's result.
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let after = exec.call("after_script").unwrap();
    let next = exec.call("stop_job_processes").unwrap();
    assert_eq!(next.at - after.at, Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn graceful_cancel_stops_the_step_then_runs_after_script_as_canceled() {
    let env = Env::new();
    let mut exec = Scripted::new(&[("step_script", Reply::Hang)]);
    let control = JobCancel::new();
    let graceful = control.graceful.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        graceful.cancel();
    });
    let (outcome, log) = env.run(&env.plan(), &mut exec, control).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::JobCanceled),
        "{log}"
    );
    let step = exec.call("step_script").unwrap();
    let after = exec
        .call("after_script")
        .expect("graceful cancel runs after_script");
    assert_eq!(after.at - step.at, Duration::from_secs(10));
    assert!(after.script.contains("canceled"), "{}", after.script);
    assert_eq!(exec.calls().last().map(String::as_str), Some("cleanup"));
}

#[tokio::test(start_paused = true)]
async fn abort_stops_at_once_without_after_script_but_still_cleans_up() {
    let env = Env::new();
    let mut exec = Scripted::new(&[("step_script", Reply::Hang)]);
    let control = JobCancel::new();
    let abort = control.abort.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        abort.cancel();
    });
    let (outcome, log) = env.run(&env.plan(), &mut exec, control).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::JobCanceled),
        "{log}"
    );
    let calls = exec.calls();
    assert!(!calls.contains(&"after_script".to_string()), "{calls:?}");
    // Secrets written for the job are removed even after an abort.
    assert!(calls.contains(&"cleanup_file_variables".to_string()), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("cleanup"));
}

#[tokio::test(start_paused = true)]
async fn an_executor_error_in_a_step_is_a_system_failure() {
    let env = Env::new();
    let mut exec = Scripted::new(&[("step_script", Reply::Error("container vanished"))]);
    let (outcome, log) = env.run(&env.plan(), &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::RunnerSystemFailure),
        "{log}"
    );
    assert!(log.contains("container vanished"), "{log}");
    assert_eq!(exec.calls().last().map(String::as_str), Some("cleanup"));
}

/// Hooks that record into the executor's call list, so stages and hooks show up in one order.
struct RecordingHooks {
    exec: Scripted,
}

impl RecordingHooks {
    fn record(&self, ctx: &StageCtx<'_>) -> BoxFuture<'static, Result<(), HookError>> {
        let state = if ctx.status == JobStatus::Success {
            "ok"
        } else {
            "failed"
        };
        self.exec
            .record(&format!("hook {} ({state})", ctx.stage.name()), "");
        Box::pin(async { Ok(()) })
    }
}

impl JobHooks for RecordingHooks {
    fn restore_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        self.record(ctx)
    }
    fn download_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        self.record(ctx)
    }
    fn archive_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _: &'a TraceWriter,
        _on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        self.record(ctx)
    }
    fn upload_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _: &'a TraceWriter,
        _on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        self.record(ctx)
    }
}

fn with_cache_and_artifacts(mut plan: JobPlan) -> JobPlan {
    plan.caches = vec![CacheSpec {
        key: "k".into(),
        paths: vec!["vendor".into()],
        ..CacheSpec::default()
    }];
    plan.artifacts = vec![ArtifactSpec {
        name: "a".into(),
        paths: vec!["out".into()],
        ..ArtifactSpec::default()
    }];
    plan.dependencies = vec![Dependency {
        id: 1,
        name: "build".into(),
        token: "dep-token".into(),
        artifacts_file: Some(ArtifactsFile {
            filename: "artifacts.zip".into(),
            size: 10,
        }),
    }];
    plan
}

async fn run_with_hooks(env: &Env, plan: &JobPlan, exec: &mut Scripted) -> JobOutcome {
    let hooks = RecordingHooks { exec: exec.clone() };
    let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
    let outcome = run_job(plan, &env.ctx(), exec, &hooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    outcome
}

#[tokio::test(start_paused = true)]
async fn cache_and_artifact_hooks_run_between_the_scripts_in_gitlab_runner_order() {
    let env = Env::new();
    let plan = with_cache_and_artifacts(env.plan());
    let mut exec = Scripted::new(&[]);
    assert_eq!(run_with_hooks(&env, &plan, &mut exec).await, JobOutcome::Success);
    assert_eq!(
        exec.calls(),
        [
            "prepare",
            "prepare_script",
            "get_sources",
            "hook restore_cache (ok)",
            "hook download_artifacts (ok)",
            "step_script",
            "after_script",
            "stop_job_processes",
            "hook archive_cache (ok)",
            "hook upload_artifacts_on_success (ok)",
            "cleanup_file_variables",
            "cleanup",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_job_uses_the_on_failure_hooks() {
    let env = Env::new();
    let plan = with_cache_and_artifacts(env.plan());
    let mut exec = Scripted::new(&[("step_script", Reply::Exit(1))]);
    let outcome = run_with_hooks(&env, &plan, &mut exec).await;
    assert_eq!(outcome.failure_reason(), Some(FailureReason::ScriptFailure));
    let calls = exec.calls();
    let after: Vec<&str> = calls
        .iter()
        .skip_while(|c| *c != "after_script")
        .map(String::as_str)
        .collect();
    assert_eq!(
        after,
        [
            "after_script",
            "stop_job_processes",
            "hook archive_cache_on_failure (failed)",
            "hook upload_artifacts_on_failure (failed)",
            "cleanup_file_variables",
            "cleanup",
        ]
    );
}

/// gitlab-runner's default: every line of the log carries a timestamp and its stream; the flag turns it off.
#[tokio::test(start_paused = true)]
async fn timestamps_are_on_by_default_and_the_flag_turns_them_off() {
    let env = Env::new();
    let stamped = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z 0[01]O[ +]").unwrap();
    let (outcome, log) = env
        .run(&env.plan(), &mut Scripted::new(&[]), JobCancel::new())
        .await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.lines().all(|l| stamped.is_match(l)), "{log}");
    assert!(
        oxrunner_core::trace::strip_timestamps(&log).starts_with("\x1b[0KRunning with oxrunner"),
        "{log}"
    );

    let mut plan = env.plan();
    plan.variables.push(Variable::new("FF_TIMESTAMPS", "false"));
    let (_, log) = env.run(&plan, &mut Scripted::new(&[]), JobCancel::new()).await;
    assert!(log.lines().all(|l| !stamped.is_match(l)), "{log}");
    // As gitlab-runner's header: the flags whose value is not the default.
    assert!(
        log.contains("\x1b[0K  feature flags: FF_TIMESTAMPS:false\x1b[0;m\n"),
        "{log}"
    );
}

/// gitlab-runner refuses a GIT_CLONE_PATH the runner does not allow, or one outside the builds dir, as a
/// configuration error before anything runs; it never silently clones elsewhere.
#[tokio::test(start_paused = true)]
async fn a_git_clone_path_that_is_not_allowed_fails_the_job() {
    let env = Env::new();
    let inside = env.dir.path().join("builds/custom/place");
    let cases = [
        (
            false,
            inside.display().to_string(),
            "setting GIT_CLONE_PATH is not allowed",
        ),
        (true, "/elsewhere/place".to_owned(), "has to be within"),
        (true, "$CI_BUILDS_DIR".to_owned(), "is the builds dir itself"),
    ];
    for (enabled, path, message) in cases {
        let mut plan = env.plan();
        plan.variables.push(Variable::new("GIT_CLONE_PATH", path.clone()));
        let ctx = RunnerContext {
            custom_build_dir: enabled,
            ..env.ctx()
        };
        let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
        let mut exec = Scripted::new(&[]);
        let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
        match outcome {
            JobOutcome::Failed {
                reason, message: m, ..
            } => {
                assert_eq!(reason, FailureReason::RunnerConfigurationError, "{path}: {log}");
                assert!(m.contains(message) && m.contains("\nhint: "), "{m}");
            }
            other => panic!("{path}: {other:?}\n{log}"),
        }
        assert!(
            !exec.calls().iter().any(|c| c == "get_sources"),
            "{:?}",
            exec.calls()
        );
    }
    // Allowed and inside: the job runs there.
    let mut plan = env.plan();
    plan.variables
        .push(Variable::new("GIT_CLONE_PATH", inside.display().to_string()));
    let ctx = RunnerContext {
        custom_build_dir: true,
        ..env.ctx()
    };
    let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
    let mut exec = Scripted::new(&[]);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    assert_eq!(outcome, JobOutcome::Success);
}

/// The form gitlab-runner's documentation gives, `GIT_CLONE_PATH: $CI_BUILDS_DIR/<dir>`, expands against the runner's
/// variables (the builds dir, the concurrency slot), not only the job's: it used to expand `$CI_BUILDS_DIR` to
/// nothing and fail the job as "has to be within" the builds dir.
#[tokio::test(start_paused = true)]
async fn a_git_clone_path_may_name_the_builds_dir_by_its_variable() {
    let env = Env::new();
    let ctx = RunnerContext {
        custom_build_dir: true,
        ..env.ctx()
    };
    let mut plan = env.plan();
    plan.variables.push(Variable::new(
        "GIT_CLONE_PATH",
        "$CI_BUILDS_DIR/custom/${CI_CONCURRENT_ID}/place",
    ));
    let expected = ctx.builds_dir.join(format!("custom/{}/place", ctx.concurrent_id));
    assert_eq!(oxrunner_core::build_dir(&plan, &ctx), expected);
    let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
    let mut exec = Scripted::new(&[]);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert_eq!(outcome, JobOutcome::Success, "{log}");
}

/// `prepare_timeout` and `get_sources_timeout` bound their phase as gitlab-runner does: the job fails as a
/// timeout naming the limit, long before the job's own timeout.
#[tokio::test(start_paused = true)]
async fn prepare_and_get_sources_timeouts_end_a_hanging_phase() {
    let env = Env::new();
    for (phase, stage) in [("prepare", "prepare"), ("get sources", "get_sources")] {
        let ctx = RunnerContext {
            prepare_timeout: Some(Duration::from_secs(20)),
            get_sources_timeout: Some(Duration::from_secs(10)),
            ..env.ctx()
        };
        let plan = env.plan();
        let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
        let mut exec = Scripted::new(&[(stage, Reply::Hang)]);
        let start = Instant::now();
        let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let log =
            oxrunner_core::trace::strip_timestamps(&String::from_utf8_lossy(&handle.read_all().unwrap()));
        let limit = if stage == "prepare" { "20s" } else { "10s" };
        match outcome {
            JobOutcome::Failed { reason, message, .. } => {
                assert_eq!(reason, FailureReason::JobExecutionTimeout, "{log}");
                assert_eq!(
                    message,
                    format!("{phase} timeout: exceeded timeout of {limit}"),
                    "{log}"
                );
            }
            other => panic!("{other:?}\n{log}"),
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
        assert!(
            !exec.calls().iter().any(|c| c == "step_script"),
            "{:?}",
            exec.calls()
        );
    }

    // Longer than the job: the job timeout applies, with upstream's warning.
    let ctx = RunnerContext {
        get_sources_timeout: Some(Duration::from_secs(7200)),
        ..env.ctx()
    };
    let (outcome, log) = {
        let plan = env.plan();
        let (trace, handle) = TraceWriter::new(env.dir.path(), plan.mask_set(), 0).unwrap();
        let outcome = run_job(
            &plan,
            &ctx,
            &mut Scripted::new(&[]),
            &NoopHooks,
            &trace,
            JobCancel::new(),
        )
        .await;
        handle.finish().await;
        (
            outcome,
            String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned(),
        )
    };
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("get_sources_timeout (2h0m0s) exceeds job timeout (1h0m0s); using job timeout"),
        "{log}"
    );
}

/// The virtual times at which each get_sources attempt started, with `GET_SOURCES_ATTEMPTS=4` and every attempt
/// failing; `ff` sets FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY when given.
async fn get_sources_attempt_times(ff: Option<&str>) -> Vec<Duration> {
    let env = Env::new();
    let mut plan = env.plan();
    plan.variables.push(Variable::new("GET_SOURCES_ATTEMPTS", "4"));
    if let Some(v) = ff {
        plan.variables
            .push(Variable::new("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", v));
    }
    let mut exec = Scripted::new(&[("get_sources", Reply::Exit(1))]);
    let (outcome, log) = env.run(&plan, &mut exec, JobCancel::new()).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::ScriptFailure),
        "{log}"
    );
    let calls = exec.calls.lock().unwrap().clone();
    let times: Vec<Duration> = calls
        .iter()
        .filter(|c| c.what == "get_sources")
        .map(|c| c.at)
        .collect();
    assert_eq!(times.len(), 4, "{log}");
    times
}

fn gaps(times: &[Duration]) -> Vec<u64> {
    times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
}

#[tokio::test(start_paused = true)]
async fn get_sources_retries_back_off_exponentially_from_5s_by_default() {
    let times = get_sources_attempt_times(None).await;
    assert_eq!(gaps(&times), [5, 10, 20]);
}

#[tokio::test(start_paused = true)]
async fn get_sources_retries_back_off_from_1s_to_5s_with_the_flag_off() {
    let times = get_sources_attempt_times(Some("false")).await;
    assert_eq!(gaps(&times), [1, 2, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_during_the_get_sources_backoff_ends_the_wait() {
    let env = Env::new();
    let mut plan = env.plan();
    plan.variables.push(Variable::new("GET_SOURCES_ATTEMPTS", "3"));
    let mut exec = Scripted::new(&[("get_sources", Reply::Exit(1))]);
    let control = JobCancel::new();
    let abort = control.abort.clone();
    let start = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        abort.cancel();
    });
    let (outcome, log) = env.run(&plan, &mut exec, control).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::JobCanceled),
        "{log}"
    );
    let attempts = exec.calls().iter().filter(|c| *c == "get_sources").count();
    assert_eq!(attempts, 1, "{log}");
    assert!(start.elapsed() < Duration::from_secs(5), "{log}");
}
