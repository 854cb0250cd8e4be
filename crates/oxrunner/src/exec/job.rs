//! One attempt of one job: the pipeline's typed payload → the daemon's `JobPlan` → core's `run_job` with the shell
//! executor and the local artifact/cache hooks, the trace streamed to the terminal and the job's log file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxrunner_api::{DependencyArtifactsFile, JobResponse, Variable};
use oxrunner_config::ExecutorKind;
use oxrunner_core::trace::TraceFollower;
use oxrunner_core::{
    CgroupPlacement, FailureReason, JobCancel, JobOutcome, JobProcesses, RunnerContext, SourceOrigin,
    TraceWriter,
};
use oxrunner_pipeline::PipelineJob;
use tokio::task::JoinHandle;

use super::output::{self, Console};
use super::{dotenv, workspace};
use crate::hooks::{LocalTransport, RunnerHooks, cache_store};
use crate::plan::{check, job_plan, resolve_feature_flags};
use crate::version;

/// Paths and settings every job of one `oxrunner exec` shares.
pub struct Env {
    pub repo: PathBuf,
    /// `<repo>/.oxrunner`.
    pub state: PathBuf,
    pub files: Arc<Vec<PathBuf>>,
    pub snapshot: workspace::Snapshot,
    pub write_back: bool,
    pub console: Console,
    /// `--variable` / `--variables-file`: re-applied after dotenv variables, which they outrank.
    pub cli_variables: Vec<(String, String)>,
    pub name_width: usize,
    /// Shared by the parent pipeline and its child pipelines.
    pub cache_dir: PathBuf,
    /// Prefix of the job names shown for a child pipeline (`trigger-job > `); empty for the main pipeline.
    pub label: String,
    /// Which jobs run in Docker.
    pub docker: super::docker::Mode,
    pub opts: super::Options,
    /// Cancelled on Ctrl-C: running jobs stop, pending ones are not started.
    pub abort: oxrunner_core::CancellationToken,
}

impl Env {
    pub fn builds(&self) -> PathBuf {
        self.state.join("builds")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.state.join("artifacts")
    }
    pub fn log_path(&self, dir: &str) -> PathBuf {
        self.state.join("logs").join(format!("{dir}.log"))
    }
    pub fn dotenv_path(&self, dir: &str) -> PathBuf {
        self.state.join("dotenv").join(format!("{dir}.env"))
    }
}

/// What the scheduler knows about a job it hands to [`run_attempt`].
pub struct JobSpec {
    pub index: usize,
    pub id: i64,
    pub dir: String,
    /// The name shown in output lines: the job name, prefixed for a child pipeline's jobs.
    pub display: String,
    pub job: PipelineJob,
    /// Dependencies whose artifacts and dotenv this job receives: (id, name, dir).
    pub deps: Vec<(i64, String, String)>,
}

/// The result of one attempt.
pub struct Attempt {
    pub outcome: JobOutcome,
}

fn failed(message: String) -> JobOutcome {
    JobOutcome::Failed {
        reason: FailureReason::RunnerSystemFailure,
        exit_code: None,
        message,
    }
}

fn local_token() -> String {
    use std::io::Read;
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        // Only the masker sees this token; uniqueness per run is all that matters.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf = nanos.to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Clears what a previous run left for this job (artifacts, dotenv).
pub fn reset_outputs(env: &Env, spec: &JobSpec) {
    let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    let _ = std::fs::remove_dir_all(store.job_dir(spec.id, &spec.job.name));
    let _ = std::fs::remove_file(env.dotenv_path(&spec.dir));
}

/// Runs one attempt of `spec`; `append_log` keeps the log of earlier attempts.
pub async fn run_attempt(env: Arc<Env>, spec: Arc<JobSpec>, append_log: bool) -> Attempt {
    let console = env.console.clone();
    let build_dir = env.builds().join(&spec.dir);
    let job = job_payload(&env, &spec);
    if let Err(e) = check(&job) {
        return Attempt {
            outcome: failed(e.to_string()),
        };
    }
    let mut plan = job_plan(&job, None);
    let flag_problems = resolve_feature_flags(&mut plan, &std::collections::BTreeMap::new(), &[]);
    // The job's `inputs:` defaults, interpolated as the daemon does for GitLab's jobs.
    let (job, inputs) = crate::inputs::apply(Box::new(job), &mut plan, None).await;
    if let Some(e) = inputs.failure {
        console.note(&format!("{} | ERROR: Job failed: {e}", spec.display));
        console.note(&format!("{} | {}", spec.display, e.hint()));
        return Attempt {
            outcome: JobOutcome::Failed {
                reason: e.reason(),
                exit_code: None,
                message: e.to_string(),
            },
        };
    }
    // Decided on the interpolated payload: `image: ${{ job.inputs.img }}` may name no image at all.
    let in_docker = env.docker.docker_for(super::has_image(&job));
    if let Err(err) = prepare_build_dir(&env, &build_dir, in_docker).await {
        console.note(&format!("{} | ERROR: {err}", spec.display));
        return Attempt { outcome: failed(err) };
    }
    // The copy made by `workspace::prepare` is the checkout: the shell runs in it, a container receives it.
    plan.sources.origin = SourceOrigin::LocalDir(build_dir.clone());
    let kind = env.docker.kind_for(in_docker);
    let ctx = runner_context(&env, spec.index, &kind);
    // The job's processes are found by their environment marker, not a cgroup: a local pipeline runs as the user
    // who started it, so a cgroup guards no boundary and would add a join step to every stage.
    let procs = JobProcesses::new(&format!("exec-{}", spec.id), &CgroupPlacement::Off);
    let built = super::docker::executor(
        &kind,
        &ctx,
        procs,
        env.opts.custom.clone(),
        serde_json::to_vec(&job).ok(),
    );
    let mut executor = match built {
        Ok(executor) => executor,
        Err(e) => {
            return Attempt {
                outcome: failed(e.to_string()),
            };
        }
    };
    let spool = env.state.join("tmp");
    let (trace, handle) = match TraceWriter::create(spool.clone(), plan.mask_set(), u64::MAX).await {
        Ok(t) => t,
        Err(e) => {
            return Attempt {
                outcome: failed(format!("cannot create a trace spool in {}: {e}", spool.display())),
            };
        }
    };
    let log_path = env.log_path(&spec.dir);
    let follower = spawn_follower(&env, &spec, handle.follow(), log_path.clone(), append_log);

    // The log goes to a terminal, not to GitLab's viewer, which hides the timestamp prefixes.
    trace.plain();
    for problem in &flag_problems {
        trace.warning(problem);
    }
    if !job.image.name.is_empty() && !in_docker {
        trace.warning(&format!(
            "image {:?} is ignored: the shell executor runs the job on this machine",
            job.image.name
        ));
    }
    let transport = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    let hooks = RunnerHooks::new(Arc::new(transport), cache_store(&ctx)).with_remote_cache(
        env.opts
            .remote_cache
            .clone()
            .prepared(!plan.caches.is_empty())
            .await,
    );
    // Ctrl-C of the whole run aborts this job through its own child token.
    let cancel = JobCancel {
        abort: env.abort.child_token(),
        ..JobCancel::new()
    };
    let outcome = oxrunner_core::run_job(&plan, &ctx, executor.as_mut(), &hooks, &trace, cancel).await;
    handle.finish().await;
    match follower.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => console.note(&format!(
            "{} | WARNING: the job log {} is incomplete: {e}",
            spec.display,
            log_path.display()
        )),
        Err(e) => console.note(&format!("{} | WARNING: log streaming stopped: {e}", spec.display)),
    }
    drop(trace);
    drop(handle);

    if in_docker {
        collect_stored_dotenv(&env, &spec);
    } else {
        collect_dotenv(&env, &spec, &build_dir, &job);
    }
    if env.write_back && matches!(outcome, JobOutcome::Success) {
        write_back(&env, &spec).await;
    }
    Attempt { outcome }
}

/// Copies the repository into the job's build directory, off the async workers (it walks the whole tree).
async fn prepare_build_dir(env: &Env, build_dir: &Path, in_docker: bool) -> Result<(), String> {
    let (repo, dest, files, snap) = (
        env.repo.clone(),
        build_dir.to_path_buf(),
        env.files.clone(),
        env.snapshot,
    );
    let prepared = tokio::task::spawn_blocking(move || {
        workspace::prepare(&repo, &dest, files.as_slice(), snap)?;
        if in_docker {
            workspace::own_objects(&dest)?;
        }
        Ok::<(), workspace::WorkspaceError>(())
    })
    .await;
    match prepared {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("preparing the build directory stopped: {e}")),
    }
}

/// The job's payload for this attempt: its id, a local token, the artifacts of its dependencies and their dotenv
/// variables, then the command line's variables (which outrank dotenv).
fn job_payload(env: &Env, spec: &JobSpec) -> JobResponse {
    let mut job: JobResponse = spec.job.payload.clone();
    job.id = spec.id;
    job.token = local_token();
    fill_dependencies(env, spec, &mut job);
    for (_, _, dir) in &spec.deps {
        for (k, v) in dotenv::load(&env.dotenv_path(dir)) {
            push_var(&mut job, &k, &v);
        }
    }
    for (k, v) in &env.cli_variables {
        push_var(&mut job, k, v);
    }
    if let Some(id) = super::remote_cache::project_id(&env.cli_variables) {
        job.job_info.project_id = id;
    }
    job
}

/// Streams the job's trace to the terminal and its log file as it is written.
fn spawn_follower(
    env: &Env,
    spec: &JobSpec,
    follow: io::Result<TraceFollower>,
    log_path: PathBuf,
    append_log: bool,
) -> JoinHandle<io::Result<()>> {
    let console = env.console.clone();
    let printer = console.printer(&spec.display, spec.index, env.name_width);
    tokio::spawn(async move {
        match follow {
            Ok(f) => output::follow(f, &log_path, console, printer, append_log).await,
            Err(e) => Err(e),
        }
    })
}

fn push_var(job: &mut JobResponse, key: &str, value: &str) {
    job.variables.push(Variable {
        key: key.into(),
        value: value.into(),
        public: true,
        file: false,
        masked: false,
        raw: true,
    });
}

/// Ids and archive names of the dependencies, from what the local store holds now.
fn fill_dependencies(env: &Env, spec: &JobSpec, job: &mut JobResponse) {
    let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    job.dependencies
        .retain(|d| spec.deps.iter().any(|(_, n, _)| *n == d.name));
    for dep in &mut job.dependencies {
        let Some((id, _, _)) = spec.deps.iter().find(|(_, n, _)| *n == dep.name) else {
            continue;
        };
        dep.id = *id;
        dep.artifacts_file = archive_in(&store.job_dir(*id, &dep.name).join("archive"));
    }
}

pub(super) fn archive_in(dir: &Path) -> Option<DependencyArtifactsFile> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.path().is_file())?;
    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
    Some(DependencyArtifactsFile {
        filename: entry.file_name().to_string_lossy().into_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
    })
}

/// Docker jobs: the dotenv report is read back from what the job uploaded to the local store, since the build
/// volume is gone once the job ends.
fn collect_stored_dotenv(env: &Env, spec: &JobSpec) {
    let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    let dir = store.job_dir(spec.id, &spec.job.name).join("dotenv");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut vars = Vec::new();
    for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_file()) {
        let text = match oxrunner_archive::read_report(&path) {
            Ok(t) => t,
            Err(e) => {
                env.console
                    .note(&format!("{} | WARNING: {}: {e}", spec.display, path.display()));
                continue;
            }
        };
        parse_dotenv(env, spec, &path, &text, &mut vars);
    }
    store_dotenv(env, spec, &vars);
}

fn parse_dotenv(env: &Env, spec: &JobSpec, path: &Path, text: &str, vars: &mut Vec<(String, String)>) {
    let (parsed, warnings) = dotenv::parse(text);
    for w in warnings {
        env.console
            .note(&format!("{} | WARNING: {}: {w}", spec.display, path.display()));
    }
    vars.extend(parsed);
}

fn store_dotenv(env: &Env, spec: &JobSpec, vars: &[(String, String)]) {
    if vars.is_empty() {
        return;
    }
    let path = env.dotenv_path(&spec.dir);
    if let Err(e) = dotenv::store(&path, vars) {
        env.console.note(&format!(
            "{} | WARNING: cannot store {}: {e}",
            spec.display,
            path.display()
        ));
    }
}

fn collect_dotenv(env: &Env, spec: &JobSpec, build_dir: &Path, job: &JobResponse) {
    let mut vars = Vec::new();
    for art in job.artifacts.iter().filter(|a| a.artifact_type == "dotenv") {
        for p in &art.paths {
            let path = build_dir.join(p);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            parse_dotenv(env, spec, &path, &text, &mut vars);
        }
    }
    store_dotenv(env, spec, &vars);
}

/// `--write-back`: the job's artifact archive is extracted into the user's tree.
async fn write_back(env: &Env, spec: &JobSpec) {
    let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    let dir = store.job_dir(spec.id, &spec.job.name).join("archive");
    let Some(file) = archive_in(&dir) else {
        return;
    };
    let archive = dir.join(&file.filename);
    let repo = env.repo.clone();
    let res = tokio::task::spawn_blocking(move || oxrunner_archive::extract_zip(&archive, &repo)).await;
    let msg = match res {
        Ok(Ok(_)) => format!(
            "{} | artifacts written back to {}",
            spec.display,
            env.repo.display()
        ),
        Ok(Err(e)) => format!("{} | WARNING: writing artifacts back failed: {e}", spec.display),
        Err(e) => format!("{} | WARNING: writing artifacts back stopped: {e}", spec.display),
    };
    env.console.note(&msg);
}

fn runner_context(env: &Env, index: usize, kind: &ExecutorKind) -> RunnerContext {
    let in_docker = *kind == ExecutorKind::Docker;
    RunnerContext {
        runner_name: "oxrunner-exec".into(),
        short_token: "local".into(),
        system_id: "local".into(),
        // exec has no GitLab runner id: a job of it cannot resume a suspended environment.
        runner_id: 0,
        executor: kind.to_string(),
        // In a container the project lives where GitLab's Docker jobs find it: `/builds/<namespace>/<project>`.
        builds_dir: if in_docker {
            PathBuf::from(oxrunner_docker::DEFAULT_BUILDS_DIR)
        } else {
            env.builds()
        },
        cache_dir: env.cache_dir.clone(),
        concurrent_id: index,
        concurrent_project_id: 0,
        shared_builds_dir: false,
        environment: Vec::new(),
        pre_build_script: None,
        post_build_script: None,
        pre_get_sources_script: None,
        post_get_sources_script: None,
        // Local runs keep the whole log: it is streamed, never held in memory.
        output_limit: u64::MAX,
        version: version::reported_version(),
        revision: version::reported_revision(),
        user: None,
        debug_trace_disabled: false,
        clone_url: None,
        gitlab_url: String::new(),
        // The project dir is the prepared copy (`SourceOrigin::LocalDir`), whatever GIT_CLONE_PATH says.
        custom_build_dir: false,
        safe_directory_checkout: false,
        clean_git_config: None,
        prepare_timeout: None,
        get_sources_timeout: None,
        // exec's sources are local (`SourceOrigin::LocalDir`): nothing is fetched on the runner.
        runner_builds_dir: PathBuf::new(),
    }
}
