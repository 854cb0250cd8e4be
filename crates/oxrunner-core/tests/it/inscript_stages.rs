#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The in-script transfer mode: for an executor that answers `FileAccess::InScript`, the driver runs the cache
//! and artifact stages as scripts the hooks render, in the job environment, and applies each stage's failure rule.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CacheSpec, Dependency, ExecError, Executor, ExitStatus, FailureReason,
    FileAccess, HookError, JobCancel, JobHooks, JobOutcome, JobPlan, NoopHooks, RunnerContext, Secret,
    ShellExecutor, Stage, StageCommand, StageCtx, Step, TraceWriter, Variable, run_job,
};
use tokio_util::sync::CancellationToken;

/// The shell executor, but claiming the runner cannot reach its files (as a custom driver's VM).
struct OpaqueShell {
    inner: ShellExecutor,
    stages: Mutex<Vec<String>>,
}

impl OpaqueShell {
    fn new() -> Self {
        Self {
            inner: ShellExecutor::new().with_login_shell(false),
            stages: Mutex::new(Vec::new()),
        }
    }
}

impl Executor for OpaqueShell {
    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        self.inner.prepare(plan, trace)
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        self.stages.lock().unwrap().push(cmd.stage.name().into_owned());
        self.inner.run(cmd, trace, cancel)
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.inner.cleanup()
    }

    fn stop_job_processes(&mut self) -> BoxFuture<'_, ()> {
        self.inner.stop_job_processes()
    }

    fn file_access(&self) -> FileAccess {
        FileAccess::InScript
    }
}

/// Renders each stage as a line naming it (plus `fail` for the stages listed); its runner-side hooks fail loudly.
struct ScriptHooks {
    failing: Vec<&'static str>,
}

fn runner_side<'a>(name: &'static str) -> BoxFuture<'a, Result<(), HookError>> {
    Box::pin(async move { Err(HookError::new(format!("runner-side {name} hook was called"))) })
}

impl JobHooks for ScriptHooks {
    fn restore_cache<'a>(
        &'a self,
        _: &'a StageCtx<'a>,
        _: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        runner_side("restore_cache")
    }

    fn download_artifacts<'a>(
        &'a self,
        _: &'a StageCtx<'a>,
        _: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        runner_side("download_artifacts")
    }

    fn archive_cache<'a>(
        &'a self,
        _: &'a StageCtx<'a>,
        _: &'a TraceWriter,
        _: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        runner_side("archive_cache")
    }

    fn upload_artifacts<'a>(
        &'a self,
        _: &'a StageCtx<'a>,
        _: &'a TraceWriter,
        _: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        runner_side("upload_artifacts")
    }

    fn stage_script(&self, ctx: &StageCtx<'_>, _trace: &TraceWriter) -> Result<Option<String>, HookError> {
        let name = ctx.stage.name();
        // The token comes from the environment the driver exported, never from the rendered text.
        let mut body = format!("echo \"in-script {name} in $(pwd) token-set=${{CI_JOB_TOKEN:+yes}}\"\n");
        if self.failing.contains(&name.as_ref()) {
            body.push_str("exit 3\n");
        }
        Ok(Some(body))
    }
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Self { _dir: dir, root }
    }

    fn ctx(&self) -> RunnerContext {
        RunnerContext {
            executor: "custom".into(),
            builds_dir: self.root.join("builds"),
            cache_dir: self.root.join("cache"),
            shared_builds_dir: true,
            ..RunnerContext::default()
        }
    }

    async fn run(&self, plan: &JobPlan, hooks: &dyn JobHooks) -> (JobOutcome, String, Vec<String>) {
        let (trace, handle) = TraceWriter::new(&self.root, plan.mask_set(), 0).unwrap();
        let mut exec = OpaqueShell::new();
        let outcome = run_job(plan, &self.ctx(), &mut exec, hooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let text = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
        let stages = exec.stages.lock().unwrap().clone();
        (outcome, text, stages)
    }
}

fn plan() -> JobPlan {
    JobPlan {
        job_id: 7,
        job_name: "build".into(),
        project_id: 1,
        project_path: "group/project".into(),
        variables: vec![
            Variable::new("GIT_STRATEGY", "empty"),
            Variable::masked("CI_JOB_TOKEN", "glcbt-secret-in-env"),
        ]
        .into(),
        steps: vec![Step {
            name: "script".into(),
            script: vec!["echo user-script-ran".into()],
            ..Step::default()
        }],
        caches: vec![CacheSpec {
            key: "k".into(),
            paths: vec!["vendor/".into()],
            ..CacheSpec::default()
        }],
        dependencies: vec![Dependency {
            id: 3,
            name: "compile".into(),
            token: Secret::new("glcbt-secret-in-env"),
            artifacts_file: Some(ArtifactsFile {
                filename: "artifacts.zip".into(),
                size: 1,
            }),
        }],
        artifacts: vec![ArtifactSpec {
            paths: vec!["out/".into()],
            ..ArtifactSpec::default()
        }],
        timeout: Duration::from_secs(60),
        ..JobPlan::default()
    }
}

#[tokio::test]
async fn transfer_stages_run_as_scripts_in_the_job_environment() {
    let env = Env::new();
    let plan = plan();
    let (outcome, trace, stages) = env.run(&plan, &ScriptHooks { failing: vec![] }).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(!trace.contains("runner-side"), "{trace}");
    let project = oxrunner_core::build_dir(&plan, &env.ctx());
    for stage in [
        "restore_cache",
        "download_artifacts",
        "archive_cache",
        "upload_artifacts_on_success",
    ] {
        assert!(
            trace.contains(&format!(
                "in-script {stage} in {} token-set=yes",
                project.display()
            )),
            "{stage}: {trace}"
        );
    }
    let order: Vec<&str> = stages.iter().map(String::as_str).collect();
    let pos = |s: &str| {
        order
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("{s} in {order:?}"))
    };
    assert!(pos("restore_cache") < pos("download_artifacts"));
    assert!(pos("download_artifacts") < pos("step_script"));
    assert!(pos("step_script") < pos("archive_cache"));
    assert!(pos("archive_cache") < pos("upload_artifacts_on_success"));
}

#[tokio::test]
async fn a_failed_restore_script_is_a_warning() {
    let env = Env::new();
    let (outcome, trace, _) = env
        .run(
            &plan(),
            &ScriptHooks {
                failing: vec!["restore_cache"],
            },
        )
        .await;
    assert!(outcome.is_success(), "{trace}");
    assert!(trace.contains("Failed to restore the cache"), "{trace}");
    assert!(trace.contains("user-script-ran"), "{trace}");
}

#[tokio::test]
async fn a_failed_download_script_fails_the_job_before_the_script() {
    let env = Env::new();
    let (outcome, trace, stages) = env
        .run(
            &plan(),
            &ScriptHooks {
                failing: vec!["download_artifacts"],
            },
        )
        .await;
    match outcome {
        JobOutcome::Failed { reason, .. } => assert_eq!(reason, FailureReason::ScriptFailure, "{trace}"),
        other => panic!("{other:?}: {trace}"),
    }
    assert!(!trace.contains("user-script-ran"), "{trace}");
    assert!(!stages.iter().any(|s| s == "step_script"), "{stages:?}");
    // Uploads for the failed job still run, in the job environment.
    assert!(trace.contains("in-script upload_artifacts_on_failure"), "{trace}");
}

#[tokio::test]
async fn a_failed_upload_script_fails_the_job() {
    let env = Env::new();
    let (outcome, trace, _) = env
        .run(
            &plan(),
            &ScriptHooks {
                failing: vec!["upload_artifacts_on_success"],
            },
        )
        .await;
    assert!(!outcome.is_success(), "{trace}");
    assert!(
        trace.contains("the upload_artifacts_on_success stage failed: exit status 3"),
        "{trace}"
    );
}

#[tokio::test]
async fn hooks_that_cannot_render_scripts_fail_the_download_clearly() {
    let env = Env::new();
    let (outcome, trace, stages) = env.run(&plan(), &NoopHooks).await;
    assert!(!outcome.is_success(), "{trace}");
    assert!(
        trace.contains("the download_artifacts stage cannot run inside this executor's job environment"),
        "{trace}"
    );
    assert!(!stages.iter().any(|s| s == "download_artifacts"), "{stages:?}");
    let _ = Stage::DownloadArtifacts;
}
