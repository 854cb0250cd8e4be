//! Large archives in parallel parts: caches in the distributed cache, and artifacts GitLab redirects to object
//! storage under `FF_USE_PARALLEL_ARTIFACT_TRANSFER` (`hooks/artifact_parts.rs`). A download asks for its first part with `Range:`; the answer's
//! `Content-Range` tells the object's size, and above the threshold the rest comes as parts fetched side by side
//! and written at their offsets into the download file, each part retried on its own. A store that ignores
//! `Range` (a plain `200`) is read as one stream. Uploads in parts live in `multipart` (S3) and `blocks`
//! (Azure).
//! Memory stays flat: a part is written out every [`WRITE_BUFFER`] bytes, so at most two buffers per part in
//! flight are held (one filling, one being written), whatever the archive's size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, RANGE};

use oxrunner_archive::Arrivals;

use super::s3::Presigned;
use super::transfer::{Failure, Fetched, clean_url, network, status_failure, with_retries};

const MIB: u64 = 1024 * 1024;
const DEFAULT_THRESHOLD: u64 = 64 * MIB;
const DEFAULT_PART_SIZE: u64 = 16 * MIB;
const DEFAULT_IN_FLIGHT: usize = 4;
/// S3's limit of parts in one multipart upload; larger archives get larger parts.
const MAX_PARTS: u64 = 10_000;
/// What one part gathers before writing it at its offset.
const WRITE_BUFFER: usize = 1024 * 1024;
/// `<threshold>,<part size>` in bytes: lets the tests move archives of a few MiB in parts instead of hundreds of
/// MiB. Test-only (documented as such); whoever sets it is warned, and it can never go below S3's smallest part.
pub(crate) const TEST_KNOB: &str = "OXRUNNER_TEST_CACHE_PARTS";
/// The same for artifact downloads ([`PartPlan::for_artifacts`]).
pub(crate) const ARTIFACT_TEST_KNOB: &str = "OXRUNNER_TEST_ARTIFACT_PARTS";
/// gitlab-runner's parallel artifact download: 16 MiB chunks, 16 at a time, for objects above one chunk.
const ARTIFACT_PART_SIZE: u64 = 16 * MIB;
const ARTIFACT_IN_FLIGHT: usize = 16;
/// S3 refuses parts (but the last) under 5 MiB, so no plan may ask for smaller ones.
const MIN_PART_SIZE: u64 = 5 * MIB;

/// When and how an archive moves in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartPlan {
    /// Archives larger than this move in parts.
    pub(crate) threshold: u64,
    pub(crate) part_size: u64,
    pub(crate) in_flight: usize,
}

impl Default for PartPlan {
    fn default() -> Self {
        PartPlan {
            threshold: DEFAULT_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            in_flight: DEFAULT_IN_FLIGHT,
        }
    }
}

impl PartPlan {
    /// The defaults, unless [`TEST_KNOB`] is set (with a warning, once per process).
    pub(crate) fn from_env() -> PartPlan {
        static WARNED: std::sync::Once = std::sync::Once::new();
        Self::knob_or(TEST_KNOB, "caches", PartPlan::default(), &WARNED)
    }

    /// Artifact downloads redirected to object storage (gitlab-runner's fixed chunk size and concurrency, not
    /// the cache's), unless [`ARTIFACT_TEST_KNOB`] is set.
    pub(crate) fn for_artifacts() -> PartPlan {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let plan = PartPlan {
            threshold: ARTIFACT_PART_SIZE,
            part_size: ARTIFACT_PART_SIZE,
            in_flight: ARTIFACT_IN_FLIGHT,
        };
        Self::knob_or(ARTIFACT_TEST_KNOB, "artifacts", plan, &WARNED)
    }

    fn knob_or(knob: &str, what: &str, default: PartPlan, warned: &std::sync::Once) -> PartPlan {
        let Ok(text) = std::env::var(knob) else {
            return default;
        };
        let (plan, message) = match PartPlan::from_knob(&text) {
            Ok(plan) => (
                PartPlan {
                    in_flight: default.in_flight,
                    ..plan
                },
                format!(
                    "{knob} is set (a test-only setting): {what} above {} bytes move in parts of {} bytes",
                    plan.threshold, plan.part_size
                ),
            ),
            Err(why) => (
                default,
                format!("{knob} (a test-only setting) is ignored: {why}; the defaults apply"),
            ),
        };
        warned.call_once(|| tracing::warn!("{message}"));
        plan
    }

    /// `<threshold>,<part size>`, raised to what S3 accepts: parts of at least 5 MiB, a threshold no smaller
    /// than one part.
    pub(crate) fn from_knob(text: &str) -> Result<PartPlan, String> {
        let numbers: Vec<&str> = text.split(',').map(str::trim).collect();
        let [threshold, part_size] = numbers.as_slice() else {
            return Err(format!("{text:?} is not <threshold>,<part size> in bytes"));
        };
        match (threshold.parse::<u64>(), part_size.parse::<u64>()) {
            (Ok(threshold), Ok(part_size)) => {
                let part_size = part_size.max(MIN_PART_SIZE);
                Ok(PartPlan {
                    threshold: threshold.max(part_size),
                    part_size,
                    ..PartPlan::default()
                })
            }
            _ => Err(format!("{text:?} is not <threshold>,<part size> in bytes")),
        }
    }

    /// The part size for an object of `total` bytes: never more than [`MAX_PARTS`] parts.
    pub(crate) fn part_size_for(&self, total: u64) -> u64 {
        self.part_size.max(total.div_ceil(MAX_PARTS)).max(1)
    }

    /// `[start, end)` ranges from `from` to `total`, one per part.
    pub(crate) fn ranges(&self, from: u64, total: u64) -> Vec<(u64, u64)> {
        split(from, total, self.part_size_for(total))
    }

    /// `[start, end)` ranges over `total` bytes for a store with other limits than S3's: at most `max_parts`
    /// parts of at most `max_part` bytes (Azure's blocks). The plan's part size grows until the parts fit in
    /// number and is cut down to `max_part`; `None` when `total` needs more than both allow.
    pub(crate) fn ranges_within(&self, total: u64, max_parts: u64, max_part: u64) -> Option<Vec<(u64, u64)>> {
        let size = self
            .part_size
            .max(total.div_ceil(max_parts.max(1)))
            .min(max_part)
            .max(1);
        if size.saturating_mul(max_parts) < total {
            return None;
        }
        Some(split(0, total, size))
    }
}

/// `[from, total)` in consecutive ranges of `size` bytes (the last one shorter).
fn split(from: u64, total: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = from;
    while start < total {
        let end = start.saturating_add(size).min(total);
        out.push((start, end));
        start = end;
    }
    out
}

/// What the first request of a download found.
enum First {
    Missing,
    /// The whole object came in this answer (the store ignored `Range`, or none was asked).
    Whole(u64),
    /// Part one came; the object has `total` bytes.
    Part {
        total: u64,
        etag: Option<String>,
    },
    /// `416` (S3's answer to a range on an empty object), or a part whose `Content-Range` does not say where it
    /// lies in how large an object (`bytes 0-N/*`): asked again without a range.
    Unranged,
}

/// The download file, where answers are shown, and who is told what is on disk (an extraction reading the
/// archive as it arrives).
struct Target<'a> {
    file: Arc<File>,
    shown: &'a str,
    store: &'a str,
    arrivals: Option<Arc<Arrivals>>,
}

/// `GET` the object into `file` (the caller's fresh, private file), in parallel parts when it is larger than
/// the plan's threshold. With `arrivals`, the file is announced once it has its final size and each written range
/// is reported, the object's last part (a zip's central directory) fetched right after the first; the caller
/// completes or fails the arrivals when this returns.
pub(crate) async fn download(
    http: &reqwest::Client,
    signed: &Presigned,
    file: &File,
    plan: PartPlan,
    store: &str,
    warn: &(dyn Fn(&str) + Sync),
    arrivals: Option<&Arc<Arrivals>>,
) -> Result<Fetched, String> {
    let shown = clean_url(signed.url.as_str());
    let file = file
        .try_clone()
        .map_err(|e| format!("cannot write the download: {e}"))?;
    let target = Target {
        file: Arc::new(file),
        shown: &shown,
        store,
        arrivals: arrivals.cloned(),
    };
    let first_len = plan.part_size.max(1);
    let mut first = with_retries(|| first_part(http, signed, &target, Some(first_len)), warn).await?;
    if matches!(first, First::Unranged) {
        first = with_retries(|| first_part(http, signed, &target, None), warn).await?;
    }
    let (total, etag) = match first {
        First::Missing => return Ok(Fetched::Missing),
        First::Whole(bytes) => return Ok(Fetched::Found { bytes }),
        First::Unranged => return Err(format!("{store}: {shown} refused a download without a range")),
        First::Part { total, etag } => (total, etag),
    };
    // A broken earlier attempt may have written past what the object now holds.
    target
        .file
        .set_len(total)
        .map_err(|e| format!("cannot write the download: {e}"))?;
    if total <= first_len {
        return Ok(Fetched::Found { bytes: total });
    }
    let mut rest = if total > plan.threshold {
        plan.ranges(first_len, total)
    } else {
        vec![(first_len, total)]
    };
    if let Some(arrivals) = arrivals {
        // A zip is read from its end: the central directory first, then the entries in order.
        rest.rotate_right(1);
        arrivals.begin(total);
    }
    let (target_ref, etag) = (&target, etag.as_deref());
    let parts: Vec<bool> = futures::stream::iter(rest)
        .map(|(start, end)| async move {
            with_retries(
                || range_part(http, signed, target_ref, (start, end, total), etag),
                warn,
            )
            .await
        })
        .buffer_unordered(plan.in_flight.max(1))
        .try_collect()
        .await?;
    if parts.iter().all(|ranged| *ranged) {
        return Ok(Fetched::Found { bytes: total });
    }
    // The store stopped honouring ranges midway (a proxy, a CDN): every part has ended, so the file is
    // rewritten from the start by one plain request. What was read from it so far is not trusted any longer.
    if let Some(arrivals) = arrivals {
        arrivals.fail("the store stopped answering in ranges; the archive is downloaded again as one stream");
    }
    match with_retries(|| first_part(http, signed, &target, None), warn).await? {
        First::Missing => Ok(Fetched::Missing),
        First::Whole(bytes) => Ok(Fetched::Found { bytes }),
        First::Part { .. } | First::Unranged => {
            Err(format!("{store}: {shown} refused a download without a range"))
        }
    }
}

/// The first request: part one (`len` bytes) when `len` is given, else the whole object.
async fn first_part(
    http: &reqwest::Client,
    signed: &Presigned,
    target: &Target<'_>,
    len: Option<u64>,
) -> Result<First, Failure> {
    let mut req = http.get(signed.url.clone());
    if let Some(len) = len {
        req = req.header(RANGE, format!("bytes=0-{}", len - 1));
    }
    let resp = req.send().await.map_err(|e| network(&e, target.shown))?;
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(First::Missing),
        StatusCode::RANGE_NOT_SATISFIABLE if len.is_some() => Ok(First::Unranged),
        StatusCode::PARTIAL_CONTENT if len.is_some() => {
            let Some((0, total)) = content_range(&resp) else {
                return Ok(First::Unranged);
            };
            let etag = etag(&resp);
            let expected = total.min(len.unwrap_or(total));
            write_body(resp, target, 0, Some(expected)).await?;
            Ok(First::Part { total, etag })
        }
        s if s.is_success() => {
            // A retry may follow a longer, broken attempt: start from an empty file.
            target.file.set_len(0).map_err(|e| target.local(&e))?;
            Ok(First::Whole(write_body(resp, target, 0, None).await?))
        }
        _ => Err(status_failure(resp, target.shown, target.store).await),
    }
}

/// One more part, `[start, end)` of an object of `total` bytes whose first part carried `etag`. `false` when the
/// store answered something else than that range (the whole object, another range): nothing was written, and
/// the caller reads the object as one stream instead.
async fn range_part(
    http: &reqwest::Client,
    signed: &Presigned,
    target: &Target<'_>,
    (start, end, total): (u64, u64, u64),
    first_etag: Option<&str>,
) -> Result<bool, Failure> {
    let resp = http
        .get(signed.url.clone())
        .header(RANGE, format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| network(&e, target.shown))?;
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        if resp.status().is_success() {
            return Ok(false);
        }
        return Err(status_failure(resp, target.shown, target.store).await);
    }
    if content_range(&resp) != Some((start, total)) {
        return Ok(false);
    }
    // Another machine may replace the object mid-download: parts of two archives never make one file.
    if first_etag.is_some() && etag(&resp).as_deref() != first_etag {
        return Err(Failure {
            message: format!(
                "{}: {} changed while it was downloaded; the download is abandoned",
                target.store, target.shown
            ),
            retry: false,
            retry_after: None,
        });
    }
    write_body(resp, target, start, Some(end - start)).await?;
    Ok(true)
}

impl Target<'_> {
    fn bad(&self, what: &str) -> Failure {
        Failure {
            message: format!("{}: {} answered {what}", self.store, self.shown),
            retry: false,
            retry_after: None,
        }
    }

    fn local(&self, e: &std::io::Error) -> Failure {
        Failure {
            message: format!("writing the download: {e}"),
            retry: false,
            retry_after: None,
        }
    }
}

/// `Content-Range: bytes <start>-<end>/<total>` as (start, total).
fn content_range(resp: &reqwest::Response) -> Option<(u64, u64)> {
    let text = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = text.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn etag(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Streams an answer's body into the file from `offset`; `expected` bytes exactly when given (a short answer is
/// retried, a long one refused). A full buffer is written off the async workers while the next one fills, so a
/// part's reading never waits for the disk; a part holds two buffers at most, reused rather than reallocated.
async fn write_body(
    mut resp: reqwest::Response,
    target: &Target<'_>,
    offset: u64,
    expected: Option<u64>,
) -> Result<u64, Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
    let mut written = 0u64;
    let mut pending = Writing::default();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(pending.abandon(network(&e, target.shown)).await),
        };
        if expected.is_some_and(|n| written + (buf.len() + chunk.len()) as u64 > n) {
            let failure = target.bad("more bytes than the range asked for");
            return Err(pending.abandon(failure).await);
        }
        // Handed over before it would grow past its capacity: buffers keep their size.
        if !buf.is_empty() && buf.len() + chunk.len() > WRITE_BUFFER {
            let spare = pending.finish(target).await?;
            let full = std::mem::replace(
                &mut buf,
                spare.unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER)),
            );
            let at = offset + written;
            written += full.len() as u64;
            pending.start(&target.file, full, at, target.arrivals.as_ref());
        }
        buf.extend_from_slice(&chunk);
    }
    pending.finish(target).await?;
    written += write_at(target, buf, offset + written).await?;
    if let Some(n) = expected.filter(|n| *n != written) {
        return Err(Failure {
            message: format!(
                "{}: {} sent {written} of {n} bytes of a part",
                target.store, target.shown
            ),
            retry: true,
            retry_after: None,
        });
    }
    Ok(written)
}

/// The one write of a part that may still run while the part's next bytes arrive.
#[derive(Default)]
struct Writing(Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>);

impl Writing {
    fn start(&mut self, file: &Arc<File>, mut buf: Vec<u8>, offset: u64, arrivals: Option<&Arc<Arrivals>>) {
        let file = Arc::clone(file);
        // Told from the writing thread as soon as the bytes are in the file, not when the part reads on.
        let arrivals = arrivals.cloned();
        self.0 = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(&buf, offset)?;
            if let Some(report) = arrivals {
                report.arrived(offset, offset + buf.len() as u64);
            }
            buf.clear();
            Ok(buf)
        }));
    }

    /// Waits for the running write, if any; its buffer comes back empty, to be filled again.
    async fn finish(&mut self, target: &Target<'_>) -> Result<Option<Vec<u8>>, Failure> {
        let Some(running) = self.0.take() else {
            return Ok(None);
        };
        running
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map(Some)
            .map_err(|e| target.local(&e))
    }

    /// A part that fails still waits for its running write: a retry of the part must not race it in the file.
    async fn abandon(&mut self, failure: Failure) -> Failure {
        if let Some(running) = self.0.take() {
            let _ = running.await;
        }
        failure
    }
}

/// A positional write off the async workers: parts never share a file position.
async fn write_at(target: &Target<'_>, buf: Vec<u8>, offset: u64) -> Result<u64, Failure> {
    if buf.is_empty() {
        return Ok(0);
    }
    let file = Arc::clone(&target.file);
    let len = buf.len() as u64;
    tokio::task::spawn_blocking(move || file.write_all_at(&buf, offset))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| target.local(&e))?;
    if let Some(arrivals) = &target.arrivals {
        arrivals.arrived(offset, offset + len);
    }
    Ok(len)
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parts_shrink_tests.rs"]
mod shrink_tests;
