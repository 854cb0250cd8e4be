//! `JobPlan`: the validated, executor-neutral description of one job, and the runner-side `RunnerContext`.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::trace::MaskSet;
use crate::variables::Variables;

/// Default job timeout when GitLab sends none (`runner_info.timeout <= 0`).
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(7200);

/// Everything needed to run one job.
#[derive(Clone, Debug, Default)]
pub struct JobPlan {
    /// GitLab job id (`CI_JOB_ID`).
    pub job_id: i64,
    /// Job name.
    pub job_name: String,
    /// Pipeline stage of the job.
    pub stage: String,
    /// GitLab project id.
    pub project_id: i64,
    /// `group/sub/project` slug taken from the repository URL path (without `.git`).
    pub project_path: String,
    /// Job variables in payload order (runner variables are added by the driver).
    pub variables: Variables,
    /// Where and how to fetch the sources.
    pub sources: Sources,
    /// User steps (`script`, `release`, ...), in order.
    pub steps: Vec<Step>,
    /// The `after_script` step, if any.
    pub after_script: Option<Step>,
    /// Job timeout.
    pub timeout: Duration,
    /// Cache definitions (data for the `JobHooks` implementation).
    pub caches: Vec<CacheSpec>,
    /// Artifact definitions (data for the `JobHooks` implementation).
    pub artifacts: Vec<ArtifactSpec>,
    /// Jobs whose artifacts are downloaded before the steps.
    pub dependencies: Vec<Dependency>,
    /// Job image (Docker executor).
    pub image: Option<ImageSpec>,
    /// Service containers (Docker executor).
    pub services: Vec<ImageSpec>,
    /// Registry credentials from the payload (`credentials[]`, Docker executor).
    pub credentials: Vec<RegistryCredential>,
    /// Trace-related features announced by GitLab.
    pub features: TraceFeatures,
    /// The job token (`CI_JOB_TOKEN`).
    pub job_token: Secret,
    /// `suspend_options` (`FF_SUSPENDABLE_ENVIRONMENTS`, see `suspend.rs`).
    pub suspend: crate::suspend::SuspendOptions,
}

/// The job timeout for `runner_info.timeout` seconds (`<= 0` means GitLab's default of 7200 s).
pub fn job_timeout_from_seconds(secs: i64) -> Duration {
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_JOB_TIMEOUT)
}

/// `group/sub/project` from a repository URL (`https://host/group/sub/project.git`), without credentials.
pub fn project_path_from_repo_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    // scp-like `git@host:group/project.git` has no slash before the path.
    let path = match rest.find('/') {
        Some(i) if !rest[..i].contains(':') || url.contains("://") => &rest[i + 1..],
        _ => rest.split_once(':').map(|(_, p)| p)?,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!path.is_empty()).then(|| path.to_owned())
}

impl JobPlan {
    /// The mask set for this job's trace: masked variables, the job token, the default token prefixes plus the
    /// prefixes GitLab announced.
    pub fn mask_set(&self) -> MaskSet {
        let mut values: Vec<String> = self
            .variables
            .iter()
            .filter(|v| v.masked)
            .map(|v| v.value.clone())
            .collect();
        values.push(self.job_token.expose().to_owned());
        // The runner's TLS key reaches the job as a file; a `cat` or a debug trace must not print it.
        if let Some(key) = &self.sources.tls_key {
            values.push(key.expose().to_owned());
        }
        MaskSet::with_default_prefixes(
            values,
            &self.features.token_mask_prefixes,
            crate::feature_flags::is_on(&self.variables, "FF_MASK_ALL_DEFAULT_TOKENS"),
        )
    }

    /// The job timeout with GitLab's default applied.
    pub fn effective_timeout(&self) -> Duration {
        if self.timeout.is_zero() {
            DEFAULT_JOB_TIMEOUT
        } else {
            self.timeout
        }
    }
}

/// Git strategy (`GIT_STRATEGY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GitStrategy {
    /// Fresh clone into an emptied directory.
    Clone,
    /// Reuse the existing checkout and fetch.
    #[default]
    Fetch,
    /// Do not touch the sources at all.
    None,
    /// Empty project directory, no git.
    Empty,
}

impl GitStrategy {
    /// Parses the variable value (`clone`, `fetch`, `none`, `empty`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "clone" => Some(Self::Clone),
            "fetch" => Some(Self::Fetch),
            "none" => Some(Self::None),
            "empty" => Some(Self::Empty),
            _ => None,
        }
    }
}

/// Submodule strategy (`GIT_SUBMODULE_STRATEGY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubmoduleStrategy {
    /// No submodules.
    #[default]
    None,
    /// Top-level submodules only.
    Normal,
    /// Submodules recursively.
    Recursive,
}

impl SubmoduleStrategy {
    /// Parses the variable value.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "none" | "" => Some(Self::None),
            "normal" => Some(Self::Normal),
            "recursive" => Some(Self::Recursive),
            _ => None,
        }
    }
}

/// Source checkout settings. The driver lets the `GIT_*` job variables override these defaults.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Where the project's files come from: the repository, or a directory on the runner (`oxrunner exec`).
    pub origin: SourceOrigin,
    /// Git strategy.
    pub strategy: GitStrategy,
    /// Repository URL; usually carries `gitlab-ci-token:<job token>@`.
    pub repo_url: Secret,
    /// Commit to check out.
    pub sha: String,
    /// Branch or tag name.
    pub ref_name: String,
    /// `branch` or `tag`.
    pub ref_type: String,
    /// Refspecs to fetch.
    pub refspecs: Vec<String>,
    /// Fetch depth (0 = full history).
    pub depth: u32,
    /// Check out `sha` after fetching.
    pub checkout: bool,
    /// Flags for `git clean` (empty or `none` disables cleaning).
    pub clean_flags: String,
    /// Extra flags for `git fetch`.
    pub fetch_extra_flags: String,
    /// Extra flags for clones (native clone only; kept for completeness).
    pub clone_extra_flags: String,
    /// Submodule strategy.
    pub submodule_strategy: SubmoduleStrategy,
    /// Submodule depth (`None` = same as `depth`).
    pub submodule_depth: Option<u32>,
    /// Limit submodule operations to these paths.
    pub submodule_paths: Vec<String>,
    /// Extra flags for `git submodule update`.
    pub submodule_update_flags: String,
    /// Attempts for get_sources (1..=10).
    pub get_sources_attempts: u32,
    /// Job hook `pre_get_sources_script`.
    pub pre_get_sources_script: Vec<String>,
    /// Job hook `post_get_sources_script`.
    pub post_get_sources_script: Vec<String>,
    /// PEM content for `CI_SERVER_TLS_CA_FILE` (written as a file variable, used by git as `http.sslCAInfo`).
    pub ca_file: Option<String>,
    /// The runner's TLS client certificate (PEM) for GitLab, passed to git and the job as
    /// `CI_SERVER_TLS_CERT_FILE`, so a GitLab that requires client certificates can be cloned from.
    pub tls_cert: Option<String>,
    /// Its private key (PEM), passed as `CI_SERVER_TLS_KEY_FILE`.
    pub tls_key: Option<Secret>,
    /// The correlation id of the job request, sent to git's server as `X-Gitaly-Correlation-ID` under
    /// `FF_USE_GITALY_CORRELATION_ID` (empty for jobs that did not come from GitLab).
    pub correlation_id: String,
}

/// Where get_sources takes the project's files from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceOrigin {
    /// The repository, per the git settings (strategy, depth, submodules...).
    #[default]
    Git,
    /// A ready directory on the runner (`oxrunner exec`: a prepared copy of the user's working tree). No git runs:
    /// an executor with local files uses it in place as the project directory, one with remote files
    /// (`Executor::files`) receives a copy of it.
    LocalDir(PathBuf),
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            origin: SourceOrigin::Git,
            strategy: GitStrategy::Fetch,
            repo_url: Secret::default(),
            sha: String::new(),
            ref_name: String::new(),
            ref_type: "branch".to_owned(),
            refspecs: Vec::new(),
            depth: 0,
            checkout: true,
            clean_flags: "-ffdx".to_owned(),
            fetch_extra_flags: "--prune --quiet".to_owned(),
            clone_extra_flags: String::new(),
            submodule_strategy: SubmoduleStrategy::None,
            submodule_depth: None,
            submodule_paths: Vec::new(),
            submodule_update_flags: String::new(),
            get_sources_attempts: 1,
            pre_get_sources_script: Vec::new(),
            post_get_sources_script: Vec::new(),
            ca_file: None,
            tls_cert: None,
            tls_key: None,
            correlation_id: String::new(),
        }
    }
}

/// When a step, cache or artifact applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum When {
    /// Only while the job succeeds (GitLab's default, also for `""`).
    #[default]
    OnSuccess,
    /// Only after a failure.
    OnFailure,
    /// Always.
    Always,
}

impl When {
    /// Parses GitLab's value; empty or unknown means `on_success`.
    pub fn parse(s: &str) -> Self {
        match s {
            "on_failure" => Self::OnFailure,
            "always" => Self::Always,
            _ => Self::OnSuccess,
        }
    }

    /// Whether it applies for a job that has (not) failed so far.
    pub fn applies(self, failed: bool) -> bool {
        match self {
            Self::OnSuccess => !failed,
            Self::OnFailure => failed,
            Self::Always => true,
        }
    }
}

/// One script step of the job.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Step name: `script`, `release`, `after_script`, ...; the stage is `step_<name>`.
    pub name: String,
    /// Script lines (each may be multi-line).
    pub script: Vec<String>,
    /// Step timeout, if GitLab set one.
    pub timeout: Option<Duration>,
    /// When the step runs.
    pub when: When,
    /// A failure of this step does not fail the job.
    pub allow_failure: bool,
}

/// Cache policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Restore and save (`pull-push`, also `""`).
    #[default]
    PullPush,
    /// Restore only.
    Pull,
    /// Save only.
    Push,
}

impl CachePolicy {
    /// Parses GitLab's value (`pull-push`, `pull`, `push`; empty means `pull-push`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" | "pull-push" => Some(Self::PullPush),
            "pull" => Some(Self::Pull),
            "push" => Some(Self::Push),
            _ => None,
        }
    }
}

/// One `cache:` entry.
#[derive(Clone, Debug, Default)]
pub struct CacheSpec {
    /// Cache key (unexpanded).
    pub key: String,
    /// Include untracked files.
    pub untracked: bool,
    /// Policy.
    pub policy: CachePolicy,
    /// Paths/globs.
    pub paths: Vec<String>,
    /// When to save.
    pub when: When,
    /// Keys to try when `key` has no cache.
    pub fallback_keys: Vec<String>,
}

/// One `artifacts:` entry.
#[derive(Clone, Debug, Default)]
pub struct ArtifactSpec {
    /// Archive name.
    pub name: String,
    /// Include untracked files.
    pub untracked: bool,
    /// Paths/globs.
    pub paths: Vec<String>,
    /// Excluded globs.
    pub exclude: Vec<String>,
    /// When to upload.
    pub when: When,
    /// `archive`, `junit`, ...
    pub artifact_type: String,
    /// `zip`, `gzip`, `raw`, ...
    pub artifact_format: String,
    /// Expiry, e.g. `7d`.
    pub expire_in: Option<String>,
}

/// A job whose artifacts this job downloads.
#[derive(Clone, Debug, Default)]
pub struct Dependency {
    /// Job id.
    pub id: i64,
    /// Job name.
    pub name: String,
    /// Token to download that job's artifacts.
    pub token: Secret,
    /// The artifact archive, when the job has one.
    pub artifacts_file: Option<ArtifactsFile>,
}

/// The artifact archive of a dependency.
#[derive(Clone, Debug, Default)]
pub struct ArtifactsFile {
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
}

/// A container image (job image or service).
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// Image reference.
    pub name: String,
    /// Aliases (services).
    pub aliases: Vec<String>,
    /// Command override.
    pub command: Vec<String>,
    /// Entrypoint override.
    pub entrypoint: Vec<String>,
    /// Exposed ports.
    pub ports: Vec<u16>,
    /// Service variables.
    pub variables: Variables,
    /// Pull policies in order of preference.
    pub pull_policy: Vec<String>,
    /// `executor_opts.docker.platform`.
    pub platform: Option<String>,
    /// `executor_opts.docker.user`.
    pub user: Option<String>,
}

/// One `credentials[]` entry of the job payload.
#[derive(Clone, Debug, Default)]
pub struct RegistryCredential {
    /// `registry`.
    pub kind: String,
    /// Registry URL or host.
    pub url: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
}

/// Trace-related job features.
#[derive(Clone, Debug, Default)]
pub struct TraceFeatures {
    /// Emit `section_start`/`section_end` markers.
    pub trace_sections: bool,
    /// Additional token prefixes to mask.
    pub token_mask_prefixes: Vec<String>,
    /// Failure reasons GitLab understands beyond the always-supported ones.
    pub failure_reasons: Vec<String>,
}

/// Runner-side settings the driver needs (from `config.toml` and the daemon).
#[derive(Clone, Debug, Default)]
pub struct RunnerContext {
    /// `[[runners]] name`.
    pub runner_name: String,
    /// First characters of the runner token (`CI_RUNNER_SHORT_TOKEN`).
    pub short_token: String,
    /// `.runner_system_id`.
    pub system_id: String,
    /// `[[runners]] id`: GitLab's id of the runner (0: unknown), part of a suspended environment's key.
    pub runner_id: i64,
    /// Executor name (`shell`, `docker`, ...).
    pub executor: String,
    /// Builds root as seen by the job (`/builds` for docker, `$PWD/builds` for shell).
    pub builds_dir: PathBuf,
    /// Cache root.
    pub cache_dir: PathBuf,
    /// `CI_CONCURRENT_ID`.
    pub concurrent_id: usize,
    /// `CI_CONCURRENT_PROJECT_ID`.
    pub concurrent_project_id: usize,
    /// The builds dir is shared between jobs (shell executor, host-mounted docker builds dir).
    pub shared_builds_dir: bool,
    /// `[[runners]] environment` entries (`KEY=value`).
    pub environment: Vec<String>,
    /// `pre_build_script` from config.
    pub pre_build_script: Option<String>,
    /// `post_build_script` from config.
    pub post_build_script: Option<String>,
    /// `pre_get_sources_script` from config.
    pub pre_get_sources_script: Option<String>,
    /// `post_get_sources_script` from config.
    pub post_get_sources_script: Option<String>,
    /// Trace output limit in bytes.
    pub output_limit: u64,
    /// Runner version (`CI_RUNNER_VERSION`).
    pub version: String,
    /// Runner revision (`CI_RUNNER_REVISION`).
    pub revision: String,
    /// Run job scripts as this user (shell executor).
    pub user: Option<String>,
    /// `debug_trace_disabled`: ignore `CI_DEBUG_TRACE`.
    pub debug_trace_disabled: bool,
    /// `clone_url` from config: replaces scheme/host of the repository URL.
    pub clone_url: Option<String>,
    /// The runner's `url` (empty for `exec`): a fetch from another host gets the `clone_url` hint.
    pub gitlab_url: String,
    /// `[runners.custom_build_dir] enabled`: allows `GIT_CLONE_PATH`.
    pub custom_build_dir: bool,
    /// `safe_directory_checkout`: add the project dir to git's global `safe.directory` before fetching.
    pub safe_directory_checkout: bool,
    /// `clean_git_config`: remove the checkout's git config and hooks before fetching (unset: gitlab-runner's
    /// default, on except for the shell executor).
    pub clean_git_config: Option<bool>,
    /// `prepare_timeout`: bounds preparing the executor (unset: the job timeout).
    pub prepare_timeout: Option<Duration>,
    /// `get_sources_timeout`: bounds get_sources with its retries (unset: the job timeout).
    pub get_sources_timeout: Option<Duration>,
    /// Runner-side root for checkouts of executors whose files are remote (`Executor::files`): git runs here,
    /// then the tree is pushed into the job. Kept between jobs so `fetch` is incremental. Empty:
    /// `$TMPDIR/oxrunner-builds`.
    pub runner_builds_dir: PathBuf,
}

impl RunnerContext {
    /// `CI_DEBUG_TRACE` in `vars` turns shell tracing on, unless the runner's `debug_trace_disabled` forbids it.
    pub fn debug_trace(&self, vars: &Variables) -> bool {
        debug_trace_enabled(self.debug_trace_disabled, vars)
    }
}

/// The one `CI_DEBUG_TRACE` rule (Go-style booleans, `debug_trace_disabled` wins). The daemon tells GitLab the
/// same answer before a `RunnerContext` exists, so the flag it reports matches what the job does.
pub fn debug_trace_enabled(debug_trace_disabled: bool, vars: &Variables) -> bool {
    !debug_trace_disabled && vars.bool("CI_DEBUG_TRACE").unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            project_path_from_repo_url("https://gitlab-ci-token:x@gitlab.example.com/g/sub/p.git").as_deref(),
            Some("g/sub/p")
        );
        assert_eq!(
            project_path_from_repo_url("git@gitlab.example.com:g/p.git").as_deref(),
            Some("g/p")
        );
        assert_eq!(
            project_path_from_repo_url("http://127.0.0.1:8080/g/p").as_deref(),
            Some("g/p")
        );
        assert_eq!(project_path_from_repo_url("https://host"), None);
        assert_eq!(job_timeout_from_seconds(0), DEFAULT_JOB_TIMEOUT);
        assert_eq!(job_timeout_from_seconds(60), Duration::from_secs(60));
        assert_eq!(CachePolicy::parse(""), Some(CachePolicy::PullPush));
        assert_eq!(CachePolicy::parse("bogus"), None);
    }
}
