//! Pieces shared by the commands: where the config file is and how a token is shown.

use std::path::{Path, PathBuf};

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

/// The short form of a token shown in logs (gitlab-runner's rules: prefix stripped, 9 characters).
pub fn short(token: &str) -> String {
    oxrunner_config::short_token(token)
}
