//! What this build does with each `config.toml` key gitlab-runner knows: acted on, or named in a start-up
//! warning. Nothing is ignored silently.
//!
//! [`KEYS`] classifies every key of upstream's config structs (the list is generated from gitlab-runner's source
//! into `tests/data/upstream-config-keys.tsv`; a test fails when a key is missing here). [`warnings`] walks a
//! loaded configuration and names each key it sets that is classified [`Support::Warned`] ([`global_warnings`],
//! [`runner_warnings`]).

use crate::model::global::Config;
use crate::model::runner::RunnerConfig;

/// What this build does with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Read and honoured.
    Acted,
    /// Parsed and kept, but changes nothing here; the text says why (it ends the start-up warning).
    Warned(&'static str),
    /// Only meaningful together with the key named (itself warned), so it needs no warning of its own.
    Inert(&'static str),
}

use Support::{Acted, Inert, Warned};

/// `*`: every key of the section (a whole section this build does not use).
pub const ALL: &str = "*";

const EXECUTOR: &str = "this executor is not part of this build (the runner refuses its jobs)";

/// Every key of gitlab-runner's config structs, by section (`.` = top level), with what happens to it here.
pub const KEYS: &[(&str, &str, Support)] = &[
    (".", "listen_address", Acted),
    (".", "session_server", Acted),
    (".", "labels", Acted),
    (".", "concurrent", Acted),
    (".", "check_interval", Acted),
    (".", "log_level", Acted),
    (".", "log_format", Acted),
    (".", "user", Acted),
    (".", "runners", Acted),
    (
        ".",
        "sentry_dsn",
        Warned("error reporting to Sentry is not supported"),
    ),
    (".", "connection_max_age", Acted),
    (
        ".",
        "machine",
        Warned("the docker+machine executor is not part of this build"),
    ),
    (".", "experimental", Warned("the usage logger is not supported")),
    (".", "shutdown_timeout", Acted),
    ("session_server", "listen_address", Acted),
    ("session_server", "advertise_address", Acted),
    ("session_server", "session_timeout", Acted),
    ("machine", ALL, Inert("machine")),
    ("experimental", ALL, Inert("experimental")),
    ("runners", "name", Acted),
    ("runners", "limit", Acted),
    ("runners", "output_limit", Acted),
    ("runners", "request_concurrency", Acted),
    ("runners", "strict_check_interval", Acted),
    ("runners", "unhealthy_requests_limit", Acted),
    ("runners", "unhealthy_interval", Acted),
    ("runners", "job_status_final_update_retry_limit", Acted),
    ("runners", "experimental", Warned("boot_verify is not supported")),
    ("runners", "url", Acted),
    ("runners", "id", Acted),
    ("runners", "token", Acted),
    ("runners", "token_obtained_at", Acted),
    ("runners", "token_expires_at", Acted),
    ("runners", "tls-ca-file", Acted),
    ("runners", "tls-cert-file", Acted),
    ("runners", "tls-key-file", Acted),
    ("runners", "labels", Acted),
    ("runners", "executor", Acted),
    ("runners", "builds_dir", Acted),
    ("runners", "cache_dir", Acted),
    ("runners", "clone_url", Acted),
    ("runners", "environment", Acted),
    ("runners", "proxy_exec", Warned("proxy_exec is not supported")),
    ("runners", "pre_get_sources_script", Acted),
    ("runners", "post_get_sources_script", Acted),
    ("runners", "pre_build_script", Acted),
    ("runners", "post_build_script", Acted),
    ("runners", "prepare_timeout", Acted),
    ("runners", "get_sources_timeout", Acted),
    ("runners", "debug_trace_disabled", Acted),
    ("runners", "safe_directory_checkout", Acted),
    ("runners", "clean_git_config", Acted),
    ("runners", "shell", Acted),
    ("runners", "custom_build_dir", Acted),
    ("runners", "referees", Warned("referees are not supported")),
    ("runners", "cache", Acted),
    ("runners", "artifact", Acted),
    ("runners", "feature_flags", Acted),
    (
        "runners",
        "monitoring",
        Warned("job queuing duration monitoring is not supported"),
    ),
    (
        "runners",
        "use_slot_cgroups",
        Warned("slot cgroups are not supported"),
    ),
    (
        "runners",
        "slot_cgroup_template",
        Inert("runners.use_slot_cgroups"),
    ),
    ("runners", "instance", Warned(EXECUTOR)),
    ("runners", "ssh", Warned(EXECUTOR)),
    ("runners", "docker", Acted),
    ("runners", "parallels", Warned(EXECUTOR)),
    ("runners", "virtualbox", Warned(EXECUTOR)),
    ("runners", "machine", Warned(EXECUTOR)),
    ("runners", "kubernetes", Warned(EXECUTOR)),
    ("runners", "custom", Acted),
    ("runners", "autoscaler", Warned(EXECUTOR)),
    (
        "runners",
        "step_runner_image",
        Warned("native steps are not supported"),
    ),
    ("runners.custom_build_dir", "enabled", Acted),
    ("runners.artifact", "upload_timeout", Acted),
    ("runners.artifact", "response_header_timeout", Acted),
    ("runners.experimental", ALL, Inert("runners.experimental")),
    ("runners.monitoring", ALL, Inert("runners.monitoring")),
    ("runners.referees", ALL, Inert("runners.referees")),
    ("runners.instance", ALL, Inert("runners.instance")),
    ("runners.ssh", ALL, Inert("runners.ssh")),
    ("runners.parallels", ALL, Inert("runners.parallels")),
    ("runners.virtualbox", ALL, Inert("runners.virtualbox")),
    ("runners.machine", ALL, Inert("runners.machine")),
    ("runners.kubernetes", ALL, Inert("runners.kubernetes")),
    ("runners.autoscaler", ALL, Inert("runners.autoscaler")),
    ("runners.custom", ALL, Acted),
    // `Type` other than "s3"/"gcs"/"azure", and the S3 keys this build does not use, are named by the daemon's
    // cache check.
    ("runners.cache", "Type", Acted),
    ("runners.cache", "Path", Acted),
    ("runners.cache", "Shared", Acted),
    ("runners.cache", "MaxUploadedArchiveSize", Acted),
    ("runners.cache", "s3", Acted),
    ("runners.cache", "gcs", Acted),
    ("runners.cache", "azure", Acted),
    ("runners.cache.s3", ALL, Acted),
    ("runners.cache.gcs", ALL, Acted),
    ("runners.cache.azure", ALL, Acted),
    ("runners.docker.services", "name", Acted),
    ("runners.docker.services", "alias", Acted),
    ("runners.docker.services", "command", Acted),
    ("runners.docker.services", "entrypoint", Acted),
    ("runners.docker.services", "environment", Acted),
    (
        "runners.docker.services",
        "suspend_data_path",
        Warned("suspendable environments are not supported"),
    ),
    (
        "runners.docker",
        "helper_image",
        Warned("no helper image is used: the runner moves files itself"),
    ),
    (
        "runners.docker",
        "helper_image_flavor",
        Warned("no helper image is used: the runner moves files itself"),
    ),
    (
        "runners.docker",
        "mac_address",
        Warned("a fixed MAC address is not supported"),
    ),
    (
        "runners.docker",
        "cache_dir",
        Warned("caches live in the runner's cache store, not a container path"),
    ),
    (
        "runners.docker",
        "volume_keep",
        Warned("cache volumes are not used: caches live in the runner's store"),
    ),
    (
        "runners.docker",
        "volume_driver_ops",
        Warned("volume driver options are not supported"),
    ),
    (
        "runners.docker",
        "service_slot_cgroup_template",
        Warned("slot cgroups are not supported"),
    ),
    ("runners.docker", ALL, Acted),
];

/// The classification of `key` in `section` (`.` = top level; a key of a list section such as `[[runners]]` is
/// classified under `runners`).
pub fn classify(section: &str, key: &str) -> Option<Support> {
    KEYS.iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .or_else(|| KEYS.iter().find(|(s, k, _)| *s == section && *k == ALL))
        .map(|(_, _, support)| *support)
}

/// One line per top-level key set in `config` that this build does not act on.
pub fn global_warnings(config: &Config) -> Vec<String> {
    let Ok(toml::Value::Table(doc)) = toml::Value::try_from(config) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in doc.iter().filter(|(k, _)| *k != "runners") {
        walk(".", key, value, "", &mut out);
    }
    out
}

/// One line per key set in `runner` that this build does not act on, naming the runner.
pub fn runner_warnings(runner: &RunnerConfig) -> Vec<String> {
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(runner) else {
        return Vec::new();
    };
    let who = format!("runner `{}`: ", runner.name);
    let mut out = Vec::new();
    for (key, value) in &table {
        walk("runners", key, value, &who, &mut out);
    }
    out
}

/// Sections the walk looks into (every other table is a value, such as `labels` or `feature_flags`).
const SECTIONS: &[&str] = &[
    "session_server",
    "runners.docker",
    "runners.docker.services",
    "runners.cache",
    "runners.artifact",
];

fn walk(section: &str, key: &str, value: &toml::Value, who: &str, out: &mut Vec<String>) {
    let path = if section == "." {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    };
    if asks_nothing(value) {
        return;
    }
    if let Some(Warned(why)) = classify(section, key) {
        out.push(format!("{who}{path} is not supported ({why}); ignored"));
        return;
    }
    if !SECTIONS.contains(&path.as_str()) {
        return;
    }
    let tables: Vec<&toml::map::Map<String, toml::Value>> = match value {
        toml::Value::Table(t) => vec![t],
        toml::Value::Array(list) => list.iter().filter_map(toml::Value::as_table).collect(),
        _ => Vec::new(),
    };
    for table in tables {
        for (k, v) in table {
            walk(&path, k, v, who, out);
        }
    }
}

/// Values that ask for nothing (what `register` writes for sections it leaves empty, such as
/// `[runners.cache.s3]` or `MaxUploadedArchiveSize = 0`): ignoring them changes nothing, so they are not named.
fn asks_nothing(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => s.is_empty(),
        toml::Value::Integer(i) => *i == 0,
        toml::Value::Boolean(b) => !b,
        toml::Value::Array(a) => a.iter().all(asks_nothing),
        toml::Value::Table(t) => t.values().all(asks_nothing),
        _ => false,
    }
}
