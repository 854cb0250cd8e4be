#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Review finding 3 of issue 11: the shell executor makes a stage's working directory as root, and
//! `builds_dir` often sits in the job user's home. A link that user put in place of `builds` must not
//! make root create the project's directories wherever it points.
//!
//! Needs root (a throwaway user owns the home). Under `CI=true` it runs or fails; elsewhere it skips
//! with a message.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use oxrunner_core::{CancellationToken, Executor, MaskSet, ShellExecutor, Stage, StageCommand, TraceWriter};

fn can_run() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let root = nix::unistd::geteuid().is_root();
    let useradd = Command::new("sh")
        .args(["-c", "command -v useradd && command -v userdel"])
        .output()
        .is_ok_and(|o| o.status.success());
    if root && useradd {
        return true;
    }
    assert!(
        !ci,
        "CI=true but this test cannot run: needs root, useradd and userdel"
    );
    eprintln!("SKIPPED: the workdir test needs root, useradd and userdel (it runs under CI=true)");
    false
}

/// A throwaway user, removed on drop even when the test fails.
struct TempUser(String);

impl TempUser {
    fn create() -> (TempUser, u32, u32) {
        let name = format!("oxrt-workdir-{}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        let out = Command::new("useradd")
            .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        (TempUser(name), user.uid.as_raw(), user.gid.as_raw())
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

#[tokio::test]
async fn a_linked_builds_dir_does_not_make_root_create_the_workdir_elsewhere() {
    if !can_run() {
        return;
    }
    let (_user, uid, gid) = TempUser::create();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let root_only = tmp.path().join("root-only");
    fs::create_dir(&root_only).unwrap();
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&root_only, home.join("builds")).unwrap();
    std::os::unix::fs::lchown(home.join("builds"), Some(uid), Some(gid)).unwrap();
    let spool = tmp.path().join("spool");
    fs::create_dir(&spool).unwrap();

    let (trace, handle) = TraceWriter::new(&spool, MaskSet::new(vec![], &[]), 0).unwrap();
    let cmd = StageCommand {
        predefined: false,
        stage: Stage::Step("script".into()),
        script: "echo ran\n".to_owned(),
        shell_workdir: home.join("builds/t1abc/0/group/project"),
    };
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let err = exec
        .run(cmd, &trace, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    handle.finish().await;
    assert!(err.contains("not followed"), "{err}");
    let made: Vec<_> = fs::read_dir(&root_only).unwrap().collect();
    assert!(made.is_empty(), "created in the root-only directory: {made:?}");
}
