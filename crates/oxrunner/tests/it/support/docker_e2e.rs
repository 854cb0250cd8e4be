//! Helpers for the end-to-end tests of the Docker executor: the real engine through the `docker` CLI, the local
//! stand-in images of `scripts/docker-images`, and the objects a runner leaves behind (found by label).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The label every container, network and volume of a runner carries (value: the runner's short token).
pub const LABEL_RUNNER: &str = "com.oxrunner.runner";

static IMAGES: Mutex<bool> = Mutex::new(false);

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// Output of a `docker` command.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `docker` CLI to completion.
pub fn docker(args: &[&str]) -> Out {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like [`docker`], panicking with its output when the command fails; returns trimmed stdout.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.ok, "docker {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout.trim().to_owned()
}

/// True when an engine answers and the test images exist (built on first use). Without an engine the test is
/// skipped with a printed reason, except under `CI=true`, where it must run and so fails.
pub fn engine_ready() -> bool {
    let probe = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let reason = match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run the docker CLI: {e}")),
    };
    if let Some(reason) = reason {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no Docker engine answers (scripts/ensure-docker starts one): {reason}");
        }
        eprintln!("skipping: no Docker engine answers ({reason}); scripts/ensure-docker starts one");
        return false;
    }
    build_images(&[]);
    true
}

/// Runs `scripts/docker-images` (idempotent) with `extra` arguments, once per test process for the plain call.
fn build_images(extra: &[&str]) {
    let mut done = IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    if *done && extra.is_empty() {
        return;
    }
    let script = scripts_dir().join("docker-images");
    let out = Command::new(&script).args(extra).output().unwrap();
    assert!(
        out.status.success(),
        "{} {extra:?} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    *done = true;
}

/// Builds `tag` from the tools image plus this test build's `oxrunner` binary (skipped when unchanged).
pub fn build_oxrunner_image(tag: &str) {
    build_images(&["--oxrunner", env!("CARGO_BIN_EXE_oxrunner"), "--tag", tag]);
}

/// The engine's own ID, as `docker info` prints it (`ID: ...`).
pub fn engine_id() -> String {
    docker_ok(&["info", "--format", "{{.ID}}"])
}

/// Every container, network and volume labelled with this runner's short token, as `kind id` lines.
pub fn leftovers(short_token: &str) -> Vec<String> {
    let filter = format!("label={LABEL_RUNNER}={short_token}");
    let mut found = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq", "--filter", &filter]),
        ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
    ] {
        let listed = docker_ok(&args);
        found.extend(
            listed
                .lines()
                .filter(|l| !l.is_empty())
                .map(|id| format!("{kind} {id}")),
        );
    }
    found
}

/// Waits until the runner's objects are gone; returns what is still there after `timeout`.
pub async fn wait_no_leftovers(short_token: &str, timeout: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = leftovers(short_token);
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes, when dropped, a container by name and every object labelled with a runner's short token, so a failed
/// test does not leave anything on the engine.
pub struct EngineGuard {
    pub containers: Vec<String>,
    pub short_tokens: Vec<String>,
}

impl EngineGuard {
    pub fn new() -> EngineGuard {
        EngineGuard {
            containers: Vec::new(),
            short_tokens: Vec::new(),
        }
    }
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
        for token in &self.short_tokens {
            for object in leftovers(token) {
                let (kind, id) = object.split_once(' ').unwrap_or(("container", &object));
                let _ = match kind {
                    "container" => docker(&["rm", "-f", "-v", id]),
                    _ => docker(&[kind, "rm", id]),
                };
            }
        }
    }
}

/// The lines a job printed by itself: `line` as a whole trace line, not inside an echoed `$ command`.
pub fn has_output_line(trace: &str, line: &str) -> bool {
    trace
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .map(|l| l.rsplit("\x1b[0K").next().unwrap_or(l).trim())
        .any(|l| l == line)
}

/// A unique, engine-safe name for objects the test itself creates.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}
