//! A large archive up to Azure as a block blob built from blocks, as the Azure SDKs upload streams (and so
//! gitlab-runner, through GoCloud): each range of the archive is a Put Block (`comp=block&blockid=…`), sent side
//! by side (at most the plan's in-flight count, each retried on its own, streamed from its offset so memory stays
//! flat), then one Put Block List (`comp=blocklist`) commits them in order. A single Put Blob stops at 5000 MiB;
//! blocks reach Azure's limits of 50,000 blocks of 4000 MiB.
//!
//! Nothing is visible under the key until the block list is committed: a block that fails for good (or a cancel)
//! sends no block list, so the container keeps its previous blob under the key, whole. Azure has no call to drop
//! uncommitted blocks; it discards them itself (after a week, or when the blob is next committed).
//!
//! Uncommitted blocks that an interrupted upload of the key left behind can refuse this upload's blocks (ids of
//! another length, or Azure's limit of 100,000 uncommitted blocks). Up to 5000 MiB the archive then goes up as one
//! Put Blob, which commits the blob and discards those blocks, so the key's later uploads work again.
//!
//! Both requests use the blob's write SAS (`sp=w` covers blocks and block lists): a service SAS signs neither
//! `comp` nor `blockid`, so one signed URL serves every request of the upload.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};

use super::azure::AzureStore;
use super::multipart::Source;
use super::parts::PartPlan;
use super::s3::Presigned;
use super::transfer::{self, Failure, clean_url, network, status_failure, with_retries};

const MIB: u64 = 1024 * 1024;
/// Azure's limit of committed blocks in one blob.
pub(crate) const MAX_BLOCKS: u64 = 50_000;
/// Azure's largest block (service versions from 2019-12-12 on; the SAS signs 2022-11-02).
pub(crate) const MAX_BLOCK_SIZE: u64 = 4000 * MIB;
/// Azure's largest single Put Blob: the fallback when foreign uncommitted blocks refuse this upload's blocks.
pub(crate) const MAX_PUT_BLOB: u64 = 5000 * MIB;
/// Raw bytes of a block id before base64: the Go SDK's `[64]byte` ids, which gitlab-runner uploads with through
/// GoCloud (and Azure's maximum). Azure refuses a block whose id length differs from the blob's uncommitted
/// blocks, so the same length lets either runner upload a key the other's interrupted upload left blocks under.
pub(crate) const ID_LEN: usize = 64;
/// The per-upload prefix of every id (the SDK puts a random UUID there). It keeps two runners that push the same
/// key at once from overwriting each other's uncommitted blocks: each block list names only its own upload's.
pub(crate) const NONCE_LEN: usize = 16;

/// The ids of `count` blocks of one upload, in order, laid out as the Go SDK's: the nonce, the block number as a
/// big-endian `u32`, zeros up to [`ID_LEN`] bytes; then base64.
pub(crate) fn block_ids(nonce: [u8; NONCE_LEN], count: usize) -> Vec<String> {
    // `0u32..` zipped with the count: no cast, and at most 50,000 blocks come here.
    (0u32..)
        .zip(0..count)
        .map(|(i, _)| {
            let mut raw = [0u8; ID_LEN];
            raw[..NONCE_LEN].copy_from_slice(&nonce);
            raw[NONCE_LEN..NONCE_LEN + 4].copy_from_slice(&i.to_be_bytes());
            base64::engine::general_purpose::STANDARD.encode(raw)
        })
        .collect()
}

/// A fresh prefix per upload: two randomly keyed hashes (as `transfer`'s jitter) of the clock and process id.
fn nonce() -> [u8; NONCE_LEN] {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut out = [0u8; NONCE_LEN];
    for half in out.chunks_exact_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// The Azure error code (`x-ms-error-code`) of a Put Block answer that says the key holds uncommitted blocks this
/// upload cannot join: ids of another length (400), or Azure's 100,000 uncommitted blocks reached (409).
fn foreign_blocks(resp: &reqwest::Response) -> Option<&'static str> {
    let code = resp.headers().get("x-ms-error-code")?.to_str().ok()?;
    match (resp.status(), code) {
        (reqwest::StatusCode::BAD_REQUEST, "InvalidBlobOrBlock") => Some("InvalidBlobOrBlock"),
        (reqwest::StatusCode::CONFLICT, "BlockCountExceedsLimit") => Some("BlockCountExceedsLimit"),
        _ => None,
    }
}

/// The Put Block List body: every block by id, in the blob's order.
pub(crate) fn block_list_xml(ids: &[String]) -> String {
    let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
    for id in ids {
        body.push_str("<Latest>");
        body.push_str(id);
        body.push_str("</Latest>");
    }
    body.push_str("</BlockList>");
    body
}

/// `url` with `pairs` added to its query (form-encoded: a base64 id's `+`, `/` and `=` are escaped).
fn with_query(url: &reqwest::Url, pairs: &[(&str, &str)]) -> reqwest::Url {
    let mut url = url.clone();
    url.query_pairs_mut().extend_pairs(pairs);
    url
}

/// One block upload of the archive at `src` as `object`.
pub(crate) struct BlockUpload<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) store: &'a AzureStore,
    pub(crate) object: &'a str,
    pub(crate) src: &'a Path,
    pub(crate) plan: PartPlan,
    pub(crate) lifetime: Duration,
    /// The store as messages name it.
    pub(crate) describe: &'a str,
}

impl BlockUpload<'_> {
    /// The archive's size once its block list (or, after foreign blocks refused ours, its Put Blob) is committed.
    pub(crate) async fn run(&self, warn: &(dyn Fn(&str) + Sync)) -> Result<u64, String> {
        let source = Source::open(self.src).await?;
        let ranges = self
            .plan
            .ranges_within(source.size, MAX_BLOCKS, MAX_BLOCK_SIZE)
            .ok_or_else(|| {
                format!(
                    "{}: the archive ({} bytes) is larger than an Azure blob of {MAX_BLOCKS} blocks of \
                     {MAX_BLOCK_SIZE} bytes can hold\nhint: cache fewer files under this key",
                    self.describe, source.size
                )
            })?;
        let ids = block_ids(nonce(), ranges.len());
        let write = self.store.presign_put(self.object, self.lifetime);
        let shown = clean_url(write.url.as_str());
        let foreign = OnceLock::new();
        // Owned ids: a borrowed one would make the future's type depend on a lifetime the job's boxed
        // `Send` future cannot name.
        let sent: Result<Vec<()>, String> = futures::stream::iter(ranges.into_iter().zip(ids.clone()))
            .map(|(range, id)| {
                let url = with_query(&write.url, &[("comp", "block"), ("blockid", &id)]);
                let (source, shown, foreign) = (&source, &shown, &foreign);
                async move { with_retries(|| self.block(source, &url, range, shown, foreign), warn).await }
            })
            .buffer_unordered(self.plan.in_flight.max(1))
            .try_collect()
            .await;
        match (sent, foreign.get()) {
            (Ok(_), _) => {}
            (Err(e), Some(code)) => return self.replace_whole(&write, source.size, &e, code, warn).await,
            (Err(e), None) => {
                return Err(format!(
                    "{e}\nno block list was committed: the container keeps what it held under this key"
                ));
            }
        }
        let list = with_query(&write.url, &[("comp", "blocklist")]);
        let body = block_list_xml(&ids);
        with_retries(|| self.commit(&list, &body, &shown), warn).await?;
        Ok(source.size)
    }

    /// After uncommitted blocks of an earlier upload refused ours (`code`): one Put Blob commits the archive and
    /// makes Azure discard those blocks. Past Put Blob's limit the key stays as it was until Azure drops them.
    async fn replace_whole(
        &self,
        write: &Presigned,
        size: u64,
        refused: &str,
        code: &str,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Result<u64, String> {
        if size > MAX_PUT_BLOB {
            return Err(format!(
                "{refused}\nno block list was committed: the container keeps what it held under this key. An \
                 earlier interrupted upload of this key left uncommitted blocks behind ({code}); Azure drops them \
                 within 7 days of their upload, or when the key is next saved whole\nhint: the archive ({size} \
                 bytes) is above the {MAX_PUT_BLOB} bytes one Put Blob takes; until then, save it under another \
                 cache key"
            ));
        }
        warn(&format!(
            "{}: an earlier interrupted upload of this key left uncommitted blocks behind ({code}); uploading the \
             archive as one Put Blob instead, which discards them",
            self.describe
        ));
        transfer::upload(self.http, write, self.src, self.describe, warn).await
    }

    /// Put Block: `[start, end)` of the archive, streamed from its offset. An answer that says foreign blocks
    /// refused it leaves its code in `foreign`.
    async fn block(
        &self,
        source: &Source,
        url: &reqwest::Url,
        (start, end): (u64, u64),
        shown: &str,
        foreign: &OnceLock<&'static str>,
    ) -> Result<(), Failure> {
        let resp = self
            .http
            .put(url.clone())
            .header(reqwest::header::CONTENT_LENGTH, end - start)
            .body(source.body(start, end))
            .send()
            .await
            .map_err(|e| network(&e, shown))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if let Some(code) = foreign_blocks(&resp) {
            let _ = foreign.set(code);
        }
        Err(status_failure(resp, shown, self.describe).await)
    }

    /// Put Block List; the blob gets the content type a single Put Blob gives it. Sent again after a lost
    /// answer, it names the same blocks (`Latest` finds them committed), so a retry cannot change the blob.
    async fn commit(&self, url: &reqwest::Url, body: &str, shown: &str) -> Result<(), Failure> {
        let resp = self
            .http
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .header("x-ms-blob-content-type", "application/zip")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| network(&e, shown))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_failure(resp, shown, self.describe).await)
        }
    }
}

#[cfg(test)]
#[path = "blocks_tests.rs"]
mod tests;
