//! `register --template-config FILE`: a config.toml whose one `[[runners]]` entry fills every setting the flags
//! leave unset (gitlab-runner `commands/register.go` `configTemplate.MergeTo`: exactly one runner, its token
//! dropped, merged with mergo without override, before anything is asked or registered).

use std::path::Path;

use anyhow::{Context, bail};
use toml::{Table, Value};

/// The template's runner as a TOML table, checked by the config model first so a mistake is reported with its
/// file:line:column.
pub fn load(path: &Path) -> anyhow::Result<Table> {
    let loaded = oxrunner_config::load(path)
        .with_context(|| format!("cannot use the configuration template {}", path.display()))?;
    for w in &loaded.warnings {
        errln!("WARNING: template: {w}");
    }
    if loaded.config.runners.len() != 1 {
        bail!(
            "the configuration template {} has {} [[runners]] entries, it must have exactly one\nhint: keep one [[runners]] section in the template",
            path.display(),
            loaded.config.runners.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration template {}", path.display()))?;
    let mut root: Table = toml::from_str(&text)
        .with_context(|| format!("cannot parse the configuration template {}", path.display()))?;
    let Some(Value::Array(mut runners)) = root.remove("runners") else {
        bail!(
            "the configuration template {} has no [[runners]] entry\nhint: keep one [[runners]] section in the template",
            path.display()
        );
    };
    let Some(Value::Table(mut runner)) = runners.pop() else {
        bail!(
            "the configuration template {} has no [[runners]] table\nhint: keep one [[runners]] section in the template",
            path.display()
        );
    };
    // A template never carries the runner's identity: registration provides it.
    for key in ["token", "id", "token_obtained_at", "token_expires_at"] {
        runner.remove(key);
    }
    Ok(runner)
}

/// A string setting of the template's runner, for values register needs before the merge (URL, executor, ...).
pub fn string<'a>(template: Option<&'a Table>, key: &str) -> Option<&'a str> {
    template?
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
