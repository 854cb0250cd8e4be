//! The driver: runs a `JobPlan`'s stages in gitlab-runner's order on an `Executor`, with timeouts,
//! cancellation and the job log (runner-api.md §2.2, §2.8).

pub(crate) mod env;
mod finish;
mod git_version;
mod inscript;
mod remote;
mod removal;
mod sources;
mod suspend;
mod terminal;

pub use env::all_variables_with_file_paths;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::builddir::{build_dir, tmp_dir};
use crate::error::ExecError;
use crate::executor::{EnvironmentFacts, Executor, ExitStatus, JobHooks, JobStatus, Stage, StageCommand};
use crate::feature_flags;
use crate::outcome::{FailureReason, JobOutcome, go_duration};
use crate::plan::{JobPlan, RunnerContext, SourceOrigin, Step};
use crate::script::ScriptContext;
use crate::terminal::TerminalSession;
use crate::trace::TraceWriter;
use crate::variables::Variables;

/// Default `RUNNER_AFTER_SCRIPT_TIMEOUT`.
pub const DEFAULT_AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// gitlab-runner retries `Prepare` this many times, this far apart, unless it returned a build error.
const PREPARE_ATTEMPTS: u32 = 3;
const PREPARE_RETRY_DELAY: Duration = Duration::from_secs(3);
/// Upper bound for `cleanup_file_variables`, which also runs after an abort.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Cancellation requests for one job.
#[derive(Clone, Debug, Default)]
pub struct JobCancel {
    /// GitLab `canceling`: kill the current stage, then run after_script (`CI_JOB_STATUS=canceled`), the
    /// on-failure cache/artifact stages and cleanup; the job ends as `job_canceled`.
    pub graceful: CancellationToken,
    /// GitLab `canceled` / runner shutdown: stop now, run no further scripts.
    pub abort: CancellationToken,
}

impl JobCancel {
    /// Fresh tokens.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Why a stage was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    JobTimeout,
    ScriptTimeout(Duration),
    /// `prepare_timeout` / `get_sources_timeout`: upstream's error name and the limit.
    StageTimeout(&'static str, Duration),
    Graceful,
    Abort,
}

enum StageResult {
    Exit(ExitStatus),
    Interrupted(Interrupt),
    Error(ExecError),
}

#[derive(Clone, Copy)]
struct Limits {
    deadline: Option<Instant>,
    /// A deadline before the job's, and what it means when it passes.
    script_deadline: Option<(Instant, Interrupt)>,
    graceful: bool,
    abortable: bool,
}

struct Failure {
    reason: FailureReason,
    exit_code: Option<i32>,
    message: String,
}

struct Driver<'a> {
    plan: &'a JobPlan,
    /// The runner's settings, as the executor's `configure` left them for this job.
    ctx: RunnerContext,
    /// The job environment's host name, when the executor named one.
    hostname: Option<String>,
    executor: &'a mut dyn Executor,
    hooks: &'a dyn JobHooks,
    trace: &'a TraceWriter,
    control: JobCancel,
    project_dir: PathBuf,
    tmp_dir: PathBuf,
    vars: Variables,
    xtrace: bool,
    deadline: Instant,
    failure: Option<Failure>,
    interrupt: Option<Interrupt>,
    /// A stage script was started, so file variables may exist on disk.
    scripts_ran: bool,
    /// The executor's `prepare` succeeded: only a prepared environment may be suspended.
    prepared: bool,
    /// Removing file variables failed: they may still be in the environment, which is then not suspended.
    file_variables_left: bool,
    /// What the executor's `prepare` established (see `Executor::environment`).
    environment: EnvironmentFacts,
    /// The job's web terminal session, when the front end runs a session server.
    session: Option<&'a dyn TerminalSession>,
    /// The deadline of the phase running now (`prepare_timeout`, `get_sources_timeout`), applied to every
    /// stage and hook of the phase.
    phase_deadline: Option<(Instant, Interrupt)>,
}

/// Runs the job and returns its outcome; the trace ends with `Job succeeded` or `ERROR: Job failed: ...`.
/// The executor's `cleanup` is always called.
pub async fn run_job(
    plan: &JobPlan,
    ctx: &RunnerContext,
    executor: &mut dyn Executor,
    hooks: &dyn JobHooks,
    trace: &TraceWriter,
    control: JobCancel,
) -> JobOutcome {
    run_job_with_session(plan, ctx, executor, hooks, trace, control, None).await
}

/// [`run_job`] with a web terminal session: the executor's terminal is offered to it once the job environment
/// exists, and after the scripts the job waits while a terminal is attached (bounded by the session's timeout and
/// the job's deadline; cancel and abort end the wait).
pub async fn run_job_with_session(
    plan: &JobPlan,
    ctx: &RunnerContext,
    executor: &mut dyn Executor,
    hooks: &dyn JobHooks,
    trace: &TraceWriter,
    control: JobCancel,
    session: Option<&dyn TerminalSession>,
) -> JobOutcome {
    if let Some(reason) = trace.lost() {
        // No log can be kept for this job (its masker could not be built): running it would run blind.
        return JobOutcome::Failed {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: reason,
        };
    }
    let ctx = absolute_dirs(ctx.clone());
    let (project_dir, tmp_dir, vars) = job_layout(plan, &ctx);
    let xtrace = ctx.debug_trace(&vars);
    let mut driver = Driver {
        plan,
        ctx,
        hostname: None,
        executor,
        hooks,
        trace,
        control,
        project_dir,
        tmp_dir,
        vars,
        xtrace,
        deadline: Instant::now() + plan.effective_timeout(),
        failure: None,
        interrupt: None,
        scripts_ran: false,
        prepared: false,
        file_variables_left: false,
        environment: EnvironmentFacts::default(),
        session,
        phase_deadline: None,
    };
    driver.run().await;
    driver.cleanup_file_variables().await;
    driver.wait_for_terminal().await;
    driver.suspend_if_asked().await;
    driver.executor.cleanup().await;
    if let (None, Some(reason)) = (&driver.failure, trace.lost()) {
        // A job whose log was cut by a runner-side error is not a success: its output is partly lost.
        driver.failure = Some(Failure {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: format!("the job log is incomplete: {reason}"),
        });
    }
    let outcome = match driver.failure {
        None => {
            trace.info("Job succeeded");
            JobOutcome::Success
        }
        Some(f) => {
            if f.reason == FailureReason::RunnerSystemFailure {
                trace.error(&format!("Job failed (system failure): {}", f.message));
            } else {
                trace.error(&format!("Job failed: {}", f.message));
            }
            JobOutcome::Failed {
                reason: f.reason,
                exit_code: f.exit_code,
                message: f.message,
            }
        }
    };
    trace.flush();
    outcome
}

/// gitlab-runner's shell default `builds` means `$PWD/builds`; CI_PROJECT_DIR must be absolute. An empty builds
/// dir stays empty: it means "not configured", which an executor's `configure` may settle or refuse.
/// `ctx` with a relative builds_dir and cache_dir resolved against the working directory, as a job runs with it
/// (crash recovery computes a killed job's directories the same way).
pub fn absolute_dirs(mut ctx: RunnerContext) -> RunnerContext {
    let cwd = || std::env::current_dir().unwrap_or_default();
    if ctx.builds_dir.is_relative() && !ctx.builds_dir.as_os_str().is_empty() {
        ctx.builds_dir = cwd().join(&ctx.builds_dir);
    }
    if ctx.cache_dir.is_relative() {
        ctx.cache_dir = cwd().join(&ctx.cache_dir);
    }
    ctx
}

/// The project directory, its temporary directory and the expanded job variables under `ctx`.
fn job_layout(plan: &JobPlan, ctx: &RunnerContext) -> (PathBuf, PathBuf, Variables) {
    let project_dir = build_dir(plan, ctx);
    let tmp_dir = tmp_dir(&project_dir);
    let raw = env::job_variables(plan, ctx, &project_dir, &tmp_dir);
    let vars = env::expand(&raw, &tmp_dir);
    (project_dir, tmp_dir, vars)
}

impl Driver<'_> {
    async fn run(&mut self) {
        let ctx = &self.ctx;
        self.trace.set_sections(self.plan.features.trace_sections);
        // The front ends resolve feature flags (config over job over default) into FF_* variables; a plan
        // without them gets the defaults.
        self.trace
            .set_timestamps(feature_flags::is_on(&self.vars, "FF_TIMESTAMPS"));
        self.trace.println(&format!(
            "Running with oxrunner {} ({})",
            ctx.version, ctx.revision
        ));
        self.trace.println(&format!(
            "  on {} {}, system ID: {}",
            ctx.runner_name, ctx.short_token, ctx.system_id
        ));
        if let Some(changed) = feature_flags::header(&self.vars) {
            self.trace.println(&format!("  feature flags: {changed}"));
        }
        if self.xtrace {
            self.trace
                .warning("CI_DEBUG_TRACE is enabled: the job log may contain secrets that are not masked");
        }

        if !self.prepare_executor().await {
            return;
        }
        self.prepared = true;
        self.locate();
        self.main_stages().await;
        if self.interrupt == Some(Interrupt::Abort) {
            return;
        }
        self.after_script().await;
        if self.interrupt == Some(Interrupt::Abort) {
            return;
        }
        // As gitlab-runner does after the script, also for a successful job: a background process left running
        // could change or replace files while caches and artifacts are read.
        self.executor.stop_job_processes().await;
        self.archive_and_upload().await;
    }

    /// Takes in what `prepare` established: the executor's facts, and for sources from a local directory on an
    /// executor with local files, that directory as the project directory (the job runs in it in place).
    fn locate(&mut self) {
        self.environment = self.executor.environment();
        if let (Some(session), Some(terminal)) = (self.session, self.executor.terminal()) {
            session.offer(terminal);
        }
        if let SourceOrigin::LocalDir(dir) = &self.plan.sources.origin
            && self.executor.files().is_none()
        {
            self.project_dir = dir.clone();
            self.tmp_dir = tmp_dir(&self.project_dir);
            let raw = env::job_variables(self.plan, &self.ctx, &self.project_dir, &self.tmp_dir);
            self.vars = env::expand(&raw, &self.tmp_dir);
        }
    }

    /// Removes file variables and git credentials. Runs even after an abort (with its own short deadline):
    /// the shell executor would otherwise leave secrets on disk.
    async fn cleanup_file_variables(&mut self) {
        self.remove_runner_checkout().await;
        if !self.scripts_ran {
            return;
        }
        let stage = Stage::CleanupFileVariables;
        if self.environment.tmp_dir_dies_with_job
            && !self.scripts(&self.vars).cleans_project_dir()
            && !self.should_suspend()
        {
            // One more exec (and a container start after a cancel) would only delete files that the executor's
            // cleanup removes with the environment right after. FF_ENABLE_JOB_CLEANUP still runs: a volume
            // bound below the project directory outlives the job, and so does a suspended environment, whose
            // file variables (secrets) must not wait in it for the job that resumes it.
            self.section_start(&stage);
            self.section_end(&stage);
            return;
        }
        let script = self.scripts(&self.vars).cleanup_file_variables();
        self.section_start(&stage);
        let limits = Limits {
            deadline: Some(Instant::now() + CLEANUP_TIMEOUT),
            script_deadline: None,
            graceful: false,
            abortable: false,
        };
        let warning = match self.run_script(stage.clone(), script, limits).await {
            StageResult::Exit(status) if status.success() => None,
            StageResult::Exit(status) => Some(format!("Cleaning up file based variables failed: {status}")),
            StageResult::Interrupted(_) => Some("Cleaning up file based variables timed out".to_owned()),
            StageResult::Error(err) => Some(format!("Cleaning up file based variables failed: {err}")),
        };
        if let Some(warning) = warning {
            self.trace.warning(&warning);
            self.file_variables_left = true;
        }
        self.section_end(&stage);
    }

    fn scripts<'s>(&'s self, vars: &'s Variables) -> ScriptContext<'s> {
        ScriptContext {
            plan: self.plan,
            ctx: &self.ctx,
            vars,
            project_dir: &self.project_dir,
            tmp_dir: &self.tmp_dir,
            xtrace: self.xtrace,
        }
    }

    fn section_start(&self, stage: &Stage) {
        self.trace
            .section_start(&stage.name(), &stage.description(&self.ctx.executor));
    }

    fn section_end(&self, stage: &Stage) {
        self.trace.section_end(&stage.name());
    }

    fn job_limits(&self) -> Limits {
        Limits {
            deadline: Some(self.deadline),
            script_deadline: self.phase_deadline,
            graceful: true,
            abortable: true,
        }
    }

    fn set_failure(&mut self, reason: FailureReason, exit_code: Option<i32>, message: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                reason,
                exit_code,
                message,
            });
        }
    }

    fn fail_interrupted(&mut self, interrupt: Interrupt) {
        self.interrupt = Some(interrupt);
        let (reason, message) = match interrupt {
            Interrupt::JobTimeout => (
                FailureReason::JobExecutionTimeout,
                format!(
                    "execution took longer than {} seconds",
                    go_duration(self.plan.effective_timeout())
                ),
            ),
            Interrupt::ScriptTimeout(d) => (
                FailureReason::JobExecutionTimeout,
                format!("script execution took longer than {} seconds", go_duration(d)),
            ),
            Interrupt::StageTimeout(what, d) => (
                FailureReason::JobExecutionTimeout,
                format!("{what}: exceeded timeout of {}", go_duration(d)),
            ),
            Interrupt::Graceful => (FailureReason::JobCanceled, "canceled".to_owned()),
            Interrupt::Abort => (FailureReason::JobCanceled, "aborted".to_owned()),
        };
        // An interruption overrides an earlier step failure only if nothing failed yet.
        self.set_failure(reason, None, message);
    }

    /// Handles a finished stage; returns true when the job may go on.
    fn settle(&mut self, result: StageResult) -> bool {
        match result {
            StageResult::Exit(status) if status.success() => true,
            StageResult::Exit(status) => {
                self.set_failure(FailureReason::ScriptFailure, status.code(), status.to_string());
                false
            }
            StageResult::Interrupted(i) => {
                self.fail_interrupted(i);
                false
            }
            StageResult::Error(err) => {
                self.set_failure(err.reason(), None, err.to_string());
                false
            }
        }
    }

    /// Lets the executor adjust the runner's settings for this job and re-derives what depends on them.
    async fn configure_executor(&mut self) -> Result<Result<(), ExecError>, Interrupt> {
        let limits = self.job_limits();
        let control = self.control.clone();
        let fut = self
            .executor
            .configure(self.plan, &self.ctx, &self.vars, self.trace);
        let settings = match guard(fut, &control, limits).await? {
            Ok(settings) => settings,
            Err(err) => return Ok(Err(err)),
        };
        let changed = settings.builds_dir.is_some()
            || settings.cache_dir.is_some()
            || settings.shared_builds_dir.is_some();
        if let Some(dir) = settings.builds_dir {
            self.ctx.builds_dir = dir;
        }
        if let Some(dir) = settings.cache_dir {
            self.ctx.cache_dir = dir;
        }
        if let Some(shared) = settings.shared_builds_dir {
            self.ctx.shared_builds_dir = shared;
        }
        self.hostname = settings.hostname.filter(|h| !h.is_empty());
        if changed {
            self.ctx = absolute_dirs(std::mem::take(&mut self.ctx));
            (self.project_dir, self.tmp_dir, self.vars) = job_layout(self.plan, &self.ctx);
            self.xtrace = self.ctx.debug_trace(&self.vars);
        }
        self.executor.job_variables(&self.vars);
        Ok(Ok(()))
    }

    /// `Executor::prepare`, retried as gitlab-runner retries it unless it returned a build error.
    async fn prepare_with_retries(&mut self) -> Result<Result<(), ExecError>, Interrupt> {
        let mut attempt = 1;
        loop {
            let plan = self.plan;
            let limits = self.job_limits();
            let control = self.control.clone();
            let fut = self.executor.prepare(plan, self.trace);
            match guard(fut, &control, limits).await {
                Ok(Err(err)) if !err.is_build_error() && attempt < PREPARE_ATTEMPTS => {
                    self.trace.warning(&format!(
                        "Preparation failed: {err}\nWill be retried in {}s ...",
                        PREPARE_RETRY_DELAY.as_secs()
                    ));
                    attempt += 1;
                    let sleep = tokio::time::sleep(PREPARE_RETRY_DELAY);
                    guard(sleep, &self.control, limits).await?;
                }
                other => return other,
            }
        }
    }

    /// Starts a phase bounded by `timeout` (gitlab-runner's `prepare_timeout`, `get_sources_timeout`): unset, zero
    /// or longer than the job timeout means the job timeout, as upstream (which warns about the last two).
    fn start_phase(&mut self, key: &str, what: &'static str, timeout: Option<Duration>) {
        let job = self.plan.effective_timeout();
        self.phase_deadline = match timeout {
            None => None,
            Some(t) if t.is_zero() => {
                self.trace.warning(&format!(
                    "{key} ({}) must be greater than 0; using job timeout ({})",
                    go_duration(t),
                    go_duration(job)
                ));
                None
            }
            Some(t) if t > job => {
                self.trace.warning(&format!(
                    "{key} ({}) exceeds job timeout ({}); using job timeout",
                    go_duration(t),
                    go_duration(job)
                ));
                None
            }
            Some(t) => Some((Instant::now() + t, Interrupt::StageTimeout(what, t))),
        };
    }

    async fn prepare_executor(&mut self) -> bool {
        self.start_phase("prepare_timeout", "prepare timeout", self.ctx.prepare_timeout);
        let ok = self.prepare_executor_phase().await;
        self.phase_deadline = None;
        ok
    }

    async fn prepare_executor_phase(&mut self) -> bool {
        let stage = Stage::PrepareExecutor;
        self.section_start(&stage);
        let result = match self.configure_executor().await {
            Ok(Ok(())) => match crate::builddir::check_clone_path(self.plan, &self.ctx) {
                Ok(()) if let Err(err) = self.check_resumable() => Ok(Err(err)),
                Ok(()) => self.prepare_with_retries().await,
                Err(message) => Ok(Err(ExecError::Build {
                    reason: FailureReason::RunnerConfigurationError,
                    message,
                })),
            },
            other => other,
        };
        self.section_end(&stage);
        match result {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                self.set_failure(err.reason(), None, err.to_string());
                false
            }
            Err(i) => {
                self.fail_interrupted(i);
                false
            }
        }
    }

    async fn main_stages(&mut self) {
        let limits = self.job_limits();
        let stage = Stage::PrepareScript;
        // gitlab-runner names the runner's host for executors with a separate job host; a custom driver's host is
        // named only by its config_exec.
        let via = self.hostname.clone().or_else(|| {
            (!matches!(self.ctx.executor.as_str(), "shell" | "custom"))
                .then(|| nix::unistd::gethostname().ok())
                .flatten()
                .map(|h| h.to_string_lossy().into_owned())
        });
        if let Some(line) = self.running_on(via.as_deref()) {
            // prepare_script would only print this line: the env file it removes cannot exist yet.
            self.section_start(&stage);
            self.trace.write(line.as_bytes());
            self.section_end(&stage);
        } else {
            let script = self.scripts(&self.vars).prepare_script(via.as_deref());
            if !self.stage(stage, script, limits).await {
                return;
            }
        }
        self.start_phase(
            "get_sources_timeout",
            "get sources timeout",
            self.ctx.get_sources_timeout,
        );
        let fetched = self.get_sources().await;
        self.phase_deadline = None;
        if !fetched {
            return;
        }
        if !self.plan.caches.is_empty() {
            let stage = Stage::RestoreCache;
            self.section_start(&stage);
            match self.hook(stage.clone(), JobStatus::Success).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => self
                    .trace
                    .warning(&format!("Failed to restore the cache: {}", err.message)),
                Err(i) => {
                    self.section_end(&stage);
                    self.fail_interrupted(i);
                    return;
                }
            }
            self.section_end(&stage);
        }
        if self.plan.dependencies.iter().any(|d| d.artifacts_file.is_some()) {
            let stage = Stage::DownloadArtifacts;
            self.section_start(&stage);
            let res = self.hook(stage.clone(), JobStatus::Success).await;
            self.section_end(&stage);
            match res {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    self.set_failure(
                        err.reason.unwrap_or(FailureReason::ScriptFailure),
                        None,
                        err.message,
                    );
                    return;
                }
                Err(i) => {
                    self.fail_interrupted(i);
                    return;
                }
            }
        }
        self.user_steps().await;
    }

    /// What prepare_script prints, when the executor's facts say that is all it would do: a fresh environment
    /// whose host name is known, and no tracing (which prints every command).
    fn running_on(&self, via: Option<&str>) -> Option<String> {
        let facts = &self.environment;
        if !(facts.fresh_build_dir && facts.tmp_dir_dies_with_job) || self.xtrace {
            return None;
        }
        let hostname = facts.hostname.as_deref()?;
        // As the rendered script's `echo "... via <host>"`, which drops these characters.
        let via = via
            .map(|h| h.trim().replace(['"', '\\', '$', '`'], ""))
            .unwrap_or_default();
        Some(if via.is_empty() {
            format!("Running on {hostname}...\n")
        } else {
            format!("Running on {hostname} via {via}...\n")
        })
    }

    async fn user_steps(&mut self) {
        let script_timeout = self
            .vars
            .value("RUNNER_SCRIPT_TIMEOUT")
            .and_then(env::parse_go_duration)
            .filter(|d| !d.is_zero());
        let script_deadline = script_timeout.map(|d| (Instant::now() + d, Interrupt::ScriptTimeout(d)));
        let steps: &[Step] = &self.plan.steps;
        for step in steps {
            if !step.when.applies(self.failure.is_some()) {
                continue;
            }
            let deadline = match step.timeout.filter(|t| !t.is_zero()) {
                Some(t) => self.deadline.min(Instant::now() + t),
                None => self.deadline,
            };
            let limits = Limits {
                deadline: Some(deadline),
                script_deadline,
                graceful: true,
                abortable: true,
            };
            let script = self.scripts(&self.vars).user_step(step);
            let stage = Stage::Step(step.name.clone());
            let result = self.stage_result(stage, script, limits).await;
            match result {
                StageResult::Exit(status) if !status.success() && step.allow_failure => {
                    self.trace.warning(&format!(
                        "step {:?} failed ({status}), but it is allowed to fail",
                        step.name
                    ));
                }
                StageResult::Interrupted(Interrupt::JobTimeout) if deadline < self.deadline => {
                    // The step's own timeout, not the job's.
                    let t = step.timeout.unwrap_or_default();
                    self.interrupt = Some(Interrupt::ScriptTimeout(t));
                    self.fail_interrupted(Interrupt::ScriptTimeout(t));
                    return;
                }
                StageResult::Interrupted(i) => {
                    self.fail_interrupted(i);
                    return;
                }
                other => {
                    self.settle(other);
                }
            }
        }
    }

    /// Runs a script stage inside its section; returns true on exit code 0.
    async fn stage(&mut self, stage: Stage, script: String, limits: Limits) -> bool {
        let result = self.stage_result(stage, script, limits).await;
        self.settle(result)
    }

    async fn stage_result(&mut self, stage: Stage, script: String, limits: Limits) -> StageResult {
        self.section_start(&stage);
        let result = self.run_script(stage.clone(), script, limits).await;
        self.section_end(&stage);
        result
    }

    /// Runs one script on the job's executor (see [`run_guarded`]).
    async fn run_script(&mut self, stage: Stage, script: String, limits: Limits) -> StageResult {
        self.scripts_ran = true;
        let cmd = StageCommand {
            predefined: stage.is_predefined(),
            stage,
            script,
            shell_workdir: self.ctx.builds_dir.clone(),
        };
        run_guarded(self.executor, cmd, self.trace, &self.control, limits).await
    }
}

/// Runs one script on `executor`. On timeout or cancellation the executor's token is fired and this still waits
/// for `run` to return, so no process of the stage outlives it.
async fn run_guarded(
    executor: &mut dyn Executor,
    cmd: StageCommand,
    trace: &TraceWriter,
    control: &JobCancel,
    limits: Limits,
) -> StageResult {
    let cancel = CancellationToken::new();
    let fut = executor.run(cmd, trace, cancel.clone());
    tokio::pin!(fut);
    let mut why: Option<Interrupt> = None;
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = limits.deadline.unwrap_or(far);
    let (script_deadline, script_why) = limits.script_deadline.unwrap_or((far, Interrupt::JobTimeout));
    let result = loop {
        tokio::select! {
            res = &mut fut => break res,
            _ = control.abort.cancelled(), if limits.abortable && why != Some(Interrupt::Abort) => {
                why = Some(Interrupt::Abort);
                cancel.cancel();
            }
            _ = control.graceful.cancelled(), if why.is_none() && limits.graceful => {
                why = Some(Interrupt::Graceful);
                cancel.cancel();
            }
            _ = tokio::time::sleep_until(deadline), if why.is_none() => {
                why = Some(Interrupt::JobTimeout);
                cancel.cancel();
            }
            _ = tokio::time::sleep_until(script_deadline), if why.is_none() => {
                why = Some(script_why);
                cancel.cancel();
            }
        }
    };
    trace.flush();
    match (why, result) {
        (Some(i), _) => StageResult::Interrupted(i),
        (None, Ok(status)) => StageResult::Exit(status),
        (None, Err(err)) => StageResult::Error(err),
    }
}

/// Awaits `fut` unless the job is aborted, (optionally) gracefully canceled or past a deadline first.
async fn guard<F: Future>(fut: F, control: &JobCancel, limits: Limits) -> Result<F::Output, Interrupt> {
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = limits.deadline.unwrap_or(far);
    let (phase_deadline, phase_why) = limits.script_deadline.unwrap_or((far, Interrupt::JobTimeout));
    tokio::select! {
        out = fut => Ok(out),
        _ = control.abort.cancelled(), if limits.abortable => Err(Interrupt::Abort),
        _ = control.graceful.cancelled(), if limits.graceful => Err(Interrupt::Graceful),
        _ = tokio::time::sleep_until(deadline) => Err(Interrupt::JobTimeout),
        _ = tokio::time::sleep_until(phase_deadline) => Err(phase_why),
    }
}
