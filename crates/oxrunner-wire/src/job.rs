//! The job payload GitLab returns with `201` from `POST /jobs/request` (§1.8).
//!
//! Field names are GitLab's. Unknown fields are ignored and absent or `null` fields take their
//! default, because GitLab adds keys regularly and sends `null` for unset objects (`"image": null`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::redact::{MASK, redact_url, secret};
use crate::secrets::Secrets;

/// `null` → `T::default()`, so optional objects and lists need no `Option` wrapper.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `suspend_options` of a job (gitlab-runner's `spec.SuspendOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SuspendOptions {
    /// Keep the job's environment when the job succeeds.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suspend_on_success: bool,
    /// Keep the job's environment when the job fails.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suspend_on_failure: bool,
    /// The key an earlier job of this runner reported when it suspended its environment: resume that one.
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub runtime_environment_key: String,
}

/// Accept a JSON string or number (GitLab has sent some counters both ways) and keep the text.
fn string_or_number<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
    })
}

/// A job as handed out by GitLab.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobResponse {
    /// Job id.
    pub id: i64,
    /// Job token (`JOB-TOKEN` for this job's trace, update and artifacts; `CI_JOB_TOKEN`).
    #[serde(deserialize_with = "nullable")]
    pub token: String,
    /// Whether a previous checkout may be fetched into instead of cloned.
    #[serde(deserialize_with = "nullable")]
    pub allow_git_fetch: bool,
    /// Names and ids describing the job.
    #[serde(deserialize_with = "nullable")]
    pub job_info: JobInfo,
    /// Where and what to check out.
    #[serde(deserialize_with = "nullable")]
    pub git_info: GitInfo,
    /// Runner-side settings for this job (timeout).
    #[serde(deserialize_with = "nullable")]
    pub runner_info: JobRunnerInfo,
    /// `spec:inputs` values.
    #[serde(deserialize_with = "nullable")]
    pub inputs: Vec<JobInput>,
    /// CI/CD variables, in GitLab's precedence order.
    #[serde(deserialize_with = "nullable")]
    pub variables: Vec<Variable>,
    /// Script steps (`script` = before_script + script, `after_script`, `release`, ...).
    #[serde(deserialize_with = "nullable")]
    pub steps: Vec<Step>,
    /// Job image (empty name when none).
    #[serde(deserialize_with = "nullable")]
    pub image: Image,
    /// Service containers.
    #[serde(deserialize_with = "nullable")]
    pub services: Vec<Service>,
    /// Artifacts to upload.
    #[serde(deserialize_with = "nullable")]
    pub artifacts: Vec<Artifact>,
    /// Caches to restore and save.
    #[serde(deserialize_with = "nullable")]
    pub cache: Vec<Cache>,
    /// Registry credentials.
    #[serde(deserialize_with = "nullable")]
    pub credentials: Vec<Credentials>,
    /// Jobs whose artifacts to download.
    #[serde(deserialize_with = "nullable")]
    pub dependencies: Vec<Dependency>,
    /// Server-side feature switches for this job.
    #[serde(deserialize_with = "nullable")]
    pub features: JobFeatures,
    /// External secrets (`secrets:` keyword); empty when absent.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Secrets::is_empty")]
    pub secrets: Secrets,
    /// `hooks:` (pre/post get_sources scripts).
    #[serde(deserialize_with = "nullable")]
    pub hooks: Vec<Hook>,
    /// `run:` steps as a JSON string (step-runner); empty when absent.
    #[serde(deserialize_with = "nullable")]
    pub run: String,
    /// Pipeline execution policy details, kept as JSON.
    pub policy_options: serde_json::Value,
    /// `suspend_options`: whether to keep the job's environment at its end, and the key of one to resume
    /// (`FF_SUSPENDABLE_ENVIRONMENTS`).
    #[serde(deserialize_with = "nullable")]
    pub suspend_options: SuspendOptions,
    /// Not part of the JSON: the correlation id of the `POST /jobs/request` that handed out this job (the
    /// response's `X-Request-Id`, else the one the runner sent), as gitlab-runner keeps it for Gitaly.
    #[serde(skip)]
    pub job_request_correlation_id: String,
}

impl fmt::Debug for JobResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobResponse")
            .field("id", &self.id)
            .field("token", &secret(&self.token))
            .field("allow_git_fetch", &self.allow_git_fetch)
            .field("job_info", &self.job_info)
            .field("git_info", &self.git_info)
            .field("runner_info", &self.runner_info)
            .field("inputs", &self.inputs)
            .field("variables", &self.variables)
            .field("steps", &self.steps)
            .field("image", &self.image)
            .field("services", &self.services)
            .field("artifacts", &self.artifacts)
            .field("cache", &self.cache)
            .field("credentials", &self.credentials)
            .field("dependencies", &self.dependencies)
            .field("features", &self.features)
            .field("secrets", &self.secrets)
            .field("hooks", &self.hooks)
            .field("run", &self.run)
            .field("policy_options", &self.policy_options)
            .field("suspend_options", &self.suspend_options)
            .field("job_request_correlation_id", &self.job_request_correlation_id)
            .finish()
    }
}

/// `job_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct JobInfo {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub stage: String,
    #[serde(deserialize_with = "nullable")]
    pub pipeline_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub project_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub project_name: String,
    #[serde(deserialize_with = "nullable")]
    pub project_full_path: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub root_namespace_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub organization_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub instance_id: i64,
    #[serde(deserialize_with = "nullable")]
    pub instance_uuid: String,
    #[serde(deserialize_with = "nullable")]
    pub user_id: i64,
    pub scoped_user_id: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub time_in_queue_seconds: f64,
    #[serde(deserialize_with = "string_or_number")]
    pub project_jobs_running_on_instance_runners_count: String,
    #[serde(deserialize_with = "nullable")]
    pub queue_size: i64,
    #[serde(deserialize_with = "nullable")]
    pub queue_depth: i64,
}

/// `git_info`. `repo_url` embeds the job token, so `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GitInfo {
    /// Clone URL with `gitlab-ci-token:<job token>@`.
    #[serde(deserialize_with = "nullable")]
    pub repo_url: String,
    /// `sha1` or `sha256` (empty = sha1).
    #[serde(deserialize_with = "nullable")]
    pub repo_object_format: String,
    /// Branch or tag name.
    #[serde(deserialize_with = "nullable")]
    pub r#ref: String,
    /// Commit to check out.
    #[serde(deserialize_with = "nullable")]
    pub sha: String,
    /// Previous commit of the push.
    #[serde(deserialize_with = "nullable")]
    pub before_sha: String,
    /// `branch` or `tag`.
    #[serde(deserialize_with = "nullable")]
    pub ref_type: String,
    /// Refspecs to fetch.
    #[serde(deserialize_with = "nullable")]
    pub refspecs: Vec<String>,
    /// Effective fetch depth (0 = full).
    #[serde(deserialize_with = "nullable")]
    pub depth: i32,
    /// Whether the ref is protected (`null` on older GitLab).
    pub protected: Option<bool>,
}

impl fmt::Debug for GitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitInfo")
            .field("repo_url", &redact_url(&self.repo_url))
            .field("repo_object_format", &self.repo_object_format)
            .field("ref", &self.r#ref)
            .field("sha", &self.sha)
            .field("before_sha", &self.before_sha)
            .field("ref_type", &self.ref_type)
            .field("refspecs", &self.refspecs)
            .field("depth", &self.depth)
            .field("protected", &self.protected)
            .finish()
    }
}

/// `runner_info` of a job (named so it does not clash with [`crate::RunnerInfo`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobRunnerInfo {
    /// Runner uuid as seen by the server.
    #[serde(deserialize_with = "nullable")]
    pub uuid: String,
    /// Job timeout in seconds; ≤ 0 means the 7200 s default.
    #[serde(deserialize_with = "nullable")]
    pub timeout: i64,
    /// Web terminal URL; the runner does not use it.
    #[serde(deserialize_with = "nullable")]
    pub runner_session_url: String,
}

/// One `spec:inputs` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobInput {
    /// Input name.
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    /// Typed value.
    #[serde(deserialize_with = "nullable")]
    pub value: JobInputValue,
}

/// Value of a job input; `Debug` hides sensitive content.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobInputValue {
    /// `string`, `number`, `boolean`, `array`.
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    /// The value itself.
    pub content: serde_json::Value,
    /// Whether to mask it.
    #[serde(deserialize_with = "nullable")]
    pub sensitive: bool,
}

impl fmt::Debug for JobInputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JobInputValue");
        d.field("type", &self.r#type);
        if self.sensitive {
            d.field("content", &MASK);
        } else {
            d.field("content", &self.content);
        }
        d.field("sensitive", &self.sensitive).finish()
    }
}

/// A CI/CD variable; `Debug` hides the value of masked variables.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Variable {
    /// Name.
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    /// Value.
    #[serde(deserialize_with = "nullable")]
    pub value: String,
    /// Visible in the UI/logs (not secret).
    #[serde(deserialize_with = "nullable")]
    pub public: bool,
    /// File-type variable: the value is written to a file and the variable holds its path.
    #[serde(deserialize_with = "nullable")]
    pub file: bool,
    /// Mask in the trace.
    #[serde(deserialize_with = "nullable")]
    pub masked: bool,
    /// Do not expand `$VAR` references in the value.
    #[serde(deserialize_with = "nullable")]
    pub raw: bool,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = if self.masked { &MASK } else { &self.value };
        f.debug_struct("Variable")
            .field("key", &self.key)
            .field("value", value)
            .field("public", &self.public)
            .field("file", &self.file)
            .field("masked", &self.masked)
            .field("raw", &self.raw)
            .finish()
    }
}

/// One script step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Step {
    /// `script`, `after_script`, `release`, ...
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Command lines.
    #[serde(deserialize_with = "nullable")]
    pub script: Vec<String>,
    /// Timeout in seconds.
    #[serde(deserialize_with = "nullable")]
    pub timeout: i64,
    /// `on_success` (also for ""), `on_failure`, `always`.
    #[serde(deserialize_with = "nullable")]
    pub when: String,
    /// Whether a failure fails the job.
    #[serde(deserialize_with = "nullable")]
    pub allow_failure: bool,
}

/// Job image or service definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Image {
    /// Image reference.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Service alias(es), several separated by space or comma.
    #[serde(deserialize_with = "nullable")]
    pub alias: String,
    /// Command override.
    #[serde(deserialize_with = "nullable")]
    pub command: Vec<String>,
    /// Entrypoint override.
    #[serde(deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    /// Exposed ports.
    #[serde(deserialize_with = "nullable")]
    pub ports: Vec<Port>,
    /// Service variables.
    #[serde(deserialize_with = "nullable")]
    pub variables: Vec<Variable>,
    /// `always`, `if-not-present`, `never`.
    #[serde(deserialize_with = "nullable")]
    pub pull_policy: Vec<String>,
    /// Per-executor options.
    #[serde(deserialize_with = "nullable")]
    pub executor_opts: ExecutorOptions,
}

/// Services share the image shape.
pub type Service = Image;

/// An exposed port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Port {
    #[serde(deserialize_with = "nullable")]
    pub number: i64,
    #[serde(deserialize_with = "nullable")]
    pub protocol: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
}

/// `executor_opts`. Keys we do not know are kept in `other` because gitlab-runner fails such jobs
/// (`UnsupportedOptions`) instead of silently ignoring a setting the user relies on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ExecutorOptions {
    /// Docker options.
    #[serde(deserialize_with = "nullable")]
    pub docker: DockerExecutorOptions,
    /// Kubernetes options.
    #[serde(deserialize_with = "nullable")]
    pub kubernetes: KubernetesExecutorOptions,
    /// Unknown executors' options.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `executor_opts.docker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DockerExecutorOptions {
    /// Image platform, e.g. `linux/arm64`.
    #[serde(deserialize_with = "nullable")]
    pub platform: String,
    /// User to run as.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Keys not supported by the docker executor.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `executor_opts.kubernetes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct KubernetesExecutorOptions {
    /// User to run as.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Keys not supported by the kubernetes executor.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One `artifacts:` entry (or report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Artifact {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub untracked: bool,
    #[serde(deserialize_with = "nullable")]
    pub paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub exclude: Vec<String>,
    /// `on_success` (also ""), `on_failure`, `always`.
    #[serde(deserialize_with = "nullable")]
    pub when: String,
    /// `archive`, `junit`, ...
    #[serde(deserialize_with = "nullable")]
    pub artifact_type: String,
    /// `zip`, `gzip`, `raw`, `zipzstd`, `tarzstd` or "".
    #[serde(deserialize_with = "nullable")]
    pub artifact_format: String,
    #[serde(deserialize_with = "nullable")]
    pub expire_in: String,
}

/// One `cache:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Cache {
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    #[serde(deserialize_with = "nullable")]
    pub untracked: bool,
    /// `pull-push` (also ""), `pull`, `push`.
    #[serde(deserialize_with = "nullable")]
    pub policy: String,
    #[serde(deserialize_with = "nullable")]
    pub paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub when: String,
    #[serde(deserialize_with = "nullable")]
    pub fallback_keys: Vec<String>,
}

/// Registry credentials; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Credentials {
    /// `registry`.
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    #[serde(deserialize_with = "nullable")]
    pub username: String,
    #[serde(deserialize_with = "nullable")]
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("type", &self.r#type)
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .finish()
    }
}

/// A job whose artifacts this job needs; `Debug` hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Dependency {
    /// Job id to download from.
    #[serde(deserialize_with = "nullable")]
    pub id: i64,
    /// Job name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Token for `JOB-TOKEN` on the download.
    #[serde(deserialize_with = "nullable")]
    pub token: String,
    /// Present only when the job has an archive.
    pub artifacts_file: Option<DependencyArtifactsFile>,
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dependency")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("token", &secret(&self.token))
            .field("artifacts_file", &self.artifacts_file)
            .finish()
    }
}

/// `dependencies[].artifacts_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct DependencyArtifactsFile {
    #[serde(deserialize_with = "nullable")]
    pub filename: String,
    #[serde(deserialize_with = "nullable")]
    pub size: i64,
}

/// `features` of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobFeatures {
    /// Emit `section_start`/`section_end` markers.
    #[serde(deserialize_with = "nullable")]
    pub trace_sections: bool,
    /// Extra token prefixes to mask.
    #[serde(deserialize_with = "nullable")]
    pub token_mask_prefixes: Vec<String>,
    /// Failure reasons the server understands beyond the always-supported ones.
    #[serde(deserialize_with = "nullable")]
    pub failure_reasons: Vec<String>,
    /// OpenTelemetry settings, kept as JSON.
    pub tracing: serde_json::Value,
}

/// A `hooks:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Hook {
    /// `pre_get_sources_script` or `post_get_sources_script`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Command lines.
    #[serde(deserialize_with = "nullable")]
    pub script: Vec<String>,
}

#[cfg(test)]
mod suspend_tests {
    use super::*;

    #[test]
    fn suspend_options_are_typed_and_null_or_absent_means_none() {
        let job: JobResponse = serde_json::from_str(
            r#"{"id": 1, "token": "t", "suspend_options":
                {"suspend_on_success": true, "runtime_environment_key": "7/s_1/build-container-id=abc"}}"#,
        )
        .unwrap();
        assert_eq!(
            job.suspend_options,
            SuspendOptions {
                suspend_on_success: true,
                suspend_on_failure: false,
                runtime_environment_key: "7/s_1/build-container-id=abc".into(),
            }
        );
        for body in [
            r#"{"id": 1, "suspend_options": null}"#,
            r#"{"id": 1}"#,
            r#"{"id": 1, "suspend_options": {"runtime_environment_key": null}}"#,
        ] {
            let job: JobResponse = serde_json::from_str(body).unwrap();
            assert_eq!(job.suspend_options, SuspendOptions::default(), "{body}");
        }
    }
}
