//! Pieces shared by the commands: where the config file is, and how to reach a runner's GitLab.

use std::path::{Path, PathBuf};

use anyhow::Context;
use oxrunner_api::{Client, ClientConfig};
use oxrunner_config::RunnerConfig;

use crate::cli::ConfigArg;

/// Opens a config file that must already exist (verify, unregister, list act on registered runners).
pub fn open_existing(path: &Path) -> anyhow::Result<oxrunner_config::ConfigDocument> {
    if !path.exists() {
        anyhow::bail!(
            "config file {} does not exist\nhint: register a runner first (oxrunner register), or point to the file with -c/--config or CONFIG_FILE",
            path.display()
        );
    }
    Ok(oxrunner_config::ConfigDocument::open_or_new(path)?)
}

/// `-c/--config` or `CONFIG_FILE`, else gitlab-runner's default for this user.
pub fn config_path(arg: &ConfigArg) -> PathBuf {
    arg.config
        .clone()
        .unwrap_or_else(oxrunner_config::default_config_path)
}

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

/// The short form of a token shown in logs (gitlab-runner's rules: prefix stripped, 9 characters).
pub fn short(token: &str) -> String {
    oxrunner_config::short_token(token)
}
