//! Request plumbing shared by every endpoint: correlation id, the generic retry layer of
//! gitlab-runner's `retry_requester.go`, `X-GitLab-Last-Update` bookkeeping and response helpers.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use super::Client;
use crate::error::ApiError;
use crate::redact::redact_url;

/// Attempts in total, first one included.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A server asking us to wait longer than this is more likely wrong than right; waking up to be
/// refused again is cheaper than hanging a job for hours.
const HEADER_WAIT_MAX: Duration = Duration::from_secs(15 * 60);
/// Cap of the trace update interval the server may ask for.
pub(crate) const UPDATE_INTERVAL_MAX: Duration = Duration::from_secs(15 * 60);
/// Error bodies are only read for their message; bound them so a proxy page cannot eat memory.
const ERROR_BODY_MAX: usize = 64 * 1024;

pub(crate) const RUNNER_TOKEN: &str = "RUNNER-TOKEN";
pub(crate) const JOB_TOKEN: &str = "JOB-TOKEN";

/// The `X-Request-Id` a response answers, kept in its extensions.
#[derive(Clone, Debug)]
pub(crate) struct SentRequestId(pub(crate) String);

/// gitlab-runner's correlation id of a request: the `X-Request-Id` the server answered with, else the one sent.
/// An answer that is not printable ASCII without spaces counts as none: the id goes into a git header line and
/// the job log, where it could not be used, and the sent id still ties the fetch to the request.
pub(crate) fn correlation_id(resp: &reqwest::Response) -> String {
    header_str(resp.headers(), "X-Request-Id")
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
        .or_else(|| resp.extensions().get::<SentRequestId>().map(|s| s.0.clone()))
        .unwrap_or_default()
}

/// Whether `e` is hyper's `Canceled`: the request was dropped before any of it was written.
fn never_sent(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_canceled();
        }
        source = err.source();
    }
    false
}

/// Statuses the retry layer retries.
pub(crate) fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504) || status >= 512
}

impl Client {
    /// Send a request built by `build`, retrying retryable statuses. `build` is called once per
    /// attempt (with a cheap clone of the pooled client) so bodies, including streamed files, are
    /// created fresh each time. After the last
    /// attempt the retryable response is returned as is; transport errors are returned at once.
    pub(crate) async fn send<F, Fut>(&self, url: &url::Url, build: F) -> Result<reqwest::Response, ApiError>
    where
        F: FnMut(reqwest::Client) -> Fut,
        Fut: Future<Output = Result<reqwest::RequestBuilder, ApiError>>,
    {
        self.send_via(&self.http(), url, build).await
    }

    /// [`Client::send`] on the transfer client (no read timeout), for artifact bodies.
    pub(crate) async fn send_transfer<F, Fut>(
        &self,
        url: &url::Url,
        build: F,
    ) -> Result<reqwest::Response, ApiError>
    where
        F: FnMut(reqwest::Client) -> Fut,
        Fut: Future<Output = Result<reqwest::RequestBuilder, ApiError>>,
    {
        self.send_via(&self.transfer(), url, build).await
    }

    async fn send_via<F, Fut>(
        &self,
        http: &reqwest::Client,
        url: &url::Url,
        mut build: F,
    ) -> Result<reqwest::Response, ApiError>
    where
        F: FnMut(reqwest::Client) -> Fut,
        Fut: Future<Output = Result<reqwest::RequestBuilder, ApiError>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let method = std::cell::OnceCell::new();
        let result = loop {
            attempt += 1;
            let request_id = uuid::Uuid::new_v4().simple().to_string();
            let (client, req) = build(http.clone())
                .await?
                .header("X-Request-Id", &request_id)
                .build_split();
            let req = req.map_err(|e| ApiError::from_reqwest(&e, redact_url(url.as_str())))?;
            let _ = method.set(req.method().clone());
            let mut resp = match client.execute(req).await {
                Ok(resp) => resp,
                // The connection failed before the request was written (a TLS 1.3 server's rejection of the
                // client certificate can arrive just then): nothing reached the server, so one more attempt is
                // safe for any method, and it meets the server's real answer.
                Err(e) if never_sent(&e) && attempt < 2 => {
                    tracing::debug!(url = %redact_url(url.as_str()), attempt, "request not sent: connection was not ready; trying again");
                    continue;
                }
                Err(e) => break Err(ApiError::from_reqwest(&e, redact_url(url.as_str()))),
            };
            resp.extensions_mut().insert(SentRequestId(request_id.clone()));
            if let Some(v) = header_str(resp.headers(), "X-GitLab-Last-Update")
                && !v.is_empty()
            {
                self.set_last_update(&v);
            }
            let status = resp.status().as_u16();
            tracing::debug!(
                url = %redact_url(url.as_str()),
                status,
                request_id,
                correlation_id = header_str(resp.headers(), "X-Request-Id").unwrap_or_default(),
                attempt,
                "api response"
            );
            if is_retryable(status) {
                super::retry_signal::note_retryable();
            }
            if !is_retryable(status) || attempt >= MAX_ATTEMPTS {
                break Ok(resp);
            }
            let wait = retry_wait(resp.headers(), attempt);
            tracing::warn!(
                url = %redact_url(url.as_str()),
                status,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying API request"
            );
            drop(resp);
            tokio::time::sleep(wait).await;
        };
        if let (Some(observer), Some(method)) = (self.inner.observer.get(), method.get()) {
            report(
                observer.as_ref(),
                url,
                method,
                attempt,
                started.elapsed(),
                &result,
            );
        }
        result
    }
}

/// Tells the observer about one request: its attempts always, its status when it got an answer.
fn report(
    observer: &dyn crate::RequestObserver,
    url: &url::Url,
    method: &reqwest::Method,
    attempts: u32,
    elapsed: Duration,
    result: &Result<reqwest::Response, ApiError>,
) {
    let lower = method.as_str().to_ascii_lowercase();
    observer.attempts(&crate::observe::normalized_path(url.path()), &lower, attempts);
    if let Ok(resp) = result {
        let endpoint = crate::observe::endpoint_name(method, url.path());
        observer.request(endpoint, &lower, resp.status().as_u16(), elapsed);
    }
}

/// RateLimit-ResetTime (RFC 1123 date) → Retry-After (seconds) → exponential backoff with jitter.
pub(crate) fn retry_wait(headers: &HeaderMap, attempt: u32) -> Duration {
    if let Some(reset) = header_str(headers, "RateLimit-ResetTime")
        && let Ok(at) = httpdate::parse_http_date(&reset)
        && let Ok(d) = at.duration_since(SystemTime::now())
    {
        return d.min(HEADER_WAIT_MAX);
    }
    if let Some(secs) = header_str(headers, "Retry-After").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(secs).min(HEADER_WAIT_MAX);
    }
    backoff(attempt, BACKOFF_MIN, BACKOFF_MAX)
}

/// `min · 2^(attempt-1)` capped at `max`, jittered uniformly into `[min, that]`.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let ceiling = min.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let lo = min.as_millis() as u64;
    let hi = ceiling.as_millis() as u64;
    if hi <= lo {
        return ceiling;
    }
    Duration::from_millis(rand::rng().random_range(lo..=hi))
}

pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// `X-GitLab-Trace-Update-Interval` in seconds, ignoring nonsense and capping at 15 minutes.
pub(crate) fn update_interval(headers: &HeaderMap) -> Option<Duration> {
    let secs = header_str(headers, "X-GitLab-Trace-Update-Interval")?
        .parse::<i64>()
        .ok()?;
    (secs > 0).then(|| Duration::from_secs(secs as u64).min(UPDATE_INTERVAL_MAX))
}

/// Value of `Job-Status`, lower-cased.
pub(crate) fn job_status(headers: &HeaderMap) -> String {
    header_str(headers, "Job-Status")
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// gitlab-runner decodes only when the media type is exactly `application/json`.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    header_str(headers, "Content-Type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Decode a JSON body, naming the failing field path in the error.
pub(crate) async fn decode_json<T: DeserializeOwned>(
    resp: reqwest::Response,
    url_redacted: &str,
) -> Result<T, ApiError> {
    if !is_json(resp.headers()) {
        return Err(ApiError::Decode {
            url_redacted: url_redacted.to_string(),
            detail: format!(
                "expected Content-Type application/json, got {:?}",
                header_str(resp.headers(), "Content-Type").unwrap_or_default()
            ),
        });
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| ApiError::from_reqwest(&e, url_redacted.to_string()))?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(de).map_err(|e| ApiError::Decode {
        url_redacted: url_redacted.to_string(),
        detail: format!("at `{}`: {}", e.path(), e.inner()),
    })
}

/// Read GitLab's `{"message": ...}` (string or field → messages map) or fall back to the body text
/// or the status reason.
pub(crate) async fn error_message(resp: reqwest::Response) -> String {
    let status = resp.status();
    let json = is_json(resp.headers());
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= ERROR_BODY_MAX {
            body.truncate(ERROR_BODY_MAX);
            break;
        }
    }
    let from_json = if json {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").or_else(|| v.get("error")).cloned())
            .map(|m| flatten_message(&m))
    } else {
        None
    };
    let text = from_json.unwrap_or_else(|| {
        let t = String::from_utf8_lossy(&body);
        xml_error(&t).unwrap_or_else(|| t.trim().chars().take(300).collect())
    });
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_string()
    } else {
        text
    }
}

/// Object storage (S3, GCS, Azure) answers `<Error><Code>..</Code><Message>..</Message></Error>`.
fn xml_error(body: &str) -> Option<String> {
    if !body.contains("<Error>") {
        return None;
    }
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].trim().to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

fn flatten_message(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(flatten_message).collect::<Vec<_>>().join(", "),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", flatten_message(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Turn a non-expected status into the matching error.
pub(crate) async fn status_error(resp: reqwest::Response, url_redacted: &str) -> ApiError {
    let status = resp.status().as_u16();
    let message = error_message(resp).await;
    let url_redacted = url_redacted.to_string();
    match status {
        401 | 403 => ApiError::Forbidden {
            url_redacted,
            message,
        },
        404 => ApiError::Status {
            url_redacted,
            status,
            message,
        },
        410 => ApiError::Gone {
            url_redacted,
            message,
        },
        _ => ApiError::Status {
            url_redacted,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 512, 599] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [200, 201, 204, 400, 403, 404, 409, 412, 416, 501, 505, 511] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt, BACKOFF_MIN, BACKOFF_MAX);
            assert!(d >= BACKOFF_MIN && d <= BACKOFF_MAX, "{attempt}: {d:?}");
            let ceiling = BACKOFF_MIN.saturating_mul(2u32.saturating_pow(attempt - 1));
            assert!(d <= ceiling.min(BACKOFF_MAX), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn wait_prefers_headers() {
        let mut h = HeaderMap::new();
        h.insert("Retry-After", HeaderValue::from_static("7"));
        assert_eq!(retry_wait(&h, 1), Duration::from_secs(7));
        let future = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "RateLimit-ResetTime",
            HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap_or(HeaderValue::from_static("")),
        );
        let w = retry_wait(&h, 1);
        assert!(
            w > Duration::from_secs(100) && w <= Duration::from_secs(120),
            "{w:?}"
        );
    }

    #[test]
    fn json_media_type_is_exact() {
        let mut h = HeaderMap::new();
        h.insert(
            "Content-Type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            "Content-Type",
            HeaderValue::from_static("application/json-patch+json"),
        );
        assert!(!is_json(&h));
        h.insert("Content-Type", HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }

    #[test]
    fn object_storage_xml_errors() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
        assert_eq!(
            xml_error(body).as_deref(),
            Some("AccessDenied: Request has expired")
        );
        assert_eq!(xml_error("plain text"), None);
    }

    #[test]
    fn flattens_field_messages() {
        let v: serde_json::Value = serde_json::json!({"runner_projects.base": ["Maximum number of ci registered project runners (3) exceeded"]});
        assert_eq!(
            flatten_message(&v),
            "runner_projects.base: Maximum number of ci registered project runners (3) exceeded"
        );
    }
}
