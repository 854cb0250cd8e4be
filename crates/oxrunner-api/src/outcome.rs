//! What an endpoint's answer means for the caller, as values instead of status codes.

use std::time::Duration;

use crate::wire::JobResponse;

/// Result of `POST /jobs/request` other than transport errors and 403 (those are `Err`).
#[derive(Debug)]
pub enum JobRequestOutcome {
    /// 201: a job was assigned.
    Job(Box<JobResponse>),
    /// 204: nothing to do right now.
    NoJob,
    /// 409: another runner took the job; poll again.
    Conflict,
    /// 503 after the retry layer gave up: GitLab is temporarily unavailable.
    Unavailable,
    /// Any other status (422 orphaned runner, 429, 5xx, ...). The runner stays healthy, as gitlab-runner does.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Server message, if any.
        message: String,
    },
    /// 201, but the body is not a job this runner can read. GitLab now counts the job as running on this
    /// runner, so the runner still owes it a final update: whatever identity could be read is kept for that.
    Unreadable(Box<UnreadableJob>),
}

/// What is left of a job payload that did not decode.
pub struct UnreadableJob {
    /// `id`, when the body is a JSON object with a usable `id` (a number, or a string of digits).
    pub id: Option<i64>,
    /// `token`, when the body is a JSON object with a string `token`. A secret: never logged.
    pub token: Option<String>,
    /// Why the payload was rejected: the JSON path of the first bad field and what was wrong with it.
    /// Values from the payload are left out, since a payload carries secrets (masked variables).
    pub error: String,
}

impl std::fmt::Debug for UnreadableJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadableJob")
            .field("id", &self.id)
            .field("token", &self.token.as_ref().map(|_| crate::redact::MASK))
            .field("error", &self.error)
            .finish()
    }
}

/// How GitLab answered `PUT /jobs/:id` (§1.9 table, checked in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// 200.
    Succeeded,
    /// 202: accepted, the server is still processing the trace; send again after the interval.
    Accepted,
    /// 412: the trace checksum did not match; resend the whole trace, then update again.
    TraceValidationFailed,
    /// 403, 404 or `Job-Status: canceled|failed`: stop the job.
    Abort,
    /// Anything else: retry later.
    Failed,
}

/// Full answer of a job update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateJobResult {
    /// Meaning of the status.
    pub outcome: UpdateOutcome,
    /// `Job-Status: canceling`: the user cancelled; run after_script and finish as canceled.
    pub cancel_requested: bool,
    /// `X-GitLab-Trace-Update-Interval`, capped at 15 minutes.
    pub update_interval: Option<Duration>,
}

/// How GitLab answered `PATCH /jobs/:id/trace` (§1.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOutcome {
    /// 202: the server now has everything up to `new_offset` (exclusive).
    Accepted {
        /// Offset of the next byte to send.
        new_offset: u64,
    },
    /// 416: the server has `server_size` bytes; continue from there.
    RangeMismatch {
        /// Length of the trace on the server (from the `Range: 0-<size>` header).
        server_size: u64,
    },
    /// 404: the trace is gone; stop sending.
    NotFound,
    /// 403 or `Job-Status: canceled|failed`: stop the job.
    Abort,
    /// Anything else (including a 416 without a usable `Range`): retry on the next tick.
    Failed,
}

/// Full answer of a trace patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchTraceResult {
    /// Meaning of the status.
    pub outcome: PatchOutcome,
    /// `Job-Status: canceling`.
    pub cancel_requested: bool,
    /// `X-GitLab-Trace-Update-Interval`, capped at 15 minutes.
    pub update_interval: Option<Duration>,
}

/// Parameters of an artifact upload (sent as query parameters, as gitlab-runner does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactUpload {
    /// File name of the multipart `file` field, e.g. `artifacts.zip`.
    pub filename: String,
    /// `zip`, `gzip`, `raw`, `zipzstd`, `tarzstd` (empty = server default zip).
    pub artifact_format: String,
    /// `archive`, `junit`, ... (empty = server default archive).
    pub artifact_type: String,
    /// `expire_in` such as `7d` (None = project default).
    pub expire_in: Option<String>,
    /// `[runners.artifact] upload_timeout`: bounds each upload request (None = the client's transfer timeout).
    pub timeout: Option<std::time::Duration>,
    /// `[runners.artifact] response_header_timeout`: how long to wait for the answer once the upload is written
    /// (None = no limit).
    pub response_header_timeout: Option<std::time::Duration>,
}

impl Default for ArtifactUpload {
    fn default() -> Self {
        ArtifactUpload {
            filename: "artifacts.zip".to_string(),
            artifact_format: "zip".to_string(),
            artifact_type: "archive".to_string(),
            expire_in: None,
            timeout: None,
            response_header_timeout: None,
        }
    }
}

impl ArtifactUpload {
    /// The upload file name gitlab-runner derives from `artifacts:name` and the format:
    /// `<name>.zip` for zip/zipzstd, `.gz` for gzip, `.tar.zst` for tarzstd, plain for raw;
    /// an empty or `.` name becomes `default`.
    pub fn file_name_for(name: &str, artifact_format: &str) -> String {
        let base = std::path::Path::new(name)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        let base = if base.is_empty() || base == "." {
            "default"
        } else {
            base
        };
        match artifact_format {
            "gzip" => format!("{base}.gz"),
            "tarzstd" => format!("{base}.tar.zst"),
            "raw" => base.to_string(),
            _ => format!("{base}.zip"),
        }
    }
}
