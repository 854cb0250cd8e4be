//! What every front end needs to talk to a runner's GitLab: the directory beside config.toml, the API client for a
//! runner's URL and TLS files, and the `info` block sent with register, verify and job requests. It lives outside
//! `commands/` and `daemon/` because both use it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use oxrunner_api::{Client, ClientConfig, FeaturesInfo, RunnerInfo};
use oxrunner_config::{ExecutorKind, RunnerConfig};

use crate::version;

/// The directory of config.toml (`.` for a bare file name): runner state and certificates live beside it.
pub fn config_dir(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn client_for(
    url: &str,
    tls_ca_file: Option<&Path>,
    tls_cert_file: Option<&Path>,
    tls_key_file: Option<&Path>,
    config_path: &Path,
) -> anyhow::Result<Client> {
    let cfg = ClientConfig {
        url: url.to_string(),
        tls_ca_file: tls_ca_file.map(Path::to_path_buf),
        tls_cert_file: tls_cert_file.map(Path::to_path_buf),
        tls_key_file: tls_key_file.map(Path::to_path_buf),
        certs_dir: Some(oxrunner_config::certs_dir(config_path)),
    };
    Client::new(cfg).with_context(|| {
        format!(
            "cannot set up the GitLab client for {}",
            oxrunner_api::redact::redact_url(url)
        )
    })
}

pub fn client_for_runner(runner: &RunnerConfig, config_path: &Path) -> anyhow::Result<Client> {
    client_for(
        &runner.url,
        runner.tls_ca_file.as_deref(),
        runner.tls_cert_file.as_deref(),
        runner.tls_key_file.as_deref(),
        config_path,
    )
}

/// The `info` block: who we are and what we implement. GitLab uses the features to decide what it may send
/// (runner-api.md §1.7), so advertise only what works.
pub fn runner_info(executor: &ExecutorKind, shell: Option<&str>) -> RunnerInfo {
    let docker = *executor == ExecutorKind::Docker;
    let base = FeaturesInfo::client_defaults();
    let features = FeaturesInfo {
        variables: true,
        image: docker,
        services: docker,
        artifacts: true,
        cache: true,
        fallback_cache_keys: true,
        shared: !docker,
        upload_multiple_artifacts: true,
        upload_raw_artifacts: true,
        session: false,
        terminal: false,
        refspecs: true,
        masking: true,
        proxy: false,
        raw_variables: true,
        artifacts_exclude: true,
        multi_build_steps: true,
        vault_secrets: false,
        return_exit_code: true,
        service_variables: docker,
        service_multiple_aliases: docker,
        image_executor_opts: docker,
        service_executor_opts: docker,
        native_steps_integration: false,
        job_inputs: true,
        ..base
    };
    let mut info = RunnerInfo::oxrunner(executor.as_str(), shell.unwrap_or("bash"));
    info.version = version::reported_version();
    info.revision = version::reported_revision();
    info.features = features;
    info
}
