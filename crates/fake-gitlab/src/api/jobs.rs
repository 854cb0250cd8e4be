//! `/api/v4/jobs/request`, `PUT /api/v4/jobs/:id` and `PATCH /api/v4/jobs/:id/trace`.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::api::runners::touch_runner;
use crate::http::{
    bad_status, body_json, header_str, json, message, param_error, set_header, status_text, str_field,
};
use crate::payload::{self, FAILURE_REASONS, PayloadContext};
use crate::state::{InFlight, Inner, JobState, SharedRef, is_processing, lock};

/// GitLab's default `ci_jobs_trace_size_limit` (100 MiB).
const TRACE_SIZE_LIMIT: usize = 100 * 1024 * 1024;
/// `Ci::UpdateBuildStateService::ACCEPT_TIMEOUT`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(300);

fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn polling_header(resp: &mut Response, enabled: bool) {
    if enabled {
        set_header(resp, "gitlab-ci-builds-polling", "yes");
    }
}

pub(crate) async fn request(State(shared): State<SharedRef>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let long_poll = shared.opts.long_poll;
    let polling = !long_poll.is_zero();
    let is_json = header_str(&headers, "content-type")
        .map(|ct| ct.trim_start().starts_with("application/json"))
        .unwrap_or(false);
    let body = body_json(&body);
    let token = str_field(&body, "token").unwrap_or("").to_string();
    let last_update = str_field(&body, "last_update").unwrap_or("").to_string();

    // Workhorse: hold the request while the runner's queue key still equals `last_update`.
    if polling && is_json && !token.is_empty() && !last_update.is_empty() {
        let deadline = tokio::time::Instant::now() + long_poll;
        let unchanged = |shared: &SharedRef| {
            lock(&shared.inner).queue_values.get(&token).map(String::as_str) == Some(last_update.as_str())
        };
        if unchanged(&shared) {
            loop {
                let notified = shared.queue_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !unchanged(&shared) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    break;
                }
            }
            // Workhorse answers 204 itself both on timeout and on a seen change, without
            // `X-GitLab-Last-Update`: the runner's next request then reaches Rails.
            let mut resp = no_content();
            polling_header(&mut resp, true);
            return resp;
        }
    }

    let mut resp = rails_request(&shared, &headers, &body, &token, &last_update);
    polling_header(&mut resp, polling);
    resp
}

fn rails_request(
    shared: &SharedRef,
    headers: &HeaderMap,
    body: &Value,
    token: &str,
    last_update: &str,
) -> Response {
    if str_field(body, "token").is_none() {
        return param_error("token is missing");
    }
    if header_str(headers, "runner-token").is_some_and(|h| h != token) {
        return bad_status(StatusCode::FORBIDDEN);
    }
    let mut inner = lock(&shared.inner);
    let Some(runner) = inner.runner_by_token(token).cloned() else {
        return bad_status(StatusCode::FORBIDDEN);
    };
    touch_runner(&mut inner, token, body);
    let current = inner.ensure_queue_value(token);
    if !last_update.is_empty() && last_update == current {
        let mut resp = no_content();
        set_header(&mut resp, "x-gitlab-last-update", last_update);
        return resp;
    }
    let picked = if runner.paused {
        None
    } else {
        inner.next_pending_for(&runner)
    };
    let Some(job_id) = picked else {
        let mut resp = no_content();
        set_header(&mut resp, "x-gitlab-last-update", &current);
        return resp;
    };
    let runner = inner.runner_by_token(token).cloned().unwrap_or(runner);
    let mut payload = build_payload(&inner, job_id, &runner, &shared.base_url);
    // GitLab keeps the runner's session (`Ci::BuildRunnerSession`) when it has a URL, and sends the URL back.
    let session = body
        .get("session")
        .filter(|s| {
            s.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty())
        })
        .cloned();
    if let (Some(s), Some(info)) = (
        &session,
        payload.get_mut("runner_info").and_then(Value::as_object_mut),
    ) {
        info.insert("runner_session_url".into(), s["url"].clone());
    }
    inner.set_status(job_id, "running");
    if let Some(job) = inner.jobs.get_mut(&job_id) {
        job.record.session = session;
        job.record.runner_id = Some(runner.id);
        job.record.payload = Some(payload.clone());
        job.runner_features = body.get("info").and_then(|i| i.get("features")).cloned();
    }
    drop(inner);
    shared.job_changed.notify_waiters();
    json(StatusCode::CREATED, payload)
}

fn build_payload(inner: &Inner, job_id: i64, runner: &crate::RunnerRecord, base: &str) -> Value {
    let mut payload = expand_payload(inner, job_id, runner, base);
    let Some(job) = inner.jobs.get(&job_id) else {
        return payload;
    };
    if let Some(obj) = payload.as_object_mut() {
        for (key, value) in &job.spec.payload_fields {
            if key != "id" && key != "token" {
                obj.insert(key.clone(), value.clone());
            }
        }
    }
    payload
}

fn expand_payload(inner: &Inner, job_id: i64, runner: &crate::RunnerRecord, base: &str) -> Value {
    let Some(job) = inner.jobs.get(&job_id) else {
        return Value::Null;
    };
    if let Some(raw) = &job.spec.raw_payload {
        return payload::from_raw(raw, job_id, &job.record.token);
    }
    let project = job
        .record
        .project_id
        .and_then(|pid| inner.projects.iter().find(|p| p.id == pid));
    let dependencies = job
        .spec
        .dependencies
        .iter()
        .filter_map(|dep| inner.jobs.get(dep))
        .map(|dep| {
            let file = dep
                .record
                .artifacts
                .iter()
                .find(|a| a.artifact_type == "archive")
                .map(|a| (a.filename.clone(), a.size));
            (dep.record.id, dep.record.name.clone(), file)
        })
        .collect();
    let sha = project
        .map(|p| p.sha.clone())
        .unwrap_or_else(|| payload::NULL_SHA.to_string());
    let ctx = PayloadContext {
        job_id,
        job_token: &job.record.token,
        pipeline_id: job.record.pipeline_id,
        base_url: base,
        project,
        sha: &sha,
        runner,
        dependencies,
    };
    payload::build(&job.spec, &ctx)
}

/// `authenticate_job!`: 403 for an unknown job or a wrong token (GitLab never answers 404
/// here, so that a runner always stops), 403 + `Job-Status` when the job no longer runs.
pub(crate) fn authenticate_job<'a>(
    inner: &'a mut Inner,
    id: i64,
    token: &str,
) -> Result<&'a mut JobState, Box<Response>> {
    let Some(job) = inner.jobs.get_mut(&id) else {
        return Err(Box::new(bad_status(StatusCode::FORBIDDEN)));
    };
    if token.is_empty() || job.record.token != token {
        return Err(Box::new(bad_status(StatusCode::FORBIDDEN)));
    }
    if !is_processing(&job.record.status) {
        let mut resp = message(StatusCode::FORBIDDEN, Some("Job is not processing on runner"));
        set_header(&mut resp, "job-status", &job.record.status);
        return Err(Box::new(resp));
    }
    Ok(job)
}

pub(crate) fn job_token<'a>(headers: &'a HeaderMap, body: Option<&'a Value>) -> &'a str {
    body.and_then(|b| str_field(b, "token"))
        .or_else(|| header_str(headers, "job-token"))
        .unwrap_or("")
}

fn crc32_hex(data: &[u8]) -> String {
    format!("crc32:{:08x}", crc32fast::hash(data))
}

/// `Gitlab::Ci::Runner::Backoff`: grows with the time since the first final update.
fn backoff_seconds(since: Instant) -> u64 {
    let secs = since.elapsed().as_secs_f64();
    if secs < 1.0 {
        return 1;
    }
    let slot = (secs.log2().floor() as i64 - 1).max(0);
    2u64.saturating_pow(u32::try_from(slot).unwrap_or(6)).clamp(1, 64)
}

pub(crate) async fn update(
    State(shared): State<SharedRef>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = body_json(&body);
    let interval = shared.opts.trace_update_interval;
    let mut inner = lock(&shared.inner);
    let token = job_token(&headers, Some(&body)).to_string();
    let job = match authenticate_job(&mut inner, id, &token) {
        Ok(job) => job,
        Err(resp) => return *resp,
    };
    job.record.updates.push(body.clone());
    let state = str_field(&body, "state").unwrap_or("").to_string();
    let checksum = body
        .get("output")
        .and_then(|o| o.get("checksum"))
        .and_then(Value::as_str)
        .or_else(|| str_field(&body, "checksum"))
        .map(str::to_string);

    let mut backoff = None;
    let final_state = state != "running";
    let accept_available = final_state && checksum.is_some();
    let status = if accept_available && job.live_chunks && !job.record.trace.is_empty() {
        let started = *job.pending_state_at.get_or_insert_with(Instant::now);
        if started.elapsed() > ACCEPT_TIMEOUT {
            finish(job, &state, &body)
        } else {
            // Chunks get persisted in the background; the runner comes back after the backoff.
            job.live_chunks = false;
            backoff = Some(backoff_seconds(started));
            StatusCode::ACCEPTED
        }
    } else {
        if let Some(sum) = &checksum {
            job.record.checksum_ok = Some(*sum == crc32_hex(&job.record.trace));
        }
        finish(job, &state, &body)
    };
    let new_status = job.record.status.clone();
    if new_status != "running" && new_status != "canceling" {
        let target = new_status.clone();
        // `finish` wrote the status directly; route it through set_status for the gauge.
        if let Some(j) = inner.jobs.get_mut(&id) {
            j.record.status = "running".into();
        }
        inner.set_status(id, &target);
    }
    drop(inner);
    shared.job_changed.notify_waiters();

    let mut resp = status_text(status);
    set_header(&mut resp, "job-status", &new_status);
    let interval = backoff.unwrap_or(interval).to_string();
    set_header(&mut resp, "x-gitlab-trace-update-interval", &interval);
    resp
}

/// `update_build_state!`; a job being canceled becomes `canceled` whatever the runner reports.
fn finish(job: &mut JobState, state: &str, body: &Value) -> StatusCode {
    let canceling = job.record.status == "canceling";
    match state {
        "running" => StatusCode::OK,
        "success" | "failed" => {
            if canceling {
                job.record.status = "canceled".into();
            } else if state == "success" {
                job.record.status = "success".into();
            } else {
                job.record.status = "failed".into();
                let reason = str_field(body, "failure_reason").unwrap_or("unknown_failure");
                let reason = if FAILURE_REASONS.contains(&reason) {
                    reason
                } else {
                    "unknown_failure"
                };
                job.record.failure_reason = Some(reason.to_string());
            }
            job.record.exit_code = body.get("exit_code").and_then(Value::as_i64);
            // GitLab keeps the key of a suspended environment with the finished job, for a later job to resume.
            job.record.runtime_environment_key = str_field(body, "runtime_environment_key")
                .filter(|k| !k.is_empty())
                .map(str::to_owned);
            StatusCode::OK
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct TraceQuery {
    #[serde(default)]
    debug_trace: Option<String>,
}

pub(crate) async fn trace(
    State(shared): State<SharedRef>,
    Path(id): Path<i64>,
    Query(query): Query<TraceQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let interval = shared.opts.trace_update_interval.to_string();
    let inject_416 = {
        let mut faults = lock(&shared.faults);
        let p = faults.config.trace_416_probability;
        faults.chance(p)
    };
    let mut inner = lock(&shared.inner);
    let token = job_token(&headers, None).to_string();
    let job = match authenticate_job(&mut inner, id, &token) {
        Ok(job) => job,
        Err(resp) => return *resp,
    };
    let Some(range) = header_str(&headers, "content-range") else {
        return message(StatusCode::BAD_REQUEST, Some("Missing header Content-Range"));
    };
    // Like GitLab, only the start counts: the end is derived from the body length.
    let start: usize = range
        .split('-')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let size = job.record.trace.len();
    if start != size || inject_416 {
        let mut resp = message(StatusCode::RANGE_NOT_SATISFIABLE, None);
        set_header(&mut resp, "range", &format!("0-{size}"));
        return resp;
    }
    if size + body.len() > TRACE_SIZE_LIMIT {
        job.record.status = "running".into();
        job.record.failure_reason = Some("trace_size_exceeded".into());
        inner.set_status(id, "failed");
        drop(inner);
        shared.job_changed.notify_waiters();
        return message(StatusCode::FORBIDDEN, Some("Trace size exceeded"));
    }
    job.record.trace.extend_from_slice(&body);
    // Grape's Boolean coercion: `true`/`1` (any case) enable it; anything else leaves the flag as it was.
    if query
        .debug_trace
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    {
        job.record.debug_trace = true;
    }
    if !body.is_empty() {
        job.live_chunks = true;
    }
    let new_size = job.record.trace.len();
    let status = job.record.status.clone();
    drop(inner);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    set_header(&mut resp, "job-status", &status);
    set_header(&mut resp, "range", &format!("0-{new_size}"));
    set_header(&mut resp, "x-gitlab-trace-update-interval", &interval);
    resp
}
