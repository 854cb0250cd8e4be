//! `oxrunner exec`: the resolved pipeline run on this machine through the daemon's engine.
//!
//! Layout of the state directory `<repo>/.oxrunner/` (ignored by git through its own `.gitignore`):
//! `builds/<job>/` each job's copy of the repository, `artifacts/<job>/` archives as the local transport stores
//! them, `cache/` caches shared by all jobs and kept across runs, `dotenv/<job>.env` dotenv reports,
//! `logs/<job>.log` full job logs, `tmp/` trace spools, `pipeline.json` the last run's result.

mod board;
mod child;
mod docker;
mod dotenv;
mod dynamic_child;
mod failures;
pub mod gitfacts;
mod gitlab_status;
mod job;
mod junit;
mod local_shell;
mod output;
pub mod remote_cache;
mod scheduler;
mod select;
pub mod source;
mod summary;
mod workspace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use oxrunner_pipeline::{Pipeline, PipelineContext};

use self::job::{Env, JobSpec};
use self::scheduler::{Node, Settings};
use self::workspace::Snapshot;

/// What `oxrunner exec` was asked to do, beyond the pipeline itself.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub jobs: Vec<String>,
    pub needs: bool,
    pub concurrency: Option<usize>,
    pub executor: Option<String>,
    /// `--executor custom`: the driver settings.
    pub custom: Option<oxrunner_config::CustomConfig>,
    pub manual: Vec<String>,
    /// Jobs see only committed files (`OXRUNNER_EXEC_COMMITTED_ONLY`).
    pub committed_only: bool,
    /// Artifacts of passing jobs are extracted into the user's tree (`OXRUNNER_EXEC_WRITE_BACK`).
    pub write_back: bool,
    /// `when: delayed` jobs start without waiting (`OXRUNNER_EXEC_NO_DELAY`).
    pub no_delay: bool,
    /// `--cache-config`: the remote cache jobs share with CI.
    pub remote_cache: crate::hooks::RemoteSetup,
}

/// Runs `pipeline` for the repository of `ctx`; the exit code is 0 only when the pipeline passed.
pub async fn run(opts: &Options, ctx: &PipelineContext, pipeline: Pipeline) -> anyhow::Result<ExitCode> {
    if let Some(other) = opts.executor.as_deref().filter(|e| !docker::runs_locally(e)) {
        bail!("unknown executor {other:?}\nhint: oxrunner exec supports --executor shell, docker or custom");
    }
    let repo = ctx.project_dir.clone();
    if !repo.join(".git").exists() {
        bail!(
            "{} is not a git repository\nhint: run `git init && git add -A && git commit -m init` first, or pass --cwd DIR",
            repo.display()
        );
    }
    let state = repo.join(".oxrunner");
    prepare_state(&state)?;
    let _lock = RunLock::acquire(&state)?;
    clear_stale_spools(&state.join("tmp"));

    let chosen = select::select(&pipeline, &opts.jobs, opts.needs)?;
    if chosen.is_empty() {
        bail!(
            "the pipeline has no jobs for this context\nhint: `oxrunner exec --list` shows what GitLab would create"
        );
    }
    let snapshot = if opts.committed_only {
        Snapshot::Committed
    } else {
        Snapshot::WorkingTree
    };
    let files = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || workspace::list_files(&repo, snapshot))
            .await
            .context("listing the repository files stopped")??
    };

    let console = output::Console::new();
    let any_image = chosen.iter().any(|&i| has_image(&pipeline.jobs[i].payload));
    // A custom driver decides itself where a job runs: the runner never starts containers for it.
    let docker = match docker::choose(opts.executor.as_deref(), any_image, &console).await {
        Ok(mode) => mode,
        Err(e) => {
            // The error goes below a board that is taken down, not below a frozen one.
            console.close_board();
            return Err(e);
        }
    };
    let name_width = name_width(&pipeline, &chosen);
    let abort = oxrunner_core::CancellationToken::new();
    let env = Arc::new(Env {
        repo: repo.clone(),
        state,
        files: Arc::new(files),
        snapshot,
        write_back: opts.write_back,
        console: console.clone(),
        cli_variables: ctx.variables.clone(),
        name_width,
        cache_dir: repo.join(".oxrunner").join("cache"),
        label: String::new(),
        docker,
        opts: opts.clone(),
        abort: abort.clone(),
    });
    let nodes = build_nodes(&pipeline, &chosen, opts, "");
    let specs: Vec<Arc<JobSpec>> = nodes.iter().map(|n| n.spec.clone()).collect();
    let settings = Settings {
        concurrency: concurrency(opts),
        skip_delays: opts.no_delay,
    };
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            abort.cancel();
        }
    });
    let started = std::time::Instant::now();
    let coverage_inputs = gitlab_status::coverage_inputs(&env, &nodes);
    let records = scheduler::run(env.clone(), nodes, settings).await;
    ctrl_c.abort();
    let coverage = gitlab_status::coverage(coverage_inputs, &records).await;
    console.close_board();
    failures::report(&env, &specs, &records).await;

    let rows: Vec<summary::Row> = chosen
        .iter()
        .zip(&records)
        .zip(coverage)
        .map(|((&i, r), coverage)| summary::Row {
            name: pipeline.jobs[i].name.clone(),
            stage: pipeline.jobs[i].stage.clone(),
            status: r.status.clone(),
            duration: r.duration,
            attempts: r.attempts,
            coverage,
        })
        .collect();
    let passed = !records.iter().any(|r| r.status.blocks()) && !env.abort.is_cancelled();
    console.note(&summary::render(
        &rows,
        passed,
        started.elapsed(),
        &env.state.join("logs"),
        console.colour,
    ));
    let to_play = gitlab_status::to_play(rows.iter().map(|r| r.name.as_str()), &records);
    let status = gitlab_status::pipeline_status(passed, &to_play);
    if let Err(e) = gitlab_status::write_report(&env.state, &rows, status, started.elapsed()) {
        console.note(&format!("WARNING: {e}"));
    }
    if passed && !to_play.is_empty() {
        console.note(&gitlab_status::blocked_note(&to_play));
        return Ok(ExitCode::from(gitlab_status::BLOCKED_EXIT_CODE));
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The width of the job-name column in front of every log line; a very long name does not widen it past 32.
fn name_width(pipeline: &Pipeline, chosen: &[usize]) -> usize {
    chosen
        .iter()
        .map(|&i| pipeline.jobs[i].name.chars().count())
        .max()
        .unwrap_or(0)
        .min(32)
}

/// `--concurrency`, else one job per available core.
fn concurrency(opts: &Options) -> usize {
    opts.concurrency
        .filter(|&c| c > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

pub(crate) fn prepare_state(state: &Path) -> anyhow::Result<()> {
    for sub in ["builds", "artifacts", "cache", "dotenv", "logs", "tmp"] {
        let dir = state.join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Keeps the state out of `git status` and out of the jobs' copies without touching the user's .gitignore.
    let ignore = state.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    Ok(())
}

/// One `oxrunner exec` per repository at a time: two runs would rebuild each other's job directories.
struct RunLock(PathBuf);

impl RunLock {
    fn acquire(state: &Path) -> anyhow::Result<RunLock> {
        let path = state.join("lock");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let pid = text.trim();
            let alive = !pid.is_empty()
                && pid != std::process::id().to_string()
                && Path::new("/proc").join(pid).exists();
            if alive {
                bail!(
                    "another oxrunner exec (pid {pid}) is running in {}\nhint: wait for it to finish, or remove {} if that process is not oxrunner",
                    state.display(),
                    path.display()
                );
            }
        }
        std::fs::write(&path, std::process::id().to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunLock(path))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Trace spools left by a run that was killed (a finished run deletes its own).
fn clear_stale_spools(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("oxrunner-trace-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// True when the job's payload names an image (`image:` in the job or `default:`).
pub(crate) fn has_image(payload: &oxrunner_api::JobResponse) -> bool {
    !payload.image.name.trim().is_empty()
}

pub(crate) fn build_nodes(pipeline: &Pipeline, chosen: &[usize], opts: &Options, label: &str) -> Vec<Node> {
    // Distinct directory names even when two job names clean up to the same string.
    let mut used: HashMap<String, usize> = HashMap::new();
    let dirs: Vec<String> = chosen
        .iter()
        .map(|&i| {
            let base = workspace::dir_name(&pipeline.jobs[i].name);
            let n = used.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}-{n}") }
        })
        .collect();
    let position: HashMap<usize, usize> = chosen.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let all_dirs: HashMap<&str, &str> = chosen
        .iter()
        .zip(&dirs)
        .map(|(&i, d)| (pipeline.jobs[i].name.as_str(), d.as_str()))
        .collect();
    chosen
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let job = pipeline.jobs[i].clone();
            let preds = select::predecessors(pipeline, i, chosen)
                .into_iter()
                .filter_map(|p| position.get(&p).copied())
                .collect();
            let deps = select::dependency_names(&job)
                .into_iter()
                .filter_map(|name| {
                    let id = pipeline.job(&name).map(|j| job_id(pipeline, j))?;
                    // A dependency outside this run keeps what an earlier run left for it.
                    let dir = all_dirs
                        .get(name.as_str())
                        .map_or_else(|| workspace::dir_name(&name), |d| (*d).to_string());
                    Some((id, name, dir))
                })
                .collect();
            let manual_run = opts.manual.iter().chain(&opts.jobs).any(|m| *m == job.name);
            Node {
                uses_needs: job.needs.is_some(),
                preds,
                manual_run,
                spec: Arc::new(JobSpec {
                    index: k,
                    id: job_id(pipeline, &job),
                    dir: dirs[k].clone(),
                    display: format!("{label}{}", job.name),
                    job,
                    deps,
                }),
            }
        })
        .collect()
}

/// The id GitLab would give the job (the payload's), or its position when the payload has none.
fn job_id(pipeline: &Pipeline, job: &oxrunner_pipeline::PipelineJob) -> i64 {
    // Trigger jobs are never sent to a runner, so their payload has no id.
    if job.payload.id > 0 {
        return job.payload.id;
    }
    let pos = pipeline.jobs.iter().position(|j| j.name == job.name).unwrap_or(0);
    i64::try_from(pos).unwrap_or(0) + 1
}
