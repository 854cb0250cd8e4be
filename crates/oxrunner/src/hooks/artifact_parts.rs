//! `FF_USE_PARALLEL_ARTIFACT_TRANSFER`: a dependency's archive that GitLab redirects to object storage
//! (`direct_download`) comes in parallel ranged GETs, as gitlab-runner does, through the cache's part downloader
//! (`remote/parts.rs`) with gitlab-runner's fixed artifact plan (16 MiB parts, 16 at a time, objects above one
//! part). An object no larger than one part, or a store that ignores `Range`, is read as one stream; anything
//! that goes wrong on the parallel path falls back to the ordinary download, which asks GitLab again and follows
//! its redirect in one stream, as upstream falls back. The lines gitlab-runner's downloader logs on this path
//! ("Direct download from <host>", the parallel plan, why it fell back) go to the job log as in upstream's.

use std::path::{Path, PathBuf};

use oxrunner_api::{ApiError, Client, DirectDownload};

use super::remote::parts::{self, PartPlan};
use super::remote::s3::Presigned;
use super::remote::transfer::{Fetched, clean_url};
use super::transport::Note;

const MIB: u64 = 1024 * 1024;

/// Downloads job `job_id`'s archive into `dest` (complete or untouched afterwards), in parallel parts when
/// GitLab redirects to a store that honours `Range`.
pub(crate) async fn download(
    client: &Client,
    job_id: i64,
    token: &str,
    dest: &Path,
    note: Note<'_>,
) -> Result<(), ApiError> {
    let location = match client.download_artifacts_or_redirect(job_id, token, dest).await {
        Ok(DirectDownload::Written) => return Ok(()),
        Ok(DirectDownload::Redirect(location)) => location,
        Err(
            e
            @ (ApiError::NotFound | ApiError::Forbidden { .. } | ApiError::Tls { .. } | ApiError::Io { .. }),
        ) => {
            return Err(e);
        }
        Err(e) => {
            tracing::info!(job_id, error = %e, "Artifact download: the direct download request failed, using single download stream");
            return client.download_artifacts(job_id, token, dest, true).await;
        }
    };
    if let Some(host) = location.host_str().filter(|h| !h.is_empty()) {
        note(&format!("Direct download from {host}"));
    }
    let plan = PartPlan::for_artifacts();
    match in_parts(client, &location, dest, plan).await {
        Ok(bytes) if bytes > plan.part_size => {
            note(&format!(
                "Artifact download: parallel, {} streams, {} MiB chunk size",
                plan.in_flight,
                plan.part_size / MIB
            ));
            Ok(())
        }
        Ok(_) => {
            note(&format!(
                "Artifact download: file size <= {} MiB (chunk size), using single download stream",
                plan.part_size / MIB
            ));
            Ok(())
        }
        Err(why) => {
            // `why` names the store by its cleaned URL: no signature.
            note(&format!(
                "Artifact download: parallel failed, using single download stream  error={why}"
            ));
            client.download_artifacts(job_id, token, dest, true).await
        }
    }
}

/// The object at `location` into a private file beside `dest`, renamed into place once complete (dropped on
/// any failure); its size.
async fn in_parts(
    client: &Client,
    location: &reqwest::Url,
    dest: &Path,
    plan: PartPlan,
) -> Result<u64, String> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".artifacts-parts-")
        .tempfile_in(&dir)
        .map_err(|e| format!("cannot create a file for the download in {}: {e}", dir.display()))?;
    let signed = Presigned {
        url: location.clone(),
        headers: Vec::new(),
    };
    let shown = clean_url(location.as_str());
    let warn = |message: &str| tracing::warn!(url = %shown, "artifact download: {message}");
    let bytes = match parts::download(
        &client.transfer_http(),
        &signed,
        tmp.as_file(),
        plan,
        "object storage",
        &warn,
        None,
    )
    .await?
    {
        Fetched::Found { bytes } => bytes,
        Fetched::Missing => return Err(format!("object storage: {shown} answered 404 Not Found")),
    };
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map(drop).map_err(|e| e.error)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot move the download into place: {e}"))?;
    Ok(bytes)
}
