//! `oxrunner exec --cache-config FILE`: the `[runners.cache]` of one runner of a config.toml, so jobs run on a
//! laptop restore and push the same objects as that runner's CI jobs. Object names are the daemon's: the runner's
//! short token for `Shared = false`, and the project id of `CI_PROJECT_ID` (`--variable CI_PROJECT_ID=<id>`,
//! required with `--cache-config`).

use std::path::Path;

use anyhow::bail;
use oxrunner_config::RunnerConfig;

use crate::hooks::RemoteSetup;

/// The remote cache of the runner named `wanted` (or the file's only runner). Every problem is an error here,
/// before any job runs: someone who asked for a shared cache should not find out from a job log that it was
/// not used. `variables` are the command line's: they must name the project whose caches these are.
pub fn setup(
    path: &Path,
    wanted: Option<&str>,
    variables: &[(String, String)],
) -> anyhow::Result<RemoteSetup> {
    let loaded = oxrunner_config::load(path)?;
    let runners = &loaded.config.runners;
    let names = || {
        runners
            .iter()
            .map(|r| format!("{:?}", r.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (index, runner): (usize, &RunnerConfig) = match wanted {
        Some(name) => match runners.iter().enumerate().find(|(_, r)| r.name == name) {
            Some(found) => found,
            None => bail!(
                "{}: no [[runners]] named {name:?} (runners: {})\nhint: pass one of those names to --cache-runner",
                path.display(),
                names()
            ),
        },
        None => match runners.as_slice() {
            [only] => (0, only),
            [] => bail!(
                "{}: no [[runners]] section, so no [runners.cache] to use\nhint: pass the config.toml of the runner \
                 whose cache the jobs should share",
                path.display()
            ),
            _ => bail!(
                "{}: {} runners, and --cache-runner does not say whose [runners.cache] to use (runners: {})\n\
                 hint: add --cache-runner NAME",
                path.display(),
                runners.len(),
                names()
            ),
        },
    };
    let prefix = format!("runners[{index}].cache");
    for w in loaded.warnings.iter().filter(|w| w.key.starts_with(&prefix)) {
        errln!("WARNING: {w}");
    }
    let kind = runner
        .cache
        .as_ref()
        .and_then(|c| c.cache_type.as_deref())
        .map(str::trim)
        .unwrap_or_default();
    match RemoteSetup::from_config(runner.cache.as_ref(), &runner.short_token()) {
        RemoteSetup::Ready(remote) => {
            require_project_id(variables)?;
            Ok(RemoteSetup::Ready(remote))
        }
        RemoteSetup::Broken(why) => bail!("{}: runner {:?}: {why}", path.display(), runner.name),
        RemoteSetup::None if kind.is_empty() => bail!(
            "{}: runner {:?} has no [runners.cache] with a Type\nhint: give it a [runners.cache] section with \
             Type = \"s3\" (or \"gcs\", \"azure\"), or pick another runner with --cache-runner",
            path.display(),
            runner.name
        ),
        RemoteSetup::None => bail!(
            "{}: runner {:?}: [runners.cache] Type = {kind:?} is not supported by oxrunner exec\nhint: use Type = \
             \"s3\", \"gcs\" or \"azure\"",
            path.display(),
            runner.name
        ),
    }
}

/// Object names carry the project id; without the real one exec's jobs would read and overwrite the caches of
/// whichever project has exec's own default id (1 is a real project on most self-managed GitLabs).
fn require_project_id(variables: &[(String, String)]) -> anyhow::Result<()> {
    let hint = "hint: pass the project's numeric id (Settings > General), e.g. --variable CI_PROJECT_ID=42";
    match variables.iter().rev().find(|(k, _)| k == "CI_PROJECT_ID") {
        None => {
            bail!("--cache-config needs CI_PROJECT_ID: cache objects are named after the project\n{hint}")
        }
        Some((_, v)) if project_id(variables).is_none() => {
            bail!("--cache-config: CI_PROJECT_ID={v:?} is not a project id (a whole number)\n{hint}")
        }
        Some(_) => Ok(()),
    }
}

/// `CI_PROJECT_ID` among the command line's variables, for the object names of the remote cache.
pub fn project_id(cli_variables: &[(String, String)]) -> Option<i64> {
    cli_variables
        .iter()
        .rev()
        .find(|(k, _)| k == "CI_PROJECT_ID")
        .and_then(|(_, v)| v.trim().parse().ok())
        .filter(|id: &i64| *id >= 0)
}
