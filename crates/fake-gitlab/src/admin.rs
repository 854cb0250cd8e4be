//! `/fake-admin/...`: drive a standalone fake over HTTP (the binary's control surface).

use std::path::PathBuf;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::faults::{FaultConfig, FaultHandle};
use crate::http::json;
use crate::ops;
use crate::spec::JobSpec;
use crate::state::SharedRef;

#[derive(Deserialize)]
struct NewProject {
    path: String,
    from_dir: PathBuf,
}

#[derive(Deserialize)]
struct NewRunner {
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "yes")]
    run_untagged: bool,
}

fn yes() -> bool {
    true
}

fn error(status: StatusCode, text: String) -> Response {
    json(status, json!({ "error": text }))
}

async fn create_project(State(shared): State<SharedRef>, Json(req): Json<NewProject>) -> Response {
    let result =
        tokio::task::spawn_blocking(move || ops::create_project(&shared, &req.path, &req.from_dir)).await;
    match result {
        Ok(Ok(project)) => json(StatusCode::CREATED, json!(project)),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn enqueue(State(shared): State<SharedRef>, Json(spec): Json<JobSpec>) -> Response {
    let id = ops::enqueue_job(&shared, spec);
    json(StatusCode::CREATED, json!({ "id": id }))
}

async fn job(State(shared): State<SharedRef>, Path(id): Path<i64>) -> Response {
    match ops::job(&shared, id) {
        Some(job) => {
            let mut v = json!(job);
            v["trace"] = json!(job.trace_text());
            v["trace_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&job.trace));
            json(StatusCode::OK, v)
        }
        None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
    }
}

async fn cancel(State(shared): State<SharedRef>, Path(id): Path<i64>) -> Response {
    ops::cancel_job(&shared, id);
    match ops::job(&shared, id) {
        Some(job) => json(StatusCode::OK, json!({ "id": id, "status": job.status })),
        None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
    }
}

async fn create_runner(State(shared): State<SharedRef>, Json(req): Json<NewRunner>) -> Response {
    let record = ops::create_runner(&shared, &req.description, req.tags, req.run_untagged);
    json(
        StatusCode::CREATED,
        json!({ "id": record.id, "token": record.token }),
    )
}

async fn runners(State(shared): State<SharedRef>) -> Response {
    json(StatusCode::OK, json!(ops::runners(&shared)))
}

async fn set_faults(State(shared): State<SharedRef>, Json(cfg): Json<FaultConfig>) -> Response {
    FaultHandle { shared }.set(cfg);
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(shared): State<SharedRef>) -> Response {
    json(StatusCode::OK, json!(ops::requests(&shared)))
}

pub(crate) fn router() -> Router<SharedRef> {
    Router::new()
        .route("/fake-admin/projects", post(create_project))
        .route("/fake-admin/jobs", post(enqueue))
        .route("/fake-admin/jobs/{id}", get(job))
        .route("/fake-admin/jobs/{id}/cancel", post(cancel))
        .route("/fake-admin/runners", post(create_runner).get(runners))
        .route("/fake-admin/faults", post(set_faults))
        .route("/fake-admin/requests", get(requests))
}
