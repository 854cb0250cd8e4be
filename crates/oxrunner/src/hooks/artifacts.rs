//! `download_artifacts` and `upload_artifacts_on_*`: dependency archives in, job archives out.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use oxrunner_api::ArtifactUpload;
use oxrunner_archive::{FileSet, Format, Level, ZipStats};
use oxrunner_core::feature_flags::stage_retry_backoff;
use oxrunner_core::{ArtifactSpec, Dependency, FailureReason, HookError, StageCtx, TraceWriter};
use oxrunner_fs::Dir;

use super::jobdir::open_project;
use super::transport::{ArtifactTransport, DownloadMode, TransportError};
use super::units::human_bytes;

/// gitlab-runner allows 1..=10 attempts for the download stage.
const MAX_ATTEMPTS: u32 = 10;

pub(crate) fn attempts(ctx: &StageCtx<'_>) -> u32 {
    ctx.variables
        .value("ARTIFACT_DOWNLOAD_ATTEMPTS")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(1, |n| n.clamp(1, MAX_ATTEMPTS))
}

/// A scratch directory for archives: `<project>.tmp` when it can be created, else the system temp dir.
/// A job run as another user (`--user`) owns `<project>.tmp` and could swap it for a symlink, so the
/// runner then keeps its archives in its own temp dir.
fn scratch_dir(ctx: &StageCtx<'_>) -> PathBuf {
    if ctx.runner.user.is_some() {
        return std::env::temp_dir();
    }
    match std::fs::create_dir_all(&ctx.tmp_dir) {
        Ok(()) => ctx.tmp_dir.clone(),
        Err(_) => std::env::temp_dir(),
    }
}

fn temp_file(dir: &Path, prefix: &str) -> Result<tempfile::NamedTempFile, HookError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(|e| {
            HookError::with_reason(
                FailureReason::RunnerSystemFailure,
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            )
        })
}

/// Downloads and extracts each dependency that has an archive. A missing archive fails the job with
/// `missing_dependency_failure`; other errors are retried `ARTIFACT_DOWNLOAD_ATTEMPTS` times, then fail the job
/// as a system failure.
pub(crate) async fn download(
    transport: &dyn ArtifactTransport,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
) -> Result<(), HookError> {
    let tries = attempts(ctx);
    let scratch = scratch_dir(ctx);
    for dep in ctx
        .plan
        .dependencies
        .iter()
        .filter(|d| d.artifacts_file.is_some())
    {
        trace.println(&format!("Downloading artifacts for {} ({})...", dep.name, dep.id));
        let mut attempt = 1;
        loop {
            match download_one(transport, dep, ctx, &scratch, trace).await {
                Ok(()) => break,
                Err(DownloadError::Missing) => {
                    trace.error(&format!(
                        "Downloading artifacts from coordinator... not found  {}",
                        transport.download_fields(dep, "responseStatus=404 Not Found status=404")
                    ));
                    return Err(HookError::with_reason(
                        FailureReason::MissingDependencyFailure,
                        format!(
                            "the artifacts of job {:?} ({}) do not exist or have expired\n\
                             hint: re-run job {:?} so it uploads them again, or raise its artifacts:expire_in",
                            dep.name, dep.id, dep.name
                        ),
                    ));
                }
                Err(DownloadError::Fatal(err)) => return Err(err),
                Err(DownloadError::Retry(detail)) if attempt < tries => {
                    let wait = stage_retry_backoff(ctx.variables, attempt - 1);
                    trace.warning(&format!(
                        "Downloading artifacts for {} ({}) failed: {detail}; retrying in {}s (attempt {} of {tries})",
                        dep.name,
                        dep.id,
                        wait.as_secs(),
                        attempt + 1
                    ));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(DownloadError::Retry(detail)) => {
                    return Err(HookError::with_reason(
                        FailureReason::RunnerSystemFailure,
                        format!(
                            "downloading the artifacts of job {:?} ({}) failed: {detail}",
                            dep.name, dep.id
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

enum DownloadError {
    Missing,
    Retry(String),
    Fatal(HookError),
}

async fn download_one(
    transport: &dyn ArtifactTransport,
    dep: &Dependency,
    ctx: &StageCtx<'_>,
    scratch: &Path,
    trace: &TraceWriter,
) -> Result<(), DownloadError> {
    let (path, tmp) = match transport.local_archive(dep).await {
        Some((src, status)) => {
            trace.println(&format!("Downloading artifacts from coordinator... {status}"));
            (src, None)
        }
        None => {
            let tmp = temp_file(scratch, "artifacts-download-").map_err(DownloadError::Fatal)?;
            let path = tmp.path().to_path_buf();
            fetch(transport, dep, ctx, &path, trace).await?;
            (path, Some(tmp))
        }
    };
    let project_dir = ctx.project_dir.clone();
    let builds_dir = ctx.runner.builds_dir.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<(), String> {
        match oxrunner_archive::sniff_format(&path).map_err(|e| e.to_string())? {
            Format::Zip => {
                oxrunner_archive::extract_zip_into(&path, &open_project(&builds_dir, &project_dir, true)?)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            other => Err(format!(
                "the downloaded archive is {} and only zip archives can be extracted\n\
                 hint: upload the dependency's `archive` artifact as zip",
                other.as_str()
            )),
        }
    })
    .await;
    drop(tmp);
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(DownloadError::Fatal(HookError::with_reason(
            FailureReason::RunnerSystemFailure,
            format!(
                "extracting the artifacts of job {:?} ({}): {msg}",
                dep.name, dep.id
            ),
        ))),
        Err(e) => Err(DownloadError::Fatal(HookError::with_reason(
            FailureReason::RunnerSystemFailure,
            format!(
                "extracting the artifacts of job {:?} ({}) stopped: {e}",
                dep.name, dep.id
            ),
        ))),
    }
}

/// Downloads `dep`'s archive into `path` through the transport.
async fn fetch(
    transport: &dyn ArtifactTransport,
    dep: &Dependency,
    ctx: &StageCtx<'_>,
    path: &Path,
    trace: &TraceWriter,
) -> Result<(), DownloadError> {
    let mode = DownloadMode {
        direct: oxrunner_core::feature_flags::is_on(ctx.variables, "FF_USE_DIRECT_DOWNLOAD"),
        parallel: oxrunner_core::feature_flags::is_on(ctx.variables, "FF_USE_PARALLEL_ARTIFACT_TRANSFER"),
    };
    match transport
        .download(dep, path, mode, &|line| trace.println(line))
        .await
    {
        Ok(status) => trace.println(&format!("Downloading artifacts from coordinator... {status}")),
        Err(TransportError::NotFound { .. }) => return Err(DownloadError::Missing),
        Err(e @ TransportError::Forbidden { .. }) => {
            trace.error(&format!(
                "Downloading artifacts from coordinator... forbidden  {}",
                transport.download_fields(dep, "responseStatus=403 Forbidden status=403")
            ));
            return Err(DownloadError::Fatal(HookError::with_reason(
                FailureReason::RunnerSystemFailure,
                format!(
                    "downloading the artifacts of job {:?} ({}): {e}",
                    dep.name, dep.id
                ),
            )));
        }
        Err(e) => return Err(DownloadError::Retry(e.to_string())),
    }
    Ok(())
}

/// Uploads every artifact whose `when` matches; stops at the first failed upload, which fails the job.
pub(crate) async fn upload(
    transport: &dyn ArtifactTransport,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    on_failure: bool,
) -> Result<(), HookError> {
    let (level, level_warning) = Level::from_variable(
        ctx.variables
            .value("ARTIFACT_COMPRESSION_LEVEL")
            .filter(|v| !v.is_empty()),
    );
    if let Some(w) = level_warning {
        trace.warning(&w);
    }
    let scratch = scratch_dir(ctx);
    for spec in ctx.plan.artifacts.iter().filter(|a| a.when.applies(on_failure)) {
        if spec.paths.is_empty() && !spec.untracked {
            continue;
        }
        upload_one(transport, ctx, trace, spec, level, &scratch).await?;
    }
    Ok(())
}

async fn upload_one(
    transport: &dyn ArtifactTransport,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    spec: &ArtifactSpec,
    level: Level,
    scratch: &Path,
) -> Result<(), HookError> {
    trace.println("Uploading artifacts...");
    let kind = if spec.artifact_type.is_empty() {
        "archive".to_owned()
    } else {
        spec.artifact_type.clone()
    };
    let format = upload_format(spec, trace);
    let tmp = temp_file(scratch, "artifacts-upload-")?;
    let Some(stats) = archive_for_upload(ctx, trace, spec, format, level, &tmp).await? else {
        return Ok(());
    };
    let name = ctx.variables.expand(&spec.name);
    let name = if name.trim().is_empty() {
        "artifacts".to_owned()
    } else {
        name
    };
    let opts = ArtifactUpload {
        filename: ArtifactUpload::file_name_for(&name, format.as_str()),
        artifact_format: format.as_str().to_owned(),
        artifact_type: kind.clone(),
        expire_in: spec.expire_in.clone().filter(|e| !e.trim().is_empty()),
        timeout: None,
        response_header_timeout: None,
    };
    let result = transport.upload(tmp.path(), &opts).await;
    drop(tmp);
    report_upload(transport, trace, &kind, &stats, result)
}

/// The archive format to upload; one this runner cannot write falls back to zip, with a warning.
fn upload_format(spec: &ArtifactSpec, trace: &TraceWriter) -> Format {
    match Format::parse(&spec.artifact_format) {
        Some(f @ (Format::Zip | Format::Gzip | Format::Raw)) => f,
        _ => {
            trace.warning(&format!(
                "artifact format {:?} is not supported by this runner; using zip",
                spec.artifact_format
            ));
            Format::Zip
        }
    }
}

/// Writes `spec`'s files into `tmp`; `None` when nothing matched (nothing to upload, not an error).
async fn archive_for_upload(
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    spec: &ArtifactSpec,
    format: Format,
    level: Level,
    tmp: &tempfile::NamedTempFile,
) -> Result<Option<ZipStats>, HookError> {
    let dir = ctx.project_dir.clone();
    let (paths, exclude, untracked) = (
        spec.paths
            .iter()
            .map(|p| ctx.variables.expand(p))
            .collect::<Vec<_>>(),
        spec.exclude
            .iter()
            .map(|p| ctx.variables.expand(p))
            .collect::<Vec<_>>(),
        spec.untracked,
    );
    let out = tmp.path().to_path_buf();
    // Written through the descriptor tempfile created (O_EXCL), never by reopening its path.
    let file = tmp.as_file().try_clone().map_err(|e| {
        HookError::with_reason(
            FailureReason::RunnerSystemFailure,
            format!("cannot write {}: {e}", out.display()),
        )
    })?;
    let builds_dir = ctx.runner.builds_dir.clone();
    let built = tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &dir, false).map_err(BuildError::Other)?;
        build_archive(&root, &paths, &exclude, untracked, format, level, file)
    })
    .await
    .map_err(|e| {
        HookError::with_reason(
            FailureReason::RunnerSystemFailure,
            format!("archiving stopped: {e}"),
        )
    })?;
    let (files, stats) = match built {
        Ok(v) => v,
        Err(BuildError::Files(files, msg)) => {
            for w in &files.warnings {
                trace.warning(w);
            }
            return Err(HookError::new(msg));
        }
        Err(BuildError::Other(msg)) => return Err(HookError::new(msg)),
    };
    for w in &files.warnings {
        trace.warning(w);
    }
    if files.files.is_empty() {
        trace.warning("No files to upload");
        return Ok(None);
    }
    trace.println(&format!(
        "found {} matching artifact files and directories",
        files.files.len()
    ));
    Ok(Some(stats))
}

/// Logs the coordinator's answer in gitlab-runner's wording and maps a refusal to the job's failure reason.
fn report_upload(
    transport: &dyn ArtifactTransport,
    trace: &TraceWriter,
    kind: &str,
    stats: &ZipStats,
    result: Result<String, TransportError>,
) -> Result<(), HookError> {
    let prefix = format!("Uploading artifacts as {kind:?} to coordinator...");
    match result {
        Ok(status) => {
            trace.println(&format!("{prefix} {status}"));
            Ok(())
        }
        Err(TransportError::TooLarge { size }) => {
            let size = if size == 0 { stats.bytes_out } else { size };
            trace.error(&format!(
                "{prefix} too large archive  {}",
                transport.upload_fields("responseStatus=413 Request Entity Too Large status=413")
            ));
            for line in too_large_explanation(size) {
                trace.println(&line);
            }
            Err(HookError::with_reason(
                FailureReason::ScriptFailure,
                format!(
                    "too large archive: the {kind:?} artifact is {} and the server refused it (413)",
                    human_bytes(size)
                ),
            ))
        }
        Err(e) => {
            trace.error(&format!(
                "{prefix} failed  {}",
                transport.upload_fields(&format!("error={e}"))
            ));
            Err(HookError::with_reason(
                FailureReason::RunnerSystemFailure,
                format!("uploading the {kind:?} artifact failed: {e}"),
            ))
        }
    }
}

/// The two limits that answer "too large archive", with where each is set.
pub(crate) fn too_large_explanation(size: u64) -> Vec<String> {
    vec![
        format!(
            "The artifact archive is {} ({size} bytes); one of these limits rejected it:",
            human_bytes(size)
        ),
        "  1. GitLab's \"Maximum artifacts size\": Admin Area > Settings > CI/CD > Continuous Integration and \
         Deployment (instance), or the project's / group's Settings > CI/CD > General pipelines setting."
            .to_owned(),
        "  2. A reverse proxy's request body limit in front of GitLab, e.g. nginx `client_max_body_size`; on Omnibus \
         set `nginx['client_max_body_size'] = '1024m'` in /etc/gitlab/gitlab.rb and run `gitlab-ctl reconfigure`."
            .to_owned(),
        "Raise the limit that applies, or upload fewer files (artifacts:paths / artifacts:exclude).".to_owned(),
    ]
}

pub(crate) enum BuildError {
    Files(FileSet, String),
    Other(String),
}

pub(crate) fn build_archive(
    root: &Dir,
    paths: &[String],
    exclude: &[String],
    untracked: bool,
    format: Format,
    level: Level,
    file: File,
) -> Result<(FileSet, ZipStats), BuildError> {
    let files = oxrunner_archive::collect_in(root, paths, exclude, untracked)
        .map_err(|e| BuildError::Other(e.to_string()))?;
    if files.files.is_empty() {
        return Ok((files, ZipStats::default()));
    }
    let result = match format {
        Format::Gzip => oxrunner_archive::create_gzip_in(root, &files, BufWriter::new(file)),
        Format::Raw => oxrunner_archive::create_raw_in(root, &files, BufWriter::new(file)),
        _ => oxrunner_archive::create_zip_in(root, &files, level, BufWriter::new(file)),
    };
    match result {
        Ok(stats) => Ok((files, stats)),
        Err(e) => Err(BuildError::Files(
            files,
            format!("creating the artifact archive failed: {e}"),
        )),
    }
}
