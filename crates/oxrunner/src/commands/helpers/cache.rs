//! `cache-archiver` and `cache-extractor`: a cache archive at `--file`, written from and extracted into the current
//! directory, and with `--url` also moved to or from a shared cache server through a pre-signed URL.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use oxrunner_archive::{Level, SaveOutcome};

use super::{FileArgs, info, remote, warning, work_dir};

/// `cache-archiver` flags.
#[derive(Debug, Clone, Args)]
pub struct ArchiverArgs {
    /// The path to the cache archive.
    #[arg(long = "file")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub files: FileArgs,

    /// URL of the remote cache resource (pre-signed URL).
    #[arg(long = "url", env = "OXRUNNER_CACHE_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Largest archive uploaded, in bytes (0: no limit); a larger one stays local.
    #[arg(
        long = "max-uploaded-archive-size",
        env = "CACHE_MAX_UPLOADED_ARCHIVE_SIZE",
        default_value_t = 0
    )]
    pub max_uploaded_archive_size: u64,

    /// HTTP headers to send with the PUT request (`Key: Value`).
    #[arg(long = "header")]
    pub headers: Vec<String>,

    /// Overall timeout for the cache upload, in minutes.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,

    /// Compression level (fastest, fast, default, slow, slowest).
    #[arg(long = "compression-level", env = "CACHE_COMPRESSION_LEVEL")]
    pub compression_level: Option<String>,
}

/// `cache-extractor` flags.
#[derive(Debug, Clone, Args)]
pub struct ExtractorArgs {
    /// The file containing the cache.
    #[arg(long = "file")]
    pub file: Option<PathBuf>,

    /// URL of the remote cache resource.
    #[arg(long = "url", env = "OXRUNNER_CACHE_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Overall timeout for the cache download, in minutes.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
}

fn remote_url(url: Option<&str>) -> Option<&str> {
    url.map(str::trim).filter(|u| !u.is_empty())
}

/// Archives the matching files of the current directory at `--file`, unless the archive there is up to date.
pub(super) async fn archive(args: ArchiverArgs) -> anyhow::Result<ExitCode> {
    let Some(dest) = args.file.clone().filter(|f| !f.as_os_str().is_empty()) else {
        bail!(
            "Missing --file\nhint: name the cache archive to write, e.g. --file <cache_dir>/<project>/<key>/cache.zip"
        );
    };
    let (level, level_warning) =
        Level::from_variable(args.compression_level.as_deref().filter(|v| !v.is_empty()));
    if let Some(w) = level_warning {
        warning(&w)?;
    }
    let (_, root) = work_dir(false)?;
    let FileArgs {
        paths,
        exclude,
        untracked,
    } = args.files.clone();
    let target = dest.clone();
    let shown = dest.display().to_string();
    let (files, outcome) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let files = oxrunner_archive::collect_in(&root, &paths, &exclude, untracked)?;
        if files.files.is_empty() {
            return Ok((files, None));
        }
        let outcome = oxrunner_archive::save_cache_file(&target, &root, &files, level)
            .with_context(|| format!("creating the cache archive {shown}"))?;
        Ok((files, Some(outcome)))
    })
    .await
    .context("archiving stopped")??;
    for w in &files.warnings {
        warning(w)?;
    }
    let Some(outcome) = outcome else {
        warning("No files to cache.")?;
        return Ok(ExitCode::SUCCESS);
    };
    info(&format!(
        "found {} matching files and directories",
        files.files.len()
    ))?;
    if outcome == SaveOutcome::Unchanged {
        // As upstream: an unchanged archive was uploaded when it was written.
        info("Archive is up to date!")?;
        return Ok(ExitCode::SUCCESS);
    }
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or_default();
    let limit = args.max_uploaded_archive_size;
    if remote_url(args.url.as_deref()).is_some() && limit > 0 && size > limit {
        info(&format!(
            "Cache archive size ({size}) is too big (Limit is set to {limit}). Cache will be stored only locally."
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    match remote_url(args.url.as_deref()) {
        Some(url) => remote::upload(&dest, url, &args.headers, args.timeout).await?,
        None => info(
            "No URL provided, cache will not be uploaded to shared cache server. Cache will be stored only locally.",
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Extracts the archive at `--file` into the current directory.
pub(super) async fn extract(args: ExtractorArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = args.file.clone().filter(|f| !f.as_os_str().is_empty()) else {
        bail!("Missing cache file (--file)\nhint: name the cache archive to extract");
    };
    match remote_url(args.url.as_deref()) {
        Some(url) => {
            // As upstream: a failed or missing download leaves the local copy, if any, to extract.
            if let Err(e) = remote::download(&file, url, args.timeout).await {
                warning(&format!("{e:#}"))?;
            }
        }
        None => info(
            "No URL provided, cache will not be downloaded from shared cache server. \
             Instead a local version of cache will be extracted.",
        )?,
    }
    if !file.is_file() {
        warning("Cache file does not exist")?;
        return Ok(ExitCode::FAILURE);
    }
    let (cwd, root) = work_dir(true)?;
    tokio::task::spawn_blocking(move || {
        oxrunner_archive::extract_zip_into(&file, &root)
            .with_context(|| format!("extracting {} into {}", file.display(), cwd.display()))
    })
    .await
    .context("extraction stopped")??;
    Ok(ExitCode::SUCCESS)
}
