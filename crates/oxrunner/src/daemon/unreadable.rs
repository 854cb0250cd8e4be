//! A job GitLab assigned but whose payload this runner cannot read. GitLab counts it as running here, so
//! leaving it alone would keep it `running` until GitLab's stuck-job timeout; instead it is failed at once with
//! `runner_system_failure` and one trace line saying what was wrong, as gitlab-runner fails jobs it cannot set up.

use oxrunner_api::UnreadableJob;
use oxrunner_api::trace::{FinalReport, FinalState, TraceSender, TraceSource};
use oxrunner_core::{MaskSet, TraceWriter};
use tracing::{error, info, warn};

use super::job::JobEnv;

/// Reports the job failed. Never panics and never logs the job token.
pub async fn fail(env: JobEnv, job: Box<UnreadableJob>) {
    let runner = env.runner.short_token();
    let UnreadableJob {
        id,
        token,
        error: why,
    } = *job;
    let (Some(job_id), Some(token)) = (id, token) else {
        // Without both there is no way to address the job: GitLab's stuck-job timeout will end it.
        error!(
            runner = %runner,
            has_id = id.is_some(),
            "GitLab assigned a job whose payload could not be read, and it has no usable `id` and `token`, so it \
             cannot be reported failed: {why}\nhint: the job stays `running` in GitLab until its timeout; cancel it \
             there, and check that GitLab and this runner speak the same API version"
        );
        return;
    };
    warn!(job = job_id, runner = %runner, "the job payload from GitLab could not be read; failing the job: {why}");
    let line = format!("Job failed (system failure): the job payload from GitLab could not be read: {why}");
    let masks = MaskSet::new(vec![token.clone()], &[]);
    let (trace, handle) = match TraceWriter::new(&env.spool_dir, masks, env.runner.output_limit_bytes()) {
        Ok(t) => t,
        Err(err) => {
            warn!(job = job_id, error = %err, dir = %env.spool_dir.display(), "cannot create the trace spool");
            super::job::final_without_trace(&env, job_id, &token).await;
            return;
        }
    };
    trace.error(&line);
    let (crc, size) = handle.finish().await;
    let source = TraceSource {
        path: handle.path.clone(),
        committed: handle.committed.clone(),
    };
    let (sender, _control) =
        TraceSender::start(env.client.clone(), job_id, token, source, false, env.info.clone());
    let state = FinalState {
        state: "failed".into(),
        failure_reason: Some("runner_system_failure".into()),
        exit_code: None,
        runtime_environment_key: None,
    };
    match sender.finish(state, crc, size).await {
        Ok(FinalReport::Accepted) => {
            info!(job = job_id, runner = %runner, "Job failed (unreadable payload); GitLab accepted the final update");
        }
        Ok(FinalReport::Aborted) => {
            warn!(job = job_id, runner = %runner, "GitLab had already stopped the job; its final state was not recorded");
        }
        Err(err) => warn!(job = job_id, error = %err, "final job update failed"),
    }
    drop(trace);
    drop(handle);
}
