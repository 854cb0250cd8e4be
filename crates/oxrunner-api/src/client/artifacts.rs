//! Artifact upload and download (§1.11, §1.12).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::Client;
use super::header_wait::HeaderWait;
use super::transport::{JOB_TOKEN, backoff, error_message, header_str, status_error};
use crate::error::ApiError;
use crate::outcome::ArtifactUpload;
use crate::redact::redact_url;

/// gitlab-runner's uploader gives up after 3 tries, or 6 when the server says 503.
const UPLOAD_TRIES: u32 = 3;
const UPLOAD_TRIES_UNAVAILABLE: u32 = 6;
/// A 307 chain longer than this is a loop, not a migration.
const MAX_REDIRECTS: u32 = 5;
/// Downloads: the first try plus two retries, one second apart.
const DOWNLOAD_TRIES: u32 = 3;
const DOWNLOAD_RETRY_WAIT: Duration = Duration::from_secs(1);

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApiError + use<> {
    let path = path.to_path_buf();
    move |source| ApiError::Io { action, path, source }
}

impl Client {
    /// Stream `file` to `POST /jobs/:id/artifacts` as the multipart field `file`, with format, type
    /// and expiry as query parameters. Follows a 307 by moving to the redirect's host, retries
    /// failures like gitlab-runner's uploader, and maps 413 to [`ApiError::TooLarge`].
    pub async fn upload_artifacts(
        &self,
        job_id: i64,
        job_token: &str,
        file: &Path,
        opts: &ArtifactUpload,
    ) -> Result<(), ApiError> {
        let size = tokio::fs::metadata(file)
            .await
            .map_err(io_err("cannot read artifact archive", file))?
            .len();
        let mut base = self.inner.base.clone();
        let mut tries = 0u32;
        let mut redirects = 0u32;
        let wait = HeaderWait::new(opts.response_header_timeout);
        loop {
            tries += 1;
            let url = upload_url(&base, job_id, opts)?;
            let shown = redact_url(url.as_str());
            let send = self.send_transfer(&url, |http| {
                let url = url.clone();
                let path = file.to_path_buf();
                let filename = opts.filename.clone();
                let token = job_token.to_string();
                let timeout = opts.timeout;
                let body_end = wait.attempt();
                async move {
                    // Open per attempt: a retry must stream the archive from the start.
                    let f = tokio::fs::File::open(&path)
                        .await
                        .map_err(io_err("cannot open artifact archive", &path))?;
                    let body =
                        reqwest::Body::wrap_stream(body_end.wrap(tokio_util::io::ReaderStream::new(f)));
                    let part = reqwest::multipart::Part::stream(body)
                        .file_name(filename)
                        .mime_str("application/octet-stream")
                        .map_err(|e| ApiError::ClientSetup {
                            detail: e.to_string(),
                        })?;
                    let form = reqwest::multipart::Form::new().part("file", part);
                    let req = http.post(url).header(JOB_TOKEN, token).multipart(form);
                    Ok(match timeout {
                        Some(t) => req.timeout(t),
                        None => req,
                    })
                }
            });
            let sent = wait.bound(&shown, send).await;
            let (retryable, err) = match sent {
                Ok(resp) => match resp.status().as_u16() {
                    201 => return Ok(()),
                    307 => {
                        redirects += 1;
                        let location = header_str(resp.headers(), "Location").unwrap_or_default();
                        match (redirects <= MAX_REDIRECTS, origin_base(&url, &location)) {
                            (true, Some(new_base)) => {
                                tracing::info!(
                                    job_id,
                                    to = %redact_url(new_base.as_str()),
                                    "artifact upload redirected"
                                );
                                base = new_base;
                                tries -= 1;
                                continue;
                            }
                            _ => {
                                return Err(ApiError::Status {
                                    url_redacted: shown,
                                    status: 307,
                                    message: format!(
                                        "unusable or looping redirect to {}",
                                        redact_url(&location)
                                    ),
                                });
                            }
                        }
                    }
                    413 => return Err(ApiError::TooLarge { size }),
                    401 | 403 => return Err(status_error(resp, &shown).await),
                    503 => (tries < UPLOAD_TRIES_UNAVAILABLE, status_error(resp, &shown).await),
                    _ => (tries < UPLOAD_TRIES, status_error(resp, &shown).await),
                },
                Err(e @ (ApiError::Tls { .. } | ApiError::Io { .. } | ApiError::ClientSetup { .. })) => {
                    return Err(e);
                }
                Err(e) => (tries < UPLOAD_TRIES, e),
            };
            if !retryable {
                return Err(err);
            }
            let wait = backoff(tries, Duration::from_secs(1), Duration::from_secs(5));
            tracing::warn!(job_id, error = %err, try_no = tries, "artifact upload failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Download `GET /jobs/:id/artifacts` into `dest` (written to a temporary file beside it and
    /// renamed, so `dest` is either complete or untouched). With `direct_download` the first try
    /// asks GitLab for an object-storage redirect, which is followed without the job token.
    pub async fn download_artifacts(
        &self,
        job_id: i64,
        token: &str,
        dest: &Path,
        direct_download: bool,
    ) -> Result<(), ApiError> {
        let mut last_err = None;
        for attempt in 1..=DOWNLOAD_TRIES {
            match self
                .download_once(job_id, token, dest, direct_download && attempt == 1)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e @ (ApiError::NotFound | ApiError::Forbidden { .. } | ApiError::Tls { .. })) => {
                    return Err(e);
                }
                Err(e @ ApiError::Io { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(job_id, attempt, error = %e, "artifact download failed");
                    last_err = Some(e);
                }
            }
            if attempt < DOWNLOAD_TRIES {
                tokio::time::sleep(DOWNLOAD_RETRY_WAIT).await;
            }
        }
        Err(last_err.unwrap_or(ApiError::NotFound))
    }

    async fn download_once(
        &self,
        job_id: i64,
        token: &str,
        dest: &Path,
        direct: bool,
    ) -> Result<(), ApiError> {
        let (resp, shown) = match self.artifact_answer(job_id, token, direct).await? {
            Answer::Body(resp, shown) => (resp, shown),
            Answer::Redirect(target, _) => {
                // Object storage authenticates with the signed URL; the job token must not leak there.
                let next = self
                    .send_transfer(&target, |http| {
                        let b = http.get(target.clone());
                        async move { Ok(b) }
                    })
                    .await?;
                (next, redact_url(target.as_str()))
            }
        };
        save_answer(resp, dest, shown).await
    }

    /// One `direct_download` request for job `job_id`'s archive that does not follow GitLab's redirect: the
    /// object-storage URL comes back for the caller to fetch (gitlab-runner's parallel artifact download), and
    /// an archive GitLab serves itself is written to `dest` as [`download_artifacts`](Self::download_artifacts)
    /// does. One try: the caller falls back to `download_artifacts`, which retries.
    pub async fn download_artifacts_or_redirect(
        &self,
        job_id: i64,
        token: &str,
        dest: &Path,
    ) -> Result<DirectDownload, ApiError> {
        match self.artifact_answer(job_id, token, true).await? {
            Answer::Body(resp, shown) => {
                save_answer(resp, dest, shown).await?;
                Ok(DirectDownload::Written)
            }
            // gitlab-runner takes only these two as a hand-over to object storage; the caller falls back to the
            // ordinary download for any other redirect.
            Answer::Redirect(target, 302 | 307) => Ok(DirectDownload::Redirect(target)),
            Answer::Redirect(target, status) => Err(ApiError::Status {
                url_redacted: redact_url(target.as_str()),
                status,
                message: "a redirect other than 302 or 307 is not a direct download".to_string(),
            }),
        }
    }

    /// GitLab's answer to `GET /jobs/:id/artifacts`, a redirect resolved against the request's URL.
    async fn artifact_answer(&self, job_id: i64, token: &str, direct: bool) -> Result<Answer, ApiError> {
        let mut url = self.endpoint(&format!("jobs/{job_id}/artifacts"))?;
        if direct {
            url.query_pairs_mut().append_pair("direct_download", "true");
        }
        let resp = self
            .send_transfer(&url, |http| {
                let b = http.get(url.clone()).header(JOB_TOKEN, token);
                async move { Ok(b) }
            })
            .await?;
        match resp.status().as_u16() {
            status @ (301 | 302 | 303 | 307 | 308) => {
                let location = header_str(resp.headers(), "Location").unwrap_or_default();
                let target = url.join(&location).map_err(|e| ApiError::Status {
                    url_redacted: redact_url(url.as_str()),
                    status: resp.status().as_u16(),
                    message: format!("bad redirect location {}: {e}", redact_url(&location)),
                })?;
                Ok(Answer::Redirect(target, status))
            }
            _ => Ok(Answer::Body(resp, redact_url(url.as_str()))),
        }
    }
}

/// What a `direct_download` request without following the redirect led to.
#[derive(Debug)]
pub enum DirectDownload {
    /// GitLab sent the archive itself; it is in place at the destination.
    Written,
    /// GitLab redirected to this (signed) object-storage URL; nothing was fetched from it yet.
    Redirect(url::Url),
}

enum Answer {
    Body(reqwest::Response, String),
    Redirect(url::Url, u16),
}

async fn save_answer(resp: reqwest::Response, dest: &Path, shown: String) -> Result<(), ApiError> {
    match resp.status().as_u16() {
        200 => write_atomically(resp, dest, &shown).await,
        404 => Err(ApiError::NotFound),
        401 | 403 => Err(status_error(resp, &shown).await),
        status => Err(ApiError::Status {
            url_redacted: shown,
            status,
            message: error_message(resp).await,
        }),
    }
}

/// `<scheme>://<host>[:port]/api/v4/` of a redirect target, as gitlab-runner re-bases uploads.
fn origin_base(current: &url::Url, location: &str) -> Option<url::Url> {
    let target = current.join(location).ok()?;
    if target.scheme() != "http" && target.scheme() != "https" {
        return None;
    }
    let mut base = target;
    base.set_query(None);
    base.set_fragment(None);
    base.set_path("/api/v4/");
    Some(base)
}

fn upload_url(base: &url::Url, job_id: i64, opts: &ArtifactUpload) -> Result<url::Url, ApiError> {
    let mut url = base
        .join(&format!("jobs/{job_id}/artifacts"))
        .map_err(|e| ApiError::InvalidUrl {
            url_redacted: redact_url(base.as_str()),
            reason: e.to_string(),
        })?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(expire_in) = opts.expire_in.as_deref().filter(|s| !s.is_empty()) {
            q.append_pair("expire_in", expire_in);
        }
        if !opts.artifact_format.is_empty() {
            q.append_pair("artifact_format", &opts.artifact_format);
        }
        if !opts.artifact_type.is_empty() {
            q.append_pair("artifact_type", &opts.artifact_type);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

async fn write_atomically(resp: reqwest::Response, dest: &Path, shown: &str) -> Result<(), ApiError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifacts".to_string());
    let tmp = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
    let result = stream_to(resp, &tmp, shown).await;
    let result = match result {
        Ok(()) => tokio::fs::rename(&tmp, dest)
            .await
            .map_err(io_err("cannot move download into place at", dest)),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

async fn stream_to(resp: reqwest::Response, tmp: &Path, shown: &str) -> Result<(), ApiError> {
    let mut out = tokio::fs::File::create(tmp)
        .await
        .map_err(io_err("cannot create", tmp))?;
    let mut body = resp
        .bytes_stream()
        .map_err(|e| ApiError::from_reqwest(&e, shown.to_string()))
        .boxed();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)
            .await
            .map_err(io_err("cannot write", tmp))?;
    }
    out.flush().await.map_err(io_err("cannot write", tmp))?;
    out.sync_all().await.map_err(io_err("cannot sync", tmp))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_rebases_to_origin() {
        let cur = url::Url::parse("https://gitlab.example.com/sub/api/v4/jobs/1/artifacts").ok();
        let got = cur
            .as_ref()
            .and_then(|c| origin_base(c, "https://new.example.com:8443/x/y?z=1"))
            .map(|u| u.to_string());
        assert_eq!(got.as_deref(), Some("https://new.example.com:8443/api/v4/"));
    }

    #[test]
    fn upload_query_parameters() {
        let base = url::Url::parse("http://h/api/v4/").ok();
        let opts = ArtifactUpload {
            filename: "a.zip".into(),
            artifact_format: "zip".into(),
            artifact_type: "archive".into(),
            expire_in: Some("7 days".into()),
            timeout: None,
            response_header_timeout: None,
        };
        let got = base
            .and_then(|b| upload_url(&b, 5, &opts).ok())
            .map(|u| u.to_string());
        assert_eq!(
            got.as_deref(),
            Some(
                "http://h/api/v4/jobs/5/artifacts?expire_in=7+days&artifact_format=zip&artifact_type=archive"
            )
        );
    }
}
