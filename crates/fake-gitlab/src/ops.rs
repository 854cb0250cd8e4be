//! Operations a GitLab user or admin would do in the UI, shared by the library API and the
//! admin HTTP API.

use std::path::Path;
use std::time::Instant;

use crate::FakeError;
use crate::git;
use crate::records::{JobRecord, Project, RequestLog, RunnerRecord};
use crate::spec::JobSpec;
use crate::state::{JobState, SharedRef, lock, random_hex, random_token};

pub(crate) fn create_project(shared: &SharedRef, path: &str, from_dir: &Path) -> Result<Project, FakeError> {
    if !git::valid_project_path(path) {
        return Err(FakeError::ProjectPath {
            path: path.to_string(),
        });
    }
    let id = {
        let mut inner = lock(&shared.inner);
        if inner.projects.iter().any(|p| p.path == path) {
            return Err(FakeError::ProjectExists {
                path: path.to_string(),
            });
        }
        let id = inner.next_project_id;
        inner.next_project_id += 1;
        id
    };
    let (git_dir, sha) = git::create_bare_repo(shared.repos.path(), path, from_dir)?;
    let project = Project {
        id,
        path: path.to_string(),
        sha,
        git_dir,
    };
    lock(&shared.inner).projects.push(project.clone());
    Ok(project)
}

/// A new commit on `main` of an existing project, like a push.
pub(crate) fn push_commit(
    shared: &SharedRef,
    project_id: i64,
    from_dir: &Path,
    msg: &str,
) -> Result<String, FakeError> {
    let git_dir = lock(&shared.inner)
        .projects
        .iter()
        .find(|p| p.id == project_id)
        .map(|p| p.git_dir.clone())
        .ok_or(FakeError::UnknownProject { id: project_id })?;
    let (_, sha) = git::commit_tree(&git_dir, from_dir, msg)?;
    let mut inner = lock(&shared.inner);
    if let Some(p) = inner.projects.iter_mut().find(|p| p.id == project_id) {
        p.sha = sha.clone();
    }
    Ok(sha)
}

pub(crate) fn enqueue_job(shared: &SharedRef, spec: JobSpec) -> i64 {
    let mut inner = lock(&shared.inner);
    let id = inner.next_job_id;
    inner.next_job_id += 1;
    let pipeline_id = spec
        .pipeline
        .or_else(|| {
            spec.dependencies
                .first()
                .and_then(|d| inner.jobs.get(d))
                .map(|j| j.record.pipeline_id)
        })
        .unwrap_or_else(|| {
            let p = inner.next_pipeline_id;
            inner.next_pipeline_id += 1;
            p
        });
    inner.next_pipeline_id = inner.next_pipeline_id.max(pipeline_id + 1);
    // GitLab keeps a persistent ref per pipeline so that jobs can fetch it after pushes.
    let project = spec
        .project
        .and_then(|pid| inner.projects.iter().find(|p| p.id == pid).cloned());
    if let Some(project) = &project {
        let refname = format!("refs/pipelines/{pipeline_id}");
        if let Err(e) = git::run_git(&project.git_dir, &["update-ref", &refname, &project.sha]) {
            tracing::warn!(error = %e, "cannot create the pipeline ref");
        }
    }
    let record = JobRecord {
        id,
        name: spec.name.clone(),
        project_id: spec.project,
        pipeline_id,
        status: "pending".to_string(),
        failure_reason: None,
        exit_code: None,
        runtime_environment_key: None,
        token: format!("glcbt-{}", random_token(20)),
        runner_id: None,
        trace: Vec::new(),
        updates: Vec::new(),
        artifacts: Vec::new(),
        checksum_ok: None,
        debug_trace: false,
        payload: None,
        session: None,
        tags: spec.tags.clone(),
    };
    let tags = spec.tags.clone();
    inner.jobs.insert(
        id,
        JobState {
            record,
            spec,
            runner_features: None,
            live_chunks: false,
            pending_state_at: None,
            download_secret: random_hex(40),
        },
    );
    inner.tick_runners_for(&tags);
    drop(inner);
    shared.queue_changed.notify_waiters();
    shared.job_changed.notify_waiters();
    id
}

pub(crate) fn job(shared: &SharedRef, id: i64) -> Option<JobRecord> {
    lock(&shared.inner).jobs.get(&id).map(|j| j.record.clone())
}

pub(crate) fn cancel_job(shared: &SharedRef, id: i64) {
    let mut inner = lock(&shared.inner);
    let Some(job) = inner.jobs.get(&id) else {
        return;
    };
    // The features of the request that picked the job, else the runner's latest info.
    let graceful = match &job.runner_features {
        Some(f) => f.get("cancel_gracefully").and_then(|v| v.as_bool()) == Some(true),
        None => job
            .record
            .runner_id
            .and_then(|rid| inner.runners.iter().find(|r| r.id == rid))
            .is_some_and(|r| r.feature("cancel_gracefully")),
    };
    let next = match job.record.status.as_str() {
        "pending" => "canceled",
        "running" if graceful => "canceling",
        "running" | "canceling" => "canceled",
        _ => return,
    };
    inner.set_status(id, next);
    drop(inner);
    shared.job_changed.notify_waiters();
}

pub(crate) fn create_runner(
    shared: &SharedRef,
    description: &str,
    tags: Vec<String>,
    run_untagged: bool,
) -> RunnerRecord {
    let mut record = RunnerRecord {
        id: 0,
        token: String::new(),
        description: description.to_string(),
        tags,
        run_untagged,
        locked: false,
        paused: false,
        access_level: "not_protected".to_string(),
        maximum_timeout: None,
        maintenance_note: None,
        managers: Vec::new(),
        info: None,
        created_in_ui: true,
        token_expires_at: None,
        expires: None,
    };
    crate::api::runners::issue_token(&mut record, shared.opts.runner_token_expires_in);
    lock(&shared.inner).add_runner(record)
}

pub(crate) fn runners(shared: &SharedRef) -> Vec<RunnerRecord> {
    lock(&shared.inner).runners.clone()
}

pub(crate) fn requests(shared: &SharedRef) -> Vec<RequestLog> {
    lock(&shared.inner).requests.clone()
}

pub(crate) async fn wait_job_finished(
    shared: &SharedRef,
    id: i64,
    timeout: std::time::Duration,
) -> Option<JobRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let notified = shared.job_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = job(shared, id)?;
        if job.is_finished() {
            return Some(job);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        if tokio::time::timeout(left, notified).await.is_err() {
            return None;
        }
    }
}
