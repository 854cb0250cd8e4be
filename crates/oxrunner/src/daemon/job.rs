//! One job from pickup to final update: tell GitLab it runs, turn the payload into a plan, run it through the
//! core driver with the trace streamed back, and report the outcome with the trace checksum.

use std::path::PathBuf;
use std::sync::Arc;

use oxrunner_api::trace::{FinalReport, FinalState, JobControl, TraceOptions, TraceSender, TraceSource};
use oxrunner_api::{ApiError, Client, JobResponse, RunnerInfo, UpdateJobRequest, UpdateOutcome};
use oxrunner_config::{ExecutorKind, RunnerConfig};
use oxrunner_core::{
    CancellationToken, Executor, FailureReason, JobCancel, JobOutcome, JobPlan, RunnerContext,
    TerminalSession, TraceWriter,
};
use oxrunner_session::JobSession;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::slots::{Slot, Slots};
use super::stale;
use crate::executors::{ExecutorSetup, executor_for};
use crate::hooks::RunnerHooks;
use crate::plan::{check, job_plan, resolve_feature_flags};
use crate::version;

/// What a job task needs from the daemon.
#[derive(Clone)]
pub struct JobEnv {
    pub client: Client,
    pub runner: Arc<RunnerConfig>,
    pub system_id: String,
    pub info: RunnerInfo,
    pub slots: Slots,
    /// `--user` / global `user`: run shell jobs as this user.
    pub user: Option<String>,
    /// Cancelled on SIGTERM/SIGINT: jobs stop at once and are reported failed.
    pub abort_all: CancellationToken,
    pub spool_dir: PathBuf,
    /// The directory of config.toml: Docker runners keep their runner-side checkouts and cache store under it (the
    /// seed's runner container mounts it from the host, so both survive the runner's own restarts).
    pub state_dir: PathBuf,
    /// The web terminal server, when `[session_server]` is set and this runner's executor offers a terminal.
    pub session_server: Option<Arc<oxrunner_session::SessionServer>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs one job to its final update. Never panics on bad input: a payload that cannot be planned is reported as a
/// failed job.
pub async fn run(env: JobEnv, job: Box<JobResponse>, session: Option<JobSession>) {
    let job_id = job.id;
    let token = job.token.clone();
    let short = env.runner.short_token();
    info!(job = job_id, runner = %short, project = job.job_info.project_id, "Checking for jobs... received");
    // Lists the job in `gitlab_runner_jobs` until it is dropped at the end of this function.
    let job_metrics = env.metrics.job_started(&env.runner, &job);

    let Some(cancel_at_start) = mark_running(&env, job_id, &token).await else {
        return;
    };

    // Upstream reads this flag from `[runners.feature_flags]` only: the chain is built before the job's variables.
    let resolve_full =
        oxrunner_core::feature_flags::runner_is_on(&env.runner.feature_flags, "FF_RESOLVE_FULL_TLS_CHAIN");
    let ca_chain = env.client.job_ca_chain(resolve_full).await;
    let mut plan = job_plan(&job, ca_chain.clone());
    let flag_problems = resolve_feature_flags(&mut plan, &env.runner.feature_flags, &env.runner.environment);
    // Upstream interpolates job inputs first of all, before the job's header: the payload the job runs is the
    // interpolated one.
    let (job, inputs) = crate::inputs::apply(job, &mut plan, ca_chain).await;
    env.metrics.job_inputs(&inputs);
    if let Some(pem) = env.client.tls_client_pem() {
        plan.sources.tls_cert = Some(pem.cert);
        plan.sources.tls_key = Some(oxrunner_core::Secret::new(pem.key));
    }
    // Before the trace exists: its masker is built from the plan, secrets included. A job whose inputs could not
    // be interpolated fails before anything else.
    let (secrets_stage, slot_taken) = match inputs.failure {
        Some(_) => (None, None),
        None => secrets_in_slot(&env, &job, &mut plan).await,
    };
    let (trace, handle) = match TraceWriter::create(
        env.spool_dir.clone(),
        plan.mask_set(),
        env.runner.output_limit_bytes(),
    )
    .await
    {
        Ok(t) => t,
        Err(err) => {
            // Without a spool there is no trace to send; still tell GitLab the job failed.
            warn!(job = job_id, error = %err, dir = %env.spool_dir.display(), "cannot create the trace spool");
            final_without_trace(&env, job_id, &token).await;
            return;
        }
    };
    for problem in &flag_problems {
        trace.warning(problem);
    }
    secrets_stage.iter().for_each(|stage| stage.write(&trace, &plan));
    log_images(job_id, &plan);
    trace.observe_stages(job_metrics.clone());
    let debug_trace =
        oxrunner_core::plan::debug_trace_enabled(debug_trace_disabled(&env.runner), &plan.variables);
    let source = TraceSource {
        path: handle.path.clone(),
        committed: handle.committed.clone(),
    };
    let (sender, control_rx) = TraceSender::start_with_options(
        env.client.clone(),
        job_id,
        token.clone(),
        source,
        debug_trace,
        env.info.clone(),
        TraceOptions {
            final_update_tries: env.runner.job_status_final_update_retry_limit(),
            dynamic_force_send: oxrunner_core::feature_flags::runner_is_on(
                &env.runner.feature_flags,
                "FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL",
            ),
            ..TraceOptions::default()
        },
    );

    // SIGTERM/SIGINT cancel `abort_all`, which aborts this job through its child token; GitLab's requests arrive
    // through the trace sender.
    let cancel = JobCancel {
        abort: env.abort_all.child_token(),
        ..JobCancel::new()
    };
    if cancel_at_start {
        cancel.graceful.cancel();
    }
    let control_task = forward_control(control_rx, cancel.clone());

    // The executor and the job's slot outlive the final update: a Docker executor may still be removing the job's
    // containers, which must be gone before the slot takes another job.
    let mut held = None;
    job_metrics.executor_created();
    let started = match (
        crate::inputs::failed_outcome(&inputs, &trace),
        refusal(&job, secrets_stage),
    ) {
        (Some(failed), _) => Ok((failed, None)),
        (None, Some(refused)) => Err(refused),
        (None, None) => {
            let session = session.as_ref().map(|s| s as &dyn TerminalSession);
            start(
                &env, &job, job_id, &token, &plan, &trace, &cancel, session, slot_taken,
            )
            .await
            .map(|(outcome, h)| (outcome, Some(h)))
            .map_err(|m| (FailureReason::RunnerSystemFailure, m))
        }
    };
    let outcome = match started {
        Ok((outcome, h)) => {
            held = h;
            outcome
        }
        Err((reason, message)) => failed_before_start(&trace, reason, message),
    };
    control_task.abort();

    let (crc, size) = handle.finish().await;
    let outcome = unless_log_lost(outcome, handle.lost());
    job_metrics.finished(&outcome);
    let mut state = final_state(
        &outcome,
        &job.features.failure_reasons,
        env.abort_all.is_cancelled(),
    );
    state.runtime_environment_key = handle.runtime_environment_key();
    let result = sender.finish(state, crc, size).await;
    log_final_update(job_id, &short, &outcome, result);
    if let Some((mut executor, slot, record)) = held {
        job_metrics.cleaning_up();
        executor.finish_cleanup().await;
        drop(slot);
        record.remove();
    }
    drop(trace);
    drop(handle);
    drop(job_metrics);
    crate::malloc::release_free_memory();
}

/// Takes the job's slot, then resolves its secrets: they expand against the job's full variable list, whose
/// `CI_CONCURRENT_ID` comes from the slot.
async fn secrets_in_slot(
    env: &JobEnv,
    job: &JobResponse,
    plan: &mut JobPlan,
) -> (Option<super::job_secrets::SecretsStage>, Option<Slot>) {
    let slot = env.slots.acquire(env.runner.token.expose(), plan.project_id);
    let ctx = runner_context(env, slot.concurrent_id, slot.project_slot);
    let stage = super::job_secrets::resolve(job, plan, &ctx, &env.abort_all).await;
    (stage, Some(slot))
}

/// Why the job ends before an executor is built: a payload the runner cannot run, or secrets that could not be
/// resolved (as gitlab-runner, such a job never reaches its executor).
fn refusal(
    job: &JobResponse,
    secrets: Option<super::job_secrets::SecretsStage>,
) -> Option<(FailureReason, String)> {
    match (check(job), secrets.and_then(|s| s.failure)) {
        (Err(err), _) => Some((FailureReason::RunnerSystemFailure, err.to_string())),
        (Ok(()), Some(failure)) => Some((failure.reason, failure.message)),
        (Ok(()), None) => None,
    }
}

fn failed_before_start(trace: &TraceWriter, reason: FailureReason, message: String) -> JobOutcome {
    if reason == FailureReason::RunnerSystemFailure {
        trace.error(&format!("Job failed (system failure): {message}"));
    } else {
        trace.error(&format!("Job failed: {message}"));
    }
    JobOutcome::Failed {
        reason,
        exit_code: None,
        message,
    }
}

/// `FF_LOG_IMAGES_CONFIGURED_FOR_JOB`: the job's image and service images in the runner's log, as gitlab-runner
/// logs them (for operators auditing what their runners pull).
fn log_images(job_id: i64, plan: &JobPlan) {
    if !oxrunner_core::feature_flags::is_on(&plan.variables, "FF_LOG_IMAGES_CONFIGURED_FOR_JOB") {
        return;
    }
    if let Some(image) = &plan.image {
        let platform = image.platform.as_deref().unwrap_or_default();
        info!(job = job_id, image_name = %image.name, image_platform = %platform, "Image configured for job");
    }
    for service in &plan.services {
        let platform = service.platform.as_deref().unwrap_or_default();
        info!(job = job_id, image_name = %service.name, image_platform = %platform, "Service image configured for job");
    }
}

/// Tells GitLab the job is running. `None` when GitLab aborted it already; otherwise whether a cancel was already
/// requested.
async fn mark_running(env: &JobEnv, job_id: i64, token: &str) -> Option<bool> {
    let running = UpdateJobRequest {
        info: env.info.clone(),
        token: token.to_owned(),
        state: "running".into(),
        ..Default::default()
    };
    match env.client.update_job(job_id, token, &running).await {
        Ok(r) if r.outcome == UpdateOutcome::Abort => {
            warn!(job = job_id, "GitLab aborted the job before it started");
            None
        }
        Ok(r) => Some(r.cancel_requested),
        Err(err) => {
            warn!(job = job_id, error = %err, "could not mark the job as running; continuing");
            Some(false)
        }
    }
}

/// Turns GitLab's cancel and abort requests, as the trace sender receives them, into the job's cancel tokens.
fn forward_control(mut control_rx: mpsc::Receiver<JobControl>, cancel: JobCancel) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = control_rx.recv().await {
            match msg {
                JobControl::CancelRequested => cancel.graceful.cancel(),
                JobControl::Abort => cancel.abort.cancel(),
            }
        }
    })
}

fn log_final_update(job_id: i64, short: &str, outcome: &JobOutcome, result: Result<FinalReport, ApiError>) {
    match (outcome, result) {
        (_, Err(err)) => warn!(job = job_id, error = %err, "final job update failed"),
        (_, Ok(FinalReport::Aborted)) => warn!(
            job = job_id,
            runner = %short,
            "GitLab had already stopped the job (canceled or failed on its side); its final state was not recorded"
        ),
        (JobOutcome::Success, Ok(FinalReport::Accepted)) => {
            info!(job = job_id, runner = %short, "Job succeeded; GitLab accepted the final update");
        }
        (JobOutcome::Failed { message, .. }, Ok(FinalReport::Accepted)) => {
            info!(job = job_id, runner = %short, reason = %message, "Job failed; GitLab accepted the final update");
        }
    }
}

/// Syncing the spool can still fail after the driver decided; a lost log is never a success.
fn unless_log_lost(outcome: JobOutcome, lost: Option<String>) -> JobOutcome {
    match (outcome, lost) {
        (JobOutcome::Success, Some(reason)) => JobOutcome::Failed {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: reason,
        },
        (outcome, _) => outcome,
    }
}

fn final_state(outcome: &JobOutcome, supported: &[String], interrupted: bool) -> FinalState {
    match outcome {
        JobOutcome::Success => FinalState {
            state: "success".into(),
            failure_reason: None,
            exit_code: None,
            runtime_environment_key: None,
        },
        JobOutcome::Failed {
            reason, exit_code, ..
        } => {
            // A runner shutdown that aborted the job is reported as gitlab-runner reports it ("aborted: terminated",
            // runner_system_failure), whatever stage it hit.
            let reason = if interrupted {
                &FailureReason::RunnerSystemFailure
            } else {
                reason
            };
            FinalState {
                state: "failed".into(),
                failure_reason: Some(reason.for_gitlab(supported).to_string()),
                exit_code: *exit_code,
                runtime_environment_key: None,
            }
        }
    }
}

pub(super) async fn final_without_trace(env: &JobEnv, job_id: i64, token: &str) {
    let req = UpdateJobRequest {
        info: env.info.clone(),
        token: token.to_string(),
        state: "failed".into(),
        failure_reason: Some("runner_system_failure".into()),
        ..Default::default()
    };
    if let Err(err) = env.client.update_job(job_id, token, &req).await {
        warn!(job = job_id, error = %err, "final job update failed");
    }
}

/// What a started job keeps until its final update is sent.
type Held = (Box<dyn Executor>, Slot, stale::JobRecord);

/// Takes a slot, builds the executor for the runner's kind and runs the plan; `Err` when there is no executor.
#[allow(clippy::too_many_arguments)]
async fn start(
    env: &JobEnv,
    job: &JobResponse,
    job_id: i64,
    token: &str,
    plan: &JobPlan,
    trace: &TraceWriter,
    cancel: &JobCancel,
    session: Option<&dyn TerminalSession>,
    slot: Option<Slot>,
) -> Result<(JobOutcome, Held), String> {
    let kind = env.runner.executor_kind();
    let slot = slot.unwrap_or_else(|| env.slots.acquire(env.runner.token.expose(), plan.project_id));
    let ctx = runner_context(env, slot.concurrent_id, slot.project_slot);
    // Shell jobs: every process they start is tracked so none outlives the job; the record lets the next start
    // finish the job if this process is killed.
    let procs =
        (kind != ExecutorKind::Docker).then(|| stale::job_processes(&env.runner, slot.concurrent_id, job_id));
    let setup = ExecutorSetup {
        ctx: &ctx,
        docker: env.runner.docker.clone().unwrap_or_default(),
        background_cleanup: true,
        user: env.user.clone(),
        processes: procs.clone(),
        posix_sh: env.runner.shell.as_deref() == Some("sh"),
        login_shell: true,
        custom: env.runner.custom.clone(),
        job_response: (kind == ExecutorKind::Custom)
            .then(|| serde_json::to_vec(job).ok())
            .flatten(),
    };
    let mut executor = executor_for(&kind, setup).map_err(|e| e.to_string())?;
    let leftovers = stale::Leftovers {
        procs: procs.as_ref(),
        // A custom driver's files live where its config_exec says; its cleanup_exec removes them.
        tmp_dir: procs
            .as_ref()
            .filter(|_| kind != ExecutorKind::Custom)
            .map(|_| stale::tmp_dir(plan, &ctx)),
        user: env.user.clone(),
    };
    let record = stale::JobRecord::write(&env.state_dir, &env.runner, job_id, token, leftovers);
    let artifact = env.runner.artifact.clone().unwrap_or_default();
    let timeouts = crate::hooks::ArtifactTimeouts {
        upload: artifact
            .upload_timeout
            .is_some()
            .then(|| artifact.upload_timeout()),
        // Upstream's default (10 min) applies without the section too.
        response_header: Some(artifact.response_header_timeout()),
    };
    let hooks = RunnerHooks::for_gitlab_with(env.client.clone(), job_id, token, &ctx, timeouts)
        .with_metrics(Arc::clone(&env.metrics))
        .with_remote_cache(
            remote_setup(&env.runner)
                .await
                .prepared(!plan.caches.is_empty())
                .await,
        );
    let outcome = oxrunner_core::run_job_with_session(
        plan,
        &ctx,
        executor.as_mut(),
        &hooks,
        trace,
        cancel.clone(),
        session,
    )
    .await;
    Ok((outcome, (executor, slot, record)))
}

fn is_docker(env: &JobEnv) -> bool {
    env.runner.executor_kind() == ExecutorKind::Docker
}

fn is_custom(env: &JobEnv) -> bool {
    env.runner.executor_kind() == ExecutorKind::Custom
}

fn runner_context(env: &JobEnv, concurrent_id: usize, project_slot: usize) -> RunnerContext {
    let r = &env.runner;
    let docker = is_docker(env);
    // Docker: builds_dir is a path in the job container (gitlab-runner's `/builds`), caches live in the
    // runner's store. Shell: gitlab-runner's `builds` and `cache`, relative to the working directory.
    // Custom: gitlab-runner has no default builds_dir; config_exec must print one if config.toml has none.
    let (builds_default, cache_dir) = if docker {
        ("/builds", env.state_dir.join("cache"))
    } else if is_custom(env) {
        (
            "",
            PathBuf::from(
                r.cache_dir
                    .clone()
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| "cache".into()),
            ),
        )
    } else {
        (
            "builds",
            PathBuf::from(
                r.cache_dir
                    .clone()
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| "cache".into()),
            ),
        )
    };
    RunnerContext {
        runner_name: r.name.clone(),
        short_token: r.short_token(),
        system_id: env.system_id.clone(),
        runner_id: r.id,
        executor: r.executor_kind().to_string(),
        builds_dir: PathBuf::from(
            r.builds_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| builds_default.into()),
        ),
        cache_dir,
        concurrent_id,
        concurrent_project_id: project_slot,
        // Each Docker job has its own build volume, so concurrent jobs never share a path (gitlab-runner's
        // non-shared layout `<builds_dir>/<namespace>/<project>`).
        // Custom: not shared unless config_exec says `builds_dir_is_shared` (gitlab-runner's default).
        shared_builds_dir: !docker && !is_custom(env),
        environment: r.environment.clone(),
        pre_build_script: r.pre_build_script.clone(),
        post_build_script: r.post_build_script.clone(),
        pre_get_sources_script: r.pre_get_sources_script.clone(),
        post_get_sources_script: r.post_get_sources_script.clone(),
        output_limit: r.output_limit_bytes(),
        version: version::reported_version(),
        revision: version::reported_revision(),
        user: if docker || is_custom(env) {
            None
        } else {
            env.user.clone()
        },
        debug_trace_disabled: debug_trace_disabled(r),
        clone_url: r.clone_url.clone(),
        gitlab_url: r.url.clone(),
        // gitlab-runner's per-executor default (`DefaultCustomBuildsDirEnabled`): on for docker, off otherwise.
        custom_build_dir: r
            .custom_build_dir
            .as_ref()
            .and_then(|c| c.enabled)
            .unwrap_or(docker),
        // gitlab-runner's executor defaults: on for docker (where git runs runner-side here, which ignores it).
        safe_directory_checkout: r.safe_directory_checkout.unwrap_or(docker),
        clean_git_config: r.clean_git_config,
        prepare_timeout: r.prepare_timeout(),
        get_sources_timeout: r.get_sources_timeout(),
        // Checkouts for executors with remote files, kept between jobs so `fetch` is incremental.
        runner_builds_dir: env.state_dir.join("builds"),
    }
}

fn debug_trace_disabled(r: &RunnerConfig) -> bool {
    r.debug_trace_disabled.unwrap_or(false)
}

/// The runner's remote cache, set up off the async workers: a GCS store reads its credentials file and parses
/// its RSA key, which is file I/O and CPU work the job's other tasks must not wait behind.
async fn remote_setup(runner: &oxrunner_config::RunnerConfig) -> crate::hooks::RemoteSetup {
    let (cache, token) = (runner.cache.clone(), runner.short_token());
    tokio::task::spawn_blocking(move || crate::hooks::RemoteSetup::from_config(cache.as_ref(), &token))
        .await
        .unwrap_or_else(|e| {
            crate::hooks::RemoteSetup::Broken(format!("setting up the remote cache failed: {e}"))
        })
}
