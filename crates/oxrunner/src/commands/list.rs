//! `oxrunner list`: the runners of config.toml in gitlab-runner's layout (its text formatter pads the message to 50
//! columns, then writes ` KEY=value` per field after one more space), with one deliberate difference: tokens are
//! printed in their short form only, so that listing runners never puts a credential on a terminal or in a log.

use std::process::ExitCode;

use oxrunner_api::redact::redact_url;

use super::common::config_path;
use crate::cli::ConfigArg;

pub fn run(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let path = config_path(args);
    errln!(
        "{:<50}  ConfigFile={}",
        "Listing configured runners",
        path.display()
    );
    let loaded = oxrunner_config::load(&path)?;
    for w in &loaded.warnings {
        errln!("WARNING: {w}");
    }
    for r in &loaded.config.runners {
        errln!(
            "{:<50}  Executor={} Token={} URL={}",
            r.name,
            r.executor,
            r.short_token(),
            redact_url(&r.url)
        );
    }
    Ok(ExitCode::SUCCESS)
}
