//! `oxrunner doctor`: finds what would make jobs fail before a job does. For the config file and each runner it
//! checks the file, the token, the connection to GitLab (DNS, TCP, TLS with the presented chain), `clone_url`, the
//! executor's host (shell: shell, git, account, directories; docker: engine, socket, image, volumes), the S3
//! cache's bucket, free disk and the clock, and prints one line per check. Nothing is changed anywhere: config.toml is only
//! read, no system id is created, and GitLab sees one `verify` call with the runner's existing system id.

mod cache;
mod config_checks;
mod docker;
mod gitlab;
mod host;
mod proxy;
mod report;
mod shell;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use oxrunner_config::{ExecutorKind, RunnerConfig};

use self::report::{Check, Report, Section};
use super::common::config_path;
use crate::cli::ConfigArg;
use crate::runner::config_dir;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Check only the runner of this name.
    #[arg(short = 'r', long = "runner")]
    pub runner: Option<String>,
    /// The account shell jobs run as (`oxrunner run --user`); default: the current user.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory of `oxrunner run` (relative builds_dir and cache_dir live there); default: the current one.
    #[arg(short = 'd', long = "working-directory")]
    pub working_directory: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// What the per-runner checks need to know about where they run.
pub(crate) struct Context {
    pub config_path: PathBuf,
    pub work_dir: PathBuf,
    pub user: Option<String>,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&args.config);
    let work_dir = match &args.working_directory {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    let ctx = Context {
        config_path: path.clone(),
        work_dir,
        user: args.user.clone(),
    };
    let mut file_section = Section::new(format!("config file {}", path.display()), None);
    let loaded = config_checks::load(&path, &mut file_section);
    let mut sections = vec![file_section];
    if let Some(loaded) = loaded {
        let runners: Vec<&RunnerConfig> = loaded
            .config
            .runners
            .iter()
            .filter(|r| args.runner.as_deref().is_none_or(|n| n == r.name))
            .collect();
        if runners.is_empty() {
            let mut s = Section::new("runners", None);
            s.push(match &args.runner {
                Some(name) => Check::fail(
                    format!("no runner named \"{name}\""),
                    format!(
                        "{} has no [[runners]] entry with name = \"{name}\"",
                        path.display()
                    ),
                    "list the runners with `oxrunner list`",
                ),
                None => Check::fail(
                    "no runner is configured",
                    format!("{} has no [[runners]] entry", path.display()),
                    "register one: oxrunner register --url https://gitlab.example.com --token glrt-...",
                ),
            });
            sections.push(s);
        }
        for r in runners {
            sections.push(check_runner(&ctx, &loaded.config, r).await);
        }
    }
    let report = Report::new(path.display().to_string(), sections);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check_runner(ctx: &Context, config: &oxrunner_config::Config, r: &RunnerConfig) -> Section {
    let mut s = Section::new(
        format!(
            "runner \"{}\" ({}, {})",
            r.name,
            r.executor,
            oxrunner_api::redact::redact_url(&r.url)
        ),
        Some(&r.name),
    );
    s.extend(config_checks::runner(config, r));
    s.extend(gitlab::checks(ctx, r).await);
    let kind = r.executor_kind();
    if !crate::executors::supported(&kind) {
        s.push(Check::fail(
            format!("executor \"{}\" is not available in this build", r.executor),
            "this runner requests no jobs: oxrunner names it in an error at start",
            format!(
                "use one of: {} (executor in [[runners]]), or keep this runner on gitlab-runner",
                crate::executors::supported_names()
            ),
        ));
        return s;
    }
    let (dirs, account) = match kind {
        ExecutorKind::Docker => {
            s.extend(docker::checks(r).await);
            // The runner process itself writes these, whatever `--user` says.
            (docker_dirs(ctx), shell::Account::resolve(None))
        }
        ExecutorKind::Custom => {
            let account = shell::Account::resolve(ctx.user.as_deref());
            s.extend(shell::checks(r, &account));
            (custom_dirs(ctx, r, &mut s), account)
        }
        _ => {
            let account = shell::Account::resolve(ctx.user.as_deref());
            s.extend(shell::checks(r, &account));
            (shell_dirs(ctx, r), account)
        }
    };
    for (what, dir) in &dirs {
        s.push(host::writable(what, dir, &account));
    }
    s.extend(cache::check(r).await);
    s.extend(host::disk(&dirs));
    s
}

/// Shell and custom runners: builds_dir and cache_dir, relative to the working directory (gitlab-runner's rule).
fn shell_dirs(ctx: &Context, r: &RunnerConfig) -> Vec<(&'static str, PathBuf)> {
    let pick = |v: &Option<String>, default: &str| {
        let d = v
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| default.into());
        ctx.work_dir.join(d)
    };
    vec![
        ("builds_dir", pick(&r.builds_dir, "builds")),
        ("cache_dir", pick(&r.cache_dir, "cache")),
    ]
}

/// Custom runners: only the directories config.toml names; otherwise the driver's config_exec picks them, on a
/// host doctor cannot see, so judging `<work dir>/builds` would report on a directory no job uses.
fn custom_dirs(ctx: &Context, r: &RunnerConfig, s: &mut Section) -> Vec<(&'static str, PathBuf)> {
    let mut dirs = Vec::new();
    for (what, v) in [("builds_dir", &r.builds_dir), ("cache_dir", &r.cache_dir)] {
        match v.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => dirs.push((what, ctx.work_dir.join(d))),
            None => s.push(Check::ok(format!("{what}: chosen by config_exec"))),
        }
    }
    dirs
}

/// Docker runners: builds live in volumes; the runner's own checkouts and the cache live beside config.toml.
fn docker_dirs(ctx: &Context) -> Vec<(&'static str, PathBuf)> {
    let state = absolute(&ctx.work_dir, &config_dir(&ctx.config_path));
    vec![
        ("runner checkouts", state.join("builds")),
        ("cache_dir", state.join("cache")),
    ]
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
