//! Whole jobs through `run_job` on an executor that claims the runner cannot reach its files (`FileAccess::
//! InScript`, as a custom driver's VM): caches and artifacts move only through the rendered stage scripts calling
//! the real binary's helper commands, against the fake GitLab.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};

use oxrunner_api::{Client, ClientConfig, JobRequest, JobRequestOutcome};
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CacheSpec, CancellationToken, Dependency, ExecError, Executor, ExitStatus,
    FileAccess, JobCancel, JobHooks, JobOutcome, JobPlan, JobStatus, RunnerContext, Secret, ShellExecutor,
    Stage, StageCommand, StageCtx, Step, TraceWriter, Variable, Variables, run_job,
};

use super::{BoxFuture, RunnerHooks};

/// The shell executor, answering `InScript`; it records which stages it ran.
struct OpaqueShell {
    inner: ShellExecutor,
    stages: Arc<Mutex<Vec<String>>>,
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

/// The `oxrunner` binary next to the test harness (`target/<profile>/deps/..`); cargo builds it for the crate's
/// integration tests, so it is there whenever `cargo test -p oxrunner` runs.
fn helper_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("oxrunner");
    assert!(
        bin.is_file(),
        "{} is missing: build the binary first (`cargo build -p oxrunner`)",
        bin.display()
    );
    bin
}

struct Job {
    id: i64,
    token: String,
}

async fn running_job(fake: &FakeGitlab, client: &Client, runner: &str, name: &str) -> Job {
    let id = fake.enqueue_job(JobSpec::new(name, &["true"]).variable("GIT_STRATEGY", "none"));
    let request = JobRequest {
        token: runner.to_owned(),
        ..JobRequest::default()
    };
    match client.request_job(&request).await.unwrap() {
        JobRequestOutcome::Job(job) if job.id == id => Job {
            id,
            token: job.token.clone(),
        },
        other => panic!("expected job {id}: {other:?}"),
    }
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fake: FakeGitlab,
    client: Client,
}

impl Env {
    fn ctx(&self) -> RunnerContext {
        RunnerContext {
            executor: "custom".into(),
            builds_dir: self.root.join("builds"),
            cache_dir: self.root.join("cache"),
            short_token: "abcd1234".into(),
            shared_builds_dir: true,
            ..RunnerContext::default()
        }
    }

    fn plan(&self, job: &Job, name: &str, script: &[&str]) -> JobPlan {
        JobPlan {
            job_id: job.id,
            job_name: name.into(),
            project_id: 1,
            project_path: "group/project".into(),
            variables: vec![
                Variable::new("GIT_STRATEGY", "empty"),
                Variable::new("CI_JOB_ID", job.id.to_string()),
                Variable::new("CI_JOB_NAME", name),
                Variable::new("CI_SERVER_URL", self.fake.url()),
                Variable::masked("CI_JOB_TOKEN", &job.token),
            ]
            .into(),
            steps: vec![Step {
                name: "script".into(),
                script: script.iter().map(|s| (*s).to_owned()).collect(),
                ..Step::default()
            }],
            caches: vec![CacheSpec {
                key: "deps".into(),
                paths: vec!["vendor/".into()],
                ..CacheSpec::default()
            }],
            timeout: Duration::from_secs(120),
            ..JobPlan::default()
        }
    }

    fn hooks(&self, job: &Job) -> RunnerHooks {
        RunnerHooks::for_gitlab(self.client.clone(), job.id, &job.token, &self.ctx())
            .with_helper_command(helper_binary())
    }

    async fn run(&self, plan: &JobPlan, hooks: &RunnerHooks) -> (JobOutcome, String, Vec<String>) {
        let (trace, handle) = TraceWriter::new(&self.root, plan.mask_set(), 0).unwrap();
        let stages = Arc::new(Mutex::new(Vec::new()));
        let mut exec = OpaqueShell {
            inner: ShellExecutor::new().with_login_shell(false),
            stages: Arc::clone(&stages),
        };
        let outcome = run_job(plan, &self.ctx(), &mut exec, hooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let text = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
        let stages = stages.lock().unwrap().clone();
        (outcome, text, stages)
    }
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let fake = FakeGitlab::start(FakeOptions {
        long_poll: Duration::ZERO,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let client = Client::new(ClientConfig {
        url: fake.url(),
        ..ClientConfig::default()
    })
    .unwrap();
    Env {
        _dir: dir,
        root,
        fake,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_caches_move_through_the_stage_scripts() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let build = running_job(&env.fake, &env.client, &runner, "build").await;
    let mut plan = env.plan(
        &build,
        "build",
        &[
            "mkdir -p out vendor",
            "echo built > out/app",
            "echo lib > vendor/lib",
        ],
    );
    plan.artifacts = vec![ArtifactSpec {
        paths: vec!["out/".into()],
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..ArtifactSpec::default()
    }];
    let (outcome, trace, stages) = env.run(&plan, &env.hooks(&build)).await;
    assert!(outcome.is_success(), "{trace}");
    for stage in ["restore_cache", "archive_cache", "upload_artifacts_on_success"] {
        assert!(
            stages.iter().any(|s| s == stage),
            "{stage} did not run as a script: {stages:?}"
        );
    }
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{trace}"
    );
    assert!(trace.contains("Created cache"), "{trace}");
    assert!(!trace.contains(&build.token), "{trace}");
    let stored = env.fake.job(build.id).unwrap().artifacts;
    assert!(stored.iter().any(|a| a.artifact_type == "archive"), "{stored:?}");
    assert!(env.root.join("cache/group/project/deps/cache.zip").is_file());

    let test = running_job(&env.fake, &env.client, &runner, "test").await;
    let mut plan = env.plan(
        &test,
        "test",
        &[
            "test \"$(cat out/app)\" = built",
            "test \"$(cat vendor/lib)\" = lib",
        ],
    );
    plan.dependencies = vec![Dependency {
        id: build.id,
        name: "build".into(),
        token: Secret::new(test.token.as_str()),
        artifacts_file: Some(ArtifactsFile {
            filename: "artifacts.zip".into(),
            size: 1,
        }),
    }];
    let (outcome, trace, stages) = env.run(&plan, &env.hooks(&test)).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(stages.iter().any(|s| s == "download_artifacts"), "{stages:?}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(
        trace.contains("Downloading artifacts from coordinator... ok"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dependency_fails_the_job_in_script() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let empty = running_job(&env.fake, &env.client, &runner, "empty").await;
    let test = running_job(&env.fake, &env.client, &runner, "test").await;
    let mut plan = env.plan(&test, "test", &["echo never-runs"]);
    plan.caches.clear();
    plan.dependencies = vec![Dependency {
        id: empty.id,
        name: "empty".into(),
        artifacts_file: Some(ArtifactsFile::default()),
        ..Dependency::default()
    }];
    let (outcome, trace, stages) = env.run(&plan, &env.hooks(&test)).await;
    assert!(!outcome.is_success(), "{trace}");
    assert!(stages.iter().any(|s| s == "download_artifacts"), "{stages:?}");
    assert!(
        trace.contains("the download_artifacts stage failed: exit status 1"),
        "{trace}"
    );
    assert!(trace.contains("not found"), "{trace}");
    assert!(trace.contains("hint: re-run job"), "{trace}");
    assert!(!trace.contains("never-runs\n"), "{trace}");
}

/// The rendered text names the binary, paths and ids, never the token: that comes from the environment.
#[test]
fn rendered_stages_carry_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunnerContext {
        builds_dir: dir.path().join("builds"),
        cache_dir: dir.path().join("cache"),
        ..RunnerContext::default()
    };
    let client = Client::new(ClientConfig {
        url: "http://127.0.0.1:1/".into(),
        ..ClientConfig::default()
    })
    .unwrap();
    let token = "glcbt-very-secret-token";
    let hooks = RunnerHooks::for_gitlab(client, 4, token, &ctx).with_helper_command("/opt/oxrunner".into());
    let plan = JobPlan {
        job_id: 4,
        project_path: "group/project".into(),
        caches: vec![CacheSpec {
            key: "k".into(),
            paths: vec!["vendor/".into()],
            ..CacheSpec::default()
        }],
        artifacts: vec![ArtifactSpec {
            paths: vec!["out/".into()],
            ..ArtifactSpec::default()
        }],
        dependencies: vec![Dependency {
            id: 3,
            name: "build".into(),
            token: Secret::new(token),
            artifacts_file: Some(ArtifactsFile::default()),
        }],
        ..JobPlan::default()
    };
    let vars = Variables::default();
    let (trace, _handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    for stage in [
        Stage::RestoreCache,
        Stage::DownloadArtifacts,
        Stage::ArchiveCache,
        Stage::UploadArtifactsOnSuccess,
    ] {
        let sctx = StageCtx {
            plan: &plan,
            runner: &ctx,
            stage: stage.clone(),
            project_dir: dir.path().join("builds/p"),
            tmp_dir: dir.path().join("builds/p.tmp"),
            variables: &vars,
            status: JobStatus::Success,
            cancel: CancellationToken::new(),
        };
        let body = hooks.stage_script(&sctx, &trace).unwrap().unwrap();
        assert!(!body.contains("very-secret"), "{stage}: {body}");
        assert!(!body.contains("--token"), "{stage}: {body}");
        assert!(body.contains("'/opt/oxrunner'"), "{stage}: {body}");
        if matches!(stage, Stage::RestoreCache | Stage::ArchiveCache) {
            // No remote cache: the helper's URL variable is cleared, a job variable of that name is not used.
            assert!(
                body.contains("OXRUNNER_CACHE_URL='' '/opt/oxrunner' cache-"),
                "{stage}: {body}"
            );
        }
    }
}

/// With an S3 cache, in-script stages hand the helpers pre-signed URLs (and the signed upload headers) through
/// the environment, never in argv, and never the store's secret key.
#[test]
fn remote_cache_urls_reach_the_helpers_through_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunnerContext {
        builds_dir: dir.path().join("builds"),
        cache_dir: dir.path().join("cache"),
        ..RunnerContext::default()
    };
    let client = Client::new(ClientConfig {
        url: "http://127.0.0.1:1/".into(),
        ..ClientConfig::default()
    })
    .unwrap();
    let cache: oxrunner_config::CacheConfig = toml::from_str(
        "Type = \"s3\"\nShared = true\n[s3]\nServerAddress = \"127.0.0.1:9\"\nAccessKey = \"AKIDINSCRIPT\"\n\
         SecretKey = \"store-secret-key\"\nBucketName = \"b\"\nInsecure = true\nServerSideEncryption = \"S3\"\n",
    )
    .unwrap();
    let hooks = RunnerHooks::for_gitlab(client, 4, "glcbt-x", &ctx)
        .with_helper_command("/opt/oxrunner".into())
        .with_remote_cache(super::RemoteSetup::from_config(Some(&cache), "abcdefghi"));
    let plan = JobPlan {
        job_id: 4,
        project_id: 7,
        project_path: "group/project".into(),
        caches: vec![CacheSpec {
            key: "k".into(),
            paths: vec!["vendor/".into()],
            ..CacheSpec::default()
        }],
        ..JobPlan::default()
    };
    let vars = Variables::default();
    let (trace, _handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    for (stage, helper) in [
        (Stage::RestoreCache, "cache-extractor"),
        (Stage::ArchiveCache, "cache-archiver"),
    ] {
        let sctx = StageCtx {
            plan: &plan,
            runner: &ctx,
            stage: stage.clone(),
            project_dir: dir.path().join("builds/p"),
            tmp_dir: dir.path().join("builds/p.tmp"),
            variables: &vars,
            status: JobStatus::Success,
            cancel: CancellationToken::new(),
        };
        let body = hooks.stage_script(&sctx, &trace).unwrap().unwrap();
        let line = body.lines().find(|l| l.contains(helper)).unwrap();
        assert!(
            line.contains("OXRUNNER_CACHE_URL='http://127.0.0.1:9/b/project/7/k?"),
            "{stage}: {body}"
        );
        assert!(line.contains("X-Amz-Signature="), "{stage}: {body}");
        assert!(!body.contains("--url"), "{stage}: {body}");
        assert!(!body.contains("store-secret-key"), "{stage}: {body}");
    }
    let sctx = StageCtx {
        plan: &plan,
        runner: &ctx,
        stage: Stage::ArchiveCache,
        project_dir: dir.path().join("builds/p"),
        tmp_dir: dir.path().join("builds/p.tmp"),
        variables: &vars,
        status: JobStatus::Success,
        cancel: CancellationToken::new(),
    };
    let body = hooks.stage_script(&sctx, &trace).unwrap().unwrap();
    assert!(
        body.contains("'--header=x-amz-server-side-encryption: AES256'"),
        "{body}"
    );
}

/// After a package upgrade replaced the running binary, Linux names it `<path> (deleted)`: the stage scripts must
/// call the new binary at `<path>`, so the artifacts are uploaded, not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_binary_still_uploads_the_artifacts() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let build = running_job(&env.fake, &env.client, &runner, "build").await;
    let mut plan = env.plan(&build, "build", &["mkdir -p out", "echo built > out/app"]);
    plan.caches.clear();
    plan.artifacts = vec![ArtifactSpec {
        paths: vec!["out/".into()],
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..ArtifactSpec::default()
    }];
    let deleted = PathBuf::from(format!("{} (deleted)", helper_binary().display()));
    let hooks = RunnerHooks::for_gitlab(env.client.clone(), build.id, &build.token, &env.ctx())
        .with_helper_command(deleted);
    let (outcome, trace, _) = env.run(&plan, &hooks).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(!trace.contains("is disabled"), "{trace}");
    let stored = env.fake.job(build.id).unwrap().artifacts;
    assert!(stored.iter().any(|a| a.artifact_type == "archive"), "{stored:?}");
}

/// A helper binary that does not answer `--version`: as upstream's guard, the stage is skipped, but never silently:
/// the job log says which binary is missing and what was disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_helper_is_a_warning_in_the_job_log() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let build = running_job(&env.fake, &env.client, &runner, "build").await;
    let mut plan = env.plan(&build, "build", &["mkdir -p out", "echo built > out/app"]);
    plan.caches.clear();
    plan.artifacts = vec![ArtifactSpec {
        paths: vec!["out/".into()],
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..ArtifactSpec::default()
    }];
    let missing = env.root.join("gone/oxrunner");
    let hooks = RunnerHooks::for_gitlab(env.client.clone(), build.id, &build.token, &env.ctx())
        .with_helper_command(missing.clone());
    let (_, trace, _) = env.run(&plan, &hooks).await;
    let line = format!(
        "\x1b[0;33mMissing {}. Uploading artifacts is disabled.\x1b[0;m",
        missing.display()
    );
    assert!(trace.contains(&line), "{trace}");
    assert!(env.fake.job(build.id).unwrap().artifacts.is_empty());
}

#[test]
fn the_deleted_suffix_of_a_replaced_binary_is_dropped() {
    use super::installed_path;
    assert_eq!(
        installed_path("/usr/bin/oxrunner (deleted)".into()),
        PathBuf::from("/usr/bin/oxrunner")
    );
    assert_eq!(
        installed_path("/usr/bin/oxrunner".into()),
        PathBuf::from("/usr/bin/oxrunner")
    );
}

/// Artifact paths and excludes that start with `-` are values, never flags of the helper command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_paths_starting_with_a_dash_are_uploaded() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let build = running_job(&env.fake, &env.client, &runner, "build").await;
    let mut plan = env.plan(
        &build,
        "build",
        &[
            "mkdir -p -- -dist",
            "echo built > ./-dist/app",
            "echo x > ./-dist/--x",
        ],
    );
    plan.caches = vec![CacheSpec {
        key: "dash".into(),
        paths: vec!["-dist/".into()],
        ..CacheSpec::default()
    }];
    plan.artifacts = vec![ArtifactSpec {
        paths: vec!["-dist/".into()],
        exclude: vec!["--x".into(), "-dist/--x".into()],
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..ArtifactSpec::default()
    }];
    let (outcome, trace, _) = env.run(&plan, &env.hooks(&build)).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(trace.contains("Created cache"), "{trace}");
    let stored = env.fake.job(build.id).unwrap().artifacts;
    assert!(
        stored.iter().any(|a| a.artifact_type == "archive"),
        "{trace}\n{stored:?}"
    );
}

/// FF_CLEAN_UP_FAILED_CACHE_EXTRACT in script: a cache archive that cannot be extracted gets the cache's paths
/// removed before the job's script runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_extract_removes_the_cache_paths_in_script() {
    let env = env().await;
    let runner = env.fake.create_runner_token("inscript");
    let none = |plan: &mut JobPlan, ff: bool| {
        // GIT_STRATEGY=none keeps the project directory, so `vendor/` survives unless the clean-up removes it.
        let mut vars: Vec<Variable> = plan
            .variables
            .iter()
            .filter(|v| v.key != "GIT_STRATEGY")
            .cloned()
            .collect();
        vars.push(Variable::new("GIT_STRATEGY", "none"));
        if ff {
            vars.push(Variable::new("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", "true"));
        }
        plan.variables = vars.into();
    };
    let save = running_job(&env.fake, &env.client, &runner, "save").await;
    let mut plan = env.plan(&save, "save", &["mkdir -p vendor", "echo old > vendor/lib"]);
    none(&mut plan, false);
    let (outcome, trace, _) = env.run(&plan, &env.hooks(&save)).await;
    assert!(outcome.is_success(), "{trace}");
    let archive = env.root.join("cache/group/project/deps/cache.zip");
    std::fs::write(&archive, b"this is not a zip archive").unwrap();

    let restore = running_job(&env.fake, &env.client, &runner, "restore").await;
    let mut plan = env.plan(&restore, "restore", &["test ! -e vendor"]);
    none(&mut plan, true);
    let (outcome, trace, _) = env.run(&plan, &env.hooks(&restore)).await;
    assert!(trace.contains("Failed to extract cache"), "{trace}");
    assert!(trace.contains("Removing vendor/"), "{trace}");
    assert!(outcome.is_success(), "{trace}");
}
