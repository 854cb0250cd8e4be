//! Whole jobs through `run_job` + the shell executor with the local transport (what `oxrunner exec` will use).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxrunner_archive::CacheStore;
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CachePolicy, CacheSpec, Dependency, FailureReason, JobCancel, JobOutcome,
    JobPlan, MaskSet, RunnerContext, ShellExecutor, Step, TraceWriter, Variable, When, run_job,
};

use super::{LocalTransport, RunnerHooks};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    Env { _dir: dir, root }
}

fn plan(id: i64, name: &str, script: &[&str]) -> JobPlan {
    JobPlan {
        job_id: id,
        job_name: name.into(),
        project_id: 1,
        project_path: "group/project".into(),
        variables: vec![
            Variable::new("GIT_STRATEGY", "empty"),
            Variable::new("CI_COMMIT_REF_NAME", "main"),
            Variable::new("CI_JOB_NAME", name),
        ]
        .into(),
        steps: vec![Step {
            name: "script".into(),
            script: script.iter().map(|s| (*s).to_owned()).collect(),
            ..Step::default()
        }],
        timeout: Duration::from_secs(60),
        ..JobPlan::default()
    }
}

fn archive(paths: &[&str]) -> ArtifactSpec {
    ArtifactSpec {
        paths: paths.iter().map(|s| (*s).to_owned()).collect(),
        artifact_type: "archive".into(),
        artifact_format: "zip".into(),
        ..ArtifactSpec::default()
    }
}

impl Env {
    fn ctx(&self) -> RunnerContext {
        RunnerContext {
            executor: "shell".into(),
            builds_dir: self.root.join("builds"),
            cache_dir: self.root.join("cache"),
            short_token: "abcd1234".into(),
            shared_builds_dir: true,
            ..RunnerContext::default()
        }
    }

    fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    async fn run(&self, plan: &JobPlan) -> (JobOutcome, String) {
        let ctx = self.ctx();
        let hooks = RunnerHooks::new(
            Arc::new(LocalTransport::new(self.artifacts(), plan.job_id, &plan.job_name)),
            CacheStore::new(&ctx.cache_dir),
        );
        let (trace, handle) = TraceWriter::new(&self.root, MaskSet::empty(), 0).unwrap();
        let mut exec = ShellExecutor::new().with_login_shell(false);
        let outcome = run_job(plan, &ctx, &mut exec, &hooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let text = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
        (outcome, text)
    }
}

fn dependency(id: i64, name: &str) -> Dependency {
    Dependency {
        id,
        name: name.into(),
        artifacts_file: Some(ArtifactsFile {
            filename: "artifacts.zip".into(),
            size: 1,
        }),
        ..Dependency::default()
    }
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[tokio::test]
async fn local_artifacts_flow_between_jobs() {
    let env = env();
    let mut build = plan(
        1,
        "build",
        &["mkdir -p out", "echo built > out/app", "echo x > out/tmp.log"],
    );
    build.artifacts = vec![ArtifactSpec {
        exclude: vec!["out/*.log".into()],
        ..archive(&["out/"])
    }];
    let (outcome, trace) = env.run(&build).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... stored"),
        "{trace}"
    );
    assert!(exists(&env.artifacts().join("build/archive/artifacts.zip")));

    let mut test = plan(
        2,
        "test",
        &["test \"$(cat out/app)\" = built", "test ! -e out/tmp.log"],
    );
    test.dependencies = vec![dependency(1, "build")];
    let (outcome, trace) = env.run(&test).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(
        trace.contains("Downloading artifacts for build (1)..."),
        "{trace}"
    );

    let mut orphan = plan(3, "orphan", &["echo never"]);
    orphan.dependencies = vec![dependency(9, "gone")];
    let (outcome, trace) = env.run(&orphan).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::MissingDependencyFailure),
        "{trace}"
    );
    assert!(trace.contains("do not exist or have expired"), "{trace}");
}

#[tokio::test]
async fn cache_policies_and_default_key() {
    let env = env();
    // An empty key means `<job name>/<ref>`.
    let mut push = plan(1, "deps", &["mkdir -p c", "echo one > c/f"]);
    push.sources.ref_name = "main".into();
    push.caches = vec![CacheSpec {
        key: String::new(),
        paths: vec!["c/".into()],
        policy: CachePolicy::Push,
        ..CacheSpec::default()
    }];
    let (outcome, trace) = env.run(&push).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(
        trace.contains("Not downloading cache deps/main due to policy"),
        "{trace}"
    );
    assert!(trace.contains("Creating cache deps/main..."), "{trace}");
    assert!(exists(&env.root.join("cache/group/project/deps/main/cache.zip")));

    let mut missing = plan(2, "other", &["test ! -e c/f"]);
    missing.caches = vec![CacheSpec {
        key: "nothing-yet".into(),
        paths: vec!["c/".into()],
        policy: CachePolicy::Pull,
        when: When::Always,
        ..CacheSpec::default()
    }];
    let (outcome, trace) = env.run(&missing).await;
    assert!(outcome.is_success(), "a missing cache is only a warning: {trace}");
    assert!(trace.contains("WARNING: Failed to extract cache"), "{trace}");
    assert!(
        trace.contains("Not uploading cache nothing-yet due to policy"),
        "{trace}"
    );

    let mut pull = plan(3, "deps", &["test \"$(cat c/f)\" = one", "exit 1"]);
    pull.sources.ref_name = "main".into();
    pull.caches = vec![CacheSpec {
        key: "$CI_JOB_NAME/$CI_COMMIT_REF_NAME".into(),
        paths: vec!["c/".into()],
        ..CacheSpec::default()
    }];
    let (outcome, trace) = env.run(&pull).await;
    assert_eq!(outcome.exit_code(), Some(1), "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    // `when: on_success` caches are not saved for a failed job.
    assert!(!trace.contains("Creating cache"), "{trace}");
}

#[tokio::test]
async fn report_formats_and_empty_selections() {
    let env = env();
    let mut job = plan(
        5,
        "reports",
        &[
            "echo '<testsuite/>' > junit.xml",
            "echo raw-bytes > data.bin",
            "echo a > a.txt",
            "echo b > b.txt",
        ],
    );
    job.artifacts = vec![
        ArtifactSpec {
            artifact_type: "junit".into(),
            artifact_format: "gzip".into(),
            ..archive(&["junit.xml"])
        },
        ArtifactSpec {
            artifact_type: "metrics".into(),
            artifact_format: "raw".into(),
            ..archive(&["data.bin"])
        },
        ArtifactSpec {
            artifact_type: "archive".into(),
            ..archive(&["no-such-dir/"])
        },
    ];
    let (outcome, trace) = env.run(&job).await;
    assert!(outcome.is_success(), "{trace}");
    let gz = std::fs::read(env.artifacts().join("reports/junit/artifacts.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let raw = std::fs::read(env.artifacts().join("reports/metrics/artifacts")).unwrap();
    assert_eq!(raw, b"raw-bytes\n");
    assert!(
        trace.contains("WARNING: no-such-dir: no matching files"),
        "{trace}"
    );
    assert!(trace.contains("WARNING: No files to upload"), "{trace}");
    assert!(!env.artifacts().join("reports/archive").exists());

    // `raw` takes exactly one file: two make the upload, and so the job, fail.
    let mut two = plan(6, "two", &["echo a > a.txt", "echo b > b.txt"]);
    two.artifacts = vec![ArtifactSpec {
        artifact_type: "metrics".into(),
        artifact_format: "raw".into(),
        ..archive(&["a.txt", "b.txt"])
    }];
    let (outcome, trace) = env.run(&two).await;
    assert_eq!(
        outcome.failure_reason(),
        Some(FailureReason::ScriptFailure),
        "{trace}"
    );
    assert!(trace.contains("only one file can be sent as raw"), "{trace}");
}

#[tokio::test]
async fn hashed_cache_keys_and_compression_level() {
    let env = env();
    let mut job = plan(7, "hash", &["mkdir -p c", "echo z > c/f"]);
    job.variables.push(Variable::new("FF_HASH_CACHE_KEYS", "true"));
    job.variables
        .push(Variable::new("CACHE_COMPRESSION_LEVEL", "turbo"));
    job.caches = vec![CacheSpec {
        key: "../../escape".into(),
        paths: vec!["c/".into()],
        ..CacheSpec::default()
    }];
    let (outcome, trace) = env.run(&job).await;
    assert!(outcome.is_success(), "{trace}");
    let hashed = CacheStore::hash_key("../../escape");
    assert!(trace.contains(&format!("Creating cache {hashed}...")), "{trace}");
    assert!(
        trace.contains("compression level \"turbo\" is invalid"),
        "{trace}"
    );
    assert!(exists(
        &env.root.join(format!("cache/group/project/{hashed}/cache.zip"))
    ));
}

/// Issue 11 item 4: a Python venv's absolute interpreter link travels in a cache and in artifacts,
/// restored as the same link, and the jobs that need it succeed.
#[tokio::test]
async fn absolute_symlinks_round_trip_through_caches_and_artifacts() {
    let env = env();
    let venv_cache = || CacheSpec {
        key: "venv".into(),
        paths: vec!["venv/".into()],
        ..CacheSpec::default()
    };
    let mut build = plan(
        1,
        "build",
        &[
            "mkdir -p venv/bin",
            "ln -s /usr/bin/python3 venv/bin/python",
            "echo ok > venv/marker",
        ],
    );
    build.caches = vec![venv_cache()];
    build.artifacts = vec![archive(&["venv/"])];
    let (outcome, trace) = env.run(&build).await;
    assert!(outcome.is_success(), "{trace}");

    let check = [
        "test \"$(readlink venv/bin/python)\" = /usr/bin/python3",
        "test \"$(cat venv/marker)\" = ok",
    ];
    let mut cached = plan(2, "cached", &check);
    cached.caches = vec![venv_cache()];
    let (outcome, trace) = env.run(&cached).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");

    let mut dependent = plan(3, "dependent", &check);
    dependent.dependencies = vec![dependency(1, "build")];
    let (outcome, trace) = env.run(&dependent).await;
    assert!(outcome.is_success(), "{trace}");
}

/// Issue 11 item 1: the hooks reach the project directory from `builds_dir` without following links,
/// so a job that turns its project directory into a link to elsewhere does not get elsewhere archived.
#[tokio::test]
async fn a_project_dir_swapped_for_a_symlink_is_not_archived_through() {
    let env = env();
    let outside = env.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "not for the job").unwrap();
    let swap = format!(
        "dir=$(pwd) && cd .. && mv \"$dir\" \"$dir.moved\" && ln -s {} \"$dir\"",
        outside.display()
    );
    let mut job = plan(1, "swap", &[swap.as_str()]);
    job.artifacts = vec![archive(&["secret"])];
    let (outcome, trace) = env.run(&job).await;
    assert!(!outcome.is_success(), "{trace}");
    assert!(trace.contains("never follows symlinks"), "{trace}");
    assert!(
        !exists(&env.artifacts().join("swap/archive/artifacts.zip")),
        "the outside file was archived: {trace}"
    );
}

/// As in gitlab-runner, a path through a link that stays inside the project is collected under the name
/// written in `paths:` (`current -> releases/3`), for artifacts and caches alike.
#[tokio::test]
async fn paths_through_in_project_links_are_archived() {
    let env = env();
    let mut build = plan(
        1,
        "build",
        &[
            "mkdir -p releases/3/dist",
            "echo v3 > releases/3/dist/app.js",
            "ln -s releases/3 current",
        ],
    );
    build.artifacts = vec![archive(&["current/dist/app.js"])];
    build.caches = vec![CacheSpec {
        key: "rel".into(),
        paths: vec!["current/dist/".into()],
        ..CacheSpec::default()
    }];
    let (outcome, trace) = env.run(&build).await;
    assert!(outcome.is_success(), "{trace}");
    assert!(!trace.contains("not supported"), "{trace}");
    assert!(!trace.contains("no matching files"), "{trace}");

    let out = tempfile::tempdir().unwrap();
    oxrunner_archive::extract_zip(&env.artifacts().join("build/archive/artifacts.zip"), out.path()).unwrap();
    let content = std::fs::read_to_string(out.path().join("current/dist/app.js")).unwrap();
    assert_eq!(content, "v3\n");
    assert!(!out.path().join("releases").exists());
}

/// A transport whose store is on this machine but that cannot copy: a dependency's archive must be extracted where
/// it is stored (`local_archive`), never through a temporary copy.
struct NoCopy(LocalTransport);

impl super::ArtifactTransport for NoCopy {
    fn upload<'a>(
        &'a self,
        file: &'a Path,
        opts: &'a oxrunner_api::ArtifactUpload,
    ) -> super::BoxFuture<'a, Result<String, super::TransportError>> {
        self.0.upload(file, opts)
    }
    fn download<'a>(
        &'a self,
        _dependency: &'a Dependency,
        _dest: &'a Path,
        _mode: super::DownloadMode,
        _note: super::transport::Note<'a>,
    ) -> super::BoxFuture<'a, Result<String, super::TransportError>> {
        Box::pin(async {
            Err(super::TransportError::Failed {
                detail: "copy attempted".into(),
            })
        })
    }
    fn upload_fields(&self, status: &str) -> String {
        self.0.upload_fields(status)
    }
    fn download_fields(&self, dependency: &Dependency, status: &str) -> String {
        self.0.download_fields(dependency, status)
    }
    fn helper_upload_args(&self) -> Vec<String> {
        self.0.helper_upload_args()
    }
    fn helper_download_args(&self, dependency: &Dependency) -> Vec<String> {
        self.0.helper_download_args(dependency)
    }
    fn local_archive<'a>(
        &'a self,
        dependency: &'a Dependency,
    ) -> super::BoxFuture<'a, Option<(PathBuf, String)>> {
        self.0.local_archive(dependency)
    }
}

#[tokio::test]
async fn a_local_dependency_is_extracted_from_the_store_without_a_copy() {
    let env = env();
    let mut build = plan(1, "build", &["mkdir -p out", "echo built > out/app"]);
    build.artifacts = vec![archive(&["out/"])];
    let (outcome, trace) = env.run(&build).await;
    assert!(outcome.is_success(), "{trace}");

    let mut test = plan(2, "test", &["test \"$(cat out/app)\" = built"]);
    test.dependencies = vec![dependency(1, "build")];
    let ctx = env.ctx();
    let transport = NoCopy(LocalTransport::new(env.artifacts(), 2, "test"));
    let hooks = RunnerHooks::new(Arc::new(transport), CacheStore::new(&ctx.cache_dir));
    let (trace, handle) = TraceWriter::new(&env.root, MaskSet::empty(), 0).unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let outcome = run_job(&test, &ctx, &mut exec, &hooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let text = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert!(outcome.is_success(), "{text}");
    let stored = env.artifacts().join("build/archive/artifacts.zip");
    assert!(
        text.contains(&format!(
            "Downloading artifacts from coordinator... ok  path={}",
            stored.display()
        )),
        "{text}"
    );
}
