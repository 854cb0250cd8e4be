//! A large archive up to S3 as a multipart upload: create, parts read from the archive file and sent side by
//! side (each retried on its own, at most parts-in-flight open at once, each streamed from its offset so memory
//! stays flat), then complete. Any failure after create aborts the upload, and so does a cancel that drops the
//! upload midway, so the bucket keeps neither a half object nor the parts sent so far.

use std::path::Path;
use std::time::Duration;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::parts::PartPlan;
use super::s3::{Presigned, S3Store};
use super::transfer::{Failure, bounded_body, clean_url, network, status_failure, with_retries};

/// What one read of a part's body takes from the archive.
const READ_CHUNK: u64 = 256 * 1024;

/// The archive being uploaded, open once: every part reads the same file even if a newer archive replaces the
/// path meanwhile. Shared with Azure's block uploads (`blocks`).
pub(super) struct Source {
    file: Arc<File>,
    pub(super) size: u64,
}

impl Source {
    pub(super) async fn open(src: &Path) -> Result<Source, String> {
        let cannot = |e: std::io::Error| format!("cannot read {}: {e}", src.display());
        let file = tokio::fs::File::open(src).await.map_err(cannot)?;
        let size = file.metadata().await.map_err(cannot)?.len();
        Ok(Source {
            file: Arc::new(file.into_std().await),
            size,
        })
    }

    /// `[start, end)` as a request body, read chunk by chunk at its offsets (parts never share a file position).
    pub(super) fn body(&self, start: u64, end: u64) -> reqwest::Body {
        let stream =
            futures::stream::try_unfold((Arc::clone(&self.file), start), move |(file, pos)| async move {
                if pos >= end {
                    return Ok(None);
                }
                let len = usize::try_from((end - pos).min(READ_CHUNK)).unwrap_or(64 * 1024);
                let reader = Arc::clone(&file);
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    reader.read_exact_at(&mut buf, pos).map(|()| buf)
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok::<_, std::io::Error>(Some((chunk, (file, pos + len as u64))))
            });
        reqwest::Body::wrap_stream(stream)
    }
}

/// One multipart upload of the archive at `src` as `object`.
pub(crate) struct Upload<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) store: &'a S3Store,
    pub(crate) object: &'a str,
    pub(crate) src: &'a Path,
    pub(crate) plan: PartPlan,
    pub(crate) lifetime: Duration,
    /// The store as messages name it.
    pub(crate) describe: &'a str,
}

impl Upload<'_> {
    pub(crate) async fn run(&self, warn: &(dyn Fn(&str) + Sync)) -> Result<u64, String> {
        let source = Source::open(self.src).await?;
        let size = source.size;
        let create = self.store.presign_create_multipart(self.object, self.lifetime);
        let shown = clean_url(create.url.as_str());
        let upload_id = with_retries(|| self.create(&create, &shown), warn).await?;
        // A cancelled job drops this future between awaits; the guard then still sends the abort.
        let mut guard = AbortOnDrop {
            http: self.http.clone(),
            url: Some(
                self.store
                    .presign_abort_multipart(self.object, &upload_id, self.lifetime)
                    .url,
            ),
        };
        let result = self.parts_and_complete(&source, &upload_id, &shown, warn).await;
        if let Err(e) = result {
            // Still armed meanwhile: a cancel during this abort's retries leaves it to the guard.
            self.abort(&upload_id, &shown, warn).await;
            guard.url = None;
            return Err(e);
        }
        guard.url = None;
        Ok(size)
    }

    async fn create(&self, signed: &Presigned, shown: &str) -> Result<String, Failure> {
        let mut req = self
            .http
            .post(signed.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/zip");
        for (k, v) in &signed.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // Once the request may have reached the store, another try could start a second upload while the first
        // (whose id never came back) is never aborted: only a connection that failed is tried again.
        let resp = req.send().await.map_err(|e| Failure {
            retry: e.is_connect(),
            ..network(&e, shown)
        })?;
        if !resp.status().is_success() {
            return Err(status_failure(resp, shown, self.describe).await);
        }
        let body = bounded_body(resp).await;
        match rusty_s3::actions::CreateMultipartUpload::parse_response(&body) {
            Ok(r) => Ok(r.upload_id().to_owned()),
            Err(e) => Err(Failure {
                message: format!(
                    "{}: {shown} started a multipart upload without a readable upload id: {e}",
                    self.describe
                ),
                retry: true,
                retry_after: None,
            }),
        }
    }

    async fn parts_and_complete(
        &self,
        source: &Source,
        upload_id: &str,
        shown: &str,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Result<(), String> {
        let ranges = self.plan.ranges(0, source.size);
        let mut etags: Vec<(usize, String)> = futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(i, range)| async move {
                let number = u16::try_from(i + 1)
                    .map_err(|_| format!("{}: too many parts for one upload", self.describe))?;
                let signed = self
                    .store
                    .presign_upload_part(self.object, number, upload_id, self.lifetime);
                let etag = with_retries(|| self.part(source, &signed, range, shown), warn).await?;
                Ok::<_, String>((i, etag))
            })
            .buffer_unordered(self.plan.in_flight.max(1))
            .try_collect()
            .await?;
        etags.sort_by_key(|(i, _)| *i);
        let etags: Vec<String> = etags.into_iter().map(|(_, e)| e).collect();
        let (signed, body) =
            self.store
                .presign_complete_multipart(self.object, upload_id, &etags, self.lifetime);
        with_retries(|| self.complete(&signed, &body, shown), warn).await
    }

    /// One part: `[start, end)` of the archive, streamed from its offset; answers the part's ETag.
    async fn part(
        &self,
        source: &Source,
        signed: &Presigned,
        (start, end): (u64, u64),
        shown: &str,
    ) -> Result<String, Failure> {
        let resp = self
            .http
            .put(signed.url.clone())
            .header(reqwest::header::CONTENT_LENGTH, end - start)
            .body(source.body(start, end))
            .send()
            .await
            .map_err(|e| network(&e, shown))?;
        if !resp.status().is_success() {
            return Err(status_failure(resp, shown, self.describe).await);
        }
        resp.headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Failure {
                message: format!(
                    "{}: {shown} took a part without answering its ETag",
                    self.describe
                ),
                retry: false,
                retry_after: None,
            })
    }

    /// S3 may answer `200` and still fail to complete: the body tells.
    async fn complete(&self, signed: &Presigned, body: &str, shown: &str) -> Result<(), Failure> {
        let resp = self
            .http
            .post(signed.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| network(&e, shown))?;
        if !resp.status().is_success() {
            return Err(status_failure(resp, shown, self.describe).await);
        }
        let answer = bounded_body(resp).await;
        match rusty_s3::actions::CompleteMultipartUploadResponse::parse(&answer) {
            Ok(_) => Ok(()),
            Err(_) => Err(Failure {
                message: format!(
                    "{}: {shown} could not complete the multipart upload: {}",
                    self.describe,
                    error_code(&answer)
                ),
                retry: true,
                retry_after: None,
            }),
        }
    }

    /// Best effort: a failed abort leaves parts that the bucket's lifecycle rules (or a later abort) remove.
    async fn abort(&self, upload_id: &str, shown: &str, warn: &(dyn Fn(&str) + Sync)) {
        let signed = self
            .store
            .presign_abort_multipart(self.object, upload_id, self.lifetime);
        let result = with_retries(
            || async {
                let resp = self
                    .http
                    .delete(signed.url.clone())
                    .send()
                    .await
                    .map_err(|e| network(&e, shown))?;
                let status = resp.status();
                if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    Err(status_failure(resp, shown, self.describe).await)
                }
            },
            warn,
        )
        .await;
        if let Err(e) = result {
            warn(&format!("the failed multipart upload could not be aborted: {e}"));
        }
    }
}

/// How long the abort of a dropped upload may take: it runs after its job ended, unobserved.
const DROPPED_ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the pre-signed abort of an upload that was dropped before it finished (the job was cancelled, the
/// runner is shutting down): otherwise the parts sent so far stay in the bucket, unseen and billed, until a
/// lifecycle rule removes them. Unset `url` once the upload completed or was aborted in line.
struct AbortOnDrop {
    http: reqwest::Client,
    url: Option<reqwest::Url>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else {
            return;
        };
        // Outside a runtime (the process is going away) there is nothing left to send it with.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let http = self.http.clone();
        runtime.spawn(async move {
            let sent = http.delete(url).timeout(DROPPED_ABORT_TIMEOUT).send().await;
            if let Err(e) = sent {
                tracing::warn!(
                    "the multipart upload of a cancelled cache push could not be aborted: {}",
                    super::transfer::network(&e, "the store").message
                );
            }
        });
    }
}

/// `<Code>` of an S3 error body, or a word saying there was none.
fn error_code(body: &str) -> String {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_owned())
        .filter(|c| !c.is_empty() && c.len() < 128)
        .unwrap_or_else(|| "unreadable answer".to_owned())
}

#[cfg(test)]
#[path = "multipart_tests.rs"]
mod tests;
