//! `oxrunner run` and `oxrunner run-single`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use oxrunner_config::RunnerConfig;

use super::common::config_path;
use crate::cli::{RunArgs, RunSingleArgs};
use crate::daemon::{self, DaemonOptions, SingleOptions};
use crate::flags::Overlay;

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Resolve the config path before changing directory, so a relative -c keeps its meaning.
    let path = std::path::absolute(config_path(&args.config)).context("cannot resolve the config path")?;
    if let Some(dir) = &args.working_directory {
        std::env::set_current_dir(dir)
            .with_context(|| format!("cannot change to the working directory {}", dir.display()))?;
    }
    if args.syslog == Some(true) {
        crate::logging::use_syslog();
    }
    daemon::run(
        DaemonOptions {
            config_path: path,
            user: args.user,
            listen_address: args.listen_address,
            single: None,
        },
        daemon::signals::unix()?,
    )
    .await
}

pub async fn run_single(args: RunSingleArgs) -> anyhow::Result<ExitCode> {
    let path = std::path::absolute(config_path(&args.config)).context("cannot resolve the config path")?;
    let runner = match &args.runner {
        Some(name) => {
            let given: Vec<String> = args.upstream.0.flags.iter().map(|f| f.spelled()).collect();
            if !given.is_empty() {
                errln!(
                    "WARNING: {} ignored: with --runner the runner's settings come from {}",
                    given.join(", "),
                    path.display()
                );
            }
            let loaded = oxrunner_config::load(&path)?;
            loaded
                .config
                .runners
                .into_iter()
                .find(|r| &r.name == name)
                .with_context(|| format!("no runner named `{name}` in {}", path.display()))?
        }
        None => {
            let url = args
                .url
                .clone()
                .context("--url is required\nhint: pass --url and --token, or -c CONFIG -r NAME")?;
            let token = args
                .token
                .clone()
                .context("--token is required\nhint: pass --url and --token, or -c CONFIG -r NAME")?;
            let executor = args.executor.clone().unwrap_or_else(|| "shell".into());
            let base = RunnerConfig {
                name: args.name.clone().unwrap_or_else(|| "run-single".into()),
                url,
                token: token.into(),
                executor: executor.clone(),
                ..RunnerConfig::default()
            };
            // The settings flags (--docker-image, --env, --cache-*, ...) go through the same table as register's.
            let overlay = Overlay::build(&args.upstream.0, &executor)?;
            crate::flags::overlay::warn_not_written(&overlay, &executor);
            overlay.apply(&base, None)?
        }
    };
    let single = SingleOptions {
        runner,
        max_builds: args.max_builds,
        wait_timeout: Duration::from_secs(args.wait_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    daemon::run(
        DaemonOptions {
            config_path: path,
            user: None,
            listen_address: None,
            single: Some(single),
        },
        daemon::signals::unix()?,
    )
    .await
}
