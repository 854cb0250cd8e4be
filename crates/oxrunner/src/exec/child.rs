//! Child pipelines (`trigger: include:` of files in the repository, or of a generator job's artifact): run like
//! the main pipeline, with their own state directory (`.oxrunner/children/<trigger job>/`) so job names may
//! repeat the parent's, and the parent's cache. With `strategy: depend` the trigger job takes the child
//! pipeline's result.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use oxrunner_pipeline::{ChildPipeline, Pipeline};

use super::gitlab_status;
use super::job::{Env, JobSpec};
use super::scheduler::{self, Record, Settings, Status, allowed};
use super::summary;
use crate::hooks::BoxFuture;

fn failed(reason: &str) -> Status {
    Status::Failed {
        allowed: false,
        exit_code: None,
        reason: reason.into(),
    }
}

/// The trigger job's child pipeline: resolved with the parent, or for a dynamic one, from its generator's
/// artifact now; `Err` is the trigger job's status when there is none to run.
async fn child_pipeline<'a>(
    env: &Env,
    spec: &JobSpec,
    trigger: &'a ChildPipeline,
) -> Result<Cow<'a, Pipeline>, Status> {
    match (&trigger.pipeline, &trigger.dynamic) {
        (Some(child), _) => Ok(Cow::Borrowed(child.as_ref())),
        (None, Some(dynamic)) => match super::dynamic_child::load(env, spec, dynamic).await {
            Ok(p) => Ok(Cow::Owned(p)),
            Err(e) => {
                env.console.note(&format!("{} | ERROR: {e}", spec.display));
                Err(Status::Failed {
                    allowed: allowed(&spec.job.allow_failure, None),
                    exit_code: None,
                    reason: "downstream_pipeline_creation_failed".into(),
                })
            }
        },
        (None, None) => Err(Status::Skipped("the downstream pipeline is not local".into())),
    }
}

/// Runs the child pipeline of the trigger job `spec`.
pub fn run(env: Arc<Env>, spec: Arc<JobSpec>, settings: Settings) -> BoxFuture<'static, Record> {
    Box::pin(async move {
        let start = Instant::now();
        let record = |status| Record {
            status,
            duration: start.elapsed(),
            attempts: 1,
        };
        let Some(trigger) = &spec.job.trigger else {
            return record(failed("runner_system_failure"));
        };
        let child = match child_pipeline(&env, &spec, trigger).await {
            Ok(child) => child,
            Err(status) => return record(status),
        };
        let child = child.as_ref();
        let state = env.state.join("children").join(&spec.dir);
        if let Err(e) = super::prepare_state(&state) {
            env.console.note(&format!("{} | ERROR: {e:#}", spec.display));
            return record(failed("runner_system_failure"));
        }
        let label = format!("{} > ", spec.display);
        let chosen: Vec<usize> = (0..child.jobs.len()).collect();
        let nodes = super::build_nodes(child, &chosen, &env.opts, &label);
        let name_width = nodes
            .iter()
            .map(|n| n.spec.display.chars().count())
            .max()
            .unwrap_or(0)
            .min(48);
        // The parent chose the shell without asking the engine when none of its jobs named an image.
        let docker = if env.docker == super::docker::Mode::Shell
            && env.opts.executor.is_none()
            && child.jobs.iter().any(|j| super::has_image(&j.payload))
        {
            match super::docker::choose(None, true, &env.console).await {
                Ok(mode) => mode,
                Err(e) => {
                    env.console.note(&format!("{} | ERROR: {e:#}", spec.display));
                    return record(failed("runner_system_failure"));
                }
            }
        } else {
            env.docker
        };
        let child_env = Arc::new(Env {
            repo: env.repo.clone(),
            state,
            files: env.files.clone(),
            snapshot: env.snapshot,
            write_back: env.write_back,
            console: env.console.clone(),
            cli_variables: env.cli_variables.clone(),
            name_width,
            cache_dir: env.cache_dir.clone(),
            label,
            docker,
            opts: env.opts.clone(),
            abort: env.abort.clone(),
        });
        env.console.note(&format!(
            "{} | child pipeline with {} jobs",
            spec.display,
            child.jobs.len()
        ));
        let coverage_inputs = gitlab_status::coverage_inputs(&child_env, &nodes);
        let records = scheduler::run(child_env.clone(), nodes, settings).await;
        let coverage = gitlab_status::coverage(coverage_inputs, &records).await;
        let passed = !records.iter().any(|r| r.status.blocks());
        let rows: Vec<summary::Row> = child
            .jobs
            .iter()
            .zip(&records)
            .zip(coverage)
            .map(|((j, r), coverage)| summary::Row {
                name: format!("{}{}", child_env.label, j.name),
                stage: j.stage.clone(),
                status: r.status.clone(),
                duration: r.duration,
                attempts: r.attempts,
                coverage,
            })
            .collect();
        let to_play = gitlab_status::to_play(child.jobs.iter().map(|j| j.name.as_str()), &records);
        env.console.note(&summary::render(
            &rows,
            passed,
            start.elapsed(),
            &child_env.state.join("logs"),
            env.console.colour,
        ));
        // GitLab's depend trigger job keeps running while its child pipeline is blocked: what waits for the
        // trigger job waits for the child's manual job.
        let status = if let Some(first) = to_play.first().filter(|_| passed && trigger.strategy_depend) {
            Status::Blocked(first.clone())
        } else if passed || !trigger.strategy_depend {
            Status::Passed
        } else {
            Status::Failed {
                allowed: allowed(&spec.job.allow_failure, None),
                exit_code: None,
                reason: "downstream_pipeline_failure".into(),
            }
        };
        record(status)
    })
}
