#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::fs;

use common::*;
use oxrunner_archive::collect;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn doublestar_minus_an_excluded_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "out/a.txt", b"a");
    write(root, "out/x/b.txt", b"b");
    write(root, "out/x/secret.key", b"k");
    write(root, "other/c.txt", b"c");
    let set = collect(root, &s(&["out/**"]), &s(&["out/x/secret.key"]), false).unwrap();
    assert_eq!(strings(&set.files), ["out/a.txt", "out/x", "out/x/b.txt"]);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);

    let set = collect(root, &s(&["**/*.txt"]), &s(&["other/*"]), false).unwrap();
    assert_eq!(strings(&set.files), ["out/a.txt", "out/x/b.txt"]);
}

#[test]
fn a_matched_directory_brings_its_subtree_and_exclude_is_not_recursive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "build/bin/tool", b"t");
    write(root, "build/lib/x.so", b"x");
    write(root, "build/readme", b"r");
    write(root, "src/main.c", b"m");
    let set = collect(root, &s(&["build/"]), &[], false).unwrap();
    assert_eq!(
        strings(&set.files),
        [
            "build",
            "build/bin",
            "build/bin/tool",
            "build/lib",
            "build/lib/x.so",
            "build/readme"
        ]
    );
    // `b*` matches the directory at top level only, which then brings everything below it.
    let set = collect(root, &s(&["./b*"]), &s(&["build/lib"]), false).unwrap();
    assert_eq!(
        strings(&set.files),
        [
            "build",
            "build/bin",
            "build/bin/tool",
            "build/lib/x.so",
            "build/readme"
        ]
    );
    // `*` does not cross `/`.
    let set = collect(root, &s(&["build/*/x.so", "*.c"]), &[], false).unwrap();
    assert_eq!(strings(&set.files), ["build/lib/x.so"]);
    assert_eq!(set.warnings.len(), 1);
    // A directory's contents go with `dir/**` in exclude.
    let set = collect(root, &s(&["build"]), &s(&["build/lib/**", "build/bin/*"]), false).unwrap();
    assert_eq!(
        strings(&set.files),
        ["build", "build/bin", "build/lib", "build/readme"]
    );
}

#[test]
fn warnings_for_no_match_and_paths_outside_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    write(&root, "a.txt", b"a");
    write(dir.path(), "outside/secret", b"s");
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("escape")).unwrap();
    let outside_abs = dir.path().join("outside/secret").to_string_lossy().into_owned();
    let set = collect(
        &root,
        &s(&[
            "nothing/*.bin",
            "../outside/secret",
            &outside_abs,
            "escape/secret",
            "a.txt",
        ]),
        &[],
        false,
    )
    .unwrap();
    assert_eq!(strings(&set.files), ["a.txt"]);
    assert_eq!(set.warnings.len(), 4, "{:#?}", set.warnings);
    assert!(set.warnings[0].starts_with("nothing/*.bin: no matching files. Ensure that the artifact path is relative to the working directory ("));
    assert!(
        set.warnings[1].contains("artifact path is not a subpath of project directory: ../outside/secret")
    );
    assert!(set.warnings[2].contains("not a subpath of project directory"));
    assert!(set.warnings[3].contains("escape/secret: not supported: outside build directory"));

    // The symlink itself may be archived (as a link), it just is not followed.
    let set = collect(&root, &s(&["escape"]), &[], false).unwrap();
    assert_eq!(strings(&set.files), ["escape"]);
}

#[test]
fn untracked_files_come_from_git() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    write(root, ".gitignore", b"*.log\n");
    write(root, "tracked.txt", b"t");
    git(root, &["add", ".gitignore", "tracked.txt"]);
    git(root, &["commit", "-q", "-m", "init"]);
    write(root, "new.txt", b"n");
    write(root, "dir/new2.txt", b"n2");
    write(root, "ignored.log", b"i");
    write(root, "dir/skip.tmp", b"s");
    let set = collect(root, &[], &s(&["dir/*.tmp"]), true).unwrap();
    assert_eq!(strings(&set.files), ["dir/new2.txt", "new.txt"]);
    assert!(set.warnings.is_empty());

    fs::remove_file(root.join("new.txt")).unwrap();
    fs::remove_dir_all(root.join("dir")).unwrap();
    let set = collect(root, &[], &[], true).unwrap();
    assert!(set.files.is_empty());
    assert_eq!(set.warnings, ["untracked: no files"]);
}

#[test]
fn a_bad_glob_is_an_error_with_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let err = collect(dir.path(), &s(&["out/[a"]), &[], false).unwrap_err();
    assert!(err.to_string().contains("out/[a"), "{err}");
}

/// The job owns `.git/config`: a program it names must never run (the runner is often root), and
/// `core.worktree` must not make git list another directory.
#[test]
fn untracked_ignores_a_hostile_git_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    let elsewhere = dir.path().join("elsewhere");
    let marker = dir.path().join("fsmonitor-ran");
    fs::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q"]);
    write(&root, "tracked.txt", b"t");
    git(&root, &["add", "tracked.txt"]);
    git(&root, &["commit", "-q", "-m", "init"]);
    write(&root, "mine.txt", b"m");
    write(&elsewhere, "other.txt", b"o");
    let hook = format!("touch {}; false", marker.display());
    git(&root, &["config", "core.fsmonitor", &hook]);
    git(&root, &["config", "core.worktree", elsewhere.to_str().unwrap()]);

    let set = collect(&root, &[], &[], true).unwrap();
    assert!(!marker.exists(), "the job's core.fsmonitor ran");
    assert_eq!(strings(&set.files), ["mine.txt"], "{:?}", set.warnings);
}
