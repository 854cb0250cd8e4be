//! `oxrunner lint`: checks a config.toml as `gitlab-runner lint` does (syntax, types, unknown keys, values) and
//! fails when anything is wrong, naming each problem with its file:line:column.

use std::process::ExitCode;

use anyhow::bail;

use super::common::config_path;
use crate::cli::ConfigArg;

pub fn run(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let path = config_path(args);
    if !path.exists() {
        bail!(
            "config file not found: {}\nhint: pass the file with -c /path/to/config.toml",
            path.display()
        );
    }
    // Syntax and type errors come back as an error with their position.
    let loaded = oxrunner_config::load(&path)?;
    if loaded.warnings.is_empty() {
        errln!("Configuration file is valid.");
        return Ok(ExitCode::SUCCESS);
    }
    for w in &loaded.warnings {
        errln!("  {w}");
    }
    bail!(
        "{} problem(s) found in {}\nhint: fix or remove the keys named above",
        loaded.warnings.len(),
        path.display()
    )
}
