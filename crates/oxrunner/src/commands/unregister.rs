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

    // gitlab-runner's order: --all-runners, then name and token together, the token, the name. The token and
    // URL also come from CI_SERVER_TOKEN / CI_SERVER_URL.
    let selected: Vec<&RunnerConfig> = if all {
        config.runners.iter().collect()
    } else if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        let found: Vec<&RunnerConfig> = config
            .runners
            .iter()
            .filter(|r| r.token.expose() == token && args.name.as_ref().is_none_or(|n| &r.name == n))
            .collect();
        // Only a token the file does not know at all, with no --name, may go to GitLab unlisted: a name that
        // does not match its token is a mistake (upstream fails: RunnerByNameAndToken), and with the URL coming
        // from CI_SERVER_URL it would otherwise unregister some other runner.
        let token_known = config.runners.iter().any(|r| r.token.expose() == token);
        if found.is_empty() && !token_known && args.name.is_none() {
            return unregister_unlisted(&args, token, &path, &system_id).await;
        }
        if found.is_empty() {
            let whose = args
                .name
                .as_deref()
                .map(|n| format!(" named `{n}`"))
                .unwrap_or_default();
            bail!(
                "no runner{whose} with that token in {}\nhint: `oxrunner list -c {}` shows the names; give the \
                 name and token of the same runner",
                path.display(),
                path.display()
            );
        }
        found
    } else if let Some(name) = &args.name {
        config.runners.iter().filter(|r| &r.name == name).collect()
    } else {
        bail!(
            "say which runner to unregister\nhint: use --name NAME, --token TOKEN (or CI_SERVER_TOKEN), or \
             --all-runners"
        );
    };
    if selected.is_empty() {
        bail!(
            "no runner in {} matches the given name\nhint: `oxrunner list -c {}` shows the names",
            path.display(),
            path.display()
        );
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

/// A token that is in no `[[runners]]` of the file: with a URL it is unregistered anyway (a runner whose config
/// is lost), using the `--tls-*` flags; nothing in the file changes.
async fn unregister_unlisted(
    args: &UnregisterArgs,
    token: &str,
    path: &std::path::Path,
    system_id: &str,
) -> anyhow::Result<ExitCode> {
    let Some(url) = args.url.as_deref().filter(|u| !u.is_empty()) else {
        let whose = args
            .name
            .as_deref()
            .map(|n| format!(" named `{n}`"))
            .unwrap_or_default();
        bail!(
            "no runner{whose} with that token in {}\nhint: add --url URL (or CI_SERVER_URL) to unregister a runner \
             that is not in this file",
            path.display()
        );
    };
    let client = client_for(
        url,
        args.tls_ca_file.as_deref(),
        args.tls_cert_file.as_deref(),
        args.tls_key_file.as_deref(),
        path,
    )?;
    unregister_token(&client, token, system_id).await?;
    errln!(
        "{:<52}runner={}",
        "Unregistering runner from GitLab succeeded",
        oxrunner_config::short_token(token)
    );
    Ok(ExitCode::SUCCESS)
}

async fn unregister_token(client: &oxrunner_api::Client, token: &str, system_id: &str) -> anyhow::Result<()> {
    if token.starts_with("glrt-") {
        client.unregister_runner_manager(token, system_id).await?;
    } else {
        client.unregister_runner(token).await?;
    }
    Ok(())
}

// By hand, so the runner token (often from CI_SERVER_TOKEN) never reaches a log or a panic message.
impl std::fmt::Debug for UnregisterArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnregisterArgs")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[MASKED]"))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("all_runners", &self.all_runners)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::UnregisterArgs;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: UnregisterArgs,
    }

    #[test]
    fn debug_output_hides_the_token() {
        let wrap = Wrap::try_parse_from(["x", "-n", "alpha", "-t", "glrt-secret-token-1234"]).unwrap();
        let shown = format!("{:?}", wrap.args);
        assert!(!shown.contains("glrt-secret-token-1234"), "{shown}");
        assert!(shown.contains("alpha") && shown.contains("[MASKED]"), "{shown}");
    }
}
