//! `[[runners]]` (gitlab-runner `RunnerConfig`, `RunnerCredentials`, `RunnerSettings`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cache::CacheConfig;
use super::docker::DockerConfig;
use super::executor::ExecutorKind;
use super::kubernetes::KubernetesConfig;
use super::raw::RawSection;
use super::sections::{ArtifactConfig, CustomBuildDir, CustomConfig};
use super::serde_helpers::{deserialize_time, serialize_time};
use crate::duration::parse_go_duration;
use crate::secret::Secret;

/// Default job log limit in KiB.
pub const DEFAULT_OUTPUT_LIMIT_KIB: i64 = 4096;
/// Default number of concurrent `jobs/request` calls per runner.
pub const DEFAULT_REQUEST_CONCURRENCY: i64 = 1;
/// Default number of failed requests before a runner is considered unhealthy.
pub const DEFAULT_UNHEALTHY_REQUESTS_LIMIT: i64 = 3;
/// Default pause for an unhealthy runner.
pub const DEFAULT_UNHEALTHY_INTERVAL: Duration = Duration::from_secs(3600);
/// Default number of retries of the final job update.
pub const DEFAULT_JOB_STATUS_FINAL_UPDATE_RETRY_LIMIT: i64 = 10;

/// Shells gitlab-runner knows.
pub const KNOWN_SHELLS: [&str; 5] = ["bash", "sh", "pwsh", "powershell", "cmd"];

/// One `[[runners]]` entry. Field order follows gitlab-runner so written files look alike.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    /// Description shown in GitLab.
    pub name: String,
    /// Max concurrent jobs of this runner; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: i64,
    /// Job log limit in KiB; 0 = 4096 (see [`RunnerConfig::output_limit_bytes`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub output_limit: i64,
    /// Concurrent `jobs/request` calls; 0 = 1.
    #[serde(skip_serializing_if = "is_zero")]
    pub request_concurrency: i64,
    /// GitLab URL (`$VAR` expanded at load time).
    pub url: String,
    /// Runner id returned by register/verify.
    pub id: i64,
    /// Runner authentication token (`$VAR` expanded at load time).
    pub token: Secret,
    /// When the token was obtained; `None` for Go's zero time.
    #[serde(deserialize_with = "deserialize_time", serialize_with = "serialize_time")]
    pub token_obtained_at: Option<OffsetDateTime>,
    /// When the token expires; `None` = never.
    #[serde(deserialize_with = "deserialize_time", serialize_with = "serialize_time")]
    pub token_expires_at: Option<OffsetDateTime>,
    /// PEM CA bundle for the GitLab connection.
    #[serde(rename = "tls-ca-file", skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate.
    #[serde(rename = "tls-cert-file", skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM client key.
    #[serde(rename = "tls-key-file", skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Exactly `check_interval` between requests even with several runners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_check_interval: Option<bool>,
    /// Failed requests before the runner is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_requests_limit: Option<i64>,
    /// Go duration the runner is paused when unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_interval: Option<String>,
    /// Retries of the final job update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status_final_update_retry_limit: Option<i64>,
    /// Executor name (`shell`, `docker`, ...).
    pub executor: String,
    /// Where builds are checked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builds_dir: Option<String>,
    /// Where local caches are stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Overrides the URL used to clone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
    /// Extra `KEY=VALUE` variables for every job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    /// Script run before fetching sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_get_sources_script: Option<String>,
    /// Script run after fetching sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_get_sources_script: Option<String>,
    /// Script run before the job's script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_build_script: Option<String>,
    /// Script run after the job's script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_build_script: Option<String>,
    /// Timeout of the prepare stage (Go duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepare_timeout: Option<String>,
    /// Timeout of the get-sources stage (Go duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub get_sources_timeout: Option<String>,
    /// Ignore `CI_DEBUG_TRACE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_trace_disabled: Option<bool>,
    /// Mark the build dir as a git `safe.directory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_directory_checkout: Option<bool>,
    /// Remove git config left by a previous job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_git_config: Option<bool>,
    /// Run the job through the runner's proxy-exec helper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_exec: Option<bool>,
    /// Shell used for job scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// `FF_*` feature flags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_flags: BTreeMap<String, bool>,
    /// Runner labels (merged over the global ones).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Image of the step-runner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_runner_image: Option<String>,
    /// One cgroup per concurrency slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_slot_cgroups: Option<bool>,
    /// Template of the per-slot cgroup path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_cgroup_template: Option<String>,
    /// `[runners.custom_build_dir]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_build_dir: Option<CustomBuildDir>,
    /// `[runners.cache]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// `[runners.artifact]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactConfig>,
    /// `[runners.docker]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerConfig>,
    /// `[runners.kubernetes]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesConfig>,
    /// `[runners.custom]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomConfig>,
    /// `[runners.ssh]`, kept verbatim (executor not implemented by oxrunner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<RawSection>,
    /// `[runners.parallels]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallels: Option<RawSection>,
    /// `[runners.virtualbox]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualbox: Option<RawSection>,
    /// `[runners.machine]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<RawSection>,
    /// `[runners.autoscaler]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<RawSection>,
    /// `[runners.instance]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<RawSection>,
    /// `[runners.referees]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referees: Option<RawSection>,
    /// `[runners.monitoring]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<RawSection>,
    /// `[runners.experimental]`, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experimental: Option<RawSection>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl RunnerConfig {
    /// The 9-character token form used in logs, build dirs and container names.
    pub fn short_token(&self) -> String {
        crate::token::short_token(self.token.expose())
    }

    /// Job log limit in bytes (`output_limit` KiB, 4096 KiB when not positive).
    pub fn output_limit_bytes(&self) -> u64 {
        let kib = if self.output_limit > 0 {
            self.output_limit
        } else {
            DEFAULT_OUTPUT_LIMIT_KIB
        };
        u64::try_from(kib).unwrap_or(0).saturating_mul(1024)
    }

    /// Concurrent job requests (`request_concurrency`, at least 1).
    pub fn request_concurrency(&self) -> u32 {
        u32::try_from(self.request_concurrency)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(1)
    }

    /// Job limit of this runner; `None` = no limit.
    pub fn limit(&self) -> Option<u32> {
        u32::try_from(self.limit).ok().filter(|n| *n > 0)
    }

    /// Failed requests before the runner is paused (default 3).
    pub fn unhealthy_requests_limit(&self) -> u32 {
        self.unhealthy_requests_limit
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_UNHEALTHY_REQUESTS_LIMIT as u32)
    }

    /// How long an unhealthy runner is paused (default 1 h).
    pub fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval
            .as_deref()
            .and_then(|s| parse_go_duration(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_UNHEALTHY_INTERVAL)
    }

    /// Retries of the final job update (default 10).
    pub fn job_status_final_update_retry_limit(&self) -> u32 {
        self.job_status_final_update_retry_limit
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_JOB_STATUS_FINAL_UPDATE_RETRY_LIMIT as u32)
    }

    /// Whether the `FF_*` flag is set to true in `feature_flags` (environment overrides are
    /// the caller's concern).
    pub fn feature_flag(&self, name: &str) -> Option<bool> {
        self.feature_flags.get(name).copied()
    }

    /// `prepare_timeout` as a duration; a value that is not a positive Go duration is `Some(ZERO)`, which the job
    /// driver reports and replaces by the job timeout, as gitlab-runner does.
    pub fn prepare_timeout(&self) -> Option<Duration> {
        stage_timeout(self.prepare_timeout.as_deref())
    }

    /// `get_sources_timeout`, read as [`prepare_timeout`](Self::prepare_timeout).
    pub fn get_sources_timeout(&self) -> Option<Duration> {
        stage_timeout(self.get_sources_timeout.as_deref())
    }

    /// The labels sent to GitLab as `info.labels`: the global `labels` with this runner's over them (gitlab-runner's
    /// `ComputeLabels`).
    pub fn computed_labels(&self, global: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = global.clone();
        out.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// `executor = "..."` as a kind.
    pub fn executor_kind(&self) -> ExecutorKind {
        ExecutorKind::parse(&self.executor)
    }

    /// True for executors that use `[runners.docker]`.
    pub fn is_docker_executor(&self) -> bool {
        self.executor_kind().uses_docker_config()
    }

    /// True when `token` is a runner authentication token created in GitLab (`glrt-`).
    pub fn has_created_runner_token(&self) -> bool {
        self.token.expose().starts_with("glrt-")
    }
}

fn stage_timeout(value: Option<&str>) -> Option<Duration> {
    let value = value.map(str::trim).filter(|v| !v.is_empty())?;
    Some(parse_go_duration(value).unwrap_or(Duration::ZERO))
}

/// True for executor names that are configured through `[runners.docker]`.
pub fn is_docker_executor(executor: &str) -> bool {
    ExecutorKind::parse(executor).uses_docker_config()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_non_positive_values() {
        let mut r = RunnerConfig::default();
        assert_eq!(r.output_limit_bytes(), 4096 * 1024);
        assert_eq!(r.request_concurrency(), 1);
        assert_eq!(r.limit(), None);
        assert_eq!(r.unhealthy_requests_limit(), 3);
        assert_eq!(r.unhealthy_interval(), Duration::from_secs(3600));
        assert_eq!(r.job_status_final_update_retry_limit(), 10);
        r.output_limit = 8;
        r.request_concurrency = 4;
        r.limit = 2;
        r.unhealthy_interval = Some("90s".into());
        assert_eq!(r.output_limit_bytes(), 8192);
        assert_eq!(r.request_concurrency(), 4);
        assert_eq!(r.limit(), Some(2));
        assert_eq!(r.unhealthy_interval(), Duration::from_secs(90));
    }

    #[test]
    fn debug_hides_token() {
        let r = RunnerConfig {
            token: Secret::new("glrt-verysecretvalue"),
            ..RunnerConfig::default()
        };
        assert_eq!(r.short_token(), "verysecre");
        assert!(!format!("{r:?}").contains("verysecretvalue"));
    }
}
