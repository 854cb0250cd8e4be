//! Putting a finished download in place: over an archive already there (swapped, then the old one removed) and
//! where none is yet, with nothing left behind in the store's directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use super::put_in_place;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn download(dir: &Path, text: &[u8]) -> tempfile::NamedTempFile {
    let mut tmp = tempfile::Builder::new()
        .prefix("cache.zip.tmp-")
        .tempfile_in(dir)
        .unwrap();
    tmp.write_all(text).unwrap();
    tmp
}

#[test]
fn a_download_replaces_the_archive_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache.zip");
    std::fs::write(&dest, b"old archive").unwrap();
    put_in_place(download(dir.path(), b"new archive"), &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"new archive");
    assert_eq!(names(dir.path()), ["cache.zip"]);
}

#[test]
fn a_first_download_becomes_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache.zip");
    put_in_place(download(dir.path(), b"first"), &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"first");
    assert_eq!(names(dir.path()), ["cache.zip"]);
}
