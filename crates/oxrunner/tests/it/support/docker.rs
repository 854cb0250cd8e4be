//! Helpers for the Docker executor acceptance tests: the real `oxrunner run` binary with `executor = "docker"`
//! against an in-process `fake_gitlab::FakeGitlab` on 127.0.0.1, and the real dockerd of this machine.
//!
//! Engine objects are inspected with the `docker` CLI, exactly as an operator would check for leftovers. Every
//! runner gets a fresh random token from its own fake, so its label `com.oxrunner.runner=<short token>` is unique
//! and parallel tests never see (or clean up) each other's objects.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobRecord};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The label every container, network and volume of a runner carries.
pub const LABEL_RUNNER: &str = "com.oxrunner.runner";
/// The image the jobs run in (built locally by `scripts/docker-images`, under the project's own name space so that
/// it never shadows a user's `busybox`; it has `/etc/oxrunner-image`).
pub const IMAGE: &str = "oxrunner-test/busybox:latest";
/// Generous bound for one docker job: the box has two cores shared with other builds.
pub const JOB_WAIT: Duration = Duration::from_secs(45);

static IMAGES: Mutex<bool> = Mutex::new(false);

/// True when a Docker engine answers. Outside CI a missing engine skips the test (printed reason); with
/// `CI=true` it fails, so the acceptance tests can never pass silently on a machine without Docker.
pub fn docker_available() -> bool {
    let answer = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    let problem = match answer {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run the docker CLI: {e}")),
    };
    match problem {
        None => {
            ensure_images();
            true
        }
        Some(why) => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "CI=true but no Docker engine answers (run scripts/ensure-docker first): {why}"
            );
            eprintln!("skipping: no Docker engine answers ({why}); run scripts/ensure-docker");
            false
        }
    }
}

/// Builds the local test images once per test process (no registry is reachable).
fn ensure_images() {
    let mut done = IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/docker-images");
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    *done = true;
}

/// Runs `docker args...` and returns its stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Engine objects carrying `com.oxrunner.runner=<short>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Objects {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Lists what the runner with short token `short` left on the engine.
pub fn objects(short: &str) -> Objects {
    let filter = format!("label={LABEL_RUNNER}={short}");
    Objects {
        containers: lines(&docker(&[
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.ID}} {{.Image}} {{.Status}}",
        ])),
        networks: lines(&docker(&["network", "ls", "-q", "--filter", &filter])),
        volumes: lines(&docker(&["volume", "ls", "-q", "--filter", &filter])),
    }
}

/// Waits until the runner's objects are all gone; returns what is left after `timeout`.
pub async fn wait_no_objects(short: &str, timeout: Duration) -> Objects {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = objects(short);
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the runner has at least one running container (the job is inside it).
pub async fn wait_running_container(short: &str, timeout: Duration) -> Vec<String> {
    let filter = format!("label={LABEL_RUNNER}={short}");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let running = lines(&docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "status=running",
        ]));
        if !running.is_empty() {
            return running;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running container labelled {filter} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Force-removes whatever the runner left, so a failing test does not leave garbage on the engine.
fn purge(short: &str) {
    let left = objects(short);
    let quiet = |args: &[&str]| {
        let _ = Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    for c in &left.containers {
        if let Some(id) = c.split_whitespace().next() {
            quiet(&["rm", "-f", "-v", id]);
        }
    }
    for n in &left.networks {
        quiet(&["network", "rm", n]);
    }
    for v in &left.volumes {
        quiet(&["volume", "rm", "-f", v]);
    }
}

/// A private directory holding the config, HOME, TMPDIR and the runner-side stores of one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-docker-e2e-")
            .tempdir()
            .unwrap();
        for sub in ["home", "etc", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn config(&self) -> PathBuf {
        self.path("etc/config.toml")
    }
    /// The runner-side cache store of docker runners: `cache/` beside config.toml.
    pub fn cache_dir(&self) -> PathBuf {
        self.path("etc/cache")
    }

    /// Starts `oxrunner args...` with a cleared environment, output to a log file in the sandbox.
    pub fn spawn(&self, args: &[&str], log_name: &str) -> Daemon {
        let log = self.path(log_name);
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxrunner"));
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .env("LANG", "C.UTF-8")
            .current_dir(self.dir.path())
            .args(args)
            // The runner must talk to the same engine the `docker` CLI of the checks talks to.
            .envs(
                ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"]
                    .into_iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true);
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }
}

/// A running `oxrunner run`.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> Option<Pid> {
        self.child
            .id()
            .map(|id| Pid::from_raw(i32::try_from(id).unwrap()))
    }
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            kill(pid, sig).unwrap();
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|r| r.unwrap())
    }
    /// SIGQUIT (graceful: finish running jobs), then waits; panics with the log when it hangs or fails.
    pub async fn quit(&mut self) {
        self.signal(Signal::SIGQUIT);
        match self.wait(Duration::from_secs(30)).await {
            Some(status) => assert!(status.success(), "runner exit {status:?}; log:\n{}", self.log()),
            None => panic!("oxrunner did not exit after SIGQUIT; log:\n{}", self.log()),
        }
    }
}

/// `[runners.docker]` settings of one test runner.
#[derive(Clone, Debug)]
pub struct DockerOpts {
    pub concurrent: u32,
    /// The `pull_policy` value as written in TOML (a string or a list).
    pub pull_policy: String,
    /// Lines appended to `[runners.docker]` (e.g. `allowed_images = ["oxrunner-test/*"]`).
    pub docker_extra: String,
}

impl Default for DockerOpts {
    fn default() -> Self {
        DockerOpts {
            concurrent: 1,
            pull_policy: "[\"if-not-present\"]".into(),
            docker_extra: String::new(),
        }
    }
}

/// One test: the fake GitLab, a docker runner registered on it, its sandbox and the daemon.
pub struct Env {
    pub fake: FakeGitlab,
    pub sb: Sandbox,
    pub token: String,
    /// The label value of the runner's engine objects.
    pub short: String,
    pub daemon: Option<Daemon>,
}

impl Env {
    /// Starts a fake (long poll 1 s, trace updates every second), writes a docker runner config and starts
    /// `oxrunner run` on it.
    pub async fn start(opts: DockerOpts) -> Env {
        let fake = FakeGitlab::start(FakeOptions {
            long_poll: Duration::from_secs(1),
            trace_update_interval: 1,
            ..FakeOptions::default()
        })
        .await
        .unwrap();
        let token = fake.create_runner_token("docker-e2e");
        let short = oxrunner_config::short_token(&token);
        let sb = Sandbox::new();
        std::fs::write(sb.config(), config_toml(&fake.url(), &token, &opts)).unwrap();
        let mut env = Env {
            fake,
            sb,
            token,
            short,
            daemon: None,
        };
        env.start_daemon("oxrunner-run.log");
        env
    }

    /// (Re)starts `oxrunner run` on the env's config.
    pub fn start_daemon(&mut self, log_name: &str) {
        let cfg = self.sb.config().to_string_lossy().into_owned();
        self.daemon = Some(self.sb.spawn(&["run", "-c", &cfg], log_name));
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the daemon runs")
    }

    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// Waits for the job to finish; panics with its trace and the runner's log when it does not.
    pub async fn finished(&self, id: i64) -> JobRecord {
        match self.fake.wait_job_finished(id, JOB_WAIT).await {
            Some(job) => job,
            None => panic!(
                "job {id} did not finish within {JOB_WAIT:?}: {:?}\ntrace:\n{}\nrunner log:\n{}",
                self.fake.job(id),
                self.fake.job(id).map(|j| j.trace_text()).unwrap_or_default(),
                self.log()
            ),
        }
    }

    /// Waits for success; panics with the trace otherwise.
    pub async fn succeeded(&self, id: i64) -> JobRecord {
        let job = self.finished(id).await;
        assert_eq!(
            job.status,
            "success",
            "job {id}: {job:?}\ntrace:\n{}\nrunner log:\n{}",
            job.trace_text(),
            self.log()
        );
        job
    }

    /// Waits until the job's trace (as sent to GitLab) contains `marker`.
    pub async fn wait_trace(&self, id: i64, marker: &str) {
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        loop {
            let job = self.fake.job(id).expect("known job");
            if job.trace_text().contains(marker) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline && !job.is_finished(),
                "job {id} never printed {marker:?}: {job:?}\ntrace:\n{}\nrunner log:\n{}",
                job.trace_text(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.as_mut()
            && let Some(pid) = d.pid()
        {
            // The runner gets a chance to abort its jobs and remove their objects; SIGKILL only if it hangs.
            let _ = kill(pid, Signal::SIGTERM);
            for _ in 0..100 {
                if matches!(d.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = d.child.start_kill();
        }
        purge(&self.short);
    }
}

/// A daemon config.toml with one docker runner, as gitlab-runner writes it. Its runner-side state (checkouts,
/// caches) lives beside the config, in the sandbox.
pub fn config_toml(url: &str, token: &str, opts: &DockerOpts) -> String {
    format!(
        "concurrent = {concurrent}\ncheck_interval = 1\nshutdown_timeout = 10\n\n\
         [[runners]]\n  name = \"docker-e2e\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  \
         [runners.docker]\n    image = \"{IMAGE}\"\n    pull_policy = {policy}\n{extra}\n",
        concurrent = opts.concurrent,
        policy = opts.pull_policy,
        extra = opts.docker_extra,
    )
}

/// A directory with a couple of files, for `FakeGitlab::create_project`.
pub fn project_files(root: &Path) -> PathBuf {
    let dir = root.join("project-src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from the repository\n").unwrap();
    std::fs::write(dir.join("README.md"), "# docker e2e project\n").unwrap();
    dir
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Sorted entry names of a zip archive held in memory, via `zipinfo -1`.
pub fn zip_entries(dir: &Path, bytes: &[u8]) -> Vec<String> {
    let file = zip_file(dir, bytes);
    let path = file.path();
    let test = Command::new("unzip").args(["-tq"]).arg(path).output().unwrap();
    assert!(test.status.success(), "unzip -t rejected the archive");
    let out = Command::new("zipinfo").arg("-1").arg(path).output().unwrap();
    assert!(out.status.success(), "zipinfo failed");
    let mut names = lines(&String::from_utf8_lossy(&out.stdout));
    names.sort();
    names
}

/// Reads one entry of a zip archive held in memory, via `unzip -p`.
pub fn zip_read(dir: &Path, bytes: &[u8], entry: &str) -> String {
    let file = zip_file(dir, bytes);
    let path = file.path();
    let out = Command::new("unzip")
        .arg("-p")
        .arg(path)
        .arg(entry)
        .output()
        .unwrap();
    assert!(out.status.success(), "unzip -p {entry} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn zip_file(dir: &Path, bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".zip").tempfile_in(dir).unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}
