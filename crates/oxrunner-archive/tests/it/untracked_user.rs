#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Review finding 1: under `--user`, `untracked` asks git about a repository the job user owns. git must
//! run as that user: as root it either refuses the repository (`safe.directory`) or runs the job's
//! `.git/config` with root's rights.
//!
//! Needs root (a throwaway user is created and removed). Under `CI=true` it runs or fails; elsewhere it
//! skips with a message.

use crate::support as common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use oxrunner_archive::collect;

#[test]
fn untracked_runs_git_as_the_owner_of_the_project() {
    if !root_tests_can_run("the untracked-as-job-user test", &["useradd", "userdel", "chown"]) {
        return;
    }
    let user = TempUser::create("untr");
    let dir = tempfile::tempdir().unwrap();
    // The build directory's parents are traversable by the job user, as in a real `--user` setup.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("project");
    let marker = dir.path().join("fsmonitor-ran");
    fs::create_dir(&root).unwrap();
    git(&root, &["init", "-q"]);
    write(&root, "tracked.txt", b"t");
    git(&root, &["add", "tracked.txt"]);
    git(&root, &["commit", "-q", "-m", "init"]);
    write(&root, "new.txt", b"n");
    let hook = format!("touch {}; false", marker.display());
    git(&root, &["config", "core.fsmonitor", &hook]);
    let status = Command::new("chown")
        .args(["-R", &format!("{0}:{0}", user.name)])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    // Only root can look inside: git running as the job user cannot list it, git running as root would.
    write(&root, "rootonly/hidden.txt", b"h");
    fs::set_permissions(root.join("rootonly"), fs::Permissions::from_mode(0o700)).unwrap();

    let set = collect(&root, &[], &[], true).unwrap();
    assert_eq!(strings(&set.files), ["new.txt"], "{:?}", set.warnings);
    assert!(!marker.exists(), "the job's core.fsmonitor ran");
}
