//! Extraction of an archive while it is still arriving (a remote cache downloaded in parts): the bytes are fed
//! into the file by a "downloader" thread, out of order, and the extraction must wait for them, start before the
//! end, and take back all it wrote when the download fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{noise, write};
use oxrunner_archive::{Arrivals, Arriving, Level, collect, create_zip_file, extract_arriving, extract_zip};
use oxrunner_fs::Dir;

/// A tree whose archive is a few MiB: many files, a link whose data sits near the end.
fn tree(root: &Path) {
    for i in 0..40 {
        write(root, &format!("c/f{i:02}.bin"), &noise(64 * 1024, i));
    }
    write(root, "c/z/last.txt", b"the last file\n");
    std::os::unix::fs::symlink("../f00.bin", root.join("c/z/link")).unwrap();
}

fn archive(work: &Path) -> Vec<u8> {
    let src = work.join("src");
    tree(&src);
    let set = collect(&src, &["c".to_owned()], &[], false).unwrap();
    let path = work.join("a.zip");
    create_zip_file(&src, &set, Level::Fastest, &path).unwrap();
    fs::read(&path).unwrap()
}

/// The download's file: sized as the downloader does before parts land, then written range by range.
fn download_file(work: &Path, len: usize) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(work.join("dl.zip"))
        .unwrap();
    f.set_len(len as u64).unwrap();
    f
}

fn feed(file: &File, arrivals: &Arrivals, bytes: &[u8], range: (usize, usize)) {
    file.write_all_at(&bytes[range.0..range.1], range.0 as u64)
        .unwrap();
    arrivals.arrived(range.0 as u64, range.1 as u64);
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_extraction(
    file: &File,
    label: &Path,
    arrivals: &Arc<Arrivals>,
    dst: &Path,
) -> std::thread::JoinHandle<Arriving> {
    let (file, label, arrivals) = (
        file.try_clone().unwrap(),
        label.to_path_buf(),
        Arc::clone(arrivals),
    );
    let dst = dst.to_path_buf();
    std::thread::spawn(move || {
        let root = Dir::create_trusted(&dst).unwrap();
        extract_arriving(file, &label, &arrivals, &root)
    })
}

#[test]
fn extraction_starts_before_the_download_ends_and_matches_a_complete_one() {
    let work = tempfile::tempdir().unwrap();
    let bytes = archive(work.path());
    let file = download_file(work.path(), bytes.len());
    let arrivals = Arc::new(Arrivals::default());
    let dst = work.path().join("dst");
    write(&dst, "c/f01.bin", b"replaced by the cache");
    let extraction = run_extraction(&file, &work.path().join("dl.zip"), &arrivals, &dst);

    let len = bytes.len();
    let half = len / 2;
    // First part, then the tail (central directory), as the downloader orders them.
    feed(&file, &arrivals, &bytes, (0, 64 * 1024));
    arrivals.begin(len as u64);
    feed(&file, &arrivals, &bytes, (len - 256 * 1024, len));
    feed(&file, &arrivals, &bytes, (64 * 1024, half));
    // The first file lies in the first half: it must be extracted while the second half has not arrived.
    wait_until("the first file to be extracted", || {
        fs::read(dst.join("c/f00.bin")).is_ok_and(|b| b == noise(64 * 1024, 0))
    });
    assert!(
        !extraction.is_finished(),
        "the extraction cannot finish without the second half"
    );
    feed(&file, &arrivals, &bytes, (half, len - 256 * 1024));
    arrivals.complete();
    let stats = match extraction.join().unwrap() {
        Arriving::Extracted(stats) => stats,
        other => panic!("expected an extraction, got {other:?}"),
    };

    let reference = work.path().join("ref");
    fs::write(work.path().join("whole.zip"), &bytes).unwrap();
    let expected = extract_zip(&work.path().join("whole.zip"), &reference).unwrap();
    assert_eq!(stats, expected);
    for i in 0..40 {
        let rel = format!("c/f{i:02}.bin");
        assert_eq!(
            fs::read(dst.join(&rel)).unwrap(),
            fs::read(reference.join(&rel)).unwrap()
        );
    }
    assert_eq!(
        fs::read_link(dst.join("c/z/link")).unwrap(),
        Path::new("../f00.bin")
    );
    assert_eq!(fs::read(dst.join("c/z/last.txt")).unwrap(), b"the last file\n");
    assert!(
        walk(&dst).iter().all(|p| !p.contains(".oxrunner-replaced")),
        "what the cache replaced is removed: {:?}",
        walk(&dst)
    );
}

#[test]
fn a_download_that_fails_midway_leaves_nothing_the_extraction_wrote() {
    let work = tempfile::tempdir().unwrap();
    let bytes = archive(work.path());
    let file = download_file(work.path(), bytes.len());
    let arrivals = Arc::new(Arrivals::default());
    let dst = work.path().join("dst");
    // What the job had before the restore: a file of its own beside the cache's paths stays.
    write(&dst, "own.txt", b"mine");
    write(&dst, "c/mine.txt", b"also mine");
    // A file the archive also has (a cache path overlapping tracked files): the job gets its own version back.
    write(&dst, "c/f00.bin", b"the checkout's version");
    let extraction = run_extraction(&file, &work.path().join("dl.zip"), &arrivals, &dst);

    let len = bytes.len();
    feed(&file, &arrivals, &bytes, (0, 64 * 1024));
    arrivals.begin(len as u64);
    feed(&file, &arrivals, &bytes, (len - 256 * 1024, len));
    feed(&file, &arrivals, &bytes, (64 * 1024, len / 2));
    wait_until("the first file to be extracted", || {
        fs::read(dst.join("c/f00.bin")).is_ok_and(|b| b == noise(64 * 1024, 0))
    });
    arrivals.fail("connection reset by peer");
    match extraction.join().unwrap() {
        Arriving::Abandoned { left } => assert!(left.is_empty(), "{left:?}"),
        other => panic!("expected an abandoned extraction, got {other:?}"),
    }
    assert_eq!(fs::read(dst.join("own.txt")).unwrap(), b"mine");
    assert_eq!(fs::read(dst.join("c/mine.txt")).unwrap(), b"also mine");
    assert_eq!(
        fs::read(dst.join("c/f00.bin")).unwrap(),
        b"the checkout's version"
    );
    let mut left: Vec<String> = walk(&dst);
    left.sort();
    assert_eq!(
        left,
        ["c", "c/f00.bin", "c/mine.txt", "own.txt"],
        "the extraction's files and directories are gone"
    );
}

#[test]
fn an_early_end_extracts_nothing() {
    let work = tempfile::tempdir().unwrap();
    let file = download_file(work.path(), 10);
    let arrivals = Arc::new(Arrivals::default());
    let dst = work.path().join("dst");
    let extraction = run_extraction(&file, &work.path().join("dl.zip"), &arrivals, &dst);
    arrivals.fail("404");
    assert!(matches!(extraction.join().unwrap(), Arriving::NotStarted));
    assert!(walk(&dst).is_empty());
}

#[test]
fn a_corrupt_archive_that_fully_arrived_fails_as_it_would_complete() {
    let work = tempfile::tempdir().unwrap();
    let mut bytes = archive(work.path());
    // Damage a file's data (past its local header): its CRC check fails.
    bytes[200] ^= 0xff;
    let file = download_file(work.path(), bytes.len());
    let arrivals = Arc::new(Arrivals::default());
    let dst = work.path().join("dst");
    let extraction = run_extraction(&file, &work.path().join("dl.zip"), &arrivals, &dst);
    feed(&file, &arrivals, &bytes, (0, bytes.len()));
    arrivals.begin(bytes.len() as u64);
    arrivals.complete();
    match extraction.join().unwrap() {
        Arriving::Failed(e) => assert!(e.to_string().contains("checksum"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The project directory belongs to the job: while the archive is still arriving, it swaps a directory the
/// extraction wrote into for a link to a directory of its choosing that holds files of the same names. Taking the
/// extraction back after a failed download must not reach through that link.
#[test]
fn taking_back_never_follows_a_link_the_job_put_in_place() {
    let work = tempfile::tempdir().unwrap();
    let bytes = archive(work.path());
    let file = download_file(work.path(), bytes.len());
    let arrivals = Arc::new(Arrivals::default());
    let dst = work.path().join("dst");
    let outside = work.path().join("outside");
    write(&outside, "f00.bin", b"not the runner's to remove");
    let extraction = run_extraction(&file, &work.path().join("dl.zip"), &arrivals, &dst);

    let len = bytes.len();
    feed(&file, &arrivals, &bytes, (0, 64 * 1024));
    arrivals.begin(len as u64);
    feed(&file, &arrivals, &bytes, (len - 256 * 1024, len));
    feed(&file, &arrivals, &bytes, (64 * 1024, len / 2));
    wait_until("the first file to be extracted", || {
        fs::read(dst.join("c/f00.bin")).is_ok_and(|b| b == noise(64 * 1024, 0))
    });
    fs::rename(dst.join("c"), work.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("c")).unwrap();
    arrivals.fail("connection reset by peer");
    match extraction.join().unwrap() {
        Arriving::Abandoned { left } => assert!(!left.is_empty(), "the refused removals are reported"),
        other => panic!("expected an abandoned extraction, got {other:?}"),
    }
    assert_eq!(
        fs::read(outside.join("f00.bin")).unwrap(),
        b"not the runner's to remove"
    );
    assert_eq!(walk(&outside), ["f00.bin"]);
}
