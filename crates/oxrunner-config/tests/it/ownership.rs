//! Root saving a config file another user owns keeps that user as the owner (a service running as that user
//! must still read its file after `sudo oxrunner register/unregister/reset-token`).

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use oxrunner_config::ConfigDocument;

/// A throwaway user `oxrt-<tag>-<pid>` with its own group, removed on drop even when the test fails.
struct TempUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TempUser {
    fn create(tag: &str) -> TempUser {
        let name = format!("oxrt-{tag}-{}", std::process::id());
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
        TempUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// Root and useradd here; under `CI=true` (CI runs as root) a missing piece fails the test.
fn root_tests_can_run() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let has_useradd = Command::new("sh")
        .args(["-c", "command -v useradd && command -v userdel"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nix::unistd::geteuid().is_root() && has_useradd {
        return true;
    }
    assert!(
        !ci,
        "CI=true but the ownership test needs root, useradd and userdel"
    );
    eprintln!("SKIPPED: the ownership test needs root, useradd and userdel (it runs under CI=true)");
    false
}

#[test]
fn root_saving_another_users_file_keeps_its_owner() {
    if !root_tests_can_run() {
        return;
    }
    let user = TempUser::create("cfgown");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "concurrent = 1\n").unwrap();
    std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();

    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.remove_runners(|_| true);
    doc.save().unwrap();

    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));
    assert_eq!(meta.mode() & 0o777, 0o600);
}
