//! Artifact upload/download, and a minimal object storage for `direct_download` redirects.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::jobs::{authenticate_job, job_token};
use crate::http::{bad_status, header_str, message, param_error, status_text};
use crate::records::StoredArtifact;
use crate::state::{SharedRef, is_processing, lock};

pub(crate) async fn upload(
    State(shared): State<SharedRef>,
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let token = query
        .get("token")
        .map(String::as_str)
        .unwrap_or_else(|| job_token(&headers, None))
        .to_string();
    {
        let mut inner = lock(&shared.inner);
        if let Err(resp) = authenticate_job(&mut inner, id, &token) {
            return *resp;
        }
    }
    let limit = shared.opts.max_artifact_size;
    let mut params = query.clone();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return message(StatusCode::BAD_REQUEST, Some(&e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let filename = field.file_name().unwrap_or("artifacts.zip").to_string();
            let mut data = Vec::new();
            let mut field = field;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        data.extend_from_slice(&chunk);
                        if limit.is_some_and(|max| data.len() as u64 > max) {
                            return message(StatusCode::PAYLOAD_TOO_LARGE, None);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return message(StatusCode::BAD_REQUEST, Some(&e.body_text())),
                }
            }
            file = Some((filename, data));
        } else if let Ok(text) = field.text().await {
            params.entry(name).or_insert(text);
        }
    }
    let Some((filename, bytes)) = file else {
        return param_error("file is missing");
    };
    let artifact_type = params
        .get("artifact_type")
        .cloned()
        .unwrap_or_else(|| "archive".to_string());
    let artifact_format = params
        .get("artifact_format")
        .cloned()
        .unwrap_or_else(|| "zip".to_string());
    let mut inner = lock(&shared.inner);
    // The job may have been canceled while the upload streamed.
    let job = match authenticate_job(&mut inner, id, &token) {
        Ok(job) => job,
        Err(resp) => return *resp,
    };
    job.record.artifacts.retain(|a| a.artifact_type != artifact_type);
    job.record.artifacts.push(StoredArtifact {
        filename,
        artifact_type,
        artifact_format,
        expire_in: params.get("expire_in").cloned(),
        size: bytes.len(),
        bytes,
    });
    status_text(StatusCode::CREATED)
}

pub(crate) async fn download(
    State(shared): State<SharedRef>,
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = query
        .get("job_token")
        .map(String::as_str)
        .or_else(|| header_str(&headers, "job-token"))
        .unwrap_or("");
    let inner = lock(&shared.inner);
    // A CI job token authenticates only while its job runs.
    let Some(caller) = inner
        .job_by_token(token)
        .filter(|j| is_processing(&j.record.status))
    else {
        return bad_status(StatusCode::UNAUTHORIZED);
    };
    let Some(job) = inner.jobs.get(&id) else {
        return bad_status(StatusCode::FORBIDDEN);
    };
    if caller.record.project_id != job.record.project_id {
        return bad_status(StatusCode::FORBIDDEN);
    }
    let Some(archive) = job.record.artifacts.iter().find(|a| a.artifact_type == "archive") else {
        return bad_status(StatusCode::NOT_FOUND);
    };
    let direct = query.get("direct_download").map(String::as_str) == Some("true");
    if direct {
        let location = format!(
            "{}/object-storage/artifacts/{id}/{}?X-Amz-Expires=3600&X-Amz-Signature={}",
            shared.object_storage_url, archive.filename, job.download_secret
        );
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    file_response(&archive.filename, archive.bytes.clone())
}

fn file_response(filename: &str, bytes: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut resp = Response::new(Body::from(bytes));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn storage_error(status: StatusCode, code: &str, text: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{text}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Parses `bytes=a-b` / `bytes=a-` (one range, as parallel downloaders send).
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end: usize = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<usize>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

fn ranged_response(filename: &str, bytes: &[u8], range: Option<&str>) -> Response {
    let Some(range) = range else {
        return file_response(filename, bytes.to_vec());
    };
    let Some((start, end)) = parse_range(range, bytes.len()) else {
        let mut resp = storage_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            "The requested range is not satisfiable",
        );
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{}", bytes.len())) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return resp;
    };
    let mut resp = file_response(filename, bytes[start..=end].to_vec());
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let content_range = format!("bytes {start}-{end}/{}", bytes.len());
    if let Ok(v) = header::HeaderValue::from_str(&content_range) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

pub(crate) async fn object_storage(
    State(shared): State<SharedRef>,
    Path((id, filename)): Path<(i64, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ignore_range = lock(&shared.faults).config.object_storage_ignores_range;
    let range = header_str(&headers, "range").filter(|_| !ignore_range);
    let inner = lock(&shared.inner);
    let Some(job) = inner.jobs.get(&id) else {
        return storage_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    if query.get("X-Amz-Signature") != Some(&job.download_secret) {
        return storage_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    match job
        .record
        .artifacts
        .iter()
        .find(|a| a.artifact_type == "archive" && a.filename == filename)
    {
        Some(a) => ranged_response(&a.filename, &a.bytes, range),
        None => storage_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    }
}
