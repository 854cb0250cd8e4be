#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `save_cache_file`: the cache archive a helper command writes at a path of its caller's choosing.

use oxrunner_archive::{Level, SaveOutcome, collect_in, extract_zip_into, save_cache_file};
use oxrunner_fs::Dir;

#[test]
fn unchanged_files_are_not_archived_again_and_changes_are() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("vendor")).unwrap();
    std::fs::write(src.path().join("vendor/a"), "one").unwrap();
    let root = Dir::open_trusted(src.path()).unwrap();
    let store = tempfile::tempdir().unwrap();
    let dest = store.path().join("group/project/key/cache.zip");

    let files = collect_in(&root, &["vendor/".to_owned()], &[], false).unwrap();
    let first = save_cache_file(&dest, &root, &files, Level::Default).unwrap();
    assert!(matches!(first, SaveOutcome::Written(_)), "{first:?}");
    let again = save_cache_file(&dest, &root, &files, Level::Default).unwrap();
    assert_eq!(again, SaveOutcome::Unchanged);

    std::fs::write(src.path().join("vendor/a"), "two, longer").unwrap();
    let files = collect_in(&root, &["vendor/".to_owned()], &[], false).unwrap();
    let changed = save_cache_file(&dest, &root, &files, Level::Default).unwrap();
    assert!(matches!(changed, SaveOutcome::Written(_)), "{changed:?}");

    let out = tempfile::tempdir().unwrap();
    extract_zip_into(&dest, &Dir::open_trusted(out.path()).unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("vendor/a")).unwrap(),
        "two, longer"
    );
    // Only the archive is left beside it: the temporary file was renamed into place.
    assert_eq!(std::fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
}
