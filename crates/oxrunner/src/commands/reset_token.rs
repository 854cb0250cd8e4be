//! `oxrunner reset-token`: gets a new runner authentication token from GitLab and writes it, with its expiry, into
//! config.toml (gitlab-runner's `commands/reset_token.go`).
//!
//! With the runner's own token it calls `POST /runners/reset_authentication_token`; with `--pat` (a personal
//! access token of someone who may edit the runner) `POST /runners/:id/reset_authentication_token`, which also
//! works once the runner's token expired or leaked. The file is saved once, atomically, after every reset.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use oxrunner_config::{ConfigDocument, RunnerConfig};
use time::OffsetDateTime;

use super::common::config_path;
use crate::cli::{ConfigArg, parse_go_bool};
use crate::runner::client_for_runner;

#[derive(Clone, Args)]
pub struct ResetTokenArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Name of the runner whose token to reset (as in the config file).
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// URL of the runner whose token to reset (with --id, as in the config file).
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,
    /// ID of the runner whose token to reset (with --url, as in the config file).
    #[arg(short = 'i', long = "id")]
    pub id: Option<i64>,
    /// Reset the tokens of every runner in the config file.
    #[arg(long = "all-runners", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub all_runners: Option<bool>,
    /// Personal access token to use instead of the runner's current token (from OXRUNNER_PAT keeps it out of
    /// the process list).
    #[arg(long = "pat", env = "OXRUNNER_PAT", hide_env_values = true)]
    pub pat: Option<String>,
}

// By hand, so the personal access token never reaches a log or a panic message.
impl std::fmt::Debug for ResetTokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetTokenArgs")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("id", &self.id)
            .field("all_runners", &self.all_runners)
            .field("pat", &self.pat.as_ref().map(|_| "[MASKED]"))
            .finish()
    }
}

pub async fn run(args: ResetTokenArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&args.config);
    let mut doc = super::common::open_existing(&path)?;
    let config = doc.config()?;
    let pat = args.pat.as_deref().filter(|p| !p.is_empty());

    let selected: Vec<usize> = if args.all_runners.unwrap_or(false) {
        errln!("WARNING: Resetting all runner authentication tokens");
        (0..config.runners.len()).collect()
    } else if let Some(name) = &args.name {
        let index = config.runners.iter().position(|r| &r.name == name);
        vec![index.with_context(|| {
            format!(
                "no runner named `{name}` in {}\nhint: `oxrunner list -c {}` shows the names",
                path.display(),
                path.display()
            )
        })?]
    } else if let (Some(url), Some(id)) = (&args.url, args.id) {
        // gitlab-runner compares the URL exactly; a trailing slash is the one difference it should not matter.
        let index = config
            .runners
            .iter()
            .position(|r| r.url.trim_end_matches('/') == url.trim_end_matches('/') && r.id == id);
        vec![index.with_context(|| {
            format!(
                "no runner with url {url} and id {id} in {}\nhint: the id is the `id` key under [[runners]]; \
                 or select the runner with --name",
                path.display()
            )
        })?]
    } else {
        bail!(
            "say which runner's token to reset\nhint: use --name NAME, --url URL --id ID, or --all-runners \
             (add --pat TOKEN to use a personal access token)"
        );
    };

    let mut failed = 0usize;
    let mut reset = 0usize;
    for index in selected {
        let runner = &config.runners[index];
        match reset_one(runner, pat, &path).await {
            Ok((token, expires_at)) => {
                let now = OffsetDateTime::now_utc();
                // GitLab has already revoked the old token: the new one goes to disk now, before the next
                // runner's request (which may hang or be interrupted) can lose it.
                doc.set_runner_token(
                    index,
                    &token,
                    Some(now.replace_nanosecond(0).unwrap_or(now)),
                    expires_at,
                )?;
                save(&doc)?;
                reset += 1;
                errln!(
                    "{:<52}runner={} name={}",
                    "Resetting runner authentication token... succeeded",
                    oxrunner_config::short_token(&token),
                    runner.name
                );
            }
            Err(err) => {
                failed += 1;
                errln!(
                    "ERROR: Failed to reset runner authentication token   name={} runner={}: {}",
                    runner.name,
                    runner.short_token(),
                    crate::render_error(&err)
                );
            }
        }
    }
    if reset > 0 {
        errln!("Updated {}", path.display());
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn reset_one(
    runner: &RunnerConfig,
    pat: Option<&str>,
    path: &std::path::Path,
) -> anyhow::Result<(String, Option<OffsetDateTime>)> {
    let client = client_for_runner(runner, path)?;
    let resp = match pat {
        Some(pat) => {
            if runner.id <= 0 {
                bail!(
                    "the runner has no id in {}\nhint: --pat needs the runner's id (`id = ...` under \
                     [[runners]], shown in GitLab's runner list); without --pat its own token is used",
                    path.display()
                );
            }
            client.reset_token_with_pat(runner.id, pat).await?
        }
        None => client.reset_token(runner.token.expose()).await?,
    };
    if resp.token.is_empty() {
        bail!("GitLab answered without a token");
    }
    // The old token is dead by now: an unreadable expiry must not cost the new token.
    let expires_at = resp
        .token_expires_at
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| {
            let parsed = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
            if parsed.is_none() {
                errln!(
                    "WARNING: GitLab sent an unreadable token_expires_at `{s}`; the token is saved without it"
                );
            }
            parsed.filter(|t| t.year() > 1)
        });
    Ok((resp.token, expires_at))
}

fn save(doc: &ConfigDocument) -> anyhow::Result<()> {
    doc.save().context(
        "the new tokens could not be written; GitLab no longer accepts the old ones\nhint: fix the file's \
         permissions and run reset-token again with --pat, which does not need the lost token",
    )
}
