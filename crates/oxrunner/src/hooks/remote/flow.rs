//! The runner-side steps of a remote cache inside `restore_cache` and `archive_cache`, with gitlab-runner's log
//! lines: download one key into a private temporary file and extract it; upload a freshly written archive.
//! Every problem is a warning: the caller falls back to the local store, and a job never fails over its cache.

use std::path::Path;
use std::time::Duration;

use oxrunner_core::{StageCtx, TraceWriter};

use super::RemoteCache;
use super::s3::Presigned;
use super::transfer::{self, Fetched, clean_url};
use crate::hooks::jobdir::open_project;

/// gitlab-runner's `CACHE_REQUEST_TIMEOUT` default, in minutes.
const DEFAULT_REQUEST_TIMEOUT_MIN: u64 = 10;
/// Signed URLs outlive the request that uses them by a margin, never less than this.
const MIN_URL_LIFETIME: Duration = Duration::from_secs(3600);

/// What restoring one key from the remote store gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Restored {
    Extracted,
    /// No object under this key.
    Missing,
    /// The store could not be used (already reported as a warning).
    Failed,
}

fn request_timeout(ctx: &StageCtx<'_>) -> Duration {
    let minutes = ctx
        .variables
        .value("CACHE_REQUEST_TIMEOUT")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MIN);
    Duration::from_secs(minutes.saturating_mul(60))
}

fn url_lifetime(ctx: &StageCtx<'_>) -> Duration {
    ctx.plan.effective_timeout().max(MIN_URL_LIFETIME)
}

fn sharded(ctx: &StageCtx<'_>) -> bool {
    ctx.variables.bool("FF_HASH_CACHE_KEYS").unwrap_or(false)
}

fn object(remote: &RemoteCache, ctx: &StageCtx<'_>, key: &str, trace: &TraceWriter) -> Option<String> {
    let name = remote.object_name(ctx.plan.project_id, key, sharded(ctx));
    if name.is_none() {
        trace.warning(&format!(
            "cache key {key:?}: computed cache path outside of project bucket. Please remove `../` from cache key"
        ));
    }
    name
}

/// A signed URL for a job-side helper (`cache-extractor`/`cache-archiver` in an in-script stage), valid for the
/// job's timeout; `None` when the key leaves the project's prefix (warned).
pub(crate) fn presign_for_script(
    remote: &RemoteCache,
    ctx: &StageCtx<'_>,
    key: &str,
    trace: &TraceWriter,
    upload: bool,
) -> Option<Presigned> {
    let name = object(remote, ctx, key, trace)?;
    Some(if upload {
        remote.store.presign_put(&name, url_lifetime(ctx))
    } else {
        remote.store.presign_get(&name, url_lifetime(ctx))
    })
}

/// Downloads `key` and extracts it into the project.
pub(crate) async fn restore_key(
    remote: &RemoteCache,
    ctx: &StageCtx<'_>,
    key: &str,
    trace: &TraceWriter,
) -> Restored {
    let Some(name) = object(remote, ctx, key, trace) else {
        return Restored::Failed;
    };
    let signed = remote.store.presign_get(&name, url_lifetime(ctx));
    let http = match transfer::client(request_timeout(ctx)) {
        Ok(c) => c,
        Err(e) => {
            trace.warning(&e);
            return Restored::Failed;
        }
    };
    // A private file (0600, O_EXCL) outside anything the job can reach: the archive is untrusted until extracted
    // by the same code as a local one.
    let tmp = match tempfile::Builder::new().prefix("oxrunner-cache-dl-").tempfile() {
        Ok(t) => t,
        Err(e) => {
            trace.warning(&format!(
                "cannot create a temporary file for the cache download: {e}"
            ));
            return Restored::Failed;
        }
    };
    trace.println(&format!(
        "Downloading cache from {}",
        clean_url(signed.url.as_str())
    ));
    let warn = |m: &str| trace.warning(m);
    match transfer::download(&http, &signed, tmp.path(), &remote.store.describe(), &warn).await {
        Ok(Fetched::Found { .. }) => {}
        Ok(Fetched::Missing) => return Restored::Missing,
        Err(e) => {
            trace.warning(&e);
            return Restored::Failed;
        }
    }
    match extract(ctx, tmp.path().to_path_buf()).await {
        Ok(()) => Restored::Extracted,
        Err(e) => {
            trace.warning(&e);
            Restored::Failed
        }
    }
}

async fn extract(ctx: &StageCtx<'_>, archive: std::path::PathBuf) -> Result<(), String> {
    let (builds_dir, project_dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &project_dir, true)?;
        oxrunner_archive::extract_zip_into(&archive, &root)
            .map(|_| ())
            .map_err(|e| format!("extracting the downloaded cache: {e}"))
    })
    .await
    .map_err(|e| format!("cache extraction stopped: {e}"))?
}

/// Whether the bucket already holds `key`. An unchanged local archive is uploaded again when it does not: an
/// earlier upload may have failed, or the object expired.
pub(crate) async fn remote_has(
    remote: &RemoteCache,
    ctx: &StageCtx<'_>,
    key: &str,
    trace: &TraceWriter,
) -> bool {
    let Some(name) = object(remote, ctx, key, trace) else {
        return false;
    };
    let signed = remote.store.presign_head(&name, url_lifetime(ctx));
    match transfer::client(request_timeout(ctx)) {
        Ok(http) => transfer::exists(&http, &signed).await,
        Err(_) => false,
    }
}

/// Uploads the archive at `archive` as `key`. `Ok` when uploaded or skipped on purpose (too large), with the
/// lines already in the trace; `Err` with the reason otherwise.
pub(crate) async fn upload_key(
    remote: &RemoteCache,
    ctx: &StageCtx<'_>,
    key: &str,
    archive: &Path,
    trace: &TraceWriter,
) -> Result<(), String> {
    let Some(name) = object(remote, ctx, key, trace) else {
        return Err("the cache key leaves the project's prefix in the bucket".to_owned());
    };
    let size = tokio::fs::metadata(archive)
        .await
        .map_err(|e| format!("cannot read {}: {e}", archive.display()))?
        .len();
    if let Some(limit) = remote.max_upload.filter(|l| size > *l) {
        trace.println(&format!(
            "Cache archive size ({size}) is too big (Limit is set to {limit}). Cache will be stored only locally."
        ));
        return Ok(());
    }
    let signed = remote.store.presign_put(&name, url_lifetime(ctx));
    let http = transfer::client(request_timeout(ctx))?;
    trace.println(&format!(
        "Uploading cache.zip to {}",
        clean_url(signed.url.as_str())
    ));
    let warn = |m: &str| trace.warning(m);
    transfer::upload(&http, &signed, archive, &remote.store.describe(), &warn)
        .await
        .map(|_| ())
}
