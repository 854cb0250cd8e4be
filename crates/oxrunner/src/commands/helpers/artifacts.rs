//! `artifacts-uploader` and `artifacts-downloader`: the job's archive out of, and a dependency's archive into, the
//! current directory, with the same log lines and hints as the runner-side hooks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use oxrunner_api::ArtifactUpload;
use oxrunner_archive::{Format, Level};
use oxrunner_core::Dependency;

use super::{FileArgs, JobCredentials, error, info, scratch_file, warning, work_dir};
use crate::hooks::{
    ArtifactTransport, BuildError, DownloadMode, TransportError, build_archive, human_bytes,
    too_large_explanation,
};

/// `artifacts-uploader` flags.
#[derive(Debug, Clone, Args)]
pub struct UploaderArgs {
    #[command(flatten)]
    pub creds: JobCredentials,

    #[command(flatten)]
    pub files: FileArgs,

    /// The name of the archive.
    #[arg(long = "name", default_value = "")]
    pub name: String,

    /// When to expire artifacts (`7d`, `never`).
    #[arg(long = "expire-in")]
    pub expire_in: Option<String>,

    /// Format of generated artifacts: zip, gzip, raw.
    #[arg(long = "artifact-format", default_value = "zip")]
    pub artifact_format: String,

    /// Type of generated artifacts: archive, junit, dotenv, ...
    #[arg(long = "artifact-type", default_value = "archive")]
    pub artifact_type: String,

    /// Compression level (fastest, fast, default, slow, slowest).
    #[arg(long = "compression-level", env = "ARTIFACT_COMPRESSION_LEVEL")]
    pub compression_level: Option<String>,

    /// Timeout for the upload operation (Go duration, e.g. `1h`).
    #[arg(long = "timeout")]
    pub timeout: Option<String>,

    /// How long to wait for the response headers once the archive is sent (Go duration; `0`: no limit).
    #[arg(long = "response-header-timeout", default_value = "10m")]
    pub response_header_timeout: String,

    /// oxrunner only, with `--local-artifacts-dir`: the job's name, which the local store files archives under.
    #[arg(long = "job-name", env = "CI_JOB_NAME", default_value = "")]
    pub job_name: String,
}

/// `artifacts-downloader` flags.
#[derive(Debug, Clone, Args)]
pub struct DownloaderArgs {
    #[command(flatten)]
    pub creds: JobCredentials,

    /// Directory to stage artifact archives in (default: the system's temp dir).
    #[arg(long = "archiver-staging-dir", env = "ARCHIVER_STAGING_DIR")]
    pub staging_dir: Option<PathBuf>,

    /// How many times to retry a failed download.
    #[arg(long = "retry", default_value_t = 2)]
    pub retry: u32,

    /// How long to wait between retries (Go duration).
    #[arg(long = "retry-time", default_value = "1s")]
    pub retry_time: String,

    /// oxrunner only, with `--local-artifacts-dir`: the name of the job whose artifacts to download.
    #[arg(long = "dependency-name", default_value = "")]
    pub dependency_name: String,
}

fn go_duration(flag: &str, value: &str) -> anyhow::Result<Duration> {
    oxrunner_core::parse_go_duration(value).ok_or_else(|| {
        anyhow!("{flag} {value:?} is not a duration\nhint: use a Go duration such as `30s`, `10m` or `1h`")
    })
}

/// Archives the matching files of the current directory and uploads them as this job's artifact.
pub(super) async fn upload(args: UploaderArgs) -> anyhow::Result<ExitCode> {
    let transport = args.creds.transport(args.creds.id, &args.job_name)?;
    let timeout = args
        .timeout
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| go_duration("--timeout", t))
        .transpose()?;
    let header_timeout = Some(args.response_header_timeout.trim())
        .filter(|t| !t.is_empty())
        .map(|t| go_duration("--response-header-timeout", t))
        .transpose()?
        .filter(|t| !t.is_zero());
    let (level, level_warning) =
        Level::from_variable(args.compression_level.as_deref().filter(|v| !v.is_empty()));
    if let Some(w) = level_warning {
        warning(&w)?;
    }
    let format = match Format::parse(&args.artifact_format) {
        Some(f @ (Format::Zip | Format::Gzip | Format::Raw)) => f,
        _ => {
            warning(&format!(
                "artifact format {:?} is not supported by this runner; using zip",
                args.artifact_format
            ))?;
            Format::Zip
        }
    };
    let kind = if args.artifact_type.is_empty() {
        "archive".to_owned()
    } else {
        args.artifact_type.clone()
    };
    let (_, root) = work_dir(false)?;
    let tmp = scratch_file(None, "artifacts-upload-")?;
    let file = tmp
        .as_file()
        .try_clone()
        .context("cannot write the artifact archive")?;
    let FileArgs {
        paths,
        exclude,
        untracked,
    } = args.files.clone();
    let built = tokio::task::spawn_blocking(move || {
        build_archive(&root, &paths, &exclude, untracked, format, level, file)
    })
    .await
    .context("archiving stopped")?;
    let (files, stats) = match built {
        Ok(v) => v,
        Err(BuildError::Files(files, msg)) => {
            for w in &files.warnings {
                warning(w)?;
            }
            bail!(msg);
        }
        Err(BuildError::Other(msg)) => bail!(msg),
    };
    for w in &files.warnings {
        warning(w)?;
    }
    if files.files.is_empty() {
        warning("No files to upload")?;
        return Ok(ExitCode::SUCCESS);
    }
    info(&format!(
        "found {} matching artifact files and directories",
        files.files.len()
    ))?;
    let name = if args.name.trim().is_empty() {
        "artifacts"
    } else {
        args.name.as_str()
    };
    let opts = ArtifactUpload {
        filename: ArtifactUpload::file_name_for(name, format.as_str()),
        artifact_format: format.as_str().to_owned(),
        artifact_type: kind.clone(),
        expire_in: args.expire_in.clone().filter(|e| !e.trim().is_empty()),
        timeout: None,
        response_header_timeout: header_timeout,
    };
    let sent = transport.upload(tmp.path(), &opts);
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, sent).await.unwrap_or_else(|_| {
            Err(TransportError::Failed {
                detail: format!("the upload took longer than {t:?} (--timeout)"),
            })
        }),
        None => sent.await,
    };
    drop(tmp);
    report_upload(transport.as_ref(), result, &kind, stats.bytes_out)
}

/// The log lines and exit for an upload's result; a 413 gets the limits that may have refused it.
fn report_upload(
    transport: &dyn ArtifactTransport,
    result: Result<String, TransportError>,
    kind: &str,
    archive_size: u64,
) -> anyhow::Result<ExitCode> {
    let prefix = format!("Uploading artifacts as {kind:?} to coordinator...");
    match result {
        Ok(status) => {
            info(&format!("{prefix} {status}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(TransportError::TooLarge { size }) => {
            let size = if size == 0 { archive_size } else { size };
            error(&format!(
                "{prefix} too large archive  {}",
                transport.upload_fields("responseStatus=413 Request Entity Too Large status=413")
            ))?;
            for line in too_large_explanation(size) {
                info(&line)?;
            }
            bail!(
                "too large archive: the {kind:?} artifact is {} and the server refused it (413)\n\
                 hint: raise GitLab's maximum artifacts size or the proxy's body limit, or upload fewer files",
                human_bytes(size)
            )
        }
        Err(e) => {
            error(&format!(
                "{prefix} failed  {}",
                transport.upload_fields(&format!("error={e}"))
            ))?;
            bail!("uploading the {kind:?} artifact failed: {e}")
        }
    }
}

/// Downloads job `--id`'s archive artifact and extracts it into the current directory.
pub(super) async fn download(args: DownloaderArgs) -> anyhow::Result<ExitCode> {
    let id = args.creds.id;
    let transport = args.creds.transport(id, &args.dependency_name)?;
    let retry_time = go_duration("--retry-time", &args.retry_time)?;
    let dep = Dependency {
        id,
        name: args.dependency_name.clone(),
        ..Dependency::default()
    };
    let tmp = scratch_file(args.staging_dir.as_deref(), "artifacts")?;
    // gitlab-runner's `--direct-download` takes its value from FF_USE_DIRECT_DOWNLOAD, which the job's stage
    // script exports.
    let flag = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| oxrunner_core::variables::parse_bool(&v))
            .unwrap_or(false)
    };
    let direct = flag("FF_USE_DIRECT_DOWNLOAD");
    // As gitlab-runner's downloader, which reads FF_USE_PARALLEL_ARTIFACT_TRANSFER from its environment.
    let parallel = flag("FF_USE_PARALLEL_ARTIFACT_TRANSFER");
    let mut retry = 0;
    loop {
        let mode = DownloadMode {
            direct: direct && retry == 0,
            parallel,
        };
        // A note that cannot be written is not worth failing the download for.
        let note = |line: &str| drop(info(line));
        match transport.download(&dep, tmp.path(), mode, &note).await {
            Ok(status) => {
                info(&format!("Downloading artifacts from coordinator... {status}"))?;
                break;
            }
            Err(TransportError::NotFound { .. }) => {
                error(&format!(
                    "Downloading artifacts from coordinator... not found  {}",
                    transport.download_fields(&dep, "responseStatus=404 Not Found status=404")
                ))?;
                bail!(
                    "the artifacts of job {id} do not exist or have expired\n\
                     hint: re-run job {id} so it uploads them again, or raise its artifacts:expire_in"
                );
            }
            Err(TransportError::Forbidden { detail }) => {
                error(&format!(
                    "Downloading artifacts from coordinator... forbidden  {}",
                    transport.download_fields(&dep, "responseStatus=403 Forbidden status=403")
                ))?;
                bail!(
                    "downloading the artifacts of job {id}: {detail}\n\
                     hint: the job token may not read that job's artifacts (job token scope), or the job has ended"
                );
            }
            Err(e) if retry < args.retry => {
                retry += 1;
                warning(&format!("Retrying...  error={e}"))?;
                tokio::time::sleep(retry_time).await;
            }
            Err(e) => bail!("downloading the artifacts of job {id} failed: {e}"),
        }
    }
    let path = tmp.path().to_path_buf();
    let (cwd, root) = work_dir(true)?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        match oxrunner_archive::sniff_format(&path)? {
            Format::Zip => {
                oxrunner_archive::extract_zip_into(&path, &root)
                    .with_context(|| format!("extracting the artifacts into {}", cwd.display()))?;
                Ok(())
            }
            other => bail!(
                "the downloaded archive is {} and only zip archives can be extracted\n\
                 hint: upload the dependency's `archive` artifact as zip",
                other.as_str()
            ),
        }
    })
    .await
    .context("extraction stopped")??;
    drop(tmp);
    Ok(ExitCode::SUCCESS)
}
