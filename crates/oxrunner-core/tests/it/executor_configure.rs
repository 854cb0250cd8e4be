#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Executor::configure`: an executor whose environment decides where builds and caches live (the custom executor's
//! config_exec) moves them for one job, and the driver derives the project directory, the variables and the
//! `Running on ... via` host from the moved settings.

use std::path::PathBuf;

use futures::future::BoxFuture;
use oxrunner_core::{
    ExecError, Executor, ExitStatus, GitStrategy, JobCancel, JobPlan, JobSettings, NoopHooks, RunnerContext,
    ShellExecutor, Sources, StageCommand, Step, TraceWriter, Variables, When, run_job,
};
use tokio_util::sync::CancellationToken;

/// The shell executor, plus a configure step that moves the builds dir and records what the driver tells it.
struct Moving {
    inner: ShellExecutor,
    settings: JobSettings,
    seen_before: Option<String>,
    seen_after: Option<String>,
}

impl Executor for Moving {
    fn configure<'a>(
        &'a mut self,
        _plan: &'a JobPlan,
        _ctx: &'a RunnerContext,
        vars: &'a Variables,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<JobSettings, ExecError>> {
        self.seen_before = vars.value("CI_PROJECT_DIR").map(str::to_owned);
        trace.println("configure ran");
        let settings = self.settings.clone();
        Box::pin(async move { Ok(settings) })
    }

    fn job_variables(&mut self, vars: &Variables) {
        self.seen_after = vars.value("CI_PROJECT_DIR").map(str::to_owned);
    }

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
        self.inner.run(cmd, trace, cancel)
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.inner.cleanup()
    }
}

fn plan() -> JobPlan {
    JobPlan {
        job_id: 9,
        job_name: "moved".into(),
        stage: "test".into(),
        project_id: 3,
        project_path: "group/moved".into(),
        sources: Sources {
            strategy: GitStrategy::None,
            ..Sources::default()
        },
        steps: vec![Step {
            name: "script".into(),
            script: vec!["echo \"dir=$CI_PROJECT_DIR pwd=$PWD\"".into()],
            when: When::OnSuccess,
            ..Step::default()
        }],
        ..JobPlan::default()
    }
}

#[tokio::test]
async fn configure_moves_the_builds_dir_before_anything_is_derived_from_it() {
    let root = tempfile::tempdir().unwrap();
    let moved: PathBuf = root.path().join("moved-builds");
    let ctx = RunnerContext {
        executor: "custom".into(),
        builds_dir: root.path().join("configured-builds"),
        cache_dir: root.path().join("cache"),
        shared_builds_dir: true,
        ..RunnerContext::default()
    };
    let mut exec = Moving {
        inner: ShellExecutor::new().with_login_shell(false),
        settings: JobSettings {
            builds_dir: Some(moved.clone()),
            cache_dir: None,
            shared_builds_dir: Some(false),
            hostname: Some("vm-42".into()),
        },
        seen_before: None,
        seen_after: None,
    };
    let plan = plan();
    let (trace, handle) = TraceWriter::new(root.path(), plan.mask_set(), 0).unwrap();
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert!(outcome.is_success(), "{log}");
    let project = moved.join("group/moved");
    // Not shared any more: no `<short token>/<slot>` levels under the moved builds dir.
    let want = format!("dir={p} pwd={p}", p = project.display());
    assert!(log.contains(&want), "{want} not in:\n{log}");
    assert!(log.contains("via vm-42..."), "{log}");
    assert!(
        log.find("configure ran") < log.find("Preparing environment"),
        "{log}"
    );
    let before = exec.seen_before.unwrap();
    assert!(
        before.starts_with(&root.path().join("configured-builds").display().to_string()),
        "{before}"
    );
    assert_eq!(exec.seen_after.as_deref(), Some(project.to_str().unwrap()));
}

#[tokio::test]
async fn an_executor_without_configure_keeps_the_runner_settings() {
    let root = tempfile::tempdir().unwrap();
    let ctx = RunnerContext {
        executor: "shell".into(),
        builds_dir: root.path().join("builds"),
        cache_dir: root.path().join("cache"),
        ..RunnerContext::default()
    };
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let plan = plan();
    let (trace, handle) = TraceWriter::new(root.path(), plan.mask_set(), 0).unwrap();
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert!(outcome.is_success(), "{log}");
    assert!(
        log.contains(&format!(
            "dir={}",
            root.path().join("builds/group/moved").display()
        )),
        "{log}"
    );
    assert!(!log.contains(" via "), "{log}");
}
