//! The executor contract, job hooks and the stage vocabulary shared by all executors.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::error::{ExecError, HookError};
use crate::plan::{JobPlan, RunnerContext};
use crate::terminal::Terminal;
use crate::trace::TraceWriter;
use crate::variables::Variables;

/// A build stage, in gitlab-runner's vocabulary (the names are also trace section names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Executor preparation (not a script).
    PrepareExecutor,
    /// `prepare_script`.
    PrepareScript,
    /// `get_sources`.
    GetSources,
    /// `clear_worktree` (before a get_sources retry).
    ClearWorktree,
    /// `restore_cache`.
    RestoreCache,
    /// `download_artifacts`.
    DownloadArtifacts,
    /// `step_<name>`: a user step.
    Step(String),
    /// `after_script`.
    AfterScript,
    /// `archive_cache`.
    ArchiveCache,
    /// `archive_cache_on_failure`.
    ArchiveCacheOnFailure,
    /// `upload_artifacts_on_success`.
    UploadArtifactsOnSuccess,
    /// `upload_artifacts_on_failure`.
    UploadArtifactsOnFailure,
    /// `cleanup_file_variables`.
    CleanupFileVariables,
}

impl Stage {
    /// Stage name (= section name).
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Self::PrepareExecutor => "prepare_executor".into(),
            Self::PrepareScript => "prepare_script".into(),
            Self::GetSources => "get_sources".into(),
            Self::ClearWorktree => "clear_worktree".into(),
            Self::RestoreCache => "restore_cache".into(),
            Self::DownloadArtifacts => "download_artifacts".into(),
            Self::Step(name) => format!("step_{name}").into(),
            Self::AfterScript => "after_script".into(),
            Self::ArchiveCache => "archive_cache".into(),
            Self::ArchiveCacheOnFailure => "archive_cache_on_failure".into(),
            Self::UploadArtifactsOnSuccess => "upload_artifacts_on_success".into(),
            Self::UploadArtifactsOnFailure => "upload_artifacts_on_failure".into(),
            Self::CleanupFileVariables => "cleanup_file_variables".into(),
        }
    }

    /// The bold header printed at the start of the stage.
    pub fn description(&self, executor: &str) -> String {
        match self {
            Self::PrepareExecutor => format!("Preparing the \"{executor}\" executor"),
            Self::PrepareScript => "Preparing environment".to_owned(),
            Self::GetSources => "Getting source from Git repository".to_owned(),
            Self::ClearWorktree => {
                "Deleting all tracked and untracked files due to source fetch failure".to_owned()
            }
            Self::RestoreCache => "Restoring cache".to_owned(),
            Self::DownloadArtifacts => "Downloading artifacts".to_owned(),
            Self::Step(_) => format!("Executing \"{}\" stage of the job script", self.name()),
            Self::AfterScript => "Running after_script".to_owned(),
            Self::ArchiveCache => "Saving cache for successful job".to_owned(),
            Self::ArchiveCacheOnFailure => "Saving cache for failed job".to_owned(),
            Self::UploadArtifactsOnSuccess => "Uploading artifacts for successful job".to_owned(),
            Self::UploadArtifactsOnFailure => "Uploading artifacts for failed job".to_owned(),
            Self::CleanupFileVariables => "Cleaning up project directory and file based variables".to_owned(),
        }
    }

    /// Runner-side stages run in the "predefined" (helper) environment; user steps and after_script do not.
    pub fn is_predefined(&self) -> bool {
        !matches!(self, Self::Step(_) | Self::AfterScript)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// One stage script to run.
#[derive(Clone, Debug)]
pub struct StageCommand {
    /// The stage.
    pub stage: Stage,
    /// Complete bash script, to be fed on the shell's stdin (never via argv: it contains secrets).
    pub script: String,
    /// Directory to start the shell in (created by the executor if missing).
    pub shell_workdir: PathBuf,
    /// True for runner-side stages (helper container in docker), false for user steps and after_script.
    pub predefined: bool,
}

/// How a stage's shell ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with a code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, Self::Code(0))
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Code(c) => Some(*c),
            Self::Signal(_) => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit status {c}"),
            Self::Signal(s) => write!(f, "signal: {s}"),
        }
    }
}

/// Runner settings an executor changed for one job while configuring itself (the custom executor's `config_exec`
/// may move the builds and cache directories to where its environment has them). `None` keeps the runner's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSettings {
    /// Replaces `RunnerContext::builds_dir`.
    pub builds_dir: Option<PathBuf>,
    /// Replaces `RunnerContext::cache_dir`.
    pub cache_dir: Option<PathBuf>,
    /// Replaces `RunnerContext::shared_builds_dir`.
    pub shared_builds_dir: Option<bool>,
    /// The job environment's host name, printed as `Running on ... via <hostname>`.
    pub hostname: Option<String>,
}

/// Runs stage scripts in a job environment. It does not know what stages mean; the driver does.
///
/// Methods return boxed futures so the trait stays object safe (`&mut dyn Executor`).
pub trait Executor: Send + Sync {
    /// First call of a job, before anything is derived from the runner's settings: an executor whose environment
    /// decides where builds and caches live says so here. `vars` are the job's variables under the runner's own
    /// settings. The default changes nothing.
    fn configure<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        ctx: &'a RunnerContext,
        vars: &'a Variables,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<JobSettings, ExecError>> {
        let _ = (plan, ctx, vars, trace);
        Box::pin(async { Ok(JobSettings::default()) })
    }

    /// The job's final variables (after `configure`), given once before `prepare`, for executors that hand them
    /// to programs of their own. The default ignores them.
    fn job_variables(&mut self, vars: &Variables) {
        let _ = vars;
    }

    /// Prepares the environment (pull images, create containers, create directories).
    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Runs one stage script, streaming its stdout+stderr into `trace`. When `cancel` fires the executor stops
    /// the script (and everything it started) and returns once nothing of it runs any more.
    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>>;

    /// Releases resources; always called, also after failures and aborts. Nothing the job started may survive it.
    fn cleanup(&mut self) -> BoxFuture<'_, ()>;

    /// Kills every process the job's scripts left running (background jobs, daemons, `setsid` children). The
    /// driver calls it once the scripts are done, before the runner reads the build directory for caches and
    /// artifacts, so no job process can change what is collected. The default does nothing: for executors whose
    /// job environment goes away as a whole in `cleanup`.
    fn stop_job_processes(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Waits for whatever `cleanup` left running in the background (an executor may let removals finish after
    /// the job's result is known, so GitLab hears of it sooner). Front ends call it once the job is reported and
    /// before its slot is freed; the driver does not.
    fn finish_cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Stops the job environment and keeps it for a later job of this runner (`FF_SUSPENDABLE_ENVIRONMENTS`);
    /// returns the executor's fields of the runtime environment key (`suspend.rs`). Once it succeeded, `cleanup`
    /// keeps the environment. Called after the scripts, before `cleanup`. The default cannot suspend.
    fn suspend(&mut self) -> BoxFuture<'_, Result<Vec<(String, String)>, ExecError>> {
        Box::pin(async { Err(ExecError::Other(UNSUSPENDABLE.to_owned())) })
    }

    /// Whether the executor can [`suspend`](Executor::suspend) and its `prepare` resumes an environment named by
    /// the plan's runtime environment key (`JobPlan::resume_key`). The driver neither asks an executor that answers
    /// `false` to suspend nor runs a job with a key on it.
    fn suspendable(&self) -> bool {
        false
    }

    /// How to reach the job's files when they are not on the runner's file system (a container's volume); the
    /// driver then stages cache and artifact work through it. `None` (the default): the project directory is local.
    fn files(&self) -> Option<Arc<dyn JobFiles>> {
        None
    }

    /// How the driver reaches the job's files for the cache and artifact stages. The default follows
    /// [`Executor::files`]; an executor whose job environment the runner cannot reach at all (a custom driver's
    /// VM) answers [`FileAccess::InScript`].
    fn file_access(&self) -> FileAccess {
        match self.files() {
            Some(files) => FileAccess::Remote(files),
            None => FileAccess::Local,
        }
    }

    /// An interactive shell in the job environment for the web terminal, asked once `prepare` succeeded. The
    /// default offers none.
    fn terminal(&self) -> Option<Arc<dyn Terminal>> {
        None
    }

    /// Facts about the job's environment that `prepare` established, which let the driver spare scripts whose
    /// effect is known in advance. Asked once `prepare` succeeded. The default promises nothing.
    fn environment(&self) -> EnvironmentFacts {
        EnvironmentFacts::default()
    }
}

/// gitlab-runner's error for an executor without suspend support.
pub const UNSUSPENDABLE: &str = "executor does not support suspend/resume";

/// Where the cache and artifact stages do their work.
#[derive(Clone)]
pub enum FileAccess {
    /// The project directory is on the runner's file system: the hooks work on it directly.
    Local,
    /// The runner copies files in and out through the executor and runs the hooks on a scratch copy.
    Remote(Arc<dyn JobFiles>),
    /// The runner cannot reach the files: the stage runs as a script in the job environment that moves caches and
    /// artifacts itself (the hooks render it, see [`JobHooks::stage_script`]).
    InScript,
}

impl std::fmt::Debug for FileAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local => "Local",
            Self::Remote(_) => "Remote",
            Self::InScript => "InScript",
        })
    }
}

/// What an executor knows about the environment it prepared; see [`Executor::environment`]. Every fact is
/// `false`/`None` unless the executor is sure of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentFacts {
    /// The project directory, its parents below the builds dir and its temporary directory exist, writable by
    /// any user the job's scripts run as, and nothing of an earlier job is in them.
    pub fresh_build_dir: bool,
    /// The temporary directory (file variables, git credentials) is removed with the environment in `cleanup`.
    pub tmp_dir_dies_with_job: bool,
    /// The host name the job's scripts see (`$(hostname)`), when the executor knows it.
    pub hostname: Option<String>,
}

/// Copies files between the runner and a job environment whose file system the runner cannot open directly.
pub trait JobFiles: Send + Sync {
    /// Copies the tree under `host_dir` into the job at `dir` (absolute), creating it and overwriting files.
    fn push<'a>(&'a self, host_dir: &'a Path, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Copies `path` (absolute, a file or directory) out of the job into `host_dir`, as an entry named like its
    /// last component. A missing `path` copies nothing and is not an error.
    fn pull<'a>(&'a self, path: &'a Path, host_dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>>;
}

/// Job state passed to hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Everything so far succeeded.
    Success,
    /// The job has failed (or was canceled / timed out).
    Failed,
}

/// What a hook needs to know about the job and the stage it runs in.
#[derive(Debug)]
pub struct StageCtx<'a> {
    /// The job.
    pub plan: &'a JobPlan,
    /// Runner settings.
    pub runner: &'a RunnerContext,
    /// The stage the hook runs in.
    pub stage: Stage,
    /// Project directory (`CI_PROJECT_DIR`).
    pub project_dir: PathBuf,
    /// Temporary directory `<project dir>.tmp`.
    pub tmp_dir: PathBuf,
    /// Fully expanded job variables (including the runner's).
    pub variables: &'a Variables,
    /// Job state so far.
    pub status: JobStatus,
    /// Fires when the job is aborted; long transfers should stop.
    pub cancel: CancellationToken,
}

/// Runner-side work between scripts (caches, artifacts), implemented outside the core.
pub trait JobHooks: Send + Sync {
    /// Restore caches (stage `restore_cache`). Errors are printed as warnings.
    fn restore_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>>;

    /// Download dependency artifacts (stage `download_artifacts`). Errors fail the job.
    fn download_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>>;

    /// Save caches whose `when` matches (stage `archive_cache[_on_failure]`).
    fn archive_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>>;

    /// Upload artifacts whose `when` matches (stage `upload_artifacts_on_*`).
    fn upload_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>>;

    /// The body of a bash script that does `ctx.stage`'s work inside the job environment, for executors with
    /// [`FileAccess::InScript`]. The driver runs it in the project directory after the job's variable exports, so
    /// secrets such as `CI_JOB_TOKEN` reach it through the environment and never need to be in the text.
    /// `Ok(None)`: the stage has nothing to do. The default cannot render scripts.
    fn stage_script(&self, ctx: &StageCtx<'_>, trace: &TraceWriter) -> Result<Option<String>, HookError> {
        let _ = trace;
        Err(HookError::new(format!(
            "the {} stage cannot run inside this executor's job environment: these job hooks cannot render it as \
             a script\nhint: use an executor whose files the runner can reach (shell, docker)",
            ctx.stage
        )))
    }
}

/// Calls the hook that belongs to `ctx.stage` (a script stage has none and counts as the failure upload).
pub(crate) async fn call_hook(
    hooks: &dyn JobHooks,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
) -> Result<(), HookError> {
    match ctx.stage {
        Stage::RestoreCache => hooks.restore_cache(ctx, trace).await,
        Stage::DownloadArtifacts => hooks.download_artifacts(ctx, trace).await,
        Stage::ArchiveCache => hooks.archive_cache(ctx, trace, false).await,
        Stage::ArchiveCacheOnFailure => hooks.archive_cache(ctx, trace, true).await,
        Stage::UploadArtifactsOnSuccess => hooks.upload_artifacts(ctx, trace, false).await,
        _ => hooks.upload_artifacts(ctx, trace, true).await,
    }
}

/// Hooks that do nothing (jobs without cache/artifact support, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopHooks;

impl JobHooks for NoopHooks {
    fn restore_cache<'a>(
        &'a self,
        _ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async { Ok(()) })
    }

    fn download_artifacts<'a>(
        &'a self,
        _ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async { Ok(()) })
    }

    fn archive_cache<'a>(
        &'a self,
        _ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
        _on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async { Ok(()) })
    }

    fn upload_artifacts<'a>(
        &'a self,
        _ctx: &'a StageCtx<'a>,
        _trace: &'a TraceWriter,
        _on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async { Ok(()) })
    }
}
