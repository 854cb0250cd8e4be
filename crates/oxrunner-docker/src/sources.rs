//! Fetching sources on the runner side: git runs on the runner in a host directory, then the tree is copied into
//! the build volume. The job image needs no git, and credentials and the runner's network settings stay with the
//! runner (the job's network may not even reach GitLab).

use std::path::{Path, PathBuf};

use oxrunner_core::driver::env;
use oxrunner_core::script::ScriptContext;
use oxrunner_core::script::git::GitSettings;
use oxrunner_core::{
    CancellationToken, ExecError, Executor, ExitStatus, GitStrategy, JobPlan, RunnerContext, ShellExecutor,
    Stage, StageCommand, TraceWriter, project_slug,
};

/// Where the runner keeps its checkouts for one project slot: `<root>/<short token>/<concurrent project id>/<slug>`.
/// Keeping it across jobs makes `GIT_STRATEGY=fetch` incremental on the runner side.
pub fn host_project_dir(root: &Path, plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    root.join(&ctx.short_token)
        .join(ctx.concurrent_project_id.to_string())
        .join(project_slug(plan))
}

/// The outcome of a runner-side fetch.
#[derive(Debug)]
pub enum Fetched {
    /// The sources are in this host directory, ready to copy.
    Ready(PathBuf),
    /// No git work for this strategy (`none`, `empty`): the stage runs in the container as rendered.
    NotNeeded,
    /// The fetch script failed or was stopped with this status.
    Failed(ExitStatus),
}

/// Renders get_sources for the host directory and runs it with the shell executor.
///
/// No get_sources hook runs here: the job's come from the repository and must not run on the runner's host, and
/// both the job's and the runner's belong to the job's environment. The executor runs them in the job container
/// around this fetch (`hooks`).
pub async fn fetch_on_runner(
    root: &Path,
    plan: &JobPlan,
    ctx: &RunnerContext,
    trace: &TraceWriter,
    cancel: CancellationToken,
) -> Result<Fetched, ExecError> {
    let host_ctx = RunnerContext {
        builds_dir: root.to_path_buf(),
        pre_get_sources_script: None,
        post_get_sources_script: None,
        ..ctx.clone()
    };
    let mut plan = plan.clone();
    plan.sources.pre_get_sources_script.clear();
    plan.sources.post_get_sources_script.clear();
    let plan = &plan;
    let project_dir = host_project_dir(root, plan, ctx);
    let tmp_dir = oxrunner_core::tmp_dir(&project_dir);
    let vars = env::expand(
        &env::job_variables(plan, &host_ctx, &project_dir, &tmp_dir),
        &tmp_dir,
    );
    let settings = GitSettings::resolve(plan, &vars);
    if matches!(settings.strategy, GitStrategy::None | GitStrategy::Empty) {
        return Ok(Fetched::NotNeeded);
    }
    let script = ScriptContext {
        plan,
        ctx: &host_ctx,
        vars: &vars,
        project_dir: &project_dir,
        tmp_dir: &tmp_dir,
        xtrace: false,
    }
    .get_sources(&settings);
    std::fs::create_dir_all(root).map_err(|source| ExecError::Io {
        context: format!("creating the runner-side builds dir {}", root.display()),
        source,
    })?;
    let cmd = StageCommand {
        stage: Stage::GetSources,
        script,
        shell_workdir: root.to_path_buf(),
        predefined: true,
    };
    let mut shell = ShellExecutor::new().with_login_shell(false);
    let status = shell.run(cmd, trace, cancel).await?;
    if !status.success() {
        return Ok(Fetched::Failed(status));
    }
    if !project_dir.is_dir() {
        return Err(ExecError::Other(format!(
            "get_sources succeeded but {} does not exist",
            project_dir.display()
        )));
    }
    Ok(Fetched::Ready(project_dir))
}
