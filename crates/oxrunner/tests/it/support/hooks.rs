//! Helpers for the artifact and cache integration tests: a fake GitLab in-process and the real `oxrunner run`
//! binary polling it with a shell runner in a temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobRecord};

/// Generous bound for one job: builds share two cores with other test suites.
pub const JOB_WAIT: Duration = Duration::from_secs(90);

pub struct Env {
    pub fake: FakeGitlab,
    pub dir: tempfile::TempDir,
    runner: Option<Child>,
}

pub fn fake_options() -> FakeOptions {
    FakeOptions {
        long_poll: Duration::from_secs(1),
        ..FakeOptions::default()
    }
}

impl Env {
    /// Starts the fake with `opts` and `oxrunner run` with `concurrent` jobs at most.
    pub async fn start(opts: FakeOptions, concurrent: u32) -> Env {
        Env::start_with(opts, concurrent, &[], "").await
    }

    /// [`Env::start`] with extra environment variables for the runner and `runner_extra` appended to its
    /// `[[runners]]` entry.
    pub async fn start_with(
        opts: FakeOptions,
        concurrent: u32,
        env: &[(&str, &str)],
        runner_extra: &str,
    ) -> Env {
        let fake = FakeGitlab::start(opts).await.unwrap();
        let token = fake.create_runner_token("hooks-test");
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-hooks-")
            .tempdir()
            .unwrap();
        let config = format!(
            "concurrent = {concurrent}\ncheck_interval = 1\n\n[[runners]]\n  name = \"hooks-test\"\n  url = \"{}\"\n  \
             token = \"{token}\"\n  executor = \"shell\"\n  builds_dir = \"{}\"\n  cache_dir = \"{}\"\n",
            fake.url(),
            dir.path().join("builds").display(),
            dir.path().join("cache").display(),
        ) + runner_extra;
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("runner.log")).unwrap();
        let runner = Command::new(env!("CARGO_BIN_EXE_oxrunner"))
            .args(["run", "-c"])
            .arg(&config_path)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Env {
            fake,
            dir,
            runner: Some(runner),
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn runner_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runner.log")).unwrap_or_default()
    }

    /// Waits for the job to finish; panics with the trace and the runner's log when it does not.
    pub async fn finished(&self, id: i64) -> JobRecord {
        match self.fake.wait_job_finished(id, JOB_WAIT).await {
            Some(job) => job,
            None => panic!(
                "job {id} did not finish; record: {:?}\ntrace:\n{}\nrunner log:\n{}",
                self.fake.job(id),
                self.fake.job(id).map(|j| j.trace_text()).unwrap_or_default(),
                self.runner_log()
            ),
        }
    }

    /// Waits for success and returns the record; panics with the trace otherwise.
    pub async fn succeeded(&self, id: i64) -> JobRecord {
        let job = self.finished(id).await;
        assert_eq!(job.status, "success", "job {id} trace:\n{}", job.trace_text());
        job
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.runner.take() {
            // SIGTERM lets the runner abort its jobs and report them; SIGKILL only if it hangs.
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..50 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            // Killed, the runner could not remove its trace spool.
            super::remove_left_spool(&self.runner_log());
        }
    }
}

/// Writes `bytes` to a file in `dir` and returns its path (for `unzip`/`gzip` to inspect).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs a command and returns (success, stdout).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sorted entry names of a zip archive, via `zipinfo -1`.
pub fn zip_entries(path: &Path) -> Vec<String> {
    let (ok, out) = run("zipinfo", &["-1", path.to_str().unwrap()]);
    assert!(ok, "zipinfo failed on {}", path.display());
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}
