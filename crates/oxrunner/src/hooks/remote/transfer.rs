//! Moving a cache archive to and from an object store through pre-signed URLs, runner-side: streamed from and to
//! files (memory stays flat whatever the archive's size), retried with backoff on network errors, 5xx, 408, 429
//! and S3's `RequestTimeout`, waiting as long as a `Retry-After` asks (up to a limit). A pre-signed
//! URL's query is its signature, so only the URL without it ever reaches a message.

use std::path::Path;
use std::time::Duration;

use super::s3::Presigned;

/// As gitlab-runner's cache helpers, three attempts; the waits double from 1 s, each ± 25 % so runners that
/// failed together do not retry together.
const ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait a store's `Retry-After` may ask for; a job should not hang on it.
const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(30);
/// How long the `Last-Modified` question may take before the restore goes on without the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// An error answer's body is read only this far (it is XML naming the problem, never needed whole).
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// The URL as it may be shown: no query (the signature and credential), no user info.
pub(crate) fn clean_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// What a download found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    Found {
        bytes: u64,
    },
    /// The object does not exist: a cache miss.
    Missing,
}

pub(super) struct Failure {
    pub(super) message: String,
    pub(super) retry: bool,
    /// How long the store asked to wait (`Retry-After`), instead of the backoff.
    pub(super) retry_after: Option<Duration>,
}

pub(super) fn network(err: &reqwest::Error, shown: &str) -> Failure {
    let err = reqwest_message(err);
    Failure {
        message: format!("request to {shown} failed: {err}"),
        retry: true,
        retry_after: None,
    }
}

/// reqwest's message with its URL (signature included) removed, and the cause chain that names the real problem
/// (connection refused, timed out).
fn reqwest_message(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() {
        if err.is_timeout() {
            "timed out".to_owned()
        } else {
            "connection failed".to_owned()
        }
    } else {
        text
    }
}

/// An S3 error answer: its status, and the `<Code>`/`<Message>` of the XML body when there is one.
pub(super) async fn status_failure(resp: reqwest::Response, shown: &str, store: &str) -> Failure {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(RETRY_AFTER_LIMIT));
    let body = bounded_body(resp).await;
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].trim().to_owned())
    };
    let detail = match (field("Code"), field("Message")) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        _ => String::new(),
    };
    let code = field("Code");
    let wrong_region = matches!(
        code.as_deref(),
        Some("AuthorizationQueryParametersError" | "AuthorizationHeaderMalformed")
    );
    let hint = if status == reqwest::StatusCode::BAD_REQUEST && wrong_region {
        "\nhint: the request was signed for another region than the bucket's; set [runners.cache.s3] \
         BucketLocation to the bucket's region (e.g. \"eu-central-1\")"
    } else if status == reqwest::StatusCode::FORBIDDEN && store.starts_with(super::gcs::DESCRIBE_PREFIX) {
        super::gcs::FORBIDDEN_HINT
    } else if status == reqwest::StatusCode::FORBIDDEN {
        super::azure::refused_hint(store)
    } else {
        ""
    };
    Failure {
        message: format!("{store}: {shown} answered {status}{detail}{hint}"),
        retry: retryable(status, code.as_deref()),
        retry_after,
    }
}

/// 5xx, and the answers that say "too slow" or "too many": 408, 429, and S3's `400 RequestTimeout` (the store
/// gave up waiting for the body).
fn retryable(status: reqwest::StatusCode, code: Option<&str>) -> bool {
    use reqwest::StatusCode as S;
    status.is_server_error()
        || status == S::REQUEST_TIMEOUT
        || status == S::TOO_MANY_REQUESTS
        || (status == S::BAD_REQUEST && code == Some("RequestTimeout"))
}

/// The wait before attempt `tries + 1`: `FIRST_WAIT` doubled per attempt so far, ± 25 %.
fn backoff(tries: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = FIRST_WAIT.saturating_mul(1 << tries.saturating_sub(1).min(8));
    // A fresh `RandomState` is randomly keyed: enough spread for jitter, no random-number crate needed.
    let noise = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.75 + (noise % 1001) as f64 / 2000.0;
    base.mul_f64(factor)
}

pub(super) async fn bounded_body(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(ERROR_BODY_LIMIT);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `attempt` up to [`ATTEMPTS`] times while it fails in a way another try may fix; `warn` hears about
/// each retry.
pub(super) async fn with_retries<T, F, Fut>(mut attempt: F, warn: &(dyn Fn(&str) + Sync)) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(f) if f.retry && tries < ATTEMPTS => {
                warn(&format!("Retrying...  error={}", f.message));
                tokio::time::sleep(f.retry_after.unwrap_or_else(|| backoff(tries))).await;
                tries += 1;
            }
            Err(f) => return Err(f.message),
        }
    }
}

pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client for the cache: {e}"))
}

/// Whether the object exists: a `HEAD` that succeeds. Anything else (404, or the 403 S3 answers without list
/// rights, or no answer) counts as absent, as upstream's archiver decides.
pub(crate) async fn exists(http: &reqwest::Client, signed: &Presigned) -> bool {
    match http.head(signed.url.clone()).send().await {
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    }
}

/// The object's `Last-Modified`, asked the way gitlab-runner's cache-extractor asks before a download: a `GET`
/// of its first byte (a pre-signed download URL is signed for `GET` only). `None` when the store does not say (no
/// object, an error, no or a malformed header); the download then goes ahead and reports what it finds. A store
/// that ignores the range starts sending the whole object: the answer is dropped unread, as is whatever a `206`
/// sends beyond its first chunk. The question gets [`PROBE_TIMEOUT`], not the download's timeout: a store that does
/// not answer is then met by the download, which reports it.
pub(crate) async fn last_modified(
    http: &reqwest::Client,
    signed: &Presigned,
) -> Option<std::time::SystemTime> {
    let mut resp = http
        .get(signed.url.clone())
        .header(reqwest::header::RANGE, "bytes=0-0")
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let date = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)?
        .to_str()
        .ok()?;
    let date = httpdate::parse_http_date(date.trim()).ok()?;
    if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
        // One byte, read so the connection can serve the download next; a longer answer is cut off.
        let _ = resp.chunk().await;
    }
    Some(date)
}

/// `PUT` the file at `src` with the signed headers; the body streams from the file, reopened per attempt.
pub(crate) async fn upload(
    http: &reqwest::Client,
    signed: &Presigned,
    src: &Path,
    store: &str,
    warn: &(dyn Fn(&str) + Sync),
) -> Result<u64, String> {
    let shown = clean_url(signed.url.as_str());
    with_retries(
        || async {
            let f = tokio::fs::File::open(src).await.map_err(|e| Failure {
                message: format!("cannot read {}: {e}", src.display()),
                retry: false,
                retry_after: None,
            })?;
            let len = f.metadata().await.map(|m| m.len()).map_err(|e| Failure {
                message: format!("cannot read {}: {e}", src.display()),
                retry: false,
                retry_after: None,
            })?;
            let mut req = http
                .put(signed.url.clone())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f)));
            // A store that signed a content type (GCS) gets exactly that one; a second would break the signature.
            if !signed
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/zip");
            }
            for (k, v) in &signed.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let resp = req.send().await.map_err(|e| network(&e, &shown))?;
            if resp.status().is_success() {
                Ok(len)
            } else {
                Err(status_failure(resp, &shown, store).await)
            }
        },
        warn,
    )
    .await
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
