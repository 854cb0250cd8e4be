//! Issue 11, items 5, 8, 10 and 11: the daemon and the CLI facing bad input, closed pipes and misleading logs.
//! Each test runs the real `oxrunner` binary against its own fake GitLab on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{
    Daemon, Sandbox, bin, fake, finished, global_toml, quit_ok, shell_runner_toml, wait_file_lines,
    wait_polling,
};
use fake_gitlab::{FakeGitlab, JobSpec};
use nix::sys::signal::Signal;

const FINISH: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

fn start(fake: &FakeGitlab, sb: &Sandbox, concurrent: u32) -> Daemon {
    let token = fake.create_runner_token("robust");
    let text =
        global_toml(concurrent, "") + &shell_runner_toml("robust", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

/// Waits until the daemon log contains `needle`.
async fn wait_log(d: &Daemon, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let log = d.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log never said {needle:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Item 5 ------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_payload_fails_the_job_and_the_runner_keeps_working() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1);
    // GitLab sends `variables` as an array; a string is what a broken or foreign API would hand out.
    let bad = fake.enqueue_job(
        JobSpec::new("bad", &["echo never"]).payload_field("variables", serde_json::json!("not-an-array")),
    );
    let job = finished(&fake, bad, FINISH, &d).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.failure_reason.as_deref(), Some("runner_system_failure"));
    let trace = job.trace_text();
    assert!(
        trace.contains("ERROR: Job failed (system failure): the job payload from GitLab could not be read: at `variables`"),
        "trace:\n{trace}"
    );
    assert_eq!(trace.lines().count(), 1, "one line, nothing run:\n{trace}");
    assert_eq!(
        job.checksum_ok,
        Some(true),
        "the final update carries the trace checksum"
    );
    assert!(
        !d.log().contains(&job.token),
        "the job token reached the log:\n{}",
        d.log()
    );

    let good = fake.enqueue_job(JobSpec::new("good", &["echo fine"]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, good, FINISH, &d).await;
    assert_eq!(job.status, "success", "trace:\n{}", job.trace_text());
    quit_ok(d).await;
}

// Item 8 ------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_out_of_range_concurrent_is_refused_at_start_with_its_location() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("robust");
    let text = "concurrent = 9223372036854775807\ncheck_interval = 1\n".to_string()
        + &shell_runner_toml("robust", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let mut d = sb.spawn(&["run", "-c", &cfg]);
    let status = d
        .wait(EXIT)
        .await
        .expect("oxrunner kept running on a config it cannot use");
    let log = d.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains(&format!("{cfg}:1:14: invalid value for `concurrent`")),
        "no located error:\n{log}"
    );
    assert!(log.contains("hint: set `concurrent`"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_an_out_of_range_number_keeps_the_running_config_and_job() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1);
    let started = sb.path("started");
    let release = sb.path("release");
    let script = format!(
        "echo up > {s}; while [ ! -e {r} ]; do sleep 0.1; done; echo released",
        s = started.display(),
        r = release.display()
    );
    let id = fake.enqueue_job(JobSpec::new("long", &[script.as_str()]).variable("GIT_STRATEGY", "none"));
    wait_file_lines(&started, 1, FINISH).await;

    let good = std::fs::read_to_string(sb.config()).unwrap();
    let broken = good.replace("concurrent = 1\n", "concurrent = 9223372036854775807\n");
    assert_ne!(good, broken);
    std::fs::write(sb.config(), broken).unwrap();
    d.signal(Signal::SIGHUP);
    let log = wait_log(&d, "configuration not reloaded, keeping the previous one").await;
    assert!(log.contains("invalid value for `concurrent`"), "{log}");

    std::fs::write(&release, "").unwrap();
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "trace:\n{}", job.trace_text());
    assert!(job.trace_text().contains("released"));
    assert!(!d.log().contains("panicked"), "{}", d.log());
    quit_ok(d).await;
}

// Item 10 -----------------------------------------------------------------------------------------------------

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, with no race.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

fn run_with_closed(dir: &Path, args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(closed_pipe());
    if close_stderr {
        cmd.stderr(closed_pipe());
    } else {
        cmd.stderr(Stdio::piped());
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_exits_quietly_when_its_reader_goes_away() {
    let sb = Sandbox::new();
    let dir = sb.dir.path();
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "build:\n  script: echo build\ntest:\n  script: echo test\n",
    )
    .unwrap();
    std::fs::write(sb.config(), "concurrent = 1\n").unwrap();
    let cfg = sb.config_str();
    let cases: [&[&str]; 4] = [
        &["exec", "--list", "--json"],
        &["exec", "--list"],
        &["exec", "--print-config"],
        &["--version"],
    ];
    for args in cases {
        let (code, stderr) = run_with_closed(dir, args, false);
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} should be quiet:\n{stderr}");
    }
    // `list` writes only to stderr; with stderr closed too it must still end normally (a panic exits 101).
    let (code, _) = run_with_closed(dir, &["list", "-c", &cfg], true);
    assert_eq!(code, Some(0));
    let (code, _) = run_with_closed(dir, &["exec", "--list", "--json"], true);
    assert_eq!(code, Some(141));
}

// Item 11 -----------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_logged_as_failed_with_its_final_update_accepted() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1);
    let id = fake.enqueue_job(JobSpec::new("fails", &["exit 3"]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "failed");
    let log = wait_log(&d, "Job failed; GitLab accepted the final update").await;
    assert!(!log.contains("final update skipped"), "{log}");
    assert!(!log.contains("aborted"), "{log}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_below_the_polling_runners_is_warned_about() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let mut text = global_toml(1, "");
    for name in ["first", "second"] {
        let token = fake.create_runner_token(name);
        text += &shell_runner_toml(name, &fake.url(), &token, sb.dir.path(), "");
    }
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    wait_polling(&fake, &d, FINISH).await;
    let log = d.log();
    assert!(
        log.contains("CONFIGURATION: Long polling issues detected."),
        "{log}"
    );
    assert!(
        log.contains("`concurrent` (1) is lower than the number of runners that ask GitLab for jobs (2)"),
        "{log}"
    );
    assert!(log.contains("hint: set `concurrent` to at least 3"), "{log}");
    quit_ok(d).await;
}
