//! `oxrunner exec`: a repository's `.gitlab-ci.yml`, read as GitLab reads it, run locally on the same engine as
//! the daemon.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use oxrunner_pipeline::{PipelineContext, render_list, render_list_json};

use crate::cli::ExecArgs;

pub async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let ctx = context(&args)?;
    if args.print_config {
        out!("{}", oxrunner_pipeline::merged_config(&ctx)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let pipeline = oxrunner_pipeline::resolve(&ctx)?;
    for w in &pipeline.warnings {
        errln!("WARNING: {w}");
    }
    if args.list {
        if args.json {
            outln!("{}", render_list_json(&pipeline))?;
        } else {
            out!("{}", render_list(&pipeline))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let custom = custom_settings(&args)?;
    let opts = crate::exec::Options {
        custom,
        jobs: args.jobs.clone(),
        needs: args.needs,
        concurrency: args.concurrency,
        executor: args.executor.clone(),
        manual: args.manual.clone(),
        committed_only: args.committed_only,
        write_back: args.write_back,
        no_delay: args.no_delay,
        remote_cache: match &args.cache_config {
            Some(path) => {
                crate::exec::remote_cache::setup(path, args.cache_runner.as_deref(), &ctx.variables)?
            }
            None => crate::hooks::RemoteSetup::None,
        },
    };
    crate::exec::run(&opts, &ctx, pipeline).await
}

/// `[runners.custom]` for `--executor custom`: the first custom runner of `--config`, then the `--custom-*` flags.
fn custom_settings(args: &ExecArgs) -> anyhow::Result<Option<oxrunner_config::CustomConfig>> {
    if args.executor.as_deref() != Some("custom") {
        if args.config.is_some() || args.custom.run_exec.is_some() {
            bail!("--config and --custom-* only apply to --executor custom\nhint: add --executor custom");
        }
        return Ok(None);
    }
    let mut base = match &args.config {
        None => oxrunner_config::CustomConfig::default(),
        Some(path) => {
            let loaded = oxrunner_config::load(path)?;
            let runner = loaded.config.runners.iter().find(|r| r.executor == "custom");
            match runner.and_then(|r| r.custom.clone()) {
                Some(custom) => custom,
                None => bail!(
                    "{}: no [[runners]] with executor = \"custom\" and a [runners.custom] section\nhint: add one, or \
                     pass the driver with --custom-run-exec (and --custom-config-exec, --custom-prepare-exec, ...)",
                    path.display()
                ),
            }
        }
    };
    args.custom.apply_to(&mut base);
    if base.run_exec.is_empty() {
        bail!(
            "--executor custom needs a run_exec\nhint: pass --config FILE with a [runners.custom] section, or \
             --custom-run-exec PROGRAM"
        );
    }
    Ok(Some(base))
}

/// The pipeline context: git facts of the repository, the pipeline file, and the user's variables.
pub fn context(args: &ExecArgs) -> anyhow::Result<PipelineContext> {
    let dir = match &args.cwd {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let mut ctx = if dir.join(".git").exists() {
        // Read from `.git` when it is plain (no processes); git itself otherwise.
        match crate::exec::gitfacts::context(&dir) {
            Some(ctx) => ctx,
            None => PipelineContext::from_git(&dir)?,
        }
    } else {
        PipelineContext::new(&dir)
    };
    ctx.ci_file = if args.file.is_absolute() {
        args.file.clone()
    } else {
        dir.join(&args.file)
    };
    if !ctx.ci_file.exists() {
        bail!(
            "{} does not exist\nhint: run oxrunner exec in a repository with a .gitlab-ci.yml, or pass --cwd DIR / --file FILE",
            ctx.ci_file.display()
        );
    }
    args.source.apply(&mut ctx)?;
    if let Some(file) = &args.variables_file {
        ctx.variables.extend(read_variables_file(file)?);
    }
    for v in &args.variable {
        let (k, val) = v
            .split_once('=')
            .with_context(|| format!("--variable `{v}` is not KEY=VALUE"))?;
        ctx.variables.push((k.to_string(), val.to_string()));
    }
    Ok(ctx)
}

fn read_variables_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').with_context(|| {
            format!(
                "{}:{}: expected KEY=VALUE\nhint: one variable per line, # starts a comment",
                path.display(),
                i + 1
            )
        })?;
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}
