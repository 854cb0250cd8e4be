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
//! Both requests use the blob's write SAS (`sp=w` covers blocks and block lists): a service SAS signs neither
//! `comp` nor `blockid`, so one signed URL serves every request of the upload.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};

use super::azure::AzureStore;
use super::multipart::Source;
use super::parts::PartPlan;
use super::transfer::{Failure, clean_url, network, status_failure, with_retries};

const MIB: u64 = 1024 * 1024;
/// Azure's limit of committed blocks in one blob.
pub(crate) const MAX_BLOCKS: u64 = 50_000;
/// Azure's largest block (service versions from 2019-12-12 on; the SAS signs 2022-11-02).
pub(crate) const MAX_BLOCK_SIZE: u64 = 4000 * MIB;
/// Hex digits of the per-upload prefix of block ids. The prefix keeps two runners that push the same key at
/// once from overwriting each other's uncommitted blocks: each block list names only its own upload's blocks.
const NONCE_DIGITS: usize = 10;
/// With the prefix an id is 16 bytes before encoding, as long as the Azure SDKs' ids: Azure refuses a block
/// whose id length differs from the blob's other uncommitted blocks, which another runner's failed upload of the
/// same key may have left.
const INDEX_DIGITS: usize = 6;

/// The ids of `count` blocks of one upload, in order: base64 of `<nonce><zero-padded index>`, all of one length.
pub(crate) fn block_ids(nonce: u64, count: usize) -> Vec<String> {
    let nonce = nonce & ((1u64 << (4 * NONCE_DIGITS)) - 1);
    (0..count)
        .map(|i| {
            let raw = format!("{nonce:0NONCE_DIGITS$x}{i:0INDEX_DIGITS$}");
            base64::engine::general_purpose::STANDARD.encode(raw)
        })
        .collect()
}

/// A fresh prefix per upload: randomly keyed hashing (as `transfer`'s jitter) of the clock and process id.
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
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
    /// The archive's size once its block list is committed.
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
        let write = self.store.presign_put(self.object, self.lifetime).url;
        let shown = clean_url(write.as_str());
        // Owned ids: a borrowed one would make the future's type depend on a lifetime the job's boxed
        // `Send` future cannot name.
        let sent: Result<Vec<()>, String> = futures::stream::iter(ranges.into_iter().zip(ids.clone()))
            .map(|(range, id)| {
                let url = with_query(&write, &[("comp", "block"), ("blockid", &id)]);
                let (source, shown) = (&source, &shown);
                async move { with_retries(|| self.block(source, &url, range, shown), warn).await }
            })
            .buffer_unordered(self.plan.in_flight.max(1))
            .try_collect()
            .await;
        if let Err(e) = sent {
            return Err(format!(
                "{e}\nno block list was committed: the container keeps what it held under this key"
            ));
        }
        let list = with_query(&write, &[("comp", "blocklist")]);
        let body = block_list_xml(&ids);
        with_retries(|| self.commit(&list, &body, &shown), warn).await?;
        Ok(source.size)
    }

    /// Put Block: `[start, end)` of the archive, streamed from its offset.
    async fn block(
        &self,
        source: &Source,
        url: &reqwest::Url,
        (start, end): (u64, u64),
        shown: &str,
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
            Ok(())
        } else {
            Err(status_failure(resp, shown, self.describe).await)
        }
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
