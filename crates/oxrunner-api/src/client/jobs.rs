//! Job endpoints: request (long poll), update, incremental trace (§1.7, §1.9, §1.10).

use bytes::Bytes;

use super::Client;
use super::transport::{
    JOB_TOKEN, RUNNER_TOKEN, correlation_id, error_message, header_str, is_json, job_status, status_error,
    update_interval,
};
use super::unreadable::decode_job;
use crate::error::ApiError;
use crate::outcome::{JobRequestOutcome, PatchOutcome, PatchTraceResult, UpdateJobResult, UpdateOutcome};
use crate::redact::redact_url;
use crate::wire::{JobRequest, JobResponse, UpdateJobRequest};

impl Client {
    /// `POST /jobs/request`. An empty `req.last_update` is filled with the last
    /// `X-GitLab-Last-Update` this client saw, which lets GitLab answer "nothing changed" cheaply.
    /// 403 is an `Err` (the runner is unhealthy); other refusals are outcomes.
    pub async fn request_job(&self, req: &JobRequest) -> Result<JobRequestOutcome, ApiError> {
        let url = self.endpoint("jobs/request")?;
        let shown = redact_url(url.as_str());
        let resp = self
            .send(&url, |http| {
                let mut body = req.clone();
                if body.last_update.is_empty() {
                    body.last_update = self.last_update();
                }
                let b = http
                    .post(url.clone())
                    .header(RUNNER_TOKEN, &req.token)
                    .header("Accept", "application/json")
                    .json(&body);
                async move { Ok(b) }
            })
            .await?;
        match resp.status().as_u16() {
            201 => {
                let content_type_ok = is_json(resp.headers());
                let correlation_id = correlation_id(&resp);
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| ApiError::from_reqwest(&e, shown.clone()))?;
                Ok(decode_job::<JobResponse>(&body, content_type_ok, |mut job| {
                    job.job_request_correlation_id = correlation_id;
                    JobRequestOutcome::Job(Box::new(job))
                }))
            }
            204 => Ok(JobRequestOutcome::NoJob),
            409 => Ok(JobRequestOutcome::Conflict),
            503 => Ok(JobRequestOutcome::Unavailable),
            401 | 403 => Err(status_error(resp, &shown).await),
            status => Ok(JobRequestOutcome::Rejected {
                status,
                message: error_message(resp).await,
            }),
        }
    }

    /// `PUT /jobs/:id`, mapped as gitlab-runner's `createUpdateJobResult` does.
    pub async fn update_job(
        &self,
        job_id: i64,
        job_token: &str,
        req: &UpdateJobRequest,
    ) -> Result<UpdateJobResult, ApiError> {
        let url = self.endpoint(&format!("jobs/{job_id}"))?;
        let resp = self
            .send(&url, |http| {
                let b = http.put(url.clone()).header(JOB_TOKEN, job_token).json(req);
                async move { Ok(b) }
            })
            .await?;
        let status = resp.status().as_u16();
        let job_status = job_status(resp.headers());
        // GitLab answers every update with the job's state after it, so a final `failed` comes back as 200 with
        // `Job-Status: failed` (or `canceled` for a job being canceled). A job GitLab no longer runs gets 403;
        // a 200 to a final state therefore means the update was recorded, not that the server stopped the job.
        let final_state = !req.state.is_empty() && req.state != "running";
        let outcome = if status == 200 && final_state {
            UpdateOutcome::Succeeded
        } else if matches!(job_status.as_str(), "canceled" | "failed") || status == 403 {
            UpdateOutcome::Abort
        } else {
            match status {
                200 => UpdateOutcome::Succeeded,
                202 => UpdateOutcome::Accepted,
                412 => UpdateOutcome::TraceValidationFailed,
                404 => UpdateOutcome::Abort,
                _ => UpdateOutcome::Failed,
            }
        };
        if outcome == UpdateOutcome::Failed {
            tracing::warn!(job_id, status, "job update failed");
        }
        Ok(UpdateJobResult {
            outcome,
            cancel_requested: job_status == "canceling",
            update_interval: update_interval(resp.headers()),
        })
    }

    /// `PATCH /jobs/:id/trace` with `body` placed at `offset`. An empty body is not sent
    /// (gitlab-runner never sends empty patches) and counts as accepted.
    pub async fn patch_trace(
        &self,
        job_id: i64,
        job_token: &str,
        offset: u64,
        body: Bytes,
        debug_trace: bool,
    ) -> Result<PatchTraceResult, ApiError> {
        if body.is_empty() {
            return Ok(PatchTraceResult {
                outcome: PatchOutcome::Accepted { new_offset: offset },
                cancel_requested: false,
                update_interval: None,
            });
        }
        let mut url = self.endpoint(&format!("jobs/{job_id}/trace"))?;
        url.query_pairs_mut()
            .append_pair("debug_trace", if debug_trace { "true" } else { "false" });
        let end = offset + body.len() as u64 - 1;
        let content_range = format!("{offset}-{end}");
        let resp = self
            .send(&url, |http| {
                let b = http
                    .patch(url.clone())
                    .header(JOB_TOKEN, job_token)
                    .header("Content-Type", "text/plain")
                    .header("Content-Range", &content_range)
                    // Bytes clones share the buffer, so a retry costs no copy.
                    .body(body.clone());
                async move { Ok(b) }
            })
            .await?;
        let status = resp.status().as_u16();
        let job_status = job_status(resp.headers());
        let outcome = if matches!(job_status.as_str(), "canceled" | "failed") || status == 403 {
            PatchOutcome::Abort
        } else {
            match status {
                202 => PatchOutcome::Accepted { new_offset: end + 1 },
                416 => match header_str(resp.headers(), "Range")
                    .as_deref()
                    .and_then(parse_range_end)
                {
                    Some(server_size) => PatchOutcome::RangeMismatch { server_size },
                    None => PatchOutcome::Failed,
                },
                404 => PatchOutcome::NotFound,
                _ => PatchOutcome::Failed,
            }
        };
        if outcome == PatchOutcome::Failed {
            tracing::warn!(job_id, status, "trace patch failed");
        }
        Ok(PatchTraceResult {
            outcome,
            cancel_requested: job_status == "canceling",
            update_interval: update_interval(resp.headers()),
        })
    }
}

/// `Range: 0-<size>` → size. The second number is the server's trace length, not an inclusive end.
fn parse_range_end(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let (_, end) = v.split_once('-')?;
    end.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_range_end;

    #[test]
    fn range_header_forms() {
        assert_eq!(parse_range_end("0-42"), Some(42));
        assert_eq!(parse_range_end(" 0-0 "), Some(0));
        assert_eq!(parse_range_end("bytes=0-7"), Some(7));
        assert_eq!(parse_range_end("garbage"), None);
        assert_eq!(parse_range_end("0-"), None);
    }
}
