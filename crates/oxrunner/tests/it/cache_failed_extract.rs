#![allow(clippy::unwrap_used, clippy::expect_used)]
//! FF_CLEAN_UP_FAILED_CACHE_EXTRACT with the local cache store: when an archive cannot be extracted, the cache's
//! paths are removed so the job does not go on with half of a cache.

use std::path::{Path, PathBuf};

use crate::support::hooks as hooks_common;

use fake_gitlab::{CacheSpec, JobSpec};
use hooks_common::{Env, fake_options};

fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.ends_with("cache.zip") {
                found.push(p);
            }
        }
    }
    found
}

/// Saves a cache of `data/`, breaks its archive, then runs a job that restores it with the flag set to `ff` and
/// reports whether `data/` was still there when the job's script ran.
async fn data_left_after_a_failed_extract(ff: &str) -> (bool, String) {
    let env = Env::start(fake_options(), 1).await;
    // GIT_STRATEGY=none keeps the project directory between the jobs, so `data/` is still there unless removed.
    let producer = JobSpec::new("save", &["mkdir -p data", "echo old > data/stale.txt"])
        .variable("GIT_STRATEGY", "none")
        .cache(CacheSpec::new("broken", &["data/"]));
    env.succeeded(env.fake.enqueue_job(producer)).await;
    let found = archives(&env.cache_dir());
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::write(&found[0], b"this is not a zip archive").unwrap();

    let consumer = JobSpec::new(
        "restore",
        &["if test -e data; then echo DATA-LEFT; else echo DATA-GONE; fi"],
    )
    .variable("GIT_STRATEGY", "none")
    .variable("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", ff)
    .cache(CacheSpec {
        policy: "pull".into(),
        ..CacheSpec::new("broken", &["data/"])
    });
    let rec = env.succeeded(env.fake.enqueue_job(consumer)).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Failed to extract cache"), "{trace}");
    let left = trace.contains("\nDATA-LEFT");
    assert!(left || trace.contains("\nDATA-GONE"), "{trace}");
    (left, trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_extract_removes_the_cache_paths_with_the_flag_on() {
    let (left, trace) = data_left_after_a_failed_extract("true").await;
    assert!(!left, "{trace}");
    assert!(trace.contains("Removing data/"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_extract_leaves_the_cache_paths_with_the_flag_off() {
    let (left, trace) = data_left_after_a_failed_extract("false").await;
    assert!(left, "{trace}");
    assert!(!trace.contains("Removing data/"), "{trace}");
}

/// A job may replace a cache path's parent with a link out of the project between its jobs: the clean-up then
/// refuses that path instead of removing what the link points at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_up_never_follows_a_link_out_of_the_project() {
    let env = Env::start(fake_options(), 1).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("sub/keep.txt"), "keep").unwrap();
    let producer = JobSpec::new("save", &["mkdir -p data/sub", "echo old > data/sub/stale.txt"])
        .variable("GIT_STRATEGY", "none")
        .cache(CacheSpec::new("broken", &["data/"]));
    env.succeeded(env.fake.enqueue_job(producer)).await;
    let found = archives(&env.cache_dir());
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::write(&found[0], b"this is not a zip archive").unwrap();
    let swap = format!("rm -rf data && ln -s {} data", outside.path().display());
    let swapper = JobSpec::new("swap", &[swap.as_str()]).variable("GIT_STRATEGY", "none");
    env.succeeded(env.fake.enqueue_job(swapper)).await;

    let consumer = JobSpec::new("restore", &["true"])
        .variable("GIT_STRATEGY", "none")
        .variable("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", "true")
        .cache(CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("broken", &["data/sub/"])
        });
    let rec = env.succeeded(env.fake.enqueue_job(consumer)).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Failed to extract cache"), "{trace}");
    assert!(
        outside.path().join("sub/keep.txt").exists(),
        "the clean-up removed a directory outside the project through a link:\n{trace}"
    );
}
