#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The local cache with `concurrent > 1`: every consumer restores what the producer saved, whatever slot it runs
//! in (the seed's Q&A 3), and concurrent writers of one key leave a valid archive.

use crate::support::hooks as hooks_common;

use fake_gitlab::{CacheSpec, JobSpec};
use hooks_common::{Env, fake_options, run, zip_entries};

fn empty_job(name: &str, script: &[&str]) -> JobSpec {
    JobSpec::new(name, script).variable("GIT_STRATEGY", "empty")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_concurrent_consumer_restores_the_producers_cache() {
    let env = Env::start(fake_options(), 4).await;
    let producer = empty_job(
        "install",
        &["mkdir -p node_modules/pkg", "echo v1 > node_modules/pkg/index.js"],
    )
    .cache(CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["node_modules/"]));
    let p = env.fake.enqueue_job(producer);
    let rec = env.succeeded(p).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Creating cache deps-main..."), "{trace}");
    assert!(trace.contains("Created cache"), "{trace}");

    let mut consumers = Vec::new();
    for i in 0..8 {
        let spec = CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["node_modules/"])
        };
        // The sleep keeps several consumers running at once, so they land in different slots.
        let job = empty_job(
            &format!("test {i}"),
            &["test \"$(cat node_modules/pkg/index.js)\" = v1", "sleep 2"],
        )
        .cache(spec);
        consumers.push(env.fake.enqueue_job(job));
    }
    for id in consumers {
        let rec = env.succeeded(id).await;
        let trace = rec.trace_text();
        assert!(trace.contains("Checking cache for deps-main..."), "{trace}");
        assert!(trace.contains("Successfully extracted cache"), "{trace}");
        assert!(
            trace.contains("Not uploading cache deps-main due to policy"),
            "{trace}"
        );
    }
    assert!(
        env.fake.max_concurrent_running() >= 2,
        "consumers never overlapped, the test proves nothing"
    );
    let archives: Vec<_> = walk(&env.cache_dir())
        .into_iter()
        .filter(|p| p.ends_with("cache.zip"))
        .collect();
    assert_eq!(archives.len(), 1, "one archive per project and key: {archives:?}");
    assert!(archives[0].ends_with("deps-main/cache.zip"), "{archives:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_key_leave_a_valid_archive() {
    let env = Env::start(fake_options(), 4).await;
    let mut writers = Vec::new();
    for i in 0..4 {
        let script = format!(
            "mkdir -p data && for n in $(seq 1 200); do echo writer-{i}-$n > data/file-$n.txt; done && sleep 1"
        );
        let job =
            empty_job(&format!("writer {i}"), &[script.as_str()]).cache(CacheSpec::new("shared", &["data/"]));
        writers.push(env.fake.enqueue_job(job));
    }
    for id in writers {
        env.succeeded(id).await;
    }
    let archives: Vec<_> = walk(&env.cache_dir())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cache.zip"))
        })
        .collect();
    assert_eq!(
        archives.len(),
        1,
        "no temporary archive left behind: {archives:?}"
    );
    let zip = &archives[0];
    let (ok, _) = run("unzip", &["-tq", zip.to_str().unwrap()]);
    assert!(ok, "unzip -t rejected {}", zip.display());
    let entries = zip_entries(zip);
    assert_eq!(entries.len(), 201, "data/ and 200 files");

    // Whichever writer won, a reader gets one writer's complete set of files.
    let reader = empty_job(
        "reader",
        &[
            "test $(ls data | wc -l) -eq 200",
            "test $(cat data/*.txt | cut -d- -f2 | sort -u | wc -l) -eq 1",
        ],
    )
    .cache(CacheSpec {
        policy: "pull".into(),
        ..CacheSpec::new("shared", &["data/"])
    });
    let id = env.fake.enqueue_job(reader);
    env.succeeded(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_keys_and_unchanged_archives() {
    let env = Env::start(fake_options(), 1).await;
    let seed = empty_job("seed", &["mkdir -p vendor && echo 1 > vendor/lib"])
        .cache(CacheSpec::new("main-branch", &["vendor/"]));
    env.succeeded(env.fake.enqueue_job(seed)).await;

    // A feature branch has no cache yet: the fallback key provides it, then its own key is written.
    let feature = empty_job(
        "feature",
        &[
            "test \"$(cat vendor/lib)\" = 1",
            "touch -d @1000000000 vendor/lib",
        ],
    )
    .cache(CacheSpec {
        fallback_keys: vec!["main-branch".into()],
        ..CacheSpec::new("feature-branch", &["vendor/", "missing-dir/"])
    });
    let rec = env.succeeded(env.fake.enqueue_job(feature.clone())).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Checking cache for feature-branch..."), "{trace}");
    assert!(trace.contains("Checking cache for main-branch..."), "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert!(
        trace.contains("WARNING: missing-dir: no matching files"),
        "{trace}"
    );
    assert!(trace.contains("Creating cache feature-branch..."), "{trace}");

    let archive = walk(&env.cache_dir())
        .into_iter()
        .find(|p| p.ends_with("feature-branch/cache.zip"))
        .expect("feature-branch archive");
    let before = std::fs::metadata(&archive).unwrap().modified().unwrap();

    // Same content again (the script pins the mtime): the archive is not rewritten.
    let rec = env.succeeded(env.fake.enqueue_job(feature)).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Archive is up to date!"), "{trace}");
    let after = std::fs::metadata(&archive).unwrap().modified().unwrap();
    assert_eq!(before, after);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
