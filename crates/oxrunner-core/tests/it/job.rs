#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Full jobs with `run_job` + `ShellExecutor` against a real local git repository, real bash and git.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CacheSpec, Dependency, FailureReason, HookError, JobCancel, JobHooks,
    JobOutcome, JobPlan, JobStatus, NoopHooks, RunnerContext, ShellExecutor, Sources, StageCtx, Step,
    TraceFeatures, TraceWriter, Variable, When, build_dir, run_job,
};

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sha: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin");
    std::fs::create_dir(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("hello.txt"), "committed content\n").unwrap();
    git(&path, &["add", "hello.txt"]);
    git(&path, &["commit", "-q", "-m", "first"]);
    let sha = git(&path, &["rev-parse", "HEAD"]);
    Repo { _dir: dir, path, sha }
}

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: Repo,
}

pub(crate) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    Env {
        _dir: dir,
        root,
        repo: repo(),
    }
}

impl Env {
    pub(crate) fn ctx(&self) -> RunnerContext {
        RunnerContext {
            runner_name: "test-runner".into(),
            short_token: "abcd1234".into(),
            system_id: "s_0123456789ab".into(),
            executor: "shell".into(),
            builds_dir: self.root.join("builds"),
            cache_dir: self.root.join("cache"),
            shared_builds_dir: true,
            environment: vec!["FROM_CONFIG=config-value".into()],
            version: "0.1.0".into(),
            revision: "deadbeef".into(),
            ..RunnerContext::default()
        }
    }

    pub(crate) fn plan(&self, script: &[&str]) -> JobPlan {
        JobPlan {
            job_id: 42,
            job_name: "test".into(),
            stage: "test".into(),
            project_id: 7,
            project_path: "group/project".into(),
            variables: vec![
                Variable::new("CI_JOB_ID", "42"),
                Variable::new("FF_TIMESTAMPS", std::env::var("OXR_TS").unwrap_or_default()),
                Variable::masked("MY_SECRET", "hunter2-very-secret"),
                Variable::new("GREETING", "hello $CI_JOB_ID"),
                Variable::new("FILE_VAR", "file content here").into_file(),
            ]
            .into(),
            sources: Sources {
                repo_url: format!("file://{}", self.repo.path.display()).into(),
                sha: self.repo.sha.clone(),
                ref_name: "main".into(),
                refspecs: vec!["+refs/heads/*:refs/origin/heads/*".into()],
                depth: 20,
                ..Sources::default()
            },
            steps: vec![Step {
                name: "script".into(),
                script: script.iter().map(|s| (*s).to_owned()).collect(),
                when: When::OnSuccess,
                ..Step::default()
            }],
            after_script: Some(Step {
                name: "after_script".into(),
                script: vec!["echo \"after status=$CI_JOB_STATUS\"".into()],
                when: When::Always,
                ..Step::default()
            }),
            timeout: Duration::from_secs(60),
            features: TraceFeatures {
                trace_sections: true,
                ..TraceFeatures::default()
            },
            job_token: "job-token-xyz-123".into(),
            ..JobPlan::default()
        }
    }

    pub(crate) async fn run(&self, plan: &JobPlan, control: JobCancel) -> (JobOutcome, String) {
        // Login shells source /etc/profile (slow on some hosts); `successful_job` covers the login default.
        let exec = ShellExecutor::new().with_login_shell(false);
        self.run_with(plan, control, &NoopHooks, exec).await
    }

    /// [`Env::run`] under other runner settings.
    pub(crate) async fn run_in(&self, plan: &JobPlan, ctx: &RunnerContext) -> (JobOutcome, String) {
        let exec = ShellExecutor::new().with_login_shell(false);
        self.run_full(plan, ctx, JobCancel::new(), &NoopHooks, exec).await
    }

    async fn run_with(
        &self,
        plan: &JobPlan,
        control: JobCancel,
        hooks: &dyn JobHooks,
        exec: ShellExecutor,
    ) -> (JobOutcome, String) {
        self.run_full(plan, &self.ctx(), control, hooks, exec).await
    }

    async fn run_full(
        &self,
        plan: &JobPlan,
        ctx: &RunnerContext,
        control: JobCancel,
        hooks: &dyn JobHooks,
        exec: ShellExecutor,
    ) -> (JobOutcome, String) {
        let (trace, handle) = TraceWriter::new(&self.root, plan.mask_set(), 0).unwrap();
        let mut exec = exec.with_kill_grace(Duration::from_secs(3));
        let outcome = run_job(plan, ctx, &mut exec, hooks, &trace, control).await;
        let (crc, size) = handle.finish().await;
        let bytes = handle.read_all().unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(crc, crc32fast::hash(&bytes));
        // FF_TIMESTAMPS is on by default; the assertions read the log as GitLab's viewer shows it.
        let log = oxrunner_core::trace::strip_timestamps(&String::from_utf8_lossy(&bytes));
        (outcome, log)
    }
}

fn processes_with_secrets() -> Vec<String> {
    let mut leaked = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
            if cmdline.contains("hunter2-very-secret") || cmdline.contains("job-token-xyz-123") {
                leaked.push(cmdline);
            }
        }
    }
    leaked
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: only a live process could still do harm.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn successful_job() {
    let env = env();
    let plan = env.plan(&[
        "echo \"greeting=$GREETING\"",
        "echo \"secret=$MY_SECRET\"",
        "echo \"file=$(cat \"$FILE_VAR\")\"",
        "echo \"config=$FROM_CONFIG shared=$CI_SHARED_ENVIRONMENT status=$CI_JOB_STATUS\"",
        "cat hello.txt",
        "echo \"head=$(git rev-parse HEAD)\"",
        "echo \"pwd=$PWD dir=$CI_PROJECT_DIR\"",
        "if true; then\n  echo multi-line-ran\nfi",
        "echo 'EXPORTED=from-env-file' >> \"$GITLAB_ENV\"",
    ]);
    let (outcome, log) = env
        .run_with(&plan, JobCancel::new(), &NoopHooks, ShellExecutor::new())
        .await;
    if std::env::var_os("OXR_SHOW_LOG").is_some() {
        println!("{log}");
    }
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let dir = build_dir(&plan, &env.ctx());
    assert_eq!(dir, env.root.join("builds/abcd1234/0/group/project"));
    assert!(
        log.contains("\x1b[0KRunning with oxrunner 0.1.0 (deadbeef)\x1b[0;m\n"),
        "{log}"
    );
    assert!(log.contains("  on test-runner abcd1234, system ID: s_0123456789ab"));
    assert!(log.contains("greeting=hello 42\n"), "{log}");
    assert!(log.contains("secret=[MASKED]\n"));
    assert!(!log.contains("hunter2"));
    assert!(log.contains("file=file content here\n"));
    assert!(log.contains("config=config-value shared=true status=running\n"));
    assert!(log.contains("committed content\n"));
    assert!(log.contains(&format!("head={}\n", env.repo.sha)));
    assert!(log.contains(&format!("pwd={0} dir={0}\n", dir.display())));
    assert!(
        log.contains("\x1b[32;1m$ if true; then # collapsed multi-line command\x1b[0;m\nmulti-line-ran\n")
    );
    assert!(log.contains("\x1b[32;1m$ cat hello.txt\x1b[0;m\n"));
    assert!(log.contains("after status=success\n"));
    for stage in [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "step_script",
        "after_script",
        "cleanup_file_variables",
    ] {
        assert!(
            log.contains(&format!(":{stage}\r\x1b[0K")),
            "section {stage} missing: {log}"
        );
    }
    assert!(log.contains("Executing \"step_script\" stage of the job script"));
    assert!(log.ends_with("\x1b[32;1mJob succeeded\x1b[0;m\n"), "{log}");
    // The checkout is at the job's commit and the credentials file and file variables are gone.
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), env.repo.sha);
    let tmp = env.root.join("builds/abcd1234/0/group/project.tmp");
    assert!(!tmp.join("FILE_VAR").exists());
    assert!(!tmp.join(".gitlab-runner.ext.conf").exists());
    assert!(!tmp.join("gitlab_runner_env").exists());
}

#[tokio::test]
async fn second_run_fetches_into_existing_checkout_and_env_file_carries_between_steps() {
    let env = env();
    let mut plan = env.plan(&["echo 'A=1' >> \"$GITLAB_ENV\"", "touch untracked.txt"]);
    plan.steps.push(Step {
        name: "release".into(),
        script: vec!["echo \"A=$A\"".into()],
        ..Step::default()
    });
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("A=1\n"), "{log}");
    assert!(log.contains("Executing \"step_release\" stage of the job script"));
    assert!(log.contains("Created fresh repository."));

    std::fs::write(env.repo.path.join("hello.txt"), "second\n").unwrap();
    git(&env.repo.path, &["commit", "-q", "-am", "second"]);
    plan.sources.sha = git(&env.repo.path, &["rev-parse", "HEAD"]);
    plan.steps.truncate(1);
    plan.steps[0].script = vec![
        "cat hello.txt".into(),
        "test ! -e untracked.txt".into(),
        "echo \"A=${A:-unset}\"".into(),
    ];
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!log.contains("Created fresh repository."), "{log}");
    assert!(log.contains("second\n"));
    assert!(
        log.contains("A=unset\n"),
        "env file must not leak into the next job: {log}"
    );
}

#[tokio::test]
async fn failing_job_reports_exit_code_and_runs_after_script() {
    let env = env();
    let plan = env.plan(&["echo before", "exit 3", "echo never-printed"]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(3),
            message: "exit status 3".into()
        }
    );
    assert!(log.contains("before\n"));
    assert!(!log.contains("never-printed\n"));
    assert!(log.contains("after status=failed\n"), "{log}");
    assert!(
        log.ends_with("\x1b[31;1mERROR: Job failed: exit status 3\x1b[0;m\n"),
        "{log}"
    );
}

#[tokio::test]
async fn bad_repository_fails_get_sources_after_retries() {
    let env = env();
    let mut plan = env.plan(&["echo should-not-run"]);
    plan.sources.repo_url = format!("file://{}/missing", env.root.display()).into();
    plan.variables.push(Variable::new("GET_SOURCES_ATTEMPTS", "2"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(matches!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::ScriptFailure,
            ..
        }
    ));
    assert!(
        log.contains("Deleting all tracked and untracked files due to source fetch failure"),
        "{log}"
    );
    assert!(!log.contains("should-not-run\n"));
    assert!(log.contains("after status=failed\n"));
}

#[tokio::test]
async fn job_timeout_kills_every_process() {
    let env = env();
    let pidfile = env.root.join("sleep.pid");
    let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
    let mut plan = env.plan(&[&script]);
    // Generous: the timeout also covers preparation and the clone on a busy machine.
    plan.timeout = Duration::from_secs(8);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::JobExecutionTimeout,
            exit_code: None,
            message: "execution took longer than 8s seconds".into()
        },
        "{log}"
    );
    // gitlab-runner runs after_script inside the job's timeout, so a timed-out job skips it.
    assert!(!log.contains("after status="), "{log}");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid), "sleep {pid} survived the timeout");
}

#[tokio::test]
async fn graceful_cancel_runs_after_script() {
    let env = env();
    let pidfile = env.root.join("sleep.pid");
    let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
    let plan = env.plan(&[&script]);
    let control = JobCancel::new();
    let graceful = control.graceful.clone();
    let watch = pidfile.clone();
    // While the step runs, no process may carry a secret on its command line.
    let scan = tokio::spawn(async move {
        while !watch.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leaked = processes_with_secrets();
        graceful.cancel();
        leaked
    });
    let started = std::time::Instant::now();
    let (outcome, log) = env.run(&plan, control).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                reason: FailureReason::JobCanceled,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(log.contains("after status=canceled\n"), "{log}");
    assert!(log.contains(":cleanup_file_variables\r"));
    assert_eq!(scan.await.unwrap(), Vec::<String>::new());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid));
}

#[tokio::test]
async fn abort_stops_without_after_script() {
    let env = env();
    let pidfile = env.root.join("sleep.pid");
    let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
    let plan = env.plan(&[&script]);
    let control = JobCancel::new();
    let abort = control.abort.clone();
    let watch = pidfile.clone();
    tokio::spawn(async move {
        while !watch.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        abort.cancel();
    });
    let (outcome, log) = env.run(&plan, control).await;
    assert!(matches!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::JobCanceled,
            ..
        }
    ));
    assert!(!log.contains("after status="), "{log}");
    assert!(!log.contains("Running after_script"));
    // Secrets on disk are removed even after an abort.
    assert!(log.contains(":cleanup_file_variables\r"), "{log}");
    assert!(
        !env.root
            .join("builds/abcd1234/0/group/project.tmp/FILE_VAR")
            .exists()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid));
}

#[tokio::test]
async fn strategy_none_and_empty() {
    let env = env();
    let mut plan = env.plan(&["test ! -e hello.txt", "echo \"dir=$CI_PROJECT_DIR\""]);
    plan.variables.push(Variable::new("GIT_STRATEGY", "empty"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("Skipping Git repository setup and creating an empty build directory"));
    assert!(log.contains("/group/project-empty\n"), "{log}");
}

#[tokio::test]
async fn script_timeout_stops_the_step() {
    let env = env();
    let pidfile = env.root.join("sleep.pid");
    let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
    let mut plan = env.plan(&[&script]);
    plan.variables.push(Variable::new("RUNNER_SCRIPT_TIMEOUT", "2s"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::JobExecutionTimeout,
            exit_code: None,
            message: "script execution took longer than 2s seconds".into()
        },
        "{log}"
    );
    assert!(log.contains("after status=timedout\n"), "{log}");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid), "sleep {pid} survived the timeout");
}

/// Records which hooks ran, with the job state and the checkout they saw; can fail one of them.
#[derive(Default)]
struct RecordingHooks {
    calls: std::sync::Mutex<Vec<String>>,
    fail_download: bool,
}

impl RecordingHooks {
    fn record(&self, ctx: &StageCtx<'_>, what: &str) {
        let status = if ctx.status == JobStatus::Success {
            "ok"
        } else {
            "failed"
        };
        let checkout = ctx.project_dir.join("hello.txt").exists();
        let key = ctx.variables.value("CI_JOB_ID").unwrap_or("?");
        self.calls
            .lock()
            .unwrap()
            .push(format!("{}:{what}:{status}:{checkout}:{key}", ctx.stage.name()));
    }
}

impl JobHooks for RecordingHooks {
    fn restore_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            trace.println("restoring (hook)");
            self.record(ctx, "restore");
            Err(HookError::new("cache server unreachable"))
        })
    }
    fn download_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            self.record(ctx, "download");
            if self.fail_download {
                Err(HookError::with_reason(
                    FailureReason::MissingDependencyFailure,
                    "dependency artifacts are gone",
                ))
            } else {
                Ok(())
            }
        })
    }
    fn archive_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            self.record(ctx, &format!("archive(on_failure={on_failure})"));
            Ok(())
        })
    }
    fn upload_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            self.record(ctx, &format!("upload(on_failure={on_failure})"));
            if on_failure {
                Ok(())
            } else {
                Err(HookError::new(
                    "413 Request Entity Too Large\nhint: raise the maximum artifacts size",
                ))
            }
        })
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

#[tokio::test]
async fn hooks_run_in_order_with_job_state() {
    let env = env();
    let plan = with_cache_and_artifacts(env.plan(&["echo step"]));
    let hooks = RecordingHooks::default();
    let (outcome, log) = env
        .run_with(
            &plan,
            JobCancel::new(),
            &hooks,
            ShellExecutor::new().with_login_shell(false),
        )
        .await;
    assert_eq!(
        hooks.calls.lock().unwrap().clone(),
        vec![
            "restore_cache:restore:ok:true:42",
            "download_artifacts:download:ok:true:42",
            "archive_cache:archive(on_failure=false):ok:true:42",
            "upload_artifacts_on_success:upload(on_failure=false):ok:true:42",
        ]
    );
    // A cache restore failure is only a warning; an upload failure fails the job with its message.
    assert!(
        log.contains("WARNING: Failed to restore the cache: cache server unreachable"),
        "{log}"
    );
    assert!(log.contains("restoring (hook)"));
    assert!(log.contains("Saving cache for successful job"));
    assert!(log.contains("Uploading artifacts for successful job"));
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed { reason: FailureReason::ScriptFailure, ref message, .. } if message.starts_with("413 Request Entity Too Large")
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn failed_download_skips_steps_and_uses_on_failure_hooks() {
    let env = env();
    let plan = with_cache_and_artifacts(env.plan(&["echo step-ran"]));
    let hooks = RecordingHooks {
        fail_download: true,
        ..RecordingHooks::default()
    };
    let (outcome, log) = env
        .run_with(
            &plan,
            JobCancel::new(),
            &hooks,
            ShellExecutor::new().with_login_shell(false),
        )
        .await;
    assert!(!log.contains("step-ran\n"));
    assert!(log.contains("after status=failed\n"));
    assert_eq!(
        hooks.calls.lock().unwrap()[2..].to_vec(),
        vec![
            "archive_cache_on_failure:archive(on_failure=true):failed:true:42",
            "upload_artifacts_on_failure:upload(on_failure=true):failed:true:42",
        ]
    );
    assert_eq!(
        outcome,
        JobOutcome::Failed {
            reason: FailureReason::MissingDependencyFailure,
            exit_code: None,
            message: "dependency artifacts are gone".into()
        }
    );
}

#[tokio::test]
async fn runs_with_posix_sh_when_bash_is_not_used() {
    let env = env();
    let plan = env.plan(&["echo \"shell=$0 secret=$MY_SECRET\"", "cat hello.txt"]);
    let (outcome, log) = env
        .run_with(
            &plan,
            JobCancel::new(),
            &NoopHooks,
            ShellExecutor::new().with_shell("/bin/sh"),
        )
        .await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("Using Shell (sh) executor..."));
    assert!(log.contains("secret=[MASKED]\n"));
    assert!(log.contains("committed content\n"));
    assert!(log.contains("\x1b[32;1m$ cat hello.txt\x1b[0;m\n"), "{log}");
}

#[tokio::test]
async fn ca_file_variable_exists_during_the_job_only() {
    let env = env();
    let mut plan = env.plan(&[
        "cat \"$CI_SERVER_TLS_CA_FILE\"",
        "echo \"ca=$CI_SERVER_TLS_CA_FILE\"",
    ]);
    plan.sources.ca_file = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let tmp = env.root.join("builds/abcd1234/0/group/project.tmp");
    let path = tmp.join("CI_SERVER_TLS_CA_FILE");
    assert!(log.contains("-----BEGIN CERTIFICATE-----\nMIIB\n"), "{log}");
    assert!(log.contains(&format!("ca={}\n", path.display())));
    assert!(!path.exists());
}

#[tokio::test]
async fn allow_failure_and_when_conditions_of_steps() {
    let env = env();
    let mut plan = env.plan(&["echo first", "exit 4"]);
    plan.steps[0].allow_failure = true;
    plan.steps.push(Step {
        name: "release".into(),
        script: vec!["echo release-ran".into()],
        when: When::OnSuccess,
        ..Step::default()
    });
    plan.steps.push(Step {
        name: "on_fail".into(),
        script: vec!["echo on-failure-ran".into()],
        when: When::OnFailure,
        ..Step::default()
    });
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("WARNING: step \"script\" failed (exit status 4), but it is allowed to fail"),
        "{log}"
    );
    assert!(log.contains("release-ran\n"));
    assert!(!log.contains("on-failure-ran\n"));
    assert!(log.contains("after status=success\n"));
}

#[tokio::test]
async fn runs_as_another_user_via_su() {
    if !nix::unistd::geteuid().is_root() || nix::unistd::User::from_name("nobody").ok().flatten().is_none() {
        // Needs root and a `nobody` account; the check below cannot be made otherwise.
        eprintln!("skipping: not root or no nobody user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = env();
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let builds = env.root.join("builds");
    std::fs::create_dir_all(&builds).unwrap();
    std::fs::set_permissions(&builds, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut plan = env.plan(&[
        "echo \"user=$(id -un) secret=$MY_SECRET\"",
        "echo \"env=$USER/$LOGNAME/$HOME groups=$(id -G)\"",
    ]);
    plan.variables.push(Variable::new("GIT_STRATEGY", "none"));
    let exec = ShellExecutor::new().with_user(Some("nobody".into()));
    let (outcome, log) = env.run_with(&plan, JobCancel::new(), &NoopHooks, exec).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("user=nobody secret=[MASKED]\n"), "{log}");
    // As `su` leaves them: the account's name and home, and its groups from the group database.
    let groups = std::process::Command::new("id")
        .args(["-G", "nobody"])
        .output()
        .unwrap();
    let groups = String::from_utf8_lossy(&groups.stdout).trim().to_owned();
    let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
    let want = format!("env=nobody/nobody/{} groups={groups}\n", home.display());
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
}

#[tokio::test]
async fn submodules_and_get_sources_hooks() {
    let env = env();
    let sub = env.root.join("sub");
    std::fs::create_dir(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main"]);
    std::fs::write(sub.join("inner.txt"), "from submodule\n").unwrap();
    git(&sub, &["add", "inner.txt"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    let origin = &env.repo.path;
    git(
        origin,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &format!("file://{}", sub.display()),
            "sub",
        ],
    );
    git(origin, &["commit", "-q", "-m", "add submodule"]);
    let mut plan = env.plan(&["cat sub/inner.txt"]);
    plan.sources.sha = git(origin, &["rev-parse", "HEAD"]);
    plan.sources.pre_get_sources_script = vec!["echo job-pre-hook".into()];
    plan.sources.post_get_sources_script = vec!["echo \"job-post-hook in $(basename \"$PWD\")\"".into()];
    plan.variables
        .push(Variable::new("GIT_SUBMODULE_STRATEGY", "recursive"));
    let mut ctx = env.ctx();
    // git refuses file:// submodules by default; the runner's pre_get_sources_script can allow it.
    ctx.pre_get_sources_script = Some(
        "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=protocol.file.allow GIT_CONFIG_VALUE_0=always".into(),
    );
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("Updating/initializing submodules recursively with git depth set to 20..."),
        "{log}"
    );
    assert!(log.contains("from submodule\n"), "{log}");
    assert!(log.contains("job-pre-hook\n"));
    assert!(log.contains("job-post-hook in project\n"));
}

#[tokio::test]
async fn run_job_can_be_spawned() {
    // The daemon runs each job in its own task, which needs a `Send + 'static` future.
    let env = env();
    let plan = env.plan(&["echo spawned"]);
    let ctx = env.ctx();
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let task = tokio::spawn(async move {
        let mut exec = ShellExecutor::new().with_login_shell(false);
        let hooks: Box<dyn JobHooks> = Box::new(NoopHooks);
        run_job(&plan, &ctx, &mut exec, hooks.as_ref(), &trace, JobCancel::new()).await
    });
    assert_eq!(task.await.unwrap(), JobOutcome::Success);
    handle.finish().await;
    assert!(String::from_utf8_lossy(&handle.read_all().unwrap()).contains("spawned\n"));
}

/// Wraps the shell executor to inject executor failures.
struct FlakyExecutor {
    inner: ShellExecutor,
    prepare_error: Option<FailureReason>,
    fail_user_steps: bool,
    cleaned_up: bool,
}

impl oxrunner_core::Executor for FlakyExecutor {
    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), oxrunner_core::ExecError>> {
        Box::pin(async move {
            match self.prepare_error {
                Some(reason) => Err(oxrunner_core::ExecError::Build {
                    reason,
                    message: "pulling image \"nope:latest\" failed".into(),
                }),
                None => self.inner.prepare(plan, trace).await,
            }
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: oxrunner_core::StageCommand,
        trace: &'a TraceWriter,
        cancel: oxrunner_core::CancellationToken,
    ) -> BoxFuture<'a, Result<oxrunner_core::ExitStatus, oxrunner_core::ExecError>> {
        Box::pin(async move {
            if self.fail_user_steps && !cmd.predefined {
                return Err(oxrunner_core::ExecError::Other("container vanished".into()));
            }
            self.inner.run(cmd, trace, cancel).await
        })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.cleaned_up = true;
        Box::pin(async {})
    }
}

async fn run_flaky(env: &Env, plan: &JobPlan, exec: &mut FlakyExecutor) -> (JobOutcome, String) {
    let ctx = env.ctx();
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let outcome = run_job(plan, &ctx, exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    (
        outcome,
        String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned(),
    )
}

#[tokio::test]
async fn executor_errors_map_to_failure_reasons() {
    let env = env();
    let plan = env.plan(&["echo never"]);
    let mut exec = FlakyExecutor {
        inner: ShellExecutor::new().with_login_shell(false),
        prepare_error: Some(FailureReason::ImagePullFailure),
        fail_user_steps: false,
        cleaned_up: false,
    };
    let (outcome, log) = run_flaky(&env, &plan, &mut exec).await;
    assert_eq!(outcome.failure_reason(), Some(FailureReason::ImagePullFailure));
    assert!(exec.cleaned_up);
    assert!(!log.contains("Preparing environment"), "no script may run: {log}");
    assert!(
        log.ends_with("ERROR: Job failed: pulling image \"nope:latest\" failed\x1b[0;m\n"),
        "{log}"
    );

    let mut exec = FlakyExecutor {
        inner: ShellExecutor::new().with_login_shell(false),
        prepare_error: None,
        fail_user_steps: true,
        cleaned_up: false,
    };
    let (outcome, log) = run_flaky(&env, &plan, &mut exec).await;
    assert_eq!(outcome.failure_reason(), Some(FailureReason::RunnerSystemFailure));
    assert!(exec.cleaned_up);
    assert!(log.contains(":cleanup_file_variables\r"), "{log}");
    assert!(
        log.ends_with("ERROR: Job failed (system failure): container vanished\x1b[0;m\n"),
        "{log}"
    );
}

#[tokio::test]
async fn debug_trace_enables_xtrace_unless_disabled() {
    let env = env();
    let mut plan = env.plan(&["echo \"traced $MY_SECRET\""]);
    plan.variables.push(Variable::new("CI_DEBUG_TRACE", "true"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("+ echo 'traced [MASKED]'"), "{log}");
    assert!(!log.contains("hunter2"));

    let ctx = RunnerContext {
        debug_trace_disabled: true,
        ..env.ctx()
    };
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("traced [MASKED]\n"));
    assert!(!log.contains("+ echo"), "{log}");
}
