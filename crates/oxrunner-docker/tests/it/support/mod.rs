//! Helpers shared by the integration tests: the real engine, the local busybox test image, traces, labels.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions};
use oxrunner_config::DockerConfig;
use oxrunner_core::{
    CancellationToken, ExitStatus, ImageSpec, JobPlan, MaskSet, RunnerContext, Stage, StageCommand,
    TraceHandle, TraceWriter,
};
use oxrunner_docker::DockerExecutor;
use oxrunner_docker::labels::LABEL_RUNNER;

/// The busybox image of `scripts/docker-images`, under the project's own name space so that it never shadows a
/// user's `busybox`.
pub const IMAGE: &str = "oxrunner-test/busybox:latest";

/// Runs `plan` through the core driver with a Docker executor (checkouts under `host_builds`, no hooks);
/// returns the outcome and the job log.
pub async fn run_job_in(
    plan: &JobPlan,
    ctx: &RunnerContext,
    config: DockerConfig,
    host_builds: &Path,
) -> (oxrunner_core::JobOutcome, String) {
    let ctx = &RunnerContext {
        runner_builds_dir: host_builds.to_path_buf(),
        ..ctx.clone()
    };
    let mut exec = DockerExecutor::new(config, ctx.clone());
    let trace = Trace::new();
    let outcome = oxrunner_core::run_job(
        plan,
        ctx,
        &mut exec,
        &oxrunner_core::NoopHooks,
        &trace.writer,
        oxrunner_core::JobCancel::new(),
    )
    .await;
    (outcome, trace.text())
}

/// The runner-side checkout of `plan` for a runner `ctx` whose checkouts live under `host_builds`.
pub fn checkout_dir(host_builds: &Path, plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    let ctx = RunnerContext {
        runner_builds_dir: host_builds.to_path_buf(),
        ..ctx.clone()
    };
    oxrunner_core::runner_checkout_dir(plan, &ctx)
}

static IMAGES: Mutex<bool> = Mutex::new(false);

/// The engine, or `None` (test skipped) when none answers outside CI. With `CI=true` a missing engine fails.
pub async fn engine() -> Option<Docker> {
    match oxrunner_docker::connect(&DockerConfig::default()).await {
        Ok(d) => {
            ensure_images();
            Some(d)
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no Docker engine answers (run scripts/ensure-docker first): {e}");
            }
            eprintln!("skipping: no Docker engine: {e}");
            None
        }
    }
}

/// Builds the local test images once per test process (no registry is reachable).
fn ensure_images() {
    let mut done = IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/docker-images");
    let out = std::process::Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    *done = true;
}

/// A runner identity unique to the test, so parallel tests never see each other's objects.
pub fn runner() -> RunnerContext {
    let token = uuid::Uuid::new_v4().simple().to_string();
    RunnerContext {
        runner_name: "docker-test".into(),
        short_token: format!("t{}", &token[..7]),
        executor: "docker".into(),
        builds_dir: PathBuf::from("/builds"),
        cache_dir: PathBuf::from("/cache"),
        environment: vec!["FROM_CONFIG=config-value".into()],
        ..RunnerContext::default()
    }
}

/// The runner context of an earlier [`runner`] call, from its short token.
pub fn runner_with_token(token: &str) -> RunnerContext {
    RunnerContext {
        short_token: token.to_owned(),
        ..runner()
    }
}

pub fn config() -> DockerConfig {
    DockerConfig {
        image: Some(IMAGE.into()),
        pull_policy: vec!["if-not-present".into()],
        ..DockerConfig::default()
    }
}

pub fn plan(job_id: i64) -> JobPlan {
    JobPlan {
        job_id,
        job_name: "test".into(),
        project_id: 42,
        project_path: "group/project".into(),
        ..JobPlan::default()
    }
}

pub fn plan_with_image(job_id: i64, image: &str) -> JobPlan {
    JobPlan {
        image: Some(ImageSpec {
            name: image.into(),
            ..ImageSpec::default()
        }),
        ..plan(job_id)
    }
}

pub struct Trace {
    _dir: tempfile::TempDir,
    pub writer: TraceWriter,
    handle: TraceHandle,
}

impl Trace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (writer, handle) = TraceWriter::new(dir.path(), MaskSet::empty(), 0).unwrap();
        Self {
            _dir: dir,
            writer,
            handle,
        }
    }

    /// The log as GitLab's job page shows it (FF_TIMESTAMPS prefixes removed).
    pub fn text(&self) -> String {
        self.writer.flush();
        oxrunner_core::trace::strip_timestamps(&String::from_utf8_lossy(&self.handle.read_all().unwrap()))
    }
}

pub fn step(script: &str, dir: &str) -> StageCommand {
    StageCommand {
        stage: Stage::Step("script".into()),
        script: script.into(),
        shell_workdir: PathBuf::from(dir),
        predefined: false,
    }
}

pub async fn run(exec: &mut DockerExecutor, script: &str, trace: &Trace) -> ExitStatus {
    use oxrunner_core::Executor;
    exec.run(
        step(script, "/builds/group/project"),
        &trace.writer,
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn runner_filter(runner: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{LABEL_RUNNER}={runner}")])])
}

/// Names of the containers (any state) and volumes labelled with this runner.
pub async fn objects_of(docker: &Docker, runner: &str) -> (Vec<String>, Vec<String>) {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(runner_filter(runner)),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(runner_filter(runner)),
        }))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    (containers, volumes)
}
