//! get_sources and clear_worktree, for every executor.
//!
//! An executor with local files runs the rendered get_sources script. For one whose files are remote
//! (`Executor::files`), git runs on the runner instead: the job's image needs no git, and credentials and the
//! runner's network settings stay with the runner (the job's network may not even reach GitLab). The tree is then
//! pushed into the job, as `remote.rs` stages caches and artifacts. The get_sources hooks (the runner's
//! `pre/post_get_sources_script` and the job's `hooks:`) belong to the job's environment: they see its variables,
//! image and user, and the job's come from the repository, so they never run on the runner's host. They become
//! two ordinary scripts of the stage around the fetch, in the shell executor's order (`SourcesScript::render`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Driver, Limits, StageResult, env, guard, run_guarded};
use crate::builddir::{runner_builds_root, runner_checkout_dir, tmp_dir};
use crate::error::ExecError;
use crate::executor::{ExitStatus, JobFiles, Stage, StageCommand};
use crate::outcome::FailureReason;
use crate::plan::{GitStrategy, RunnerContext, SourceOrigin};
use crate::script::ScriptContext;
use crate::script::bash::{exports, wrap};
use crate::script::git::{GIT_PROMPTS_OFF, GitSettings, SourcesScript};
use crate::script::host_fetch;
use crate::shell::ShellExecutor;

/// gitlab-runner's green notice colour, as the rendered scripts print it.
const NOTICE: &str = "\x1b[32;1m";
const RESET: &str = "\x1b[0;m";

/// The two hook scripts around a runner-side fetch; `None` where no hook is set (that script is not run).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceHooks {
    /// Runner pre hook, then the job's pre hooks; run in the builds dir before the fetch.
    pub(crate) pre: Option<String>,
    /// The job's post hooks, then the runner post hook, each after a `cd` into the project dir; run once the
    /// checkout is in the job.
    pub(crate) post: Option<String>,
}

fn set(hook: Option<&str>) -> bool {
    hook.is_some_and(|h| !h.trim().is_empty())
}

fn any(lines: &[String]) -> bool {
    lines.iter().any(|l| !l.trim().is_empty())
}

impl SourceHooks {
    /// The hook scripts of a clone or fetch, rendered from the job's scripts context (its variables exported as
    /// every stage script has them). Both are `None` for `none` and `empty`: those run get_sources in the job as
    /// rendered, the runner's hooks included.
    pub(crate) fn render(scripts: &ScriptContext<'_>, settings: &GitSettings) -> Self {
        let job = &scripts.plan.sources;
        let runner = scripts.ctx;
        let has_pre = set(runner.pre_get_sources_script.as_deref()) || any(&job.pre_get_sources_script);
        let has_post = set(runner.post_get_sources_script.as_deref()) || any(&job.post_get_sources_script);
        if !matches!(settings.strategy, GitStrategy::Clone | GitStrategy::Fetch) || (!has_pre && !has_post) {
            return Self::default();
        }
        let sources = SourcesScript {
            plan: scripts.plan,
            ctx: runner,
            settings,
            project_dir: scripts.project_dir,
            tmp_dir: scripts.tmp_dir,
            ca_file_path: None,
            client_cert_paths: None,
        };
        let quoting = scripts.quoting();
        let script = |body: String| {
            wrap(
                &format!(
                    "{}{GIT_PROMPTS_OFF}{body}",
                    exports(scripts.vars, scripts.tmp_dir, quoting)
                ),
                scripts.xtrace,
                crate::feature_flags::is_on(scripts.vars, "FF_USE_LEGACY_BASH_EVAL"),
                quoting,
            )
        };
        Self {
            pre: has_pre.then(|| script(sources.pre_hooks())),
            post: has_post.then(|| script(sources.post_hooks())),
        }
    }
}

/// The fetch script for the runner-side checkout and the directory it fills. It is rendered as the shell executor
/// would for a builds dir on the runner, without any get_sources hook (those run in the job, see above), and with
/// only the variables `host_fetch` lets through: this script runs on the runner host with the runner's privileges.
/// `Err` when the job asks for a git flag that could run a program there.
fn runner_fetch(scripts: &ScriptContext<'_>) -> Result<Option<(String, PathBuf)>, ExecError> {
    let plan = scripts.plan;
    let host_ctx = RunnerContext {
        builds_dir: runner_builds_root(scripts.ctx),
        pre_get_sources_script: None,
        post_get_sources_script: None,
        // The runner owns its checkout; a `git config --global` here would change the runner's own settings.
        safe_directory_checkout: false,
        // The checkout never reaches a job's hands (its tree is copied out), so its config is the runner's own.
        clean_git_config: Some(false),
        ..scripts.ctx.clone()
    };
    let mut plan = plan.clone();
    plan.sources.pre_get_sources_script.clear();
    plan.sources.post_get_sources_script.clear();
    let project_dir = runner_checkout_dir(&plan, scripts.ctx);
    let tmp = tmp_dir(&project_dir);
    // The job's variables decide the git settings (they become script text) but never reach the script's
    // environment.
    let job_vars = env::expand(&env::job_variables(&plan, &host_ctx, &project_dir, &tmp), &tmp);
    let settings = GitSettings::resolve(&plan, &job_vars);
    if !matches!(settings.strategy, GitStrategy::Clone | GitStrategy::Fetch) {
        return Ok(None);
    }
    host_fetch::check_flags(&settings).map_err(|refused| ExecError::Build {
        reason: FailureReason::ScriptFailure,
        message: refused.to_string(),
    })?;
    let vars = host_fetch::runner_side_variables(&plan, &job_vars);
    let script = ScriptContext {
        plan: &plan,
        ctx: &host_ctx,
        vars: &vars,
        project_dir: &project_dir,
        tmp_dir: &tmp,
        xtrace: false,
    }
    .get_sources(&settings);
    Ok(Some((
        format!("{}{script}", host_fetch::CLEAN_INHERITED_ENV),
        project_dir,
    )))
}

/// True when get_sources would only create the project directory: `none` without runner hooks or tracing (the
/// job's own hooks run only for clone and fetch).
fn only_makes_the_dir(scripts: &ScriptContext<'_>, settings: &GitSettings) -> bool {
    let ctx = scripts.ctx;
    // A local directory source is the project directory itself (`locate`), so it exists as a checkout would.
    settings.strategy == GitStrategy::None
        && settings.warnings.is_empty()
        && !set(ctx.pre_get_sources_script.as_deref())
        && !set(ctx.post_get_sources_script.as_deref())
        && !scripts.xtrace
}

fn exit_ok() -> StageResult {
    StageResult::Exit(ExitStatus::Code(0))
}

impl Driver<'_> {
    /// The executor made the project directory in prepare: the stage's whole output is this line.
    fn skip_git_setup(&self) -> StageResult {
        self.trace
            .write(format!("{NOTICE}Skipping Git repository setup{RESET}\n").as_bytes());
        exit_ok()
    }

    /// get_sources with its retries (`GET_SOURCES_ATTEMPTS`), each retry after a clear_worktree.
    pub(super) async fn get_sources(&mut self) -> bool {
        if self.skips_sources() {
            return true;
        }
        let settings = GitSettings::resolve(self.plan, &self.vars);
        let limits = self.job_limits();
        let mut too_old = if self.git_runs_on_runner(&settings) {
            super::git_version::warning(&settings).await
        } else {
            None
        };
        for attempt in 1..=settings.attempts {
            if attempt > 1 && !self.clear_worktree(limits).await {
                return false;
            }
            let stage = Stage::GetSources;
            self.section_start(&stage);
            if let Some(warning) = too_old.take() {
                self.trace.warning(&warning);
            }
            let result = self.sources_attempt(&settings, limits).await;
            self.section_end(&stage);
            match result {
                StageResult::Exit(status) if !status.success() && attempt < settings.attempts => {
                    let wait = crate::feature_flags::stage_retry_backoff(&self.vars, attempt - 1);
                    self.trace.warning(&format!(
                        "Getting sources failed ({status}), retrying in {}s (attempt {} of {})",
                        wait.as_secs(),
                        attempt + 1,
                        settings.attempts
                    ));
                    if let Err(interrupt) = guard(tokio::time::sleep(wait), &self.control, limits).await {
                        return self.settle(StageResult::Interrupted(interrupt));
                    }
                }
                other => return self.settle(other),
            }
        }
        false
    }

    /// Whether this job's get_sources runs git on the runner's host (the shell executor's scripts, or the
    /// runner-side fetch), so the runner knows which git it is.
    fn git_runs_on_runner(&self, settings: &GitSettings) -> bool {
        self.plan.sources.origin == SourceOrigin::Git
            && matches!(settings.strategy, GitStrategy::Clone | GitStrategy::Fetch)
            && !matches!(self.executor.file_access(), crate::executor::FileAccess::InScript)
    }

    async fn clear_worktree(&mut self, limits: Limits) -> bool {
        let stage = Stage::ClearWorktree;
        self.section_start(&stage);
        if self.executor.files().is_some() {
            // A failed fetch may leave the runner-side checkout broken; the retry starts from scratch.
            let dir = runner_checkout_dir(self.plan, &self.ctx);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                self.trace
                    .warning(&format!("could not remove {}: {e}", dir.display()));
            }
        }
        let script = self.scripts(&self.vars).clear_worktree();
        let result = self.run_script(stage.clone(), script, limits).await;
        self.section_end(&stage);
        match result {
            StageResult::Interrupted(i) => {
                self.fail_interrupted(i);
                false
            }
            StageResult::Error(err) => {
                self.set_failure(err.reason(), None, err.to_string());
                false
            }
            StageResult::Exit(_) => true,
        }
    }

    /// One get_sources attempt, inside its section.
    async fn sources_attempt(&mut self, settings: &GitSettings, limits: Limits) -> StageResult {
        let Some(files) = self.executor.files() else {
            // Local files: the script does it all; a local directory is the project dir itself (`locate`).
            if self.environment.fresh_build_dir && only_makes_the_dir(&self.scripts(&self.vars), settings) {
                return self.skip_git_setup();
            }
            let script = self.scripts(&self.vars).get_sources(settings);
            return self.run_script(Stage::GetSources, script, limits).await;
        };
        let plan = self.plan;
        if let SourceOrigin::LocalDir(dir) = &plan.sources.origin {
            self.trace.println(&format!(
                "Copying {} into the container at {}",
                dir.display(),
                self.project_dir.display()
            ));
            return self.push(files, dir, limits).await;
        }
        let scripts = self.scripts(&self.vars);
        if self.environment.fresh_build_dir && only_makes_the_dir(&scripts, settings) {
            return self.skip_git_setup();
        }
        let hooks = SourceHooks::render(&scripts, settings);
        let (fetch, checkout) = match runner_fetch(&scripts) {
            Ok(Some(fetch)) => fetch,
            Ok(None) => {
                let script = scripts.get_sources(settings);
                return self.run_script(Stage::GetSources, script, limits).await;
            }
            Err(refused) => return StageResult::Error(refused),
        };
        if let Some(pre) = hooks.pre {
            match self.run_script(Stage::GetSources, pre, limits).await {
                StageResult::Exit(status) if status.success() => {}
                other => return other,
            }
        }
        match self.fetch_on_runner(fetch, &checkout, limits).await {
            StageResult::Exit(status) if status.success() => {}
            other => return other,
        }
        match self.push(files, &checkout, limits).await {
            StageResult::Exit(status) if status.success() => {}
            other => return other,
        }
        match hooks.post {
            Some(post) => self.run_script(Stage::GetSources, post, limits).await,
            None => exit_ok(),
        }
    }

    /// `FF_ENABLE_JOB_CLEANUP` with `clone` on an executor with remote files: the runner-side checkout is this
    /// job's project directory as much as the job's copy is, so it goes with it (`script/job_cleanup.rs` cleans the
    /// job's). A `fetch` keeps it: the job never changes it. An `empty` job has its own `<dir>-empty` in the job and
    /// none on the runner, so the checkout an earlier job of the slot left is not its to remove (as upstream). The
    /// directory is the runner's own and is renamed away at once; the removal runs in the background, so a large
    /// checkout does not delay the job's final update.
    pub(super) async fn remove_runner_checkout(&mut self) {
        if self.executor.files().is_none()
            || !crate::feature_flags::is_on(&self.vars, "FF_ENABLE_JOB_CLEANUP")
            || GitSettings::resolve(self.plan, &self.vars).strategy != GitStrategy::Clone
        {
            return;
        }
        let dir = runner_checkout_dir(self.plan, &self.ctx);
        if let Err(e) = super::removal::remove_in_background(&dir).await {
            self.trace
                .warning(&format!("could not remove {}: {e}", dir.display()));
        }
    }

    /// Runs the fetch script with a shell on the runner, under the stage's limits.
    async fn fetch_on_runner(&mut self, script: String, checkout: &Path, limits: Limits) -> StageResult {
        let root = runner_builds_root(&self.ctx);
        if let Err(source) = tokio::fs::create_dir_all(&root).await {
            return StageResult::Error(ExecError::Io {
                context: format!("creating the runner-side builds dir {}", root.display()),
                source,
            });
        }
        let cmd = StageCommand {
            stage: Stage::GetSources,
            script,
            shell_workdir: root,
            predefined: true,
        };
        let mut shell = ShellExecutor::new().with_login_shell(false);
        let result = run_guarded(&mut shell, cmd, self.trace, &self.control, limits).await;
        // The fetch's file variables and git credentials are the runner's copy: nothing in the job needs them, and
        // the next job of the slot writes its own.
        let tmp = tmp_dir(checkout);
        if let Err(e) = tokio::fs::remove_dir_all(&tmp).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.trace
                .warning(&format!("could not remove {}: {e}", tmp.display()));
        }
        match result {
            StageResult::Exit(status) if status.success() && !checkout.is_dir() => {
                StageResult::Error(ExecError::Other(format!(
                    "get_sources succeeded but {} does not exist",
                    checkout.display()
                )))
            }
            other => other,
        }
    }

    /// Copies the runner-side tree `dir` into the job's project directory.
    async fn push(&mut self, files: Arc<dyn JobFiles>, dir: &Path, limits: Limits) -> StageResult {
        let target = self.project_dir.clone();
        match guard(files.push(dir, &target), &self.control, limits).await {
            Ok(Ok(())) => exit_ok(),
            Ok(Err(err)) => StageResult::Error(err),
            Err(i) => StageResult::Interrupted(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{JobPlan, Sources};
    use crate::variables::{Variable, Variables};

    fn plan(strategy: GitStrategy) -> JobPlan {
        JobPlan {
            project_path: "group/project".into(),
            sources: Sources {
                strategy,
                ..Sources::default()
            },
            ..JobPlan::default()
        }
    }

    fn runner() -> RunnerContext {
        RunnerContext {
            builds_dir: PathBuf::from("/builds"),
            ..RunnerContext::default()
        }
    }

    fn hooks(plan: &JobPlan, ctx: &RunnerContext) -> SourceHooks {
        let project_dir = crate::builddir::build_dir(plan, ctx);
        let tmp = tmp_dir(&project_dir);
        let vars: Variables = env::expand(&env::job_variables(plan, ctx, &project_dir, &tmp), &tmp);
        let scripts = ScriptContext {
            plan,
            ctx,
            vars: &vars,
            project_dir: &project_dir,
            tmp_dir: &tmp,
            xtrace: false,
        };
        SourceHooks::render(&scripts, &GitSettings::resolve(plan, &vars))
    }

    fn before(script: &str, first: &str, second: &str) -> bool {
        matches!((script.find(first), script.find(second)), (Some(a), Some(b)) if a < b)
    }

    #[test]
    fn no_hook_means_no_script() {
        assert_eq!(
            hooks(&plan(GitStrategy::Fetch), &runner()),
            SourceHooks::default()
        );
        let blank = RunnerContext {
            pre_get_sources_script: Some("  ".into()),
            ..runner()
        };
        let mut p = plan(GitStrategy::Clone);
        p.sources.post_get_sources_script = vec![String::new()];
        assert_eq!(hooks(&p, &blank), SourceHooks::default());
    }

    #[test]
    fn hooks_come_in_the_shell_executors_order() {
        let ctx = RunnerContext {
            pre_get_sources_script: Some("echo runner-pre".into()),
            post_get_sources_script: Some("echo runner-post".into()),
            ..runner()
        };
        let mut p = plan(GitStrategy::Fetch);
        p.sources.pre_get_sources_script = vec!["echo job-pre".into()];
        p.sources.post_get_sources_script = vec!["echo job-post".into()];
        p.variables.push(Variable::new("HOOK_VAR", "seen"));
        let hooks = hooks(&p, &ctx);
        let (Some(pre), Some(post)) = (hooks.pre.clone(), hooks.post.clone()) else {
            panic!("both hooks expected: {hooks:?}")
        };
        assert!(before(&pre, "echo runner-pre", "echo job-pre"), "{pre}");
        assert!(!pre.contains("-post"), "{pre}");
        assert!(pre.contains("HOOK_VAR="), "{pre}");
        assert!(
            before(&post, "cd '\\''/builds/group/project'\\''", "echo job-post"),
            "{post}"
        );
        assert!(before(&post, "echo job-post", "echo runner-post"), "{post}");
        assert!(!post.contains("-pre"), "{post}");
    }

    #[test]
    fn only_git_strategies_get_hook_scripts() {
        let ctx = RunnerContext {
            pre_get_sources_script: Some("echo runner-pre".into()),
            ..runner()
        };
        for strategy in [GitStrategy::None, GitStrategy::Empty] {
            assert_eq!(hooks(&plan(strategy), &ctx), SourceHooks::default());
        }
        let mut p = plan(GitStrategy::Clone);
        p.variables.push(Variable::new("GIT_STRATEGY", "none"));
        assert_eq!(hooks(&p, &ctx), SourceHooks::default());
        let mut local = plan(GitStrategy::Clone);
        local.sources.origin = SourceOrigin::LocalDir(PathBuf::from("/work/tree"));
        assert_eq!(hooks(&local, &ctx), SourceHooks::default());
        let only_pre = hooks(&plan(GitStrategy::Clone), &ctx);
        assert!(only_pre.pre.is_some() && only_pre.post.is_none(), "{only_pre:?}");
    }
}
