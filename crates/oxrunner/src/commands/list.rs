//! `oxrunner list`: the runners of config.toml, tokens in their short form only.

use std::process::ExitCode;

use oxrunner_api::redact::redact_url;

use super::common::config_path;
use crate::cli::ConfigArg;

pub fn run(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let path = config_path(args);
    errln!(
        "{:<52}ConfigFile={}",
        "Listing configured runners",
        path.display()
    );
    let loaded = oxrunner_config::load(&path)?;
    for w in &loaded.warnings {
        errln!("WARNING: {w}");
    }
    for r in &loaded.config.runners {
        errln!(
            "{:<52}Executor={} Token={} URL={}",
            r.name,
            r.executor,
            r.short_token(),
            redact_url(&r.url)
        );
    }
    Ok(ExitCode::SUCCESS)
}
