//! Automatic rotation of runner authentication tokens: at 75% of a token's lifetime the token is reset through the
//! API and config.toml is rewritten (runner-api.md §1.6). The file change then reloads the runner with its new
//! token; running jobs keep going.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oxrunner_api::Client;
use oxrunner_config::{ConfigDocument, RunnerConfig};
use oxrunner_core::CancellationToken;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::metrics::Metrics;

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

pub async fn rotate(
    client: Client,
    config_path: PathBuf,
    runner: Arc<RunnerConfig>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    if runner.feature_flag("FF_DISABLE_AUTOMATIC_TOKEN_ROTATION") == Some(true) {
        return;
    }
    let (Some(obtained), Some(expires)) = (runner.token_obtained_at, runner.token_expires_at) else {
        return;
    };
    if expires.year() <= 1 || expires <= obtained {
        return;
    }
    let mut wait = until_rotation(obtained, expires, OffsetDateTime::now_utc());
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match client.reset_token(runner.token.expose()).await {
            Ok(resp) => {
                let expires_at = resp
                    .token_expires_at
                    .as_deref()
                    .and_then(|s| {
                        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
                    })
                    .filter(|t| t.year() > 1);
                // Counted like gitlab-runner's every config save: an operator alerts on a rotated token that
                // never reached config.toml (the old one is already revoked).
                let saved = save_token(&config_path, &runner, &resp.token, expires_at);
                metrics.config_saved(saved.is_ok());
                match saved {
                    Ok(()) => {
                        info!(runner = %runner.short_token(), "runner token rotated; config.toml updated");
                        return;
                    }
                    Err(err) => {
                        warn!(runner = %runner.short_token(), "token rotated but config.toml could not be written: {err:#}");
                        return;
                    }
                }
            }
            Err(err) => {
                warn!(runner = %runner.short_token(), "token rotation failed, retrying in 1m: {err}");
                wait = RETRY_AFTER_FAILURE;
            }
        }
    }
}

fn until_rotation(obtained: OffsetDateTime, expires: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let lifetime = expires - obtained;
    let at = obtained + lifetime * 0.75;
    let left: time::Duration = at - now;
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    }
}

fn save_token(
    path: &std::path::Path,
    runner: &RunnerConfig,
    token: &str,
    expires_at: Option<OffsetDateTime>,
) -> anyhow::Result<()> {
    let mut doc = ConfigDocument::open_or_new(path)?;
    let config = doc.config()?;
    let index = config
        .runners
        .iter()
        .position(|r| r.token.expose() == runner.token.expose())
        .ok_or_else(|| anyhow::anyhow!("the runner is no longer in {}", path.display()))?;
    let now = OffsetDateTime::now_utc();
    doc.set_runner_token(
        index,
        token,
        Some(now.replace_nanosecond(0).unwrap_or(now)),
        expires_at,
    )?;
    doc.save()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_three_quarters() {
        let obtained = OffsetDateTime::UNIX_EPOCH;
        let expires = obtained + time::Duration::hours(100);
        assert_eq!(
            until_rotation(obtained, expires, obtained),
            Duration::from_secs(75 * 3600)
        );
        assert_eq!(until_rotation(obtained, expires, expires), Duration::ZERO);
    }
}
