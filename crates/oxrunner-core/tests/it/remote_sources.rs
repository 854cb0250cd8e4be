#![allow(clippy::unwrap_used, clippy::expect_used)]
//! get_sources in the driver for an executor whose files are remote: a fake "remote" executor runs each script
//! with real bash in its own builds dir and reaches its files only through `JobFiles` (a recursive copy), so every
//! script, push and fact the driver relies on is recorded. Git runs for real against a local repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    CancellationToken, EnvironmentFacts, ExecError, Executor, ExitStatus, FailureReason, JobCancel, JobFiles,
    JobOutcome, JobPlan, NoopHooks, RunnerContext, ShellExecutor, SourceOrigin, Sources, StageCommand, Step,
    TraceWriter, Variable, When, run_job, runner_checkout_dir,
};

/// What the fake environment saw, in order: `run <stage>` and `push <dir>`.
pub(super) type Events = Arc<Mutex<Vec<(String, String)>>>;

struct Remote {
    inner: ShellExecutor,
    events: Events,
    facts: EnvironmentFacts,
}

impl Remote {
    fn new(events: &Events, facts: EnvironmentFacts) -> Self {
        Self {
            inner: ShellExecutor::new()
                .with_login_shell(false)
                .with_kill_grace(Duration::from_secs(3)),
            events: Arc::clone(events),
            facts,
        }
    }
}

impl Executor for Remote {
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
        self.events
            .lock()
            .unwrap()
            .push((format!("run {}", cmd.stage), cmd.script.clone()));
        self.inner.run(cmd, trace, cancel)
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.inner.cleanup()
    }

    fn files(&self) -> Option<Arc<dyn JobFiles>> {
        Some(Arc::new(Files {
            events: Arc::clone(&self.events),
        }))
    }

    fn environment(&self) -> EnvironmentFacts {
        self.facts.clone()
    }
}

struct Files {
    events: Events,
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl JobFiles for Files {
    fn push<'a>(&'a self, host_dir: &'a Path, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.events
                .lock()
                .unwrap()
                .push(("push".to_owned(), host_dir.display().to_string()));
            copy_tree(host_dir, dir).map_err(|source| ExecError::Io {
                context: format!("pushing {}", host_dir.display()),
                source,
            })
        })
    }

    fn pull<'a>(&'a self, path: &'a Path, host_dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let name = path.file_name().unwrap_or_default();
            if path.is_dir() {
                copy_tree(path, &host_dir.join(name)).map_err(|source| ExecError::Io {
                    context: format!("pulling {}", path.display()),
                    source,
                })?;
            }
            Ok(())
        })
    }
}

pub(super) fn git(dir: &Path, args: &[&str]) -> String {
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

pub(super) struct Env {
    _dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) origin: PathBuf,
    pub(super) sha: String,
    pub(super) events: Events,
}

pub(super) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let origin = root.join("origin");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("hello.txt"), "committed content\n").unwrap();
    git(&origin, &["add", "hello.txt"]);
    git(&origin, &["commit", "-q", "-m", "first"]);
    let sha = git(&origin, &["rev-parse", "HEAD"]);
    Env {
        _dir: dir,
        root,
        origin,
        sha,
        events: Events::default(),
    }
}

impl Env {
    pub(super) fn ctx(&self) -> RunnerContext {
        RunnerContext {
            runner_name: "remote-test".into(),
            short_token: "rem12345".into(),
            executor: "remote".into(),
            builds_dir: self.root.join("job-builds"),
            cache_dir: self.root.join("cache"),
            runner_builds_dir: self.root.join("runner-builds"),
            ..RunnerContext::default()
        }
    }

    pub(super) fn plan(&self, script: &[&str]) -> JobPlan {
        JobPlan {
            job_id: 77,
            job_name: "remote".into(),
            project_id: 9,
            project_path: "group/project".into(),
            variables: vec![Variable::new("GREETING", "hello")].into(),
            sources: Sources {
                repo_url: format!("file://{}", self.origin.display()).into(),
                sha: self.sha.clone(),
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
            timeout: Duration::from_secs(60),
            ..JobPlan::default()
        }
    }

    pub(super) fn checkout(&self, plan: &JobPlan) -> PathBuf {
        runner_checkout_dir(plan, &self.ctx())
    }

    pub(super) async fn run(
        &self,
        plan: &JobPlan,
        ctx: &RunnerContext,
        facts: EnvironmentFacts,
    ) -> (JobOutcome, String) {
        let (trace, handle) = TraceWriter::new(&self.root, plan.mask_set(), 0).unwrap();
        let mut exec = Remote::new(&self.events, facts);
        let outcome = run_job(plan, ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
        handle.finish().await;
        let bytes = handle.read_all().unwrap();
        (outcome, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The events, scripts dropped: `run <stage>` / `push <dir>`.
    pub(super) fn kinds(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(kind, detail)| {
                if kind == "push" {
                    format!("push {detail}")
                } else {
                    kind.clone()
                }
            })
            .collect()
    }

    pub(super) fn scripts_of(&self, stage: &str) -> Vec<String> {
        let kind = format!("run {stage}");
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn positions(log: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| log.find(n).unwrap_or_else(|| panic!("{n:?} missing in:\n{log}")))
        .collect()
}

#[tokio::test]
async fn git_runs_on_the_runner_and_the_hooks_run_in_the_job_around_the_push() {
    let env = env();
    let mut plan = env.plan(&["cat hello.txt", "test -d .git && echo has-git-dir"]);
    plan.sources.pre_get_sources_script = vec!["echo \"job-pre $GREETING\"".into()];
    plan.sources.post_get_sources_script = vec!["echo \"job-post in $(pwd)\"".into()];
    let ctx = RunnerContext {
        pre_get_sources_script: Some("echo runner-pre".into()),
        post_get_sources_script: Some("echo runner-post".into()),
        ..env.ctx()
    };
    let (outcome, log) = env.run(&plan, &ctx, EnvironmentFacts::default()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let checkout = env.checkout(&plan);
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), env.sha);
    let project = ctx.builds_dir.join("group/project");
    assert_eq!(
        env.kinds(),
        vec![
            "run prepare_script".to_owned(),
            "run get_sources".to_owned(),
            format!("push {}", checkout.display()),
            "run get_sources".to_owned(),
            "run step_script".to_owned(),
            "run cleanup_file_variables".to_owned(),
        ]
    );
    // The job's environment got only the hooks; git ran on the runner.
    for script in env.scripts_of("get_sources") {
        assert!(!script.contains("Fetching changes"), "{script}");
    }
    let order = positions(
        &log,
        &[
            "runner-pre\n",
            "job-pre hello\n",
            "Checking out ",
            &format!("job-post in {}\n", project.display()),
            "runner-post\n",
            "committed content\n",
            "has-git-dir\n",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order {order:?}:\n{log}"
    );
}

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() && String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle) {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn the_runner_side_fetch_leaves_no_file_variables_on_the_runner() {
    let env = env();
    let mut plan = env.plan(&["cat hello.txt"]);
    // A file variable the fetch writes into its temporary directory on the runner (git's `http.sslCAInfo`).
    plan.sources.ca_file = Some("-----BEGIN CERTIFICATE-----\nca-marker-4711\n".into());
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let checkout = env.checkout(&plan);
    assert!(checkout.join(".git").is_dir(), "{log}");
    assert!(!oxrunner_core::tmp_dir(&checkout).exists(), "{log}");
    let runner_side = env.ctx().runner_builds_dir;
    assert_eq!(
        files_containing(&runner_side, "ca-marker-4711"),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn a_failing_pre_hook_ends_get_sources_with_its_status_before_any_fetch() {
    let env = env();
    let mut plan = env.plan(&["echo never-ran"]);
    plan.sources.pre_get_sources_script = vec!["echo job-pre-fails; exit 7".into()];
    plan.sources.post_get_sources_script = vec!["echo never-post".into()];
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                reason: FailureReason::ScriptFailure,
                exit_code: Some(7),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(log.contains("job-pre-fails\n"), "{log}");
    for absent in ["Fetching changes", "never-post\n", "never-ran\n"] {
        assert!(!log.contains(absent), "{absent:?} in:\n{log}");
    }
    assert!(!env.checkout(&plan).exists(), "the runner fetched anyway");
    assert!(
        !env.kinds().iter().any(|k| k.starts_with("push")),
        "{:?}",
        env.kinds()
    );
    // The job's environment got the hook script alone, never the fetch.
    let scripts = env.scripts_of("get_sources");
    assert_eq!(scripts.len(), 1, "{:?}", env.kinds());
    assert!(!scripts[0].contains("Fetching changes"), "{}", scripts[0]);
}

#[tokio::test]
async fn a_retry_clears_the_runner_side_checkout_and_the_job_worktree() {
    let env = env();
    let mut plan = env.plan(&["echo never"]);
    plan.sources.repo_url = format!("file://{}/absent", env.root.display()).into();
    plan.sources.get_sources_attempts = 2;
    let stale = env.checkout(&plan);
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("stale.txt"), "from an older job").unwrap();
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{log}");
    assert!(log.contains("retrying in 5s (attempt 2 of 2)"), "{log}");
    assert!(!log.contains("never\n"), "{log}");
    assert!(!stale.join("stale.txt").exists(), "{log}");
    assert_eq!(env.scripts_of("clear_worktree").len(), 1, "{:?}", env.kinds());
    assert!(
        !env.kinds().iter().any(|k| k.starts_with("push")),
        "{:?}",
        env.kinds()
    );
}

#[tokio::test]
async fn a_local_source_dir_is_pushed_without_git() {
    let env = env();
    let local = env.root.join("worktree");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/file.txt"), "from the working tree\n").unwrap();
    let mut plan = env.plan(&["cat sub/file.txt", "echo \"dir=$CI_PROJECT_DIR\""]);
    plan.sources.origin = SourceOrigin::LocalDir(local.clone());
    // A job's own strategy cannot bring git back for local sources.
    plan.variables.push(Variable::new("GIT_STRATEGY", "clone"));
    let ctx = env.ctx();
    let (outcome, log) = env.run(&plan, &ctx, EnvironmentFacts::default()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let project = ctx.builds_dir.join("group/project");
    assert!(
        log.contains(&format!(
            "Copying {} into the container at {}",
            local.display(),
            project.display()
        )),
        "{log}"
    );
    assert!(log.contains("from the working tree\n"), "{log}");
    assert!(log.contains(&format!("dir={}\n", project.display())), "{log}");
    assert!(!env.checkout(&plan).exists());
    assert_eq!(
        env.kinds(),
        vec![
            "run prepare_script".to_owned(),
            format!("push {}", local.display()),
            "run step_script".to_owned(),
            "run cleanup_file_variables".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_local_source_dir_is_the_project_dir_of_an_executor_with_local_files() {
    let env = env();
    let local = env.root.join("worktree");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("file.txt"), "in place\n").unwrap();
    let mut plan = env.plan(&["cat file.txt", "echo \"pwd=$PWD dir=$CI_PROJECT_DIR\""]);
    plan.sources.origin = SourceOrigin::LocalDir(local.clone());
    let ctx = RunnerContext {
        executor: "shell".into(),
        ..env.ctx()
    };
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("Skipping Git repository setup"), "{log}");
    assert!(log.contains("in place\n"), "{log}");
    let dir = local.display();
    assert!(log.contains(&format!("pwd={dir} dir={dir}\n")), "{log}");
    assert!(!ctx.builds_dir.join("group/project").exists());
}

fn fresh() -> EnvironmentFacts {
    EnvironmentFacts {
        fresh_build_dir: true,
        tmp_dir_dies_with_job: true,
        hostname: Some("fake-host".into()),
    }
}

#[tokio::test]
async fn a_fresh_environment_spares_the_scripts_that_would_only_print() {
    let env = env();
    let mut plan = env.plan(&["echo script-ran"]);
    plan.sources.strategy = oxrunner_core::GitStrategy::None;
    // The fake's facts promise the directories exist, as a fresh Docker build volume's prepare makes them.
    std::fs::create_dir_all(env.ctx().builds_dir.join("group/project")).unwrap();
    let (outcome, log) = env.run(&plan, &env.ctx(), fresh()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(env.kinds(), vec!["run step_script".to_owned()]);
    let order = positions(
        &log,
        &[
            "Preparing environment",
            "Running on fake-host",
            "Getting source from Git repository",
            "\x1b[32;1mSkipping Git repository setup\x1b[0;m\n",
            "script-ran\n",
            "Cleaning up project directory and file based variables",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order {order:?}:\n{log}"
    );
}

#[tokio::test]
async fn tracing_or_hooks_or_an_unknown_host_keep_the_scripts() {
    let traced = env();
    let mut plan = traced.plan(&["echo script-ran"]);
    plan.sources.strategy = oxrunner_core::GitStrategy::None;
    plan.variables.push(Variable::new("CI_DEBUG_TRACE", "true"));
    let (outcome, log) = traced.run(&plan, &traced.ctx(), fresh()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(
        traced.kinds(),
        vec![
            "run prepare_script".to_owned(),
            "run get_sources".to_owned(),
            "run step_script".to_owned(),
        ]
    );

    let hooks = env();
    let mut plan = hooks.plan(&["echo script-ran"]);
    plan.sources.strategy = oxrunner_core::GitStrategy::None;
    let hooked = RunnerContext {
        pre_get_sources_script: Some("echo runner-pre".into()),
        ..hooks.ctx()
    };
    let unknown_host = EnvironmentFacts {
        hostname: None,
        ..fresh()
    };
    let (outcome, log) = hooks.run(&plan, &hooked, unknown_host).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("runner-pre\n"), "{log}");
    assert_eq!(
        hooks.kinds(),
        vec![
            "run prepare_script".to_owned(),
            "run get_sources".to_owned(),
            "run step_script".to_owned(),
        ]
    );
}
