//! `oxrunner verify`: asks GitLab whether each configured runner still exists; `--delete` drops the ones it
//! no longer knows from config.toml.

use std::process::ExitCode;

use oxrunner_api::ApiError;

use super::common::config_path;
use crate::cli::VerifyArgs;
use crate::runner::{client_for_runner, config_dir, runner_info};

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&args.config);
    let mut doc = super::common::open_existing(&path)?;
    let config = doc.config()?;
    let system_id = oxrunner_config::system_id::load_or_create(&config_dir(&path))?;
    let mut removed_tokens = Vec::new();
    let mut failed = false;
    let mut matched = 0usize;
    for runner in &config.runners {
        if args.name.as_deref().is_some_and(|n| n != runner.name)
            || args
                .url
                .as_deref()
                .is_some_and(|u| u.trim_end_matches('/') != runner.url.trim_end_matches('/'))
            || args.token.as_deref().is_some_and(|t| t != runner.token.expose())
        {
            continue;
        }
        matched += 1;
        let client = client_for_runner(runner, &path)?;
        let mut info = runner_info(&runner.executor_kind(), runner.shell.as_deref());
        info.labels = runner.computed_labels(&config.labels);
        match client
            .verify_runner(runner.token.expose(), &system_id, &info)
            .await
        {
            Ok(_) => errln!(
                "{:<52}runner={}",
                "Verifying runner... is valid",
                runner.short_token()
            ),
            Err(ApiError::Forbidden { .. }) => {
                let word = if runner.token.expose().starts_with("glrt-") {
                    "is not valid"
                } else {
                    "is removed"
                };
                errln!(
                    "{:<52}runner={}",
                    format!("Verifying runner... {word}"),
                    runner.short_token()
                );
                removed_tokens.push(runner.token.expose().to_string());
            }
            Err(err) => {
                failed = true;
                errln!(
                    "ERROR: Verifying runner... failed                  runner={}: {err}",
                    runner.short_token()
                );
            }
        }
    }
    if matched == 0 && (args.name.is_some() || args.url.is_some() || args.token.is_some()) {
        anyhow::bail!(
            "no runner in {} matches the given --name/--url/--token",
            path.display()
        );
    }
    if args.delete.unwrap_or(false) && !removed_tokens.is_empty() {
        let n = doc.remove_runners(|r| removed_tokens.iter().any(|t| t == r.token.expose()));
        doc.save()?;
        errln!("Updated {} ({n} runner(s) removed)", path.display());
    } else if !removed_tokens.is_empty() {
        errln!(
            "hint: run `oxrunner verify --delete` to remove the runners GitLab no longer knows from the config"
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
