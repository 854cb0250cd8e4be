//! Helpers shared by the end-to-end tests: run the real `oxrunner` binary as a child process against an
//! in-process `fake_gitlab::FakeGitlab` on 127.0.0.1.
//!
//! Every child gets a cleared environment (only PATH, a private HOME and a locale), so a developer's own
//! `CI_SERVER_URL`, `CONFIG_FILE` or `~/.gitlab-runner` can never leak into a test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod azurite;
pub mod docker;
pub mod docker_e2e;
pub mod exec;
pub mod garage;
pub mod hooks;
pub mod vault;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use fake_gitlab::{CacheSpec, FakeGitlab, FakeOptions, JobRecord, JobSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxrunner")
}

/// A private HOME with a config directory inside.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-e2e-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        Sandbox { dir }
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    /// `<sandbox>/etc/config.toml`; its directory doubles as the config dir (certs/, .runner_system_id).
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("etc").join("config.toml")
    }
    pub fn config_str(&self) -> String {
        self.config().to_string_lossy().into_owned()
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn read_config(&self) -> String {
        std::fs::read_to_string(self.config()).unwrap()
    }
    pub fn config_toml(&self) -> toml::Table {
        self.read_config().parse::<toml::Table>().unwrap()
    }

    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.home())
            .env("LANG", "C.UTF-8")
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `oxrunner args...` to completion (at most 60 s) with `env` set and `stdin` fed.
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = self.command();
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("oxrunner did not finish within 60 s")
            .unwrap();
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts a long-running `oxrunner` (run / run-single) with output going to a log file.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        self.spawn_with_env(args, &[])
    }

    /// [`Sandbox::spawn`] with extra environment variables (set after the sandbox's own, so they win).
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = self.path(&format!("oxrunner-{}.log", args.first().copied().unwrap_or("x")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().unwrap();
        Daemon { child, log }
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &Output {
        assert_eq!(self.code, Some(0), "oxrunner failed:\n{}", self.all());
        self
    }
    #[track_caller]
    pub fn assert_failed(&self) -> &Output {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "oxrunner should have failed:\n{}",
            self.all()
        );
        self
    }
}

/// A running `oxrunner run` / `run-single`.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap())
    }
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|r| r.unwrap())
    }
    /// SIGQUIT, then the exit status (panics with the log when it does not exit within `timeout`).
    pub async fn quit(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGQUIT);
        match self.wait(timeout).await {
            Some(status) => status,
            None => panic!("oxrunner did not exit after SIGQUIT; log:\n{}", self.log()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        end_and_clean(&mut self.child, &self.log);
    }
}

/// Removes the trace spool a daemon that was killed (SIGKILL, or a test that ended first) left in the temporary
/// directory: a runner removes its own only when it exits normally. The path comes from the runner's log.
pub fn remove_left_spool(log: &str) {
    let Some(at) = log.find("oxrunner-spool-") else {
        return;
    };
    let name: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let dir = std::env::temp_dir().join(name);
    if dir.is_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Ends a daemon a test left running, then removes what a killed runner leaves behind.
fn end_and_clean(child: &mut tokio::process::Child, log: &Path) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.start_kill();
        for _ in 0..100 {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if matches!(child.try_wait(), Ok(Some(_))) {
        remove_left_spool(&std::fs::read_to_string(log).unwrap_or_default());
    }
}

pub async fn fake(long_poll_s: u64, trace_update_interval: u64) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        long_poll: Duration::from_secs(long_poll_s),
        trace_update_interval,
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

/// The global part of a daemon config.toml.
pub fn global_toml(concurrent: u32, extra: &str) -> String {
    format!("concurrent = {concurrent}\ncheck_interval = 1\nshutdown_timeout = 10\n{extra}\n")
}

/// One `[[runners]]` shell entry whose builds and caches live under `dir`.
pub fn shell_runner_toml(name: &str, url: &str, token: &str, dir: &Path, extra: &str) -> String {
    format!(
        "\n[[runners]]\n  name = \"{name}\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"shell\"\n  \
         builds_dir = \"{b}\"\n  cache_dir = \"{c}\"\n{extra}\n",
        b = dir.join("builds").display(),
        c = dir.join("cache").display(),
    )
}

/// Waits until the runner has asked for a job at least once (its signal handlers are installed by then).
pub async fn wait_polling(fake: &FakeGitlab, daemon: &Daemon, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !fake
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never asked for a job; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job is in `status` (e.g. `running`).
pub async fn wait_status(fake: &FakeGitlab, id: i64, status: &str, timeout: Duration) -> JobRecord {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = fake.job(id).expect("unknown job");
        if job.status == status {
            return job;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "job {id} never reached `{status}`: {job:?}\ntrace:\n{}",
                job.trace_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `path` exists and holds at least `lines` lines.
pub async fn wait_file_lines(path: &Path, lines: usize, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.lines().count() >= lines
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never got {lines} lines",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn finished(fake: &FakeGitlab, id: i64, timeout: Duration, daemon: &Daemon) -> JobRecord {
    match fake.wait_job_finished(id, timeout).await {
        Some(job) => job,
        None => panic!(
            "job {id} did not finish within {timeout:?}: {:?}\nrunner log:\n{}",
            fake.job(id),
            daemon.log()
        ),
    }
}

/// True while the process exists and is not a zombie (an orphan reparented to a PID 1 that does not reap
/// stays a zombie, which is not "running").
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Polls `alive` for a while: processes killed by the runner may take a moment to go.
pub async fn gone(pid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while alive(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// A directory with a couple of committed files, for `create_project`.
pub fn project_files(root: &Path) -> PathBuf {
    let dir = root.join("project-src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from the repository\n").unwrap();
    std::fs::write(dir.join("README.md"), "# e2e project\n").unwrap();
    dir
}

/// SIGQUITs the daemon and asserts a clean exit within 30 s, printing its log otherwise.
pub async fn quit_ok(mut d: Daemon) {
    let status = d.quit(Duration::from_secs(30)).await;
    assert!(status.success(), "runner exit {status:?}; log:\n{}", d.log());
}

/// The legacy registration token fake-gitlab accepts.
pub const REG: &str = "GR1348941fake-registration";

/// `register -n` of a shell runner called `name` against `url`, then `extra`.
pub fn register_args<'a>(cfg: &'a str, url: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "register",
        "-n",
        "-c",
        cfg,
        "--url",
        url,
        "--registration-token",
        REG,
        "--executor",
        "shell",
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    args
}

/// The cache tests' job: no sources (`GIT_STRATEGY=empty`), for the runner tagged `tag`, with one cache.
pub fn cache_job(name: &str, tag: &str, script: &[&str], cache: CacheSpec) -> JobSpec {
    JobSpec::new(name, script)
        .variable("GIT_STRATEGY", "empty")
        .tags(&[tag])
        .cache(cache)
}

/// The cache tests' `vendor/` cache under `key`, restored only.
pub fn pull_cache(key: &str) -> CacheSpec {
    CacheSpec {
        policy: "pull".into(),
        ..CacheSpec::new(key, &["vendor/"])
    }
}
