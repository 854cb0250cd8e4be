#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Collecting follows a symlink on the way to a path when it stays inside the project, as gitlab-runner
//! does (`current -> releases/3`, `paths: [current/dist/app.js]`); links that lead out of the project
//! (absolute, or `..` past the project directory) are still refused, and a link as the last component is
//! still archived as a link. These tests use the kernel's `openat2` resolution; the component-walk
//! fallback (old kernels), which refuses every link on the way, is covered in `oxrunner-fs`.

use crate::support as common;

use std::io::Read;
use std::path::Path;

use common::*;
use oxrunner_archive::{FileSet, Level, collect, create_gzip, create_raw, create_zip};

const SECRET: &str = "oxrt-outside-secret-5d2e";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// `<tmp>/project` with a release layout and in-tree links, and `<tmp>/outside/secret` beside it.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("project");
    write(&root, "releases/3/dist/app.js", b"app v3");
    write(&root, "releases/3/dist/sub/deep.js", b"deep v3");
    write(&root, "shared/vendor/lib.rb", b"vendored");
    write(&root, "app/main.rb", b"main");
    write(tmp.path(), "outside/secret", SECRET.as_bytes());
    std::os::unix::fs::symlink("releases/3", root.join("current")).unwrap();
    // `..` inside the tree is fine while it stays beneath the project directory.
    std::os::unix::fs::symlink("../shared/vendor", root.join("app/vendor")).unwrap();
    (tmp, root)
}

/// Name → (is a symlink, content) of every entry.
fn zip_entries(root: &Path, files: &FileSet) -> Vec<(String, bool, String)> {
    let mut zip = Vec::new();
    create_zip(root, files, Level::Fastest, &mut zip).unwrap();
    let mut reader = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut out = Vec::new();
    for k in 0..reader.len() {
        let mut entry = reader.by_index(k).unwrap();
        let link = entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000);
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        out.push((entry.name().unwrap().into_owned(), link, content));
    }
    out
}

#[test]
fn a_literal_path_through_an_in_project_link_is_collected_under_its_written_name() {
    let (_tmp, root) = project();
    let set = collect(
        &root,
        &s(&["current/dist/app.js", "app/vendor/lib.rb"]),
        &[],
        false,
    )
    .unwrap();
    assert!(set.warnings.is_empty(), "{:#?}", set.warnings);
    assert_eq!(strings(&set.files), ["app/vendor/lib.rb", "current/dist/app.js"]);
    assert_eq!(
        zip_entries(&root, &set),
        [
            ("app/vendor/lib.rb".to_owned(), false, "vendored".to_owned()),
            ("current/dist/app.js".to_owned(), false, "app v3".to_owned()),
        ]
    );
    // Report formats read the file the same way.
    let one = collect(&root, &s(&["current/dist/app.js"]), &[], false).unwrap();
    let mut raw = Vec::new();
    create_raw(&root, &one, &mut raw).unwrap();
    assert_eq!(raw, b"app v3");
    let mut gz = Vec::new();
    create_gzip(&root, &one, &mut gz).unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "app v3");
}

#[test]
fn a_glob_whose_base_passes_an_in_project_link_is_collected() {
    let (_tmp, root) = project();
    let set = collect(
        &root,
        &s(&["current/dist/*.js", "current/**/deep.js"]),
        &[],
        false,
    )
    .unwrap();
    assert!(set.warnings.is_empty(), "{:#?}", set.warnings);
    assert_eq!(
        strings(&set.files),
        ["current/dist/app.js", "current/dist/sub/deep.js"]
    );
    // A literal directory behind a link brings its subtree, named below the written path.
    let set = collect(&root, &s(&["current/dist"]), &[], false).unwrap();
    assert!(set.warnings.is_empty(), "{:#?}", set.warnings);
    assert_eq!(
        strings(&set.files),
        [
            "current/dist",
            "current/dist/app.js",
            "current/dist/sub",
            "current/dist/sub/deep.js"
        ]
    );
    let names: Vec<String> = zip_entries(&root, &set).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "current/dist/",
            "current/dist/app.js",
            "current/dist/sub/",
            "current/dist/sub/deep.js"
        ]
    );
}

#[test]
fn a_link_as_the_last_component_stays_a_link() {
    let (_tmp, root) = project();
    let set = collect(&root, &s(&["current", "app/vendor"]), &[], false).unwrap();
    assert!(set.warnings.is_empty(), "{:#?}", set.warnings);
    assert_eq!(strings(&set.files), ["app/vendor", "current"]);
    assert_eq!(
        zip_entries(&root, &set),
        [
            ("app/vendor".to_owned(), true, "../shared/vendor".to_owned()),
            ("current".to_owned(), true, "releases/3".to_owned()),
        ]
    );
}

#[test]
fn a_directory_walk_never_descends_into_a_linked_directory() {
    let (_tmp, root) = project();
    write(&root, "out/real/a.txt", b"a");
    std::os::unix::fs::symlink("../releases/3", root.join("out/linked")).unwrap();
    for pattern in ["out/**", "out", "out/*/*"] {
        let set = collect(&root, &s(&[pattern]), &[], false).unwrap();
        assert!(
            set.files
                .iter()
                .all(|p| !p.to_string_lossy().starts_with("out/linked/")),
            "{pattern}: {:?}",
            set.files
        );
    }
    let set = collect(&root, &s(&["out/**"]), &[], false).unwrap();
    assert_eq!(strings(&set.files), ["out/linked", "out/real", "out/real/a.txt"]);
}

#[test]
fn links_on_the_way_out_of_the_project_are_refused() {
    let (tmp, root) = project();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("app/up")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("up1")).unwrap();
    // Absolute links are refused even when they point back into the project: only relative
    // resolution can be confined to the project directory.
    std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("abs")).unwrap();
    std::os::unix::fs::symlink(root.join("releases/3"), root.join("abs-in")).unwrap();
    // A chain: an in-tree link to a link that leaves.
    std::os::unix::fs::symlink("app/up", root.join("chain")).unwrap();
    let patterns = [
        "etc/passwd",
        "app/up/secret",
        "up1/secret",
        "abs/secret",
        "abs-in/dist/app.js",
        "chain/secret",
        "app/up/*",
        "chain/**",
    ];
    let set = collect(&root, &s(&patterns), &[], false).unwrap();
    assert!(set.files.is_empty(), "{:?}", set.files);
    assert_eq!(set.warnings.len(), patterns.len(), "{:#?}", set.warnings);
    for (w, p) in set.warnings.iter().zip(patterns) {
        assert_eq!(
            w,
            &format!("{p}: not supported: outside build directory (a symlink on the way is not followed)")
        );
    }

    // A hand-built list naming paths through those links archives nothing from outside.
    let files = FileSet {
        files: ["app/up/secret", "up1/secret", "abs/secret", "chain/secret"]
            .iter()
            .map(Into::into)
            .collect(),
        warnings: Vec::new(),
    };
    assert!(zip_entries(&root, &files).is_empty());
}
