//! Response helpers shaped like Grape's, and the request log.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::records::RequestLog;
use crate::state::{Shared, lock};

const SECRET_HEADERS: [&str; 5] = [
    "runner-token",
    "job-token",
    "private-token",
    "authorization",
    "cookie",
];

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Grape's `error!("<code> <reason>[ - detail]")` body.
pub(crate) fn message(status: StatusCode, detail: Option<&str>) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = match detail {
        Some(d) => format!("{} {reason} - {d}", status.as_u16()),
        None => format!("{} {reason}", status.as_u16()),
    };
    json(status, serde_json::json!({ "message": text }))
}

/// Grape's parameter validation failure (`{"error": "token is missing"}`).
pub(crate) fn param_error(text: &str) -> Response {
    json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": text }))
}

/// Plain body with the status code as text, as `put '/:id'` answers.
pub(crate) fn status_text(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        status.as_u16().to_string(),
    )
        .into_response()
}

pub(crate) fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses a JSON body the way Grape does for runner endpoints: anything unparsable is treated
/// as no parameters at all (then "token is missing").
pub(crate) fn body_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.is_object())
        .unwrap_or_else(|| serde_json::json!({}))
}

pub(crate) fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

pub(crate) async fn log_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if path.starts_with("/fake-admin") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = if SECRET_HEADERS.contains(&k.as_str()) {
                "[REDACTED]".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect();
    let mut resp = next.run(req).await;
    // Rails answers every request with a correlation id, which runners log.
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    set_header(&mut resp, "x-request-id", &request_id);
    tracing::debug!(%method, path = %redact_query(&path), status = resp.status().as_u16(), "request");
    lock(&shared.inner).requests.push(RequestLog {
        method,
        path: redact_query(&path),
        headers,
        status: resp.status().as_u16(),
        peer,
        request_id,
    });
    resp
}

/// Object-storage URLs carry a signature in the query; it is as good as a token.
fn redact_query(path: &str) -> String {
    match path.split_once('?') {
        Some((p, q)) if q.contains("X-Amz-Signature") => format!("{p}?[REDACTED]"),
        _ => path.to_string(),
    }
}

pub(crate) fn bad_status(status: StatusCode) -> Response {
    message(status, None)
}
