#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::*;
use oxrunner_archive::{ArchiveError, CacheStore, Level, SaveOutcome, collect};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn key_sanitisation_matches_gitlab() {
    let cases: &[(&str, Option<&str>)] = &[
        ("main", Some("main")),
        ("feature%2Fx", Some("feature/x")),
        ("feature%2fx%2E%2e", Some("feature/x..")),
        ("a\\b\\c", Some("a/b/c")),
        ("../../etc/passwd", Some("etc/passwd")),
        ("%2e%2e/%2E%2E/x", Some("x")),
        ("a/./b//c/", Some("a/b/c")),
        ("key  ", Some("key")),
        ("key/  /\t", Some("key")),
        // Upstream would keep "a/.." after trimming; it must clean to nothing instead.
        ("a/.. ", None),
        ("", None),
        ("   ", None),
        ("..", None),
        ("/", None),
        ("job name/refs/heads/main", Some("job name/refs/heads/main")),
    ];
    for (input, want) in cases {
        assert_eq!(
            CacheStore::sanitize_key(input).as_deref(),
            *want,
            "input {input:?}"
        );
    }
}

#[test]
fn archive_paths_stay_under_the_store() {
    let store = CacheStore::new(Path::new("/cache"));
    assert_eq!(
        store.archive_path("group/project", "feature%2Fx"),
        Path::new("/cache/group/project/feature/x/cache.zip")
    );
    assert_eq!(
        store.archive_path("../../g/p", "..\\..\\k"),
        Path::new("/cache/g/p/k/cache.zip")
    );
}

#[test]
fn fallback_keys_then_cache_fallback_key_without_protected() {
    let (keys, warnings) = CacheStore::keys_in_order("k1", &s(&["f1", "f2"]), Some("global"));
    assert_eq!(keys, ["k1", "f1", "f2", "global"]);
    assert!(warnings.is_empty());
    let (keys, warnings) = CacheStore::keys_in_order("k1", &[], Some("main-protected"));
    assert_eq!(keys, ["k1"]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("-protected"));
}

#[test]
fn save_then_restore_with_fallbacks() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job1 = tempfile::tempdir().unwrap();
    write(job1.path(), "vendor/lib.rb", b"lib");
    write(job1.path(), ".npm/x.json", b"{}");
    let set = collect(job1.path(), &s(&["vendor", ".npm"]), &[], false).unwrap();
    let out = store.save("g/p", "main", job1.path(), &set, Level::Fast).unwrap();
    assert!(matches!(out, SaveOutcome::Written(st) if st.entries == 4));
    unzip_test(&cache.path().join("g/p/main/cache.zip"));

    // A second cache of the same job under another key.
    let other = collect(job1.path(), &s(&[".npm"]), &[], false).unwrap();
    store
        .save("g/p", "npm-%2Fcache", job1.path(), &other, Level::Default)
        .unwrap();
    assert!(cache.path().join("g/p/npm-/cache/cache.zip").is_file());

    let job2 = tempfile::tempdir().unwrap();
    let (keys, _) = CacheStore::keys_in_order("feature-x", &s(&["", "main"]), Some("default"));
    let report = store.restore_with_report("g/p", &keys, job2.path()).unwrap();
    assert_eq!(report.restored.as_deref(), Some("main"));
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("feature-x"));
    assert!(report.warnings[1].contains("could not be sanitized"));
    assert_eq!(fs::read(job2.path().join("vendor/lib.rb")).unwrap(), b"lib");

    // Another project never sees it.
    let job3 = tempfile::tempdir().unwrap();
    assert_eq!(store.restore("g/other", &keys, job3.path()).unwrap(), None);
    assert!(!job3.path().join("vendor").exists());
}

#[test]
fn a_corrupt_archive_falls_back_to_the_next_key() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job = tempfile::tempdir().unwrap();
    write(job.path(), "c/f", b"good");
    let set = collect(job.path(), &s(&["c"]), &[], false).unwrap();
    store
        .save("p", "fallback", job.path(), &set, Level::Default)
        .unwrap();
    let broken = store.archive_path("p", "primary");
    fs::create_dir_all(broken.parent().unwrap()).unwrap();
    fs::write(&broken, b"PK\x03\x04 definitely not a zip").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let report = store
        .restore_with_report("p", &s(&["primary", "fallback"]), dst.path())
        .unwrap();
    assert_eq!(report.restored.as_deref(), Some("fallback"));
    assert!(report.warnings[0].contains("Failed to extract cache for key \"primary\""));
    assert_eq!(fs::read(dst.path().join("c/f")).unwrap(), b"good");
}

#[test]
fn unchanged_content_is_not_rewritten() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job = tempfile::tempdir().unwrap();
    write(job.path(), "deps/a", b"a");
    write(job.path(), "deps/b", b"b");
    let set = collect(job.path(), &s(&["deps"]), &[], false).unwrap();
    assert!(matches!(
        store.save("p", "k", job.path(), &set, Level::Default).unwrap(),
        SaveOutcome::Written(_)
    ));
    let archive = store.archive_path("p", "k");
    // Age the archive so a rewrite would be visible in its mtime and inode.
    set_mtime(archive.parent().unwrap(), "cache.zip", 1_000_000_000);
    let before = fs::metadata(&archive).unwrap();
    assert_eq!(
        store.save("p", "k", job.path(), &set, Level::Default).unwrap(),
        SaveOutcome::Unchanged
    );
    let after = fs::metadata(&archive).unwrap();
    assert_eq!((before.mtime(), before.ino()), (after.mtime(), after.ino()));

    // Same size, different mtime: that is a change.
    set_mtime(job.path(), "deps/a", 1_234_567_890);
    assert!(matches!(
        store.save("p", "k", job.path(), &set, Level::Default).unwrap(),
        SaveOutcome::Written(_)
    ));
    assert_ne!(fs::metadata(&archive).unwrap().ino(), before.ino());
}

#[test]
fn concurrent_writers_of_one_key_leave_a_valid_archive_and_no_temporaries() {
    let cache = tempfile::tempdir().unwrap();
    let store = Arc::new(CacheStore::new(cache.path()));
    let jobs: Vec<_> = (0..4)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            for f in 0..20 {
                write(dir.path(), &format!("target/f{f}"), &noise(40_000, i * 100 + f));
            }
            write(dir.path(), "target/writer", format!("{i}").as_bytes());
            dir
        })
        .collect();
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let handles: Vec<_> = jobs
        .iter()
        .map(|dir| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let set = collect(&path, &["target".to_owned()], &[], false).unwrap();
                barrier.wait();
                for _ in 0..3 {
                    store.save("g/p", "shared", &path, &set, Level::Fast).unwrap();
                }
            })
        })
        .collect();
    // Readers during the writes always see a complete archive (or none yet).
    let reader_store = Arc::clone(&store);
    let reader = std::thread::spawn(move || {
        for _ in 0..20 {
            let dst = tempfile::tempdir().unwrap();
            if let Some(k) = reader_store
                .restore("g/p", &["shared".to_owned()], dst.path())
                .unwrap()
            {
                assert_eq!(k, "shared");
                assert_eq!(fs::read_dir(dst.path().join("target")).unwrap().count(), 21);
            }
        }
    });
    for h in handles {
        h.join().unwrap();
    }
    reader.join().unwrap();

    let dir = cache.path().join("g/p/shared");
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cache.zip"]);
    unzip_test(&dir.join("cache.zip"));
    let dst = tempfile::tempdir().unwrap();
    store.restore("g/p", &["shared".to_owned()], dst.path()).unwrap();
    let writer: usize = fs::read_to_string(dst.path().join("target/writer"))
        .unwrap()
        .parse()
        .unwrap();
    let f0 = fs::read(dst.path().join("target/f0")).unwrap();
    assert_eq!(
        f0,
        noise(40_000, writer as u64 * 100),
        "archive must come from one writer only"
    );
}

#[test]
fn an_empty_key_is_refused_with_a_hint() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job = tempfile::tempdir().unwrap();
    let set = collect(job.path(), &[], &[], false).unwrap();
    let err = store
        .save("p", " / ", job.path(), &set, Level::Default)
        .unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidCacheKey(_)));
    assert!(err.to_string().contains("hint:"));
}

/// Adopting an extracted download rewrites the archive's digest in place but keeps its date: a downloaded archive
/// is dated with the object's `Last-Modified`, which the next restore compares with the store's.
#[test]
fn adopting_a_download_keeps_the_archives_date() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job1 = tempfile::tempdir().unwrap();
    write(job1.path(), "vendor/lib.rb", b"lib");
    let set = collect(job1.path(), &s(&["vendor"]), &[], false).unwrap();
    store.save("g/p", "main", job1.path(), &set, Level::Fast).unwrap();
    let archive = cache.path().join("g/p/main/cache.zip");
    let dated = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    fs::File::options()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_modified(dated)
        .unwrap();
    let job2 = tempfile::tempdir().unwrap();
    let report = store
        .restore_with_report("g/p", &s(&["main"]), job2.path())
        .unwrap();
    assert_eq!(report.restored.as_deref(), Some("main"));
    // Another machine's files: their digest differs from the one in the archive.
    fs::write(job2.path().join("vendor/lib.rb"), b"lib, changed here").unwrap();
    let before = fs::read(&archive).unwrap();
    let root = oxrunner_fs::Dir::create_trusted(job2.path()).unwrap();
    store.adopt_extracted("g/p", "main", &root).unwrap();
    assert_ne!(
        fs::read(&archive).unwrap(),
        before,
        "the digest was not rewritten"
    );
    assert_eq!(fs::metadata(&archive).unwrap().modified().unwrap(), dated);
}

/// A temporary being written with an old date (a download dated with its object's `Last-Modified`) is not a
/// leftover: the sweep of stale temporaries goes by the later of its mtime and ctime, and a ctime cannot be set back.
#[test]
fn a_temporary_dated_in_the_past_is_not_swept_while_fresh() {
    let cache = tempfile::tempdir().unwrap();
    let store = CacheStore::new(cache.path());
    let job = tempfile::tempdir().unwrap();
    write(job.path(), "vendor/lib.rb", b"lib");
    let set = collect(job.path(), &s(&["vendor"]), &[], false).unwrap();
    store.save("g/p", "main", job.path(), &set, Level::Fast).unwrap();
    let tmp = cache.path().join("g/p/main/cache.zip.tmp-download");
    fs::write(&tmp, b"half a download").unwrap();
    let week_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(week_ago)
        .unwrap();
    // Another job's save of the key sweeps the key's directory.
    write(job.path(), "vendor/lib.rb", b"lib, changed");
    let set = collect(job.path(), &s(&["vendor"]), &[], false).unwrap();
    store.save("g/p", "main", job.path(), &set, Level::Fast).unwrap();
    assert!(tmp.exists(), "a fresh temporary was swept");
}
