//! A large archive up to S3 as a multipart upload: create, parts read from the archive file and sent side by
//! side (each retried on its own, at most parts-in-flight open at once, each streamed from its offset so memory
//! stays flat), then complete. Any failure after create aborts the upload, so the bucket keeps neither a half
//! object nor the parts sent so far.

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::parts::PartPlan;
use super::s3::{Presigned, S3Store};
use super::transfer::{Failure, bounded_body, clean_url, network, status_failure, with_retries};

/// One multipart upload of `src` (`size` bytes) as `object`.
pub(crate) struct Upload<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) store: &'a S3Store,
    pub(crate) object: &'a str,
    pub(crate) src: &'a Path,
    pub(crate) size: u64,
    pub(crate) plan: PartPlan,
    pub(crate) lifetime: Duration,
    /// The store as messages name it.
    pub(crate) describe: &'a str,
}

impl Upload<'_> {
    pub(crate) async fn run(&self, warn: &(dyn Fn(&str) + Sync)) -> Result<u64, String> {
        let create = self.store.presign_create_multipart(self.object, self.lifetime);
        let shown = clean_url(create.url.as_str());
        let upload_id = with_retries(|| self.create(&create, &shown), warn).await?;
        match self.parts_and_complete(&upload_id, &shown, warn).await {
            Ok(()) => Ok(self.size),
            Err(e) => {
                self.abort(&upload_id, &shown, warn).await;
                Err(e)
            }
        }
    }

    async fn create(&self, signed: &Presigned, shown: &str) -> Result<String, Failure> {
        let mut req = self
            .http
            .post(signed.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/zip");
        for (k, v) in &signed.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| network(&e, shown))?;
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
            }),
        }
    }

    async fn parts_and_complete(
        &self,
        upload_id: &str,
        shown: &str,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Result<(), String> {
        let ranges = self.plan.ranges(0, self.size);
        let mut etags: Vec<(usize, String)> = futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(i, range)| async move {
                let number = u16::try_from(i + 1)
                    .map_err(|_| format!("{}: too many parts for one upload", self.describe))?;
                let signed = self
                    .store
                    .presign_upload_part(self.object, number, upload_id, self.lifetime);
                let etag = with_retries(|| self.part(&signed, range, shown), warn).await?;
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
        signed: &Presigned,
        (start, end): (u64, u64),
        shown: &str,
    ) -> Result<String, Failure> {
        let local = |e: std::io::Error| Failure {
            message: format!("cannot read {}: {e}", self.src.display()),
            retry: false,
        };
        let mut f = tokio::fs::File::open(self.src).await.map_err(local)?;
        f.seek(std::io::SeekFrom::Start(start)).await.map_err(local)?;
        let body = tokio_util::io::ReaderStream::new(f.take(end - start));
        let resp = self
            .http
            .put(signed.url.clone())
            .header(reqwest::header::CONTENT_LENGTH, end - start)
            .body(reqwest::Body::wrap_stream(body))
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
