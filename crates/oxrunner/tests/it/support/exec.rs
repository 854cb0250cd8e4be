//! Helpers for the `oxrunner exec` tests: a throw-away git repository and the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Repo {
    pub dir: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?} failed");
}

impl Repo {
    /// A repository with one commit holding `.gitlab-ci.yml` = `ci` and the given files.
    pub fn new(ci: &str, files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join(".gitlab-ci.yml"), ci).unwrap();
        for (name, body) in files {
            let f = p.join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, body).unwrap();
        }
        git(p, &["init", "-q", "-b", "main"]);
        git(p, &["config", "user.email", "t@example.com"]);
        git(p, &["config", "user.name", "t"]);
        git(p, &["add", "-A"]);
        git(p, &["commit", "-q", "-m", "init"]);
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A directory outside the repository for marker files jobs write.
    pub fn markers(&self) -> PathBuf {
        let m = self.dir.path().with_extension("markers");
        std::fs::create_dir_all(&m).unwrap();
        m
    }

    pub fn exec(&self, args: &[&str]) -> Run {
        self.exec_env(args, &[])
    }

    pub fn exec_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let markers = self.markers();
        let out = Command::new(env!("CARGO_BIN_EXE_oxrunner"))
            .arg("exec")
            .args(["--concurrency", "4"])
            .arg(format!("--variable=MARKERS={}", markers.display()))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("OXRUNNER_EXEC_COMMITTED_ONLY")
            .env_remove("OXRUNNER_EXEC_WRITE_BACK")
            .env_remove("OXRUNNER_EXEC_NO_DELAY")
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        Run { out }
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path().with_extension("markers"));
    }
}

pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    /// The summary line of `job`.
    pub fn summary(&self, job: &str) -> String {
        let text = self.stdout();
        let table = text.rsplit("\nJOB ").next().unwrap_or("").to_string();
        table
            .lines()
            .find(|l| l.starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("no summary row for {job} in:\n{text}\n{}", self.stderr()))
            .to_string()
    }
    /// Whether `job` printed a line `text` (the prefix pads job names to a common width).
    pub fn printed(&self, job: &str, text: &str) -> bool {
        self.stdout().lines().any(|l| {
            l.strip_prefix(job)
                .and_then(|r| r.trim_start().strip_prefix("| "))
                .is_some_and(|r| r == text)
        })
    }

    pub fn dump(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}
