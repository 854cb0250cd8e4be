#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
//! Helpers shared by the integration test binaries.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
}

pub fn set_mode(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

pub fn set_mtime(root: &Path, rel: &str, secs: u64) {
    let f = File::options().write(true).open(root.join(rel)).unwrap();
    f.set_times(FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap();
}

pub fn strings(v: &[std::path::PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// Entry names as Info-ZIP's `unzip -Z1` lists them.
pub fn unzip_names(archive: &Path) -> Vec<String> {
    let out = Command::new("unzip").arg("-Z1").arg(archive).output().unwrap();
    assert!(
        out.status.success(),
        "unzip -Z1 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn unzip_test(archive: &Path) {
    let out = Command::new("unzip").arg("-t").arg(archive).output().unwrap();
    assert!(
        out.status.success(),
        "unzip -t failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} failed");
}

/// Deterministic, poorly compressible bytes (xorshift), so tests need no RNG crate.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// True when a root-only test can run here: root, and each of `tools` on PATH. Under `CI=true` a missing piece
/// fails the test instead (CI runs as root); elsewhere the test says it was skipped.
pub fn root_tests_can_run(what: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push((*tool).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(!ci, "CI=true but {what} cannot run: missing {missing:?}");
    eprintln!("SKIPPED: {what} needs {missing:?} (it runs under CI=true)");
    false
}

/// A throwaway user `oxrt-<tag>-<pid>` with its own group, removed on drop even when the test fails.
pub struct TempUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TempUser {
    pub fn create(tag: &str) -> TempUser {
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

    /// Gives `path` itself (not a link's target) to the user.
    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// Gives the tree under `path` to the user.
    pub fn chown_tree(&self, path: &Path) {
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
