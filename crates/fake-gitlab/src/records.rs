//! Public snapshots of the fake's state, returned to tests.

use serde::Serialize;

/// One runner manager (a runner process, identified by its `system_id`).
#[derive(Clone, Debug, Serialize)]
pub struct RunnerManager {
    pub system_id: String,
    /// The last `info` object received from this manager (version, executor, features, ...).
    pub info: Option<serde_json::Value>,
}

/// A runner known to the fake (registered with a registration token or created "in the UI").
#[derive(Clone, Serialize)]
pub struct RunnerRecord {
    pub id: i64,
    /// Authentication token (`glrt-` for UI-created runners, `glrtr-` for legacy registrations).
    pub token: String,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    pub access_level: String,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
    pub managers: Vec<RunnerManager>,
    /// The last runner `info` received on any endpoint.
    pub info: Option<serde_json::Value>,
    /// RFC 3339 expiry of `token`, if the fake was started with a token lifetime.
    pub token_expires_at: Option<String>,
    #[serde(skip)]
    pub(crate) expires: Option<std::time::SystemTime>,
    /// True when created with [`crate::FakeGitlab::create_runner_token`] (authentication-token flow).
    pub created_in_ui: bool,
}

impl std::fmt::Debug for RunnerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerRecord")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .field("description", &self.description)
            .field("tags", &self.tags)
            .field("run_untagged", &self.run_untagged)
            .field("managers", &self.managers.len())
            .finish_non_exhaustive()
    }
}

impl RunnerRecord {
    pub(crate) fn is_expired(&self) -> bool {
        self.expires.is_some_and(|at| std::time::SystemTime::now() >= at)
    }

    /// The feature flags (`info.features`) the runner advertised most recently.
    pub fn feature(&self, name: &str) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.get("features"))
            .and_then(|f| f.get(name))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

/// An uploaded artifact as stored by the fake.
#[derive(Clone, Serialize)]
pub struct StoredArtifact {
    pub filename: String,
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    pub size: usize,
}

impl std::fmt::Debug for StoredArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredArtifact")
            .field("filename", &self.filename)
            .field("artifact_type", &self.artifact_type)
            .field("artifact_format", &self.artifact_format)
            .field("expire_in", &self.expire_in)
            .field("size", &self.size)
            .finish()
    }
}

/// Everything the fake knows about one job.
#[derive(Clone, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub name: String,
    pub project_id: Option<i64>,
    pub pipeline_id: i64,
    /// `pending`, `running`, `success`, `failed`, `canceling`, `canceled`.
    pub status: String,
    /// As GitLab stores it (an unknown reason becomes `unknown_failure`).
    pub failure_reason: Option<String>,
    pub exit_code: Option<i64>,
    /// `runtime_environment_key` of the final update: the key of the environment the job suspended.
    pub runtime_environment_key: Option<String>,
    /// The job token (`glcbt-...`); only valid while the job runs.
    pub token: String,
    pub runner_id: Option<i64>,
    /// Trace bytes as appended by PATCH requests.
    #[serde(skip)]
    pub trace: Vec<u8>,
    /// Every PUT /jobs/:id body, in order.
    pub updates: Vec<serde_json::Value>,
    pub artifacts: Vec<StoredArtifact>,
    /// Whether the CRC32 of the final update matched the stored trace (`None`: no checksum sent).
    pub checksum_ok: Option<bool>,
    /// GitLab turns debug mode on for a job once a trace PATCH carries `debug_trace=true`, and never back off.
    pub debug_trace: bool,
    /// The payload handed to the runner (set when the job was picked).
    pub payload: Option<serde_json::Value>,
    /// The `session` object (url, certificate, authorization) of the request that picked the job, as GitLab
    /// stores it for the web terminal.
    pub session: Option<serde_json::Value>,
    pub tags: Vec<String>,
}

impl std::fmt::Debug for JobRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("failure_reason", &self.failure_reason)
            .field("exit_code", &self.exit_code)
            .field("runtime_environment_key", &self.runtime_environment_key)
            .field("token", &"[REDACTED]")
            .field("trace_len", &self.trace.len())
            .field("updates", &self.updates.len())
            .field("artifacts", &self.artifacts)
            .field("checksum_ok", &self.checksum_ok)
            .field("debug_trace", &self.debug_trace)
            .finish_non_exhaustive()
    }
}

impl JobRecord {
    /// The log as GitLab's job page shows it: gitlab-runner's `FF_TIMESTAMPS` line prefixes
    /// (`<RFC 3339 µs>Z <2 hex><O|E><' '|'+'>`) removed and `+` continuation lines joined to the line before.
    pub fn trace_text(&self) -> String {
        displayed_log(&self.raw_trace_text())
    }

    /// The log bytes exactly as the runner sent them.
    pub fn raw_trace_text(&self) -> String {
        String::from_utf8_lossy(&self.trace).into_owned()
    }
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "success" | "failed" | "canceled")
    }
}

/// A project with a bare git repository served over smart HTTP.
#[derive(Clone, Debug, Serialize)]
pub struct Project {
    pub id: i64,
    /// `group/project`.
    pub path: String,
    /// Commit on `main`.
    pub sha: String,
    /// Where the bare repository lives on disk.
    pub git_dir: std::path::PathBuf,
}

impl Project {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    pub fn namespace(&self) -> &str {
        self.path.rsplit_once('/').map(|(ns, _)| ns).unwrap_or("")
    }
}

/// One HTTP request seen by the fake (token header values are replaced by `[REDACTED]`).
#[derive(Clone, Debug, Serialize)]
pub struct RequestLog {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// The client's address: one per TCP connection (tests count connections with it).
    pub peer: Option<std::net::SocketAddr>,
    /// The `X-Request-Id` the fake answered with (GitLab's correlation id of the request).
    pub request_id: String,
}

impl RequestLog {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Length of a timestamp prefix: 27 characters of time, a space, the stream and the line kind.
const STAMP_LEN: usize = 32;

/// `Some(continuation)` when `line` starts with a timestamp prefix.
fn stamp_of(line: &str) -> Option<bool> {
    let head = line.as_bytes().get(..STAMP_LEN)?;
    let time = std::str::from_utf8(&head[..27]).ok()?;
    let time_ok = time.len() == 27
        && time.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            26 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    let tail_ok = head[27] == b' '
        && head[28].is_ascii_hexdigit()
        && head[29].is_ascii_hexdigit()
        && matches!(head[30], b'O' | b'E');
    match head[31] {
        b' ' if time_ok && tail_ok => Some(false),
        b'+' if time_ok && tail_ok => Some(true),
        _ => None,
    }
}

fn displayed_log(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.split_inclusive('\n') {
        match stamp_of(line) {
            Some(continuation) => {
                if continuation && out.ends_with('\n') {
                    out.pop();
                }
                out.push_str(&line[STAMP_LEN..]);
            }
            None => out.push_str(line),
        }
    }
    out
}
