//! `restore_cache` and `archive_cache`: the local cache store and, when configured, the remote one in front of it
//! (`remote/`), with gitlab-runner's key rules and log lines. Cache problems are warnings; they never fail a job.

use oxrunner_archive::{CacheStore, FileSet, Level, SaveOutcome};
use std::path::Path;

use oxrunner_core::{CachePolicy, CacheSpec, StageCtx, TraceWriter, feature_flags, project_slug};

use super::jobdir::open_project;
use crate::metrics::{Metrics, TransferKind};

/// The size of the stored archive for `key` (0 if it cannot be read).
async fn archive_size(store: &CacheStore, slug: &str, key: &str) -> u64 {
    tokio::fs::metadata(store.archive_path(slug, key))
        .await
        .map_or(0, |m| m.len())
}
use super::remote::RemoteSetup;
use super::remote::flow::{self, Overlapped, Restored};

/// The key a cache is stored under, after expansion, defaulting and (optionally) hashing; `None` when nothing
/// usable is left. Warnings go to the trace.
pub(crate) fn resolve_key(ctx: &StageCtx<'_>, raw: &str, trace: &TraceWriter) -> Option<String> {
    let mut key = ctx.variables.expand(raw);
    if key.trim().is_empty() {
        key = format!("{}/{}", ctx.plan.job_name, ctx.plan.sources.ref_name);
    }
    if ctx.variables.bool("FF_HASH_CACHE_KEYS").unwrap_or(false) {
        return Some(CacheStore::hash_key(&key));
    }
    let clean = CacheStore::sanitize_key(&key);
    match &clean {
        None => trace.warning(&format!("cache key {key:?} could not be sanitized")),
        Some(c) if *c != key => trace.warning(&format!("cache key {key:?} sanitized to {c:?}")),
        Some(_) => {}
    }
    clean
}

/// Extracts, per cache, the first of key, `fallback_keys` and `CACHE_FALLBACK_KEY` that has an archive.
pub(crate) async fn restore(
    store: &CacheStore,
    remote: &RemoteSetup,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    metrics: Option<&Metrics>,
) {
    let slug = project_slug(ctx.plan);
    for spec in &ctx.plan.caches {
        if spec.paths.is_empty() && !spec.untracked {
            continue;
        }
        let Some(key) = resolve_key(ctx, &spec.key, trace) else {
            trace.warning("Skipping cache extraction due to empty cache key");
            continue;
        };
        if spec.policy == CachePolicy::Push {
            trace.println(&format!("Not downloading cache {key} due to policy"));
            continue;
        }
        let fallbacks: Vec<String> = spec
            .fallback_keys
            .iter()
            .map(|k| ctx.variables.expand(k))
            .filter(|k| !k.trim().is_empty())
            .collect();
        let global = ctx
            .variables
            .value("CACHE_FALLBACK_KEY")
            .map(|k| ctx.variables.expand(k));
        let (keys, warnings) = CacheStore::keys_in_order(&key, &fallbacks, global.as_deref());
        for w in &warnings {
            trace.warning(w);
        }
        if let RemoteSetup::Broken(message) = remote {
            trace.warning(message);
        }
        let transfer = metrics.map(|m| m.transfer(TransferKind::CacheExtract));
        let mut restored = None;
        let mut failed = false;
        let mut downloaded = 0u64;
        let mut from_local_copy = false;
        for candidate in keys {
            trace.println(&format!("Checking cache for {candidate}..."));
            let mut got = restore_candidate(store, remote, ctx, trace, &slug, &candidate, false).await;
            if got.up_to_date
                && let LocalRestore::Failed(lines) = &got.outcome
            {
                // The copy judged up to date is broken: the object is fetched after all, once; when that fails
                // too, the broken copy's failure stands (it is not extracted a second time).
                for line in lines {
                    trace.warning(line);
                }
                trace.warning("the local copy of the cache could not be extracted; it is downloaded again");
                if feature_flags::is_on(ctx.variables, "FF_CLEAN_UP_FAILED_CACHE_EXTRACT") {
                    remove_cache_paths(spec, ctx, trace).await;
                }
                let again = restore_candidate(store, remote, ctx, trace, &slug, &candidate, true).await;
                if again.downloaded > 0 {
                    got = again;
                } else {
                    got.outcome = LocalRestore::Failed(Vec::new());
                }
            }
            downloaded = got.downloaded;
            from_local_copy = got.up_to_date;
            let outcome = got.outcome;
            match outcome {
                LocalRestore::Extracted(k) => {
                    if !matches!(remote, RemoteSetup::Ready(_)) {
                        trace.println(
                            "No URL provided, cache will not be downloaded from shared cache server. \
                             Instead a local version of cache will be extracted.",
                        );
                    }
                    trace.println("Successfully extracted cache");
                    restored = Some(k);
                    break;
                }
                // Neither the bucket nor the local copy has it: upstream's line for a cache miss.
                LocalRestore::Missing(_) if matches!(remote, RemoteSetup::Ready(_)) => {
                    trace.warning("Cache file does not exist")
                }
                LocalRestore::Missing(lines) => {
                    failed = true;
                    for line in lines {
                        trace.warning(&line);
                    }
                }
                LocalRestore::Failed(lines) => {
                    failed = true;
                    for line in lines {
                        trace.warning(&line);
                    }
                }
            }
            if feature_flags::is_on(ctx.variables, "FF_CLEAN_UP_FAILED_CACHE_EXTRACT") {
                remove_cache_paths(spec, ctx, trace).await;
            }
        }
        if let Some(t) = transfer {
            match &restored {
                Some(_) if downloaded > 0 => t.finish("success", downloaded),
                // The remote store's object, already here: nothing came over the network.
                Some(k) if from_local_copy => t.finish("up_to_date", archive_size(store, &slug, k).await),
                Some(k) => t.finish("success", archive_size(store, &slug, k).await),
                None => t.finish(if failed { "failure" } else { "miss" }, 0),
            }
        }
        if restored.is_none() {
            trace.warning("Failed to extract cache");
        }
    }
}

/// `FF_CLEAN_UP_FAILED_CACHE_EXTRACT`: a failed extraction may have left half an archive in the cache's paths, so
/// upstream removes each of them before the next key. Like its quoted `rm -r -f`, a path is taken literally (no
/// glob, no variable); one that leaves the project directory, also through a link, is refused, not removed.
async fn remove_cache_paths(spec: &CacheSpec, ctx: &StageCtx<'_>, trace: &TraceWriter) {
    let (builds_dir, project_dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    let paths = spec.paths.clone();
    let res = tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &project_dir, false)?;
        Ok::<_, String>(
            paths
                .into_iter()
                .map(|p| {
                    let outcome = root
                        .open_parent_in_tree(Path::new(&p))
                        .and_then(|(dir, name)| dir.remove_all(name));
                    (p, outcome)
                })
                .collect::<Vec<_>>(),
        )
    })
    .await;
    match res {
        Ok(Ok(outcomes)) => {
            for (path, outcome) in outcomes {
                trace.println(&format!("Removing {path}"));
                if let Err(e) = outcome {
                    trace.warning(&format!("could not remove cache path {path:?}: {e}"));
                }
            }
        }
        Ok(Err(e)) => trace.warning(&format!("could not clean up the cache paths: {e}")),
        Err(e) => trace.warning(&format!("cache path clean-up stopped: {e}")),
    }
}

/// What one key gave: the extraction's outcome, the bytes that came over the network, and whether the remote store
/// found the local copy up to date (nothing downloaded).
struct Candidate {
    outcome: LocalRestore,
    downloaded: u64,
    up_to_date: bool,
}

/// One key: downloaded first when a remote store is set up (unless the local copy is up to date; `force` skips that
/// check and extracts only what it downloaded), then extracted, beside the download or from the local copy.
async fn restore_candidate(
    store: &CacheStore,
    remote: &RemoteSetup,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    slug: &str,
    candidate: &str,
    force: bool,
) -> Candidate {
    let mut downloaded = 0;
    let mut up_to_date = false;
    let mut overlapped = None;
    if let RemoteSetup::Ready(r) = remote
        && let Some(clean) = CacheStore::sanitize_key(candidate)
    {
        // Through the store's held directory: the download's file and rename never follow a path a job
        // user could have redirected (`cache_dir` may sit in that user's home).
        let opened = {
            let (store, slug, clean) = (store.clone(), slug.to_owned(), clean.clone());
            tokio::task::spawn_blocking(move || store.key_dir(&slug, &clean)).await
        };
        match opened {
            Ok(Ok(dir)) => {
                let dest = dir.proc_path().join(oxrunner_archive::CACHE_ARCHIVE_NAME);
                let to = extract_to(ctx, store.archive_path(slug, &clean));
                match flow::download_key(r, ctx, candidate, &dest, trace, Some(to), force).await {
                    Restored::Downloaded { bytes, extracted } => {
                        downloaded = bytes;
                        overlapped = Some((clean.clone(), extracted, true));
                    }
                    Restored::ExtractedNotKept { bytes } => {
                        downloaded = bytes;
                        overlapped = Some((clean.clone(), Overlapped::Extracted, false));
                    }
                    Restored::UpToDate => up_to_date = true,
                    Restored::Missing | Restored::Failed => {}
                }
                drop(dir);
            }
            Ok(Err(e)) => trace.warning(&format!("the shared cache is not downloaded: {e}")),
            Err(e) => trace.warning(&format!("the shared cache is not downloaded: {e}")),
        }
    }
    if force && overlapped.is_none() && downloaded == 0 {
        // Forced because the local copy would not extract: without a download there is nothing new to extract.
        return Candidate {
            outcome: LocalRestore::Failed(Vec::new()),
            downloaded,
            up_to_date,
        };
    }
    let outcome = match overlapped {
        Some((clean, Overlapped::Extracted, kept)) => {
            if kept {
                adopt_download(store, slug, &clean, ctx, trace).await;
            }
            LocalRestore::Extracted(clean)
        }
        Some((clean, Overlapped::Failed(e), _)) => {
            LocalRestore::Failed(vec![format!("Failed to extract cache for key {clean:?}: {e}")])
        }
        Some((_, Overlapped::NotRun, _)) | None => {
            restore_one(store, slug, candidate.to_owned(), ctx, downloaded > 0).await
        }
    };
    Candidate {
        outcome,
        downloaded,
        up_to_date,
    }
}

/// The extraction beside a remote download, into the project directory (opened as for a local restore).
fn extract_to(ctx: &StageCtx<'_>, label: std::path::PathBuf) -> flow::ExtractTo {
    let (builds_dir, project_dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    flow::ExtractTo {
        open_root: Box::new(move || open_project(&builds_dir, &project_dir, true)),
        label,
    }
}

/// An archive extracted while it downloaded becomes this machine's copy of the key (see
/// [`CacheStore::adopt_extracted`]).
async fn adopt_download(store: &CacheStore, slug: &str, key: &str, ctx: &StageCtx<'_>, trace: &TraceWriter) {
    let (store, slug, key) = (store.clone(), slug.to_owned(), key.to_owned());
    let (builds_dir, project_dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    let adopted = tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &project_dir, false)?;
        store
            .adopt_extracted(&slug, &key, &root)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    if let Err(e) = adopted {
        // Only costs a second upload of an unchanged cache.
        trace.warning(&format!("cannot record the downloaded cache as local copy: {e}"));
    }
}

/// What the local store gave for one key; the lines are warnings for the job log.
enum LocalRestore {
    Extracted(String),
    /// No archive for the key.
    Missing(Vec<String>),
    /// An archive was there but could not be extracted.
    Failed(Vec<String>),
}

/// `downloaded`: the archive just came from the remote store and is adopted as this machine's copy.
async fn restore_one(
    store: &CacheStore,
    slug: &str,
    key: String,
    ctx: &StageCtx<'_>,
    downloaded: bool,
) -> LocalRestore {
    let store = store.clone();
    let slug = slug.to_owned();
    let (builds_dir, project_dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    let res = tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &project_dir, true)?;
        let mut report = store
            .restore_into(&slug, std::slice::from_ref(&key), &root)
            .map_err(|e| e.to_string())?;
        if downloaded
            && let Some(k) = &report.restored
            && let Err(e) = store.adopt_extracted(&slug, k, &root)
        {
            // Only costs a second upload of an unchanged cache.
            report
                .warnings
                .push(format!("cannot record the downloaded cache as local copy: {e}"));
        }
        Ok(report)
    })
    .await;
    match res {
        Ok(Ok(report)) => match report.restored {
            Some(k) => LocalRestore::Extracted(k),
            None if report.failed => LocalRestore::Failed(report.warnings),
            None => LocalRestore::Missing(report.warnings),
        },
        Ok(Err(e)) => LocalRestore::Failed(vec![e]),
        Err(e) => LocalRestore::Failed(vec![format!("cache extraction stopped: {e}")]),
    }
}

/// Saves every cache whose `when` matches the job state and whose policy allows it.
pub(crate) async fn archive(
    store: &CacheStore,
    remote: &RemoteSetup,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    on_failure: bool,
    metrics: Option<&Metrics>,
) {
    let slug = project_slug(ctx.plan);
    let (level, level_warning) = Level::from_variable(
        ctx.variables
            .value("CACHE_COMPRESSION_LEVEL")
            .filter(|v| !v.is_empty()),
    );
    if let Some(w) = level_warning {
        trace.warning(&w);
    }
    for spec in &ctx.plan.caches {
        if !spec.when.applies(on_failure) || (spec.paths.is_empty() && !spec.untracked) {
            continue;
        }
        let Some(key) = resolve_key(ctx, &spec.key, trace) else {
            trace.warning("Skipping cache archiving due to empty cache key");
            continue;
        };
        if spec.policy == CachePolicy::Pull {
            trace.println(&format!("Not uploading cache {key} due to policy"));
            continue;
        }
        trace.println(&format!("Creating cache {key}..."));
        // Started before archiving: the duration covers the upload to a remote store as well.
        let transfer = metrics.map(|m| m.transfer(TransferKind::CacheArchive));
        let (files, outcome) = match save_one(store, &slug, &key, ctx, spec, level).await {
            Ok(saved) => saved,
            Err(message) => {
                if let Some(t) = transfer {
                    t.finish("failure", 0);
                }
                trace.warning(&message);
                trace.warning("Failed to create cache");
                continue;
            }
        };
        for w in &files.warnings {
            trace.warning(w);
        }
        trace.println(&format!(
            "found {} matching files and directories",
            files.files.len()
        ));
        let unchanged = outcome == SaveOutcome::Unchanged;
        if unchanged {
            trace.println("Archive is up to date!");
        }
        // Bytes sent to the remote store; `None` when nothing was sent.
        let uploaded: Result<Option<u64>, ()> = match remote {
            // As upstream: an unchanged archive is not sent again while the bucket has it.
            RemoteSetup::Ready(r) if unchanged && flow::remote_has(r, ctx, &key, trace).await => Ok(None),
            RemoteSetup::Ready(r) => {
                let archive = store.archive_path(&slug, &key);
                match flow::upload_key(r, ctx, &key, &archive, trace).await {
                    Ok(bytes) => Ok(Some(bytes).filter(|b| *b > 0)),
                    Err(e) => {
                        trace.warning(&e);
                        trace.warning("Failed to create cache");
                        Err(())
                    }
                }
            }
            RemoteSetup::Broken(message) => {
                trace.warning(message);
                Ok(None)
            }
            RemoteSetup::None => {
                trace.println(
                    "No URL provided, cache will not be uploaded to shared cache server. \
                     Cache will be stored only locally.",
                );
                Ok(None)
            }
        };
        if let Some(t) = transfer {
            match uploaded {
                Err(()) => t.finish("failure", 0),
                Ok(Some(bytes)) => t.finish("success", bytes),
                Ok(None) if unchanged => t.finish("unchanged", 0),
                Ok(None) => t.finish("success", archive_size(store, &slug, &key).await),
            }
        }
        if uploaded.is_ok() {
            trace.println("Created cache");
        }
    }
}

async fn save_one(
    store: &CacheStore,
    slug: &str,
    key: &str,
    ctx: &StageCtx<'_>,
    spec: &CacheSpec,
    level: Level,
) -> Result<(FileSet, SaveOutcome), String> {
    let store = store.clone();
    let slug = slug.to_owned();
    let key = key.to_owned();
    let (builds_dir, dir) = (ctx.runner.builds_dir.clone(), ctx.project_dir.clone());
    let paths = spec.paths.clone();
    let untracked = spec.untracked;
    let res = tokio::task::spawn_blocking(move || {
        let root = open_project(&builds_dir, &dir, false)?;
        let files = oxrunner_archive::collect_in(&root, &paths, &[], untracked).map_err(|e| e.to_string())?;
        let outcome = store
            .save_from(&slug, &key, &root, &files, level)
            .map_err(|e| e.to_string())?;
        Ok((files, outcome))
    })
    .await;
    match res {
        Ok(r) => r,
        Err(e) => Err(format!("cache archiving stopped: {e}")),
    }
}
