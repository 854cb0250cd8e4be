//! The runner-side steps of a remote cache inside `restore_cache` and `archive_cache`, with gitlab-runner's log
//! lines: download one key over the local store's archive of it (extracted by the caller); upload a freshly
//! written archive.
//! Every problem is a warning: the caller falls back to the local store, and a job never fails over its cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxrunner_archive::{Arrivals, Arriving};
use oxrunner_core::{StageCtx, TraceWriter};
use oxrunner_fs::Dir;

use super::RemoteCache;
use super::blocks::BlockUpload;
use super::multipart::Upload;
use super::parts;
use super::s3::Presigned;
use super::transfer::{self, Fetched, clean_url};

/// The extraction that runs while the archive downloads: it opens the project directory on its own thread;
/// `label` names the archive in its errors.
pub(crate) struct ExtractTo {
    pub(crate) open_root: Box<dyn FnOnce() -> Result<Dir, String> + Send>,
    pub(crate) label: PathBuf,
}

/// What the extraction beside a successful download did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Overlapped {
    /// It did not run (a small archive, one stream, or it could not start): the caller extracts the local copy.
    NotRun,
    /// Every entry is in place.
    Extracted,
    /// The archive could not be extracted (the message of a local extraction of it).
    Failed(String),
}

/// Fails the arrivals when the download is dropped midway (a cancelled job), so the extraction waiting for
/// bytes takes back what it wrote and ends.
struct EndOnDrop(Option<Arc<Arrivals>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            a.fail("the download was stopped");
        }
    }
}

/// gitlab-runner's `CACHE_REQUEST_TIMEOUT` default, in minutes.
const DEFAULT_REQUEST_TIMEOUT_MIN: u64 = 10;
/// Signed URLs outlive the request that uses them by a margin, never less than this.
const MIN_URL_LIFETIME: Duration = Duration::from_secs(3600);

/// What downloading one key from the remote store gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Restored {
    /// The object now is the local copy of the key; `bytes` came over the network. `extracted`: what the
    /// extraction that ran beside the download did.
    Downloaded { bytes: u64, extracted: Overlapped },
    /// The extraction beside the download put every entry in place, but the archive could not be kept as the
    /// key's local copy (warned).
    ExtractedNotKept { bytes: u64 },
    /// The key's local copy is at least as new as the object (its `Last-Modified`), as gitlab-runner's
    /// cache-extractor decides: nothing was downloaded; the caller extracts the local copy.
    UpToDate,
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

/// Downloads `key` to `dest`, the local store's archive of the key, replacing it only once the download is
/// complete, unless that copy is at least as new as the object ([`Restored::UpToDate`]; `force` downloads anyway). With `extract_to`, an archive that comes in parts is extracted while it arrives (its central
/// directory fetched first); otherwise the caller extracts it like any local archive. The archive stage then
/// compares the job's files with what came from the bucket, so an unchanged cache is not uploaded again from
/// another machine.
pub(crate) async fn download_key(
    remote: &RemoteCache,
    ctx: &StageCtx<'_>,
    key: &str,
    dest: &Path,
    trace: &TraceWriter,
    extract_to: Option<ExtractTo>,
    force: bool,
) -> Restored {
    let Some(name) = object(remote, ctx, key, trace) else {
        return Restored::Failed;
    };
    remote.store.prepare().await;
    let signed = match remote.store.signed_get(&name, url_lifetime(ctx)).await {
        Ok(s) => s,
        Err(e) => {
            trace.warning(&e);
            return Restored::Failed;
        }
    };
    let http = match transfer::client(request_timeout(ctx)) {
        Ok(c) => c,
        Err(e) => {
            trace.warning(&e);
            return Restored::Failed;
        }
    };
    // Asked even without a local copy: the download is dated with it (as upstream dates its downloads), so the next
    // restore compares the store's clock with the store's clock. An object replaced between this question and the
    // download makes the copy look older than it is: one download too many, never a stale copy kept.
    let remote_date = transfer::last_modified(&http, &signed).await;
    if !force
        && let Some(local) = local_modified(dest).await
        && let Some(remote_date) = remote_date
        && remote_date <= local
    {
        trace.println(&format!("{} is up to date", oxrunner_archive::CACHE_ARCHIVE_NAME));
        return Restored::UpToDate;
    }
    // The runner-owned cache directory, not $TMPDIR (often RAM-backed): a private file (0600, O_EXCL) next to
    // the archive so the final rename is atomic and a failed download never leaves half an archive behind.
    let tmp = match partial_file(dest).await {
        Ok(t) => t,
        Err(e) => {
            trace.warning(&format!(
                "cannot create a file for the cache download next to {}: {e}",
                dest.display()
            ));
            return Restored::Failed;
        }
    };
    trace.println(&format!(
        "Downloading cache from {}",
        clean_url(signed.url.as_str())
    ));
    let warn = |m: &str| trace.warning(m);
    let store = remote.store.describe();
    let arrivals = extract_to.as_ref().map(|_| Arc::new(Arrivals::default()));
    let extraction = match (extract_to, &arrivals) {
        (Some(to), Some(arrivals)) => start_extraction(to, &tmp, arrivals),
        _ => None,
    };
    let ender = EndOnDrop(arrivals.clone());
    let fetched = parts::download(
        &http,
        &signed,
        tmp.as_file(),
        remote.parts,
        &store,
        &warn,
        arrivals.as_ref(),
    )
    .await;
    if let Some(a) = &arrivals {
        match &fetched {
            Ok(Fetched::Found { .. }) => a.complete(),
            Ok(Fetched::Missing) => a.fail("no such object"),
            Err(e) => a.fail(e),
        }
    }
    drop(ender);
    // The archive is synced and put in place while the extraction finishes its last entries.
    let placing = match fetched {
        Ok(Fetched::Found { bytes }) => {
            let target = dest.to_path_buf();
            Ok((
                bytes,
                tokio::task::spawn_blocking(move || {
                    // Dated once it has the key's name, through its own descriptor: a temporary dated in the past
                    // would be taken for a leftover by the store's sweep of stale temporaries (another job's save)
                    // and deleted before the rename. Without an answer to the date question, the copy is dated at
                    // the epoch (upstream: Go's zero time), so the next restore downloads rather than trusts it.
                    let file = tmp.as_file().try_clone()?;
                    put_in_place(tmp, &target)?;
                    file.set_modified(remote_date.unwrap_or(std::time::UNIX_EPOCH))
                }),
            ))
        }
        Ok(Fetched::Missing) => Err(Restored::Missing),
        Err(e) => {
            trace.warning(&e);
            Err(Restored::Failed)
        }
    };
    let arriving = match extraction {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(format!("the extraction stopped: {e}"))),
        None => Ok(Arriving::NotStarted),
    };
    let (bytes, placed) = match placing {
        Ok((bytes, placing)) => (
            bytes,
            placing.await.map_err(std::io::Error::other).and_then(|r| r),
        ),
        Err(missed) => {
            return match arriving {
                // Every entry arrived and passed its CRC before the download failed on what remained.
                Ok(Arriving::Extracted(_)) => Restored::ExtractedNotKept { bytes: 0 },
                Ok(Arriving::Abandoned { left }) => {
                    trace.warning(&abandoned_message(&left));
                    missed
                }
                _ => missed,
            };
        }
    };
    let extracted = match arriving {
        Ok(Arriving::Extracted(_)) => Overlapped::Extracted,
        Ok(Arriving::Failed(e)) => Overlapped::Failed(e.to_string()),
        // Abandoned while the download went on as one stream: the complete archive is extracted afterwards.
        Ok(Arriving::NotStarted | Arriving::Abandoned { .. }) | Err(_) => Overlapped::NotRun,
    };
    match placed {
        Ok(()) => Restored::Downloaded { bytes, extracted },
        Err(e) => {
            trace.warning(&format!("saving the downloaded cache as {}: {e}", dest.display()));
            if extracted == Overlapped::Extracted {
                Restored::ExtractedNotKept { bytes }
            } else {
                Restored::Failed
            }
        }
    }
}

/// When the key's local copy was last written (a local save, or the last download and its digest), if there is
/// one; the name itself, never a link at it.
async fn local_modified(dest: &Path) -> Option<std::time::SystemTime> {
    let meta = tokio::fs::symlink_metadata(dest).await.ok()?;
    meta.file_type().is_file().then(|| meta.modified().ok())?
}

fn abandoned_message(left: &[String]) -> String {
    if left.is_empty() {
        return "the files already extracted from the interrupted download were removed again".to_owned();
    }
    format!(
        "the files already extracted from the interrupted download were removed again, except: {}",
        left.join("; ")
    )
}

/// Starts the extraction beside the download, reading the download's file through its own descriptor.
fn start_extraction(
    to: ExtractTo,
    tmp: &tempfile::NamedTempFile,
    arrivals: &Arc<Arrivals>,
) -> Option<tokio::task::JoinHandle<Result<Arriving, String>>> {
    let file = tmp.as_file().try_clone().ok()?;
    let arrivals = Arc::clone(arrivals);
    Some(tokio::task::spawn_blocking(move || {
        let root = (to.open_root)()?;
        Ok(oxrunner_archive::extract_arriving(
            file, &to.label, &arrivals, &root,
        ))
    }))
}

/// Puts the complete download at `dest` in one step: its data is on disk first (the local copy is trusted
/// later: a save whose digest matches it reports "unchanged" and may upload it again when the bucket lost the
/// object, so a crash must never leave a name pointing at blocks that were not written). An archive already
/// there is swapped out (`RENAME_EXCHANGE`) and then removed, not renamed over.
fn put_in_place(tmp: tempfile::NamedTempFile, dest: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    tmp.as_file().sync_data()?;
    let tmp = tmp.into_temp_path();
    match renameat2(AT_FDCWD, &*tmp, AT_FDCWD, dest, RenameFlags::RENAME_EXCHANGE) {
        // The temporary name now holds the previous archive: removing it is all that is left. Should that
        // fail, the store sweeps its leftover temporaries at the next save.
        Ok(()) => {
            let _ = tmp.close();
            Ok(())
        }
        // Nothing to swap with (the first download of the key), or a file system without exchange.
        Err(_) => tmp.persist(dest).map_err(|e| e.error),
    }
}

async fn partial_file(dest: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = dest
        .parent()
        .ok_or_else(|| std::io::Error::other("the archive path has no directory"))?
        .to_path_buf();
    tokio::fs::create_dir_all(&dir).await?;
    tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            // The store's own temporary prefix: one left by a crash is swept like an interrupted local save.
            .prefix("cache.zip.tmp-")
            .tempfile_in(dir)
    })
    .await
    .map_err(std::io::Error::other)?
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
    remote.store.prepare().await;
    // A signing failure is told by the upload that follows a `false`.
    let Ok(signed) = remote.store.signed_head(&name, url_lifetime(ctx)).await else {
        return false;
    };
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
) -> Result<u64, String> {
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
        return Ok(0);
    }
    remote.store.prepare().await;
    let signed = remote.store.signed_put(&name, url_lifetime(ctx)).await?;
    let http = transfer::client(request_timeout(ctx))?;
    trace.println(&format!(
        "Uploading cache.zip to {}",
        clean_url(signed.url.as_str())
    ));
    let warn = |m: &str| trace.warning(m);
    let describe = remote.store.describe();
    if size <= remote.parts.threshold {
        return transfer::upload(&http, &signed, archive, &describe, &warn).await;
    }
    if let Some(store) = remote.store.multipart() {
        let upload = Upload {
            http: &http,
            store,
            object: &name,
            src: archive,
            plan: remote.parts,
            lifetime: url_lifetime(ctx),
            describe: &describe,
        };
        return upload.run(&warn).await;
    }
    if let Some(store) = remote.store.blocks() {
        let upload = BlockUpload {
            http: &http,
            store,
            object: &name,
            src: archive,
            plan: remote.parts,
            lifetime: url_lifetime(ctx),
            describe: &describe,
        };
        return upload.run(&warn).await;
    }
    transfer::upload(&http, &signed, archive, &describe, &warn).await
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
