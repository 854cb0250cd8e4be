//! gitlab-runner's helper commands (`artifacts-uploader`, `artifacts-downloader`, `cache-archiver`,
//! `cache-extractor`): what the cache and artifact stages call inside a job environment the runner cannot reach
//! (the custom executor's VM or remote host). They work on the current directory, which the stage script sets to
//! the project directory, and take the job's URL, token and id from the environment the job script exports
//! (`CI_SERVER_URL`, `CI_JOB_TOKEN`, `CI_JOB_ID`), so the token never has to be on a command line.
//!
//! Every failure ends the command with exit status 1 and a `FATAL:` line, as upstream's `logrus.Fatal` does; the
//! stage script decides what that means for the job.

mod artifacts;
mod cache;
mod remote;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{ArgAction, Args};
use oxrunner_core::Secret;
use oxrunner_fs::Dir;

use crate::hooks::{ArtifactTransport, GitlabTransport, LocalTransport};

pub use artifacts::{DownloaderArgs, UploaderArgs};
pub use cache::{ArchiverArgs, ExtractorArgs};

/// Runs `artifacts-uploader`.
pub async fn artifacts_uploader(args: UploaderArgs) -> anyhow::Result<ExitCode> {
    artifacts::upload(args).await
}

/// Runs `artifacts-downloader`.
pub async fn artifacts_downloader(args: DownloaderArgs) -> anyhow::Result<ExitCode> {
    artifacts::download(args).await
}

/// Runs `cache-archiver`.
pub async fn cache_archiver(args: ArchiverArgs) -> anyhow::Result<ExitCode> {
    cache::archive(args).await
}

/// Runs `cache-extractor`.
pub async fn cache_extractor(args: ExtractorArgs) -> anyhow::Result<ExitCode> {
    cache::extract(args).await
}

/// The job's credentials (gitlab-runner's `JobCredentials`).
#[derive(Debug, Clone, Args)]
pub struct JobCredentials {
    /// GitLab URL.
    #[arg(long = "url", env = "CI_SERVER_URL")]
    pub url: Option<String>,

    /// The job's token. Prefer the environment variable: a command line is visible to every user of the host.
    #[arg(long = "token", env = "CI_JOB_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub token: Option<Secret>,

    /// The job id to upload artifacts for, or whose artifacts to download.
    #[arg(long = "id", env = "CI_JOB_ID", default_value_t = 0)]
    pub id: i64,

    /// Extra CA certificates (PEM) to trust for GitLab.
    #[arg(long = "tls-ca-file", env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for GitLab.
    #[arg(long = "tls-cert-file", env = "CI_SERVER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// Client key (PEM) for GitLab.
    #[arg(long = "tls-key-file", env = "CI_SERVER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// oxrunner only: keep artifacts in this directory (the store `oxrunner exec` uses) instead of GitLab.
    #[arg(long = "local-artifacts-dir", env = "OXRUNNER_LOCAL_ARTIFACTS_DIR")]
    pub local_artifacts_dir: Option<PathBuf>,
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// The files to archive (gitlab-runner's `fileArchiver` flags).
#[derive(Debug, Clone, Default, Args)]
pub struct FileArgs {
    /// Add paths (globs) to the archive.
    #[arg(long = "path")]
    pub paths: Vec<String>,

    /// Exclude paths (globs) from the archive.
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,

    /// Add git's untracked files.
    #[arg(long = "untracked", action = ArgAction::SetTrue)]
    pub untracked: bool,
}

impl JobCredentials {
    /// The transport for job `job_id` (`name`: the job's name, which the local store files archives under).
    fn transport(&self, job_id: i64, name: &str) -> anyhow::Result<Arc<dyn ArtifactTransport>> {
        if let Some(dir) = &self.local_artifacts_dir {
            return Ok(Arc::new(LocalTransport::new(dir.clone(), job_id, name)));
        }
        let url = self.url.as_deref().map(str::trim).unwrap_or_default();
        let token = self.token.as_ref().filter(|t| !t.is_empty());
        let (false, Some(token)) = (url.is_empty(), token) else {
            bail!(
                "Missing runner credentials: the GitLab URL (--url, CI_SERVER_URL) or the job token (CI_JOB_TOKEN) \
                 is not set\nhint: run this command from a job's stage script, which exports both"
            );
        };
        if job_id <= 0 {
            bail!(
                "Missing build ID (--id, CI_JOB_ID)\nhint: pass the id of the job whose artifacts are meant"
            );
        }
        let client = oxrunner_api::Client::new(oxrunner_api::ClientConfig {
            url: url.to_owned(),
            tls_ca_file: self.tls_ca_file.clone().filter(|p| !p.as_os_str().is_empty()),
            tls_cert_file: self.tls_cert_file.clone().filter(|p| !p.as_os_str().is_empty()),
            tls_key_file: self.tls_key_file.clone().filter(|p| !p.as_os_str().is_empty()),
            certs_dir: None,
        })?;
        Ok(Arc::new(GitlabTransport::new(client, job_id, token.clone())))
    }
}

/// The working directory, where the stage script put us: the project directory.
fn work_dir(create: bool) -> anyhow::Result<(PathBuf, Dir)> {
    let cwd = std::env::current_dir().context("Unable to get working directory")?;
    let dir = if create {
        Dir::create_trusted(&cwd)
    } else {
        Dir::open_trusted(&cwd)
    };
    let dir = dir.with_context(|| format!("opening the working directory {}", cwd.display()))?;
    Ok((cwd, dir))
}

/// A scratch file for an archive in `dir` (or the system's temp dir).
fn scratch_file(dir: Option<&Path>, prefix: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// Log lines in gitlab-runner's colours, on stdout where the stage script's output goes to the job log.
fn info(msg: &str) -> anyhow::Result<()> {
    outln!("{msg}")
}

fn warning(msg: &str) -> anyhow::Result<()> {
    outln!("\x1b[0;33mWARNING: {msg}\x1b[0;m")
}

fn error(msg: &str) -> anyhow::Result<()> {
    outln!("\x1b[31;1mERROR: {msg}\x1b[0;m")
}
