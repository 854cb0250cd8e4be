//! `oxrunner unregister`: removes runners from GitLab and from config.toml.
//!
//! Legacy tokens delete the runner (`DELETE /runners`); `glrt-` tokens only delete this machine's runner manager
//! (`DELETE /runners/managers`), because the runner itself belongs to the GitLab UI (runner-api.md §1.5).

use std::process::ExitCode;

use anyhow::bail;
use oxrunner_config::RunnerConfig;

use super::common::config_path;
use crate::cli::UnregisterArgs;
use crate::runner::{client_for, client_for_runner, config_dir};

pub async fn run(args: UnregisterArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&args.config);
    let mut doc = super::common::open_existing(&path)?;
    let config = doc.config()?;
    let system_id = oxrunner_config::system_id::load_or_create(&config_dir(&path))?;
    let all = args.all_runners.unwrap_or(false);

    let selected: Vec<&RunnerConfig> = if all {
        config.runners.iter().collect()
    } else if let Some(name) = &args.name {
        config.runners.iter().filter(|r| &r.name == name).collect()
    } else if let (Some(url), Some(token)) = (&args.url, &args.token) {
        let found: Vec<&RunnerConfig> = config
            .runners
            .iter()
            .filter(|r| r.url.trim_end_matches('/') == url.trim_end_matches('/') && r.token.expose() == token)
            .collect();
        if found.is_empty() {
            // gitlab-runner also unregisters a runner that is not in the config file.
            let client = client_for(url, None, None, None, &path)?;
            unregister_token(&client, token, &system_id).await?;
            errln!(
                "{:<52}runner={}",
                "Unregistering runner from GitLab succeeded",
                oxrunner_config::short_token(token)
            );
            return Ok(ExitCode::SUCCESS);
        }
        found
    } else {
        bail!(
            "say which runner to unregister\nhint: use --name NAME, --url URL --token TOKEN, or --all-runners"
        );
    };
    if selected.is_empty() {
        bail!("no runner in {} matches the given name", path.display());
    }

    let mut done = Vec::new();
    let mut failed = false;
    for runner in selected {
        let client = client_for_runner(runner, &path)?;
        match unregister_token(&client, runner.token.expose(), &system_id).await {
            Ok(()) => {
                errln!(
                    "{:<52}runner={}",
                    "Unregistering runner from GitLab succeeded",
                    runner.short_token()
                );
                done.push(runner.token.expose().to_string());
            }
            Err(err) => {
                failed = true;
                errln!(
                    "ERROR: Unregistering runner from GitLab failed     runner={}: {err:#}",
                    runner.short_token()
                );
            }
        }
    }
    if !done.is_empty() {
        doc.remove_runners(|r| done.iter().any(|t| t == r.token.expose()));
        doc.save()?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn unregister_token(client: &oxrunner_api::Client, token: &str, system_id: &str) -> anyhow::Result<()> {
    if token.starts_with("glrt-") {
        client.unregister_runner_manager(token, system_id).await?;
    } else {
        client.unregister_runner(token).await?;
    }
    Ok(())
}
