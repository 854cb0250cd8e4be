//! gitlab-runner's feature flags (`FF_*`) in one table, and the one rule that resolves them for a job.
//!
//! The table mirrors upstream's `helpers/featureflags/flags.go` (name, default, deprecated); `Support` says what
//! this build does with each flag, so a flag set in `config.toml` that changes nothing here is named in a warning
//! instead of being ignored. A job sees every flag as an `FF_*` variable holding the resolved `true`/`false`, and
//! code that acts on a flag reads it with [`is_on`], which falls back to the table's default for a hand-made plan.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::variables::{Variable, Variables, parse_bool};

/// What this build does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Both values behave as in gitlab-runner.
    Honoured,
    /// The flag cannot change anything here; the text says why (named in a warning when set in `config.toml`).
    Ignored(&'static str),
    /// This build always behaves as gitlab-runner does with the flag at the given value; the other value is not
    /// reproduced for the reason given (named in a warning when `config.toml` asks for it).
    Fixed(bool, &'static str),
}

/// One upstream feature flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureFlag {
    pub name: &'static str,
    pub default: bool,
    pub deprecated: bool,
    pub support: Support,
}

const fn flag(name: &'static str, default: bool, support: Support) -> FeatureFlag {
    FeatureFlag {
        name,
        default,
        deprecated: false,
        support,
    }
}

const fn deprecated(name: &'static str, default: bool, support: Support) -> FeatureFlag {
    FeatureFlag {
        name,
        default,
        deprecated: true,
        support,
    }
}

use Support::{Fixed, Honoured, Ignored};

const K8S: Support = Ignored("the kubernetes executor is not part of this build");
const WINDOWS: Support = Ignored("Windows and PowerShell are not supported");
const FLEETING: Support = Ignored("docker-autoscaler (fleeting) is not part of this build");
const STEPS: Support = Ignored("native steps (`run:`) are not supported");

/// Every flag of gitlab-runner 19.x, in upstream's order.
pub const FLAGS: &[FeatureFlag] = &[
    deprecated("FF_TEST_FEATURE", false, Ignored("upstream's test-only flag")),
    flag("FF_NETWORK_PER_BUILD", false, Honoured),
    flag("FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY", false, K8S),
    flag("FF_USE_DIRECT_DOWNLOAD", true, Honoured),
    deprecated(
        "FF_USE_FASTZIP",
        true,
        Ignored("oxrunner always uses its own parallel zip"),
    ),
    flag("FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR", false, Honoured),
    flag("FF_ENABLE_BASH_EXIT_CODE_CHECK", false, Honoured),
    flag("FF_USE_WINDOWS_LEGACY_PROCESS_STRATEGY", false, WINDOWS),
    flag("FF_USE_LEGACY_BASH_EVAL", false, Honoured),
    flag("FF_USE_POWERSHELL_PATH_RESOLVER", false, WINDOWS),
    // Runner-level (`[runners.feature_flags]` only, as upstream): the trace sender's keep-alive interval.
    flag("FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL", false, Honoured),
    flag("FF_SCRIPT_SECTIONS", false, Honoured),
    // The project directory cleaned by git strategy at the end of cleanup_file_variables (`script/job_cleanup.rs`).
    flag("FF_ENABLE_JOB_CLEANUP", false, Honoured),
    flag("FF_KUBERNETES_HONOR_ENTRYPOINT", false, K8S),
    // Selects the quoting of values and the eval'd body (`script/escape.rs`).
    flag("FF_POSIXLY_CORRECT_ESCAPES", false, Honoured),
    // Read from `[runners.feature_flags]` only, as upstream (`oxrunner-api/src/client/ca_chain.rs`).
    flag("FF_RESOLVE_FULL_TLS_CHAIN", false, Honoured),
    flag("FF_DISABLE_POWERSHELL_STDIN", false, WINDOWS),
    flag("FF_USE_POD_ACTIVE_DEADLINE_SECONDS", true, K8S),
    flag("FF_USE_ADVANCED_POD_SPEC_CONFIGURATION", false, K8S),
    // A secret that is not found fails the job, or is an empty variable (`crates/oxrunner/src/secrets/`).
    flag("FF_SECRET_RESOLVING_FAILS_IF_MISSING", true, Honoured),
    flag("FF_PRINT_POD_EVENTS", false, K8S),
    // `transfer.bundleURI` in the external git config (`script/git_flags.rs`).
    flag("FF_USE_GIT_BUNDLE_URIS", true, Honoured),
    // `git clone` for GIT_STRATEGY=clone where git allows it (`script/git_clone.rs`).
    flag("FF_USE_GIT_NATIVE_CLONE", false, Honoured),
    flag("FF_USE_DUMB_INIT_WITH_KUBERNETES_EXECUTOR", false, K8S),
    flag("FF_USE_INIT_WITH_DOCKER_EXECUTOR", false, Honoured),
    flag("FF_LOG_IMAGES_CONFIGURED_FOR_JOB", false, Honoured),
    flag("FF_USE_DOCKER_AUTOSCALER_DIAL_STDIO", true, FLEETING),
    flag("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", false, Honoured),
    flag("FF_USE_WINDOWS_JOB_OBJECT", false, WINDOWS),
    flag("FF_TIMESTAMPS", true, Honoured),
    flag("FF_DISABLE_AUTOMATIC_TOKEN_ROTATION", false, Honoured),
    // Upstream picks one of two GCS client libraries; both sign URLs for the same objects.
    flag(
        "FF_USE_LEGACY_GCS_CACHE_ADAPTER",
        false,
        Ignored("this build has one GCS signer (V4 URLs) for Type = \"gcs\" and \"gcsv2\""),
    ),
    flag("FF_DISABLE_UMASK_FOR_KUBERNETES_EXECUTOR", false, K8S),
    // Upstream picks minio-go or the AWS SDK; both pre-sign SigV4 URLs for the same objects.
    flag(
        "FF_USE_LEGACY_S3_CACHE_ADAPTER",
        false,
        Ignored(
            "this build has one S3 signer (SigV4 pre-signed URLs), whichever adapter the flag would pick",
        ),
    ),
    flag(
        "FF_GIT_URLS_WITHOUT_TOKENS",
        false,
        Fixed(
            true,
            "the job token never goes into a remote URL or .git/config (as with the flag on); git reads it from a \
             runner-owned config file outside the checkout",
        ),
    ),
    flag("FF_WAIT_FOR_POD_TO_BE_REACHABLE", false, K8S),
    flag("FF_MASK_ALL_DEFAULT_TOKENS", true, Honoured),
    // Read by the metrics server from the job's resolved variables (stage durations).
    flag("FF_EXPORT_HIGH_CARDINALITY_METRICS", false, Honoured),
    flag("FF_USE_FLEETING_ACQUIRE_HEARTBEATS", false, FLEETING),
    flag("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", true, Honoured),
    // Runner-level: the daemon's request gate (`daemon/request_gate.rs`).
    flag("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY", true, Honoured),
    // `X-Gitaly-Correlation-ID` on git's requests, `http.<host>.proactiveAuth` on fetch and clone
    // (`script/git_flags.rs`).
    flag("FF_USE_GITALY_CORRELATION_ID", true, Honoured),
    flag("FF_USE_GIT_PROACTIVE_AUTH", false, Honoured),
    flag("FF_HASH_CACHE_KEYS", false, Honoured),
    flag("FF_ENABLE_JOB_INPUTS_INTERPOLATION", true, Honoured),
    // `crates/oxrunner/src/daemon/router/`: read from `[runners.feature_flags]`, as gitlab-runner's RequestJob does.
    flag("FF_USE_JOB_ROUTER", false, Honoured),
    flag("FF_SCRIPT_TO_STEP_MIGRATION", false, STEPS),
    // `hooks/remote/parts.rs`: large archives always move in parts; the flag cannot turn that off.
    flag(
        "FF_USE_PARALLEL_CACHE_TRANSFER",
        false,
        Fixed(
            true,
            "cache archives above 64 MiB always move in parallel 16 MiB parts (4 at a time) through the distributed cache",
        ),
    ),
    // `hooks/artifact_parts.rs`: a redirected dependency download in 16 MiB ranges, 16 at a time.
    flag("FF_USE_PARALLEL_ARTIFACT_TRANSFER", false, Honoured),
    flag("FF_CONCRETE", false, STEPS),
    // `suspend.rs` and `driver/suspend.rs`; the Docker executor suspends and resumes (`oxrunner-docker/src/
    // suspend.rs`), the shell and custom executors fail a job that asks to, as upstream's executors without support.
    flag("FF_SUSPENDABLE_ENVIRONMENTS", false, Honoured),
    // How the Docker executor stops a cancelled stage (`oxrunner-docker/src/stop.rs`).
    flag("FF_USE_NATIVE_CONTAINER_STOP", false, Honoured),
];

/// How long to wait before retry number `retry` (0 for the first retry) of a stage with attempts
/// (`GET_SOURCES_ATTEMPTS`, `ARTIFACT_DOWNLOAD_ATTEMPTS`). Upstream doubles the wait from 5 s up to 5 min with
/// `FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY`, and from 1 s up to 5 s without it (its retry helper's default).
pub fn stage_retry_backoff(vars: &Variables, retry: u32) -> Duration {
    let (min, max) = if is_on(vars, "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY") {
        (Duration::from_secs(5), Duration::from_secs(300))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    // Past 2^16 the product is far beyond `max` anyway; the cap keeps the multiplication finite.
    min.checked_mul(1u32 << retry.min(16)).map_or(max, |d| d.min(max))
}

/// The table entry of `name`.
pub fn find(name: &str) -> Option<&'static FeatureFlag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The default of `name` (false for a name not in the table, as upstream).
pub fn default_of(name: &str) -> bool {
    find(name).is_some_and(|f| f.default)
}

/// Whether `name` is on for a job whose variables are `vars`: the resolved `FF_*` variable, else the default.
pub fn is_on(vars: &Variables, name: &str) -> bool {
    vars.bool(name).unwrap_or_else(|| default_of(name))
}

/// Whether `name` is on for a runner whose `[runners.feature_flags]` is `config`: the configured value, else the
/// default. Flags that govern the runner's own traffic with GitLab (not one job) are read this way upstream, so a
/// job variable cannot change them.
pub fn runner_is_on(config: &BTreeMap<String, bool>, name: &str) -> bool {
    config.get(name).copied().unwrap_or_else(|| default_of(name))
}

/// `CI_BUILD_NETWORK_NAME` and the name of the job's network under `FF_NETWORK_PER_BUILD`: gitlab-runner's
/// `runner-<short token>-<project id>-<project slot>-<job id>`, lower case, `[-a-z0-9]` only, starting with a
/// letter or digit, at most 63 characters (RFC 1123).
pub fn build_network_name(short_token: &str, project_id: i64, project_slot: usize, job_id: i64) -> String {
    let raw = format!("runner-{short_token}-{project_id}-{project_slot}-{job_id}").to_lowercase();
    let kept: String = raw
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    kept.trim_start_matches('-').chars().take(63).collect()
}

/// One flag's value for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub flag: &'static FeatureFlag,
    pub value: bool,
}

/// Resolves every flag as gitlab-runner does: `[runners.feature_flags]` wins, then the job's variable (the last
/// one of that name; `[[runners]] environment` entries come before the job's own), then the default. A value
/// that is not a boolean falls back to the default and is reported in the returned messages.
pub fn resolve(
    config: &BTreeMap<String, bool>,
    environment: &[String],
    job: &Variables,
) -> (Vec<Resolved>, Vec<String>) {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(FLAGS.len());
    for f in FLAGS {
        let value = if let Some(v) = config.get(f.name) {
            *v
        } else {
            let raw = job.value(f.name).or_else(|| {
                environment
                    .iter()
                    .rev()
                    .filter_map(|e| e.split_once('='))
                    .find(|(k, _)| *k == f.name)
                    .map(|(_, v)| v)
            });
            match raw.filter(|r| !r.is_empty()) {
                None => f.default,
                Some(r) => parse_bool(r).unwrap_or_else(|| {
                    problems.push(format!(
                        "{}: could not parse feature flag, expected bool, got {r:?}; using the default ({})",
                        f.name, f.default
                    ));
                    f.default
                }),
            }
        };
        out.push(Resolved { flag: f, value });
    }
    (out, problems)
}

/// The job's variables with every flag's `FF_*` replaced by its resolved value (first, as upstream lists them).
pub fn apply(resolved: &[Resolved], vars: &Variables) -> Variables {
    let mut out: Variables = resolved
        .iter()
        .map(|r| Variable::new(r.flag.name, r.value.to_string()))
        .collect();
    out.extend(vars.iter().filter(|v| find(&v.key).is_none()).cloned());
    out
}

/// gitlab-runner's `feature flags:` header: the flags whose value differs from the default, `NAME:bool`, or
/// `None` when every flag is at its default.
pub fn header(vars: &Variables) -> Option<String> {
    let changed: Vec<String> = FLAGS
        .iter()
        .filter_map(|f| {
            let on = vars.bool(f.name)?;
            (on != f.default).then(|| format!("{}:{on}", f.name))
        })
        .collect();
    (!changed.is_empty()).then(|| changed.join(", "))
}

/// What a runner's `[runners.feature_flags]` asks for that this build cannot do: unknown names, and flags set to
/// a value other than their default that change nothing here (one line each, for the start-up warning).
pub fn config_warnings(config: &BTreeMap<String, bool>) -> Vec<String> {
    config
        .iter()
        .filter_map(|(name, value)| match find(name) {
            None => Some(format!("{name} is not a gitlab-runner feature flag")),
            Some(f) => match f.support {
                Ignored(why) if *value != f.default => Some(format!("{name} = {value}: {why}")),
                Fixed(only, why) if *value != only => Some(format!("{name} = {value}: {why}")),
                _ => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
        assert!(names.iter().all(|n| n.starts_with("FF_")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FLAGS.len());
    }
}
