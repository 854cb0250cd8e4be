//! Request/response bodies of the runner endpoints (§1.3–§1.7, §1.9 of the API reference).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::redact::secret;

/// What the runner tells GitLab about itself (`info` in register, verify, job request and job update).
///
/// GitLab shows these values on the runner's admin page, so they describe oxrunner honestly
/// (`name = "oxrunner"`) while keeping gitlab-runner's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunnerInfo {
    /// Product name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Product version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Source revision, or "unknown".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// OS, Go-style (`linux`, `darwin`, `windows`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// CPU architecture, Go-style (`amd64`, `arm64`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    /// Executor name of the `[[runners]]` entry (`shell`, `docker`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub executor: String,
    /// Shell name (`bash`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub shell: String,
    /// Capabilities; every key is always sent.
    pub features: FeaturesInfo,
    /// Runner configuration GitLab cares about.
    pub config: RunnerInfoConfig,
    /// Labels from config.toml.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl RunnerInfo {
    /// Info for this build of oxrunner with the given executor and shell; features start with what
    /// this crate's client implements ([`FeaturesInfo::client_defaults`]).
    pub fn oxrunner(executor: &str, shell: &str) -> RunnerInfo {
        RunnerInfo {
            name: "oxrunner".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: "unknown".to_string(),
            platform: go_os().to_string(),
            architecture: go_arch().to_string(),
            executor: executor.to_string(),
            shell: shell.to_string(),
            features: FeaturesInfo::client_defaults(),
            config: RunnerInfoConfig::default(),
            labels: BTreeMap::new(),
        }
    }
}

/// Go's `GOOS` spelling of the current OS (GitLab displays it).
pub fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// Go's `GOARCH` spelling of the current CPU architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `info.config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunnerInfoConfig {
    /// `gpus` setting of the docker executor (always sent, empty when unset).
    pub gpus: String,
}

/// `info.features`: every key is serialised as a bool, as gitlab-runner does, because GitLab treats
/// a missing key as "unsupported" and some (cancel_gracefully) change server behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct FeaturesInfo {
    pub variables: bool,
    pub image: bool,
    pub services: bool,
    pub artifacts: bool,
    pub cache: bool,
    pub fallback_cache_keys: bool,
    pub shared: bool,
    pub upload_multiple_artifacts: bool,
    pub upload_raw_artifacts: bool,
    pub session: bool,
    pub terminal: bool,
    pub refspecs: bool,
    pub masking: bool,
    pub proxy: bool,
    pub raw_variables: bool,
    pub artifacts_exclude: bool,
    pub multi_build_steps: bool,
    pub trace_reset: bool,
    pub trace_checksum: bool,
    pub trace_size: bool,
    pub vault_secrets: bool,
    pub cancelable: bool,
    pub return_exit_code: bool,
    pub service_variables: bool,
    pub service_multiple_aliases: bool,
    pub image_executor_opts: bool,
    pub service_executor_opts: bool,
    pub cancel_gracefully: bool,
    pub native_steps_integration: bool,
    pub two_phase_job_commit: bool,
    pub job_inputs: bool,
}

impl FeaturesInfo {
    /// The features that depend on the network client only: trace reset (412 handling), checksum and
    /// size in the final update, cancellation via `Job-Status`, and the 202 two-phase commit loop.
    /// Executors and shells add theirs on top.
    pub fn client_defaults() -> FeaturesInfo {
        FeaturesInfo {
            trace_reset: true,
            trace_checksum: true,
            trace_size: true,
            cancelable: true,
            cancel_gracefully: true,
            two_phase_job_commit: true,
            ..FeaturesInfo::default()
        }
    }
}

/// Body of `POST /runners` (legacy registration-token flow).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RegisterRunnerRequest {
    /// Runner description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Maintenance note.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub maintenance_note: String,
    /// Comma-separated tags.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag_list: String,
    /// Pick jobs without tags.
    pub run_untagged: bool,
    /// Lock to the current project.
    pub locked: bool,
    /// `not_protected` or `ref_protected`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_level: String,
    /// Maximum job timeout in seconds (0 = unset).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub maximum_timeout: i64,
    /// Register paused.
    pub paused: bool,
    /// Runner info.
    pub info: RunnerInfo,
    /// Registration token (also sent as `RUNNER-TOKEN`).
    pub token: String,
}

impl fmt::Debug for RegisterRunnerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRunnerRequest")
            .field("description", &self.description)
            .field("maintenance_note", &self.maintenance_note)
            .field("tag_list", &self.tag_list)
            .field("run_untagged", &self.run_untagged)
            .field("locked", &self.locked)
            .field("access_level", &self.access_level)
            .field("maximum_timeout", &self.maximum_timeout)
            .field("paused", &self.paused)
            .field("info", &self.info)
            .field("token", &secret(&self.token))
            .finish()
    }
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Answer of register: the runner authentication token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RegisterRunnerResponse {
    /// Runner id.
    pub id: i64,
    /// Runner authentication token (store it in config.toml).
    pub token: String,
    /// RFC 3339 expiry; `None`, empty or Go's zero time mean "never".
    pub token_expires_at: Option<String>,
}

/// Answer of verify. A legacy server answers plain text; then every field is empty/zero.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VerifyRunnerResponse {
    /// Runner id (0 when the server sent no JSON).
    pub id: i64,
    /// Runner token as the server knows it.
    pub token: String,
    /// RFC 3339 expiry; `None`, empty or Go's zero time mean "never".
    pub token_expires_at: Option<String>,
}

/// Answer of reset_authentication_token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ResetTokenResponse {
    /// The new token.
    pub token: String,
    /// RFC 3339 expiry; `None`, empty or Go's zero time mean "never".
    pub token_expires_at: Option<String>,
}

macro_rules! token_debug {
    ($ty:ident { $($field:ident),* }) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .field("token", &secret(&self.token))
                    .field("token_expires_at", &self.token_expires_at)
                    .finish()
            }
        }
    };
}
token_debug!(RegisterRunnerResponse { id });
token_debug!(VerifyRunnerResponse { id });
token_debug!(ResetTokenResponse {});

/// Interactive web terminal endpoint offered to GitLab (`[session_server]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SessionInfo {
    /// Public URL of the session.
    pub url: String,
    /// PEM certificate of the session server.
    pub certificate: String,
    /// Authorization token GitLab must present.
    pub authorization: String,
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("url", &self.url)
            .field("certificate", &self.certificate)
            .field("authorization", &secret(&self.authorization))
            .finish()
    }
}

/// Body of `POST /jobs/request`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobRequest {
    /// Runner info.
    pub info: RunnerInfo,
    /// Runner token (also sent as `RUNNER-TOKEN`).
    pub token: String,
    /// Runner manager id (`s_...`/`r_...`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_id: String,
    /// Value of the last `X-GitLab-Last-Update`. The client fills it in when left empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_update: String,
    /// Web terminal session, if a session server is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
}

impl fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRequest")
            .field("info", &self.info)
            .field("token", &secret(&self.token))
            .field("system_id", &self.system_id)
            .field("last_update", &self.last_update)
            .field("session", &self.session)
            .finish()
    }
}

/// `output` of a job update: what the server should have received through PATCH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobTraceOutput {
    /// `crc32:%08x` of the whole trace.
    pub checksum: String,
    /// Trace length in bytes.
    pub bytesize: u64,
}

/// Body of `PUT /jobs/:id`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct UpdateJobRequest {
    /// Runner info.
    pub info: RunnerInfo,
    /// Job token (also sent as `JOB-TOKEN`).
    pub token: String,
    /// `running`, `success` or `failed`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Failure reason for `failed` (already mapped to one the server supports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Deprecated duplicate of `output.checksum`, still read by older GitLab.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Trace checksum and size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<JobTraceOutput>,
    /// Script exit code; GitLab omits 0, so do we.
    #[serde(skip_serializing_if = "exit_code_absent")]
    pub exit_code: Option<i32>,
    /// The key of the job environment this job suspended (`FF_SUSPENDABLE_ENVIRONMENTS`), final update only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime_environment_key: String,
}

fn exit_code_absent(v: &Option<i32>) -> bool {
    matches!(v, None | Some(0))
}

impl fmt::Debug for UpdateJobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateJobRequest")
            .field("info", &self.info)
            .field("token", &secret(&self.token))
            .field("state", &self.state)
            .field("failure_reason", &self.failure_reason)
            .field("checksum", &self.checksum)
            .field("output", &self.output)
            .field("exit_code", &self.exit_code)
            .field("runtime_environment_key", &self.runtime_environment_key)
            .finish()
    }
}

/// Format a CRC32 the way GitLab compares it.
pub fn crc32_checksum(crc: u32) -> String {
    format!("crc32:{crc:08x}")
}
