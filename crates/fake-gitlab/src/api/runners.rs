//! `/api/v4/runners*`: registration, verification, unregistration, token reset.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::http::{bad_status, body_json, json, message, param_error, str_field};
use crate::records::{RunnerManager, RunnerRecord};
use crate::state::{Inner, SharedRef, lock, random_token};

/// Runner manager id GitLab uses when a runner sends no `system_id`.
pub(crate) const LEGACY_SYSTEM_ID: &str = "<legacy>";

const ACCESS_LEVELS: [&str; 2] = ["not_protected", "ref_protected"];

pub(crate) fn new_runner_token(created_in_ui: bool) -> String {
    // `glrt-` marks runners created in the UI/API, `glrtr-` those registered with a
    // registration token; the runner decides how to unregister by this prefix.
    let prefix = if created_in_ui { "glrt-" } else { "glrtr-" };
    format!("{prefix}{}", random_token(20))
}

/// Sets a fresh token (and its expiry) on a runner.
pub(crate) fn issue_token(runner: &mut RunnerRecord, lifetime: Option<std::time::Duration>) {
    runner.token = new_runner_token(runner.created_in_ui);
    runner.expires = lifetime.map(|d| std::time::SystemTime::now() + d);
    runner.token_expires_at = runner.expires.and_then(|at| {
        let at = time::OffsetDateTime::from(at).replace_nanosecond(0).ok()?;
        at.format(&time::format_description::well_known::Rfc3339).ok()
    });
}

fn token_response(runner: &RunnerRecord, with_id: bool) -> Value {
    let mut v = json!({ "token": runner.token, "token_expires_at": runner.token_expires_at });
    if with_id {
        v["id"] = json!(runner.id);
    }
    v
}

fn parse_tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|t| t.as_str())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Records `info` and the runner manager of a request (GitLab's `ensure_runner_manager`).
pub(crate) fn touch_runner(inner: &mut Inner, token: &str, body: &Value) {
    let Some(runner) = inner.runner_by_token_mut(token) else {
        return;
    };
    let info = body.get("info").cloned();
    if info.is_some() {
        runner.info = info.clone();
    }
    let system_id = str_field(body, "system_id").unwrap_or(LEGACY_SYSTEM_ID);
    match runner.managers.iter_mut().find(|m| m.system_id == system_id) {
        Some(m) => {
            if info.is_some() {
                m.info = info;
            }
        }
        None => runner.managers.push(RunnerManager {
            system_id: system_id.to_string(),
            info,
        }),
    }
}

pub(crate) async fn register(State(shared): State<SharedRef>, body: Bytes) -> Response {
    let body = body_json(&body);
    let Some(token) = str_field(&body, "token") else {
        return param_error("token is missing");
    };
    if str_field(&body, "access_level").is_some_and(|l| !ACCESS_LEVELS.contains(&l)) {
        return param_error("access_level does not have a valid value");
    }
    if shared.opts.registration_disabled {
        return message(StatusCode::GONE, Some("runner registration disallowed"));
    }
    if token != shared.opts.registration_token {
        return bad_status(StatusCode::FORBIDDEN);
    }
    let tags = parse_tags(body.get("tag_list"));
    let run_untagged = body.get("run_untagged").and_then(Value::as_bool).unwrap_or(true);
    let maximum_timeout = body.get("maximum_timeout").and_then(Value::as_u64);
    let mut errors = serde_json::Map::new();
    if matches!(maximum_timeout, Some(t) if t < 600) {
        errors.insert(
            "maximum_timeout".into(),
            json!(["needs to be at least 10 minutes"]),
        );
    }
    if !run_untagged && tags.is_empty() {
        errors.insert(
            "tags_list".into(),
            json!(["can not be empty when runner is not allowed to pick untagged jobs"]),
        );
    }
    if !errors.is_empty() {
        return json(StatusCode::BAD_REQUEST, json!({ "message": errors }));
    }
    let paused = body.get("paused").and_then(Value::as_bool).unwrap_or(false)
        || body.get("active").and_then(Value::as_bool) == Some(false);
    let mut record = RunnerRecord {
        id: 0,
        token: String::new(),
        description: str_field(&body, "description").unwrap_or("").to_string(),
        tags,
        run_untagged,
        locked: body.get("locked").and_then(Value::as_bool).unwrap_or(true),
        paused,
        access_level: str_field(&body, "access_level")
            .unwrap_or("not_protected")
            .to_string(),
        maximum_timeout,
        maintenance_note: str_field(&body, "maintenance_note").map(str::to_string),
        managers: Vec::new(),
        info: body.get("info").cloned(),
        created_in_ui: false,
        token_expires_at: None,
        expires: None,
    };
    issue_token(&mut record, shared.opts.runner_token_expires_in);
    let mut inner = lock(&shared.inner);
    let record = inner.add_runner(record);
    json(StatusCode::CREATED, token_response(&record, true))
}

pub(crate) async fn verify(State(shared): State<SharedRef>, body: Bytes) -> Response {
    let body = body_json(&body);
    let Some(token) = str_field(&body, "token") else {
        return param_error("token is missing");
    };
    let mut inner = lock(&shared.inner);
    let Some(runner) = inner.runner_by_token(token).cloned() else {
        return bad_status(StatusCode::FORBIDDEN);
    };
    touch_runner(&mut inner, token, &body);
    json(StatusCode::OK, token_response(&runner, true))
}

pub(crate) async fn unregister(State(shared): State<SharedRef>, body: Bytes) -> Response {
    let body = body_json(&body);
    let Some(token) = str_field(&body, "token") else {
        return param_error("token is missing");
    };
    let mut inner = lock(&shared.inner);
    if inner.runner_by_token(token).is_none() {
        return bad_status(StatusCode::FORBIDDEN);
    }
    inner.runners.retain(|r| r.token != token);
    inner.queue_values.remove(token);
    no_content()
}

pub(crate) async fn unregister_manager(State(shared): State<SharedRef>, body: Bytes) -> Response {
    let body = body_json(&body);
    let Some(token) = str_field(&body, "token") else {
        return param_error("token is missing");
    };
    let Some(system_id) = str_field(&body, "system_id") else {
        return param_error("system_id is missing");
    };
    let mut inner = lock(&shared.inner);
    let Some(runner) = inner.runner_by_token_mut(token) else {
        return bad_status(StatusCode::FORBIDDEN);
    };
    let before = runner.managers.len();
    runner.managers.retain(|m| m.system_id != system_id);
    if runner.managers.len() == before {
        return message(StatusCode::NOT_FOUND, Some("Runner manager Not Found"));
    }
    no_content()
}

pub(crate) async fn reset_token(
    State(shared): State<SharedRef>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = body_json(&body);
    let Some(token) = str_field(&body, "token") else {
        return param_error("token is missing");
    };
    let mut inner = lock(&shared.inner);
    let Some(runner) = inner.runner_by_token_mut(token) else {
        return bad_status(StatusCode::FORBIDDEN);
    };
    issue_token(runner, shared.opts.runner_token_expires_in);
    let response = token_response(runner, false);
    if let Some(value) = inner.queue_values.remove(token) {
        let new_token = response["token"].as_str().unwrap_or_default().to_string();
        inner.queue_values.insert(new_token, value);
    }
    json(StatusCode::CREATED, response)
}

/// `POST /runners/:id/reset_authentication_token` (GitLab's Runners API, not the Runner API): authenticated by
/// a personal access token in `PRIVATE-TOKEN`, no body. The old token stops working at once, expired or not.
pub(crate) async fn reset_token_by_id(
    State(shared): State<SharedRef>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    // GitLab takes the token in `PRIVATE-TOKEN` or as `Authorization: Bearer`.
    let pat = crate::http::header_str(&headers, "private-token")
        .or_else(|| {
            crate::http::header_str(&headers, "authorization").and_then(|v| v.strip_prefix("Bearer "))
        })
        .unwrap_or("");
    if pat.is_empty() || pat != shared.opts.admin_personal_access_token {
        return message(StatusCode::UNAUTHORIZED, None);
    }
    // GitLab validates `:id` as an integer before looking anything up.
    let Ok(id) = id.parse::<i64>() else {
        return json(StatusCode::BAD_REQUEST, json!({ "error": "id is invalid" }));
    };
    let mut inner = lock(&shared.inner);
    let Some(runner) = inner.runners.iter_mut().find(|r| r.id == id) else {
        return json(
            StatusCode::NOT_FOUND,
            json!({ "message": "404 Runner Not Found" }),
        );
    };
    let old = std::mem::take(&mut runner.token);
    issue_token(runner, shared.opts.runner_token_expires_in);
    let response = token_response(runner, false);
    if let Some(value) = inner.queue_values.remove(&old) {
        let new_token = response["token"].as_str().unwrap_or_default().to_string();
        inner.queue_values.insert(new_token, value);
    }
    json(StatusCode::CREATED, response)
}

/// `GET /runners/router/discovery`: 501 on an instance without a Job Router (KAS), like most; with
/// `FakeOptions::job_router`, the router's address as `server_url`.
pub(crate) async fn router_discovery(State(shared): State<SharedRef>, headers: HeaderMap) -> Response {
    crate::job_router::count_discovery(&shared);
    let token = crate::http::header_str(&headers, "runner-token").unwrap_or("");
    if lock(&shared.inner).runner_by_token(token).is_none() {
        return bad_status(StatusCode::FORBIDDEN);
    }
    let Some(own) = shared.router_url.get() else {
        return message(StatusCode::NOT_IMPLEMENTED, Some("Job Router is not enabled"));
    };
    let server_url = lock(&shared.router)
        .discovery_override
        .clone()
        .unwrap_or_else(|| own.clone());
    crate::http::json(StatusCode::OK, serde_json::json!({ "server_url": server_url }))
}

fn no_content() -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
