//! The daemon in-process, with its signals sent as values and a paused clock, against fake-gitlab on 127.0.0.1.
//!
//! Everything (test, daemon, fake-gitlab) runs on one current-thread runtime whose clock starts paused. Tokio moves
//! a paused clock forward by itself whenever the runtime has nothing to do; loopback sockets between the daemon and
//! the fake are ready at once, so requests never make time pass. Real processes (a job's bash) do: while a test
//! waits for one it holds a [`Freeze`], and time then moves only when the test says so. Waiting for the real world
//! is bounded in real time ([`until`]), as a failure guard only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use common::{Sandbox, alive, global_toml, shell_runner_toml};
use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};
use oxrunner::daemon::signals::{self, Signal};
use oxrunner::daemon::{self, DaemonOptions};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Upper bound, in real time, for anything a test waits for; reaching it is a failure.
const GUARD: Duration = Duration::from_secs(60);

/// Keeps the paused clock from moving by itself: tokio does not advance it while a blocking task runs.
pub(crate) struct Freeze(Option<std::sync::mpsc::Sender<()>>);

pub(crate) fn freeze() -> Freeze {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        // Returns when the sender is dropped.
        let _ = rx.recv();
    });
    Freeze(Some(tx))
}

impl Drop for Freeze {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Sleeps in real time without letting the paused clock move.
async fn real_sleep(d: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .unwrap();
}

/// Waits (in real time, at most [`GUARD`]) until `cond` holds, keeping the clock where it is.
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + GUARD;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        real_sleep(Duration::from_millis(10)).await;
    }
}

/// [`until`] for waits on the runner's own clean-up after an abort: the daemon polls the job's process group on
/// its clock (SIGTERM, then SIGKILL after a grace period), so a frozen clock would stall it whenever a process
/// takes a moment to die. The clock moves with real time here, which keeps every timeout as far away as it is.
pub(crate) async fn until_ticking(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + GUARD;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        real_sleep(Duration::from_millis(10)).await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
}

/// [`until`] for a running clock: polls on the paused clock, so the daemon's timers fire meanwhile.
pub(crate) async fn until_clock_runs(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + GUARD;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True once the runner sent the job's final state (GitLab may still answer 202 and have it come back later).
pub(crate) fn reported(fake: &FakeGitlab, id: i64) -> bool {
    fake.job(id).unwrap().updates.iter().any(|u| {
        u.get("state")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s != "running")
    })
}

/// Lets every task that is ready run, without real time or the clock moving.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

async fn fake() -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        long_poll: Duration::ZERO,
        trace_update_interval: 1,
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

/// A daemon running as a task of the test's runtime.
pub(crate) struct InProcess {
    task: JoinHandle<anyhow::Result<ExitCode>>,
    signals: UnboundedSender<Signal>,
}

impl InProcess {
    pub(crate) fn start(config_path: PathBuf) -> InProcess {
        let (signals, rx) = signals::channel();
        let opts = DaemonOptions {
            config_path,
            user: None,
            listen_address: None,
            single: None,
        };
        InProcess {
            task: tokio::spawn(daemon::run(opts, rx)),
            signals,
        }
    }

    pub(crate) fn send(&self, sig: Signal) {
        self.signals.send(sig).unwrap();
    }

    /// The daemon's exit code, waiting for it on a running clock.
    pub(crate) async fn exit(self) -> ExitCode {
        until_clock_runs("the daemon to exit", || self.task.is_finished()).await;
        self.task.await.unwrap().unwrap()
    }

    /// The daemon's exit code, with the clock frozen.
    async fn exit_frozen(self) -> ExitCode {
        until("the daemon to exit", || self.task.is_finished()).await;
        self.task.await.unwrap().unwrap()
    }
}

/// A config with one shell runner (a new runner token of the fake) under the sandbox.
pub(crate) fn write_config(
    fake: &FakeGitlab,
    sb: &Sandbox,
    concurrent: u32,
    global: &str,
    runner: &str,
) -> String {
    let token = fake.create_runner_token("inproc");
    let text = global_toml(concurrent, global)
        + &shell_runner_toml("inproc", &fake.url(), &token, sb.dir.path(), runner);
    std::fs::write(sb.config(), text).unwrap();
    token
}

/// A job whose script says it started, then blocks until `gate` exists.
pub(crate) fn gated_job(sb: &Sandbox, name: &str) -> (JobSpec, PathBuf, PathBuf) {
    let started = sb.path(&format!("{name}.started"));
    let gate = sb.path(&format!("{name}.gate"));
    let script = [
        format!("touch {}", started.display()),
        format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display()),
        "echo finished-normally".to_string(),
    ];
    let lines: Vec<&str> = script.iter().map(String::as_str).collect();
    let spec = JobSpec::new(name, &lines).variable("GIT_STRATEGY", "none");
    (spec, started, gate)
}

/// A job that records its shell's and a background sleeper's pids in `pid_file`, then blocks for ten minutes.
fn blocking_job(pid_file: &Path) -> JobSpec {
    let f = pid_file.display();
    let script = [
        format!("echo $$ > {f}"),
        "sleep 600 &".to_string(),
        format!("echo $! >> {f}"),
        "sleep 600".to_string(),
    ];
    let lines: Vec<&str> = script.iter().map(String::as_str).collect();
    JobSpec::new("blocking", &lines).variable("GIT_STRATEGY", "none")
}

async fn wait_pids(pid_file: &Path) -> Vec<i32> {
    until("the job's pid file", || {
        std::fs::read_to_string(pid_file).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await;
    std::fs::read_to_string(pid_file)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

async fn assert_gone(pids: &[i32]) {
    for &pid in pids {
        until_ticking(&format!("process {pid} of the aborted job to end"), || {
            !alive(pid)
        })
        .await;
    }
}

fn status(fake: &FakeGitlab, id: i64) -> String {
    fake.job(id).unwrap().status
}

/// SIGQUIT: no further job is asked for, the running one finishes, then the daemon exits 0.
#[tokio::test(start_paused = true)]
async fn quit_stops_asking_and_waits_for_the_running_job() {
    let frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    let d = InProcess::start(sb.config());
    let (spec, started, gate) = gated_job(&sb, "graceful");
    let first = fake.enqueue_job(spec);
    until("the first job to start", || started.exists()).await;
    // With concurrent = 1 the request loop now waits for capacity; a second job stays queued behind the first.
    let second = fake.enqueue_job(JobSpec::new("queued", &["echo never"]).variable("GIT_STRATEGY", "none"));
    d.send(Signal::Quit);
    settle().await;
    assert!(!d.task.is_finished(), "SIGQUIT must wait for the running job");
    std::fs::write(&gate, "").unwrap();
    until("the job's final update", || reported(&fake, first)).await;
    // Nothing real runs any more; the clock may move (GitLab's 202 makes the runner come back after a while).
    drop(frozen);
    let code = d.exit().await;
    assert_eq!(code, ExitCode::SUCCESS);
    let job = fake.job(first).unwrap();
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert!(job.trace_text().contains("finished-normally"));
    assert_eq!(status(&fake, second), "pending", "a job was taken after SIGQUIT");
}

/// SIGTERM: the running job is killed and reported as a system failure, and the daemon exits 0 because that
/// happened within `shutdown_timeout`.
#[tokio::test(start_paused = true)]
async fn terminate_aborts_the_running_job_and_reports_it() {
    let frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    let d = InProcess::start(sb.config());
    let pid_file = sb.path("term.pids");
    let id = fake.enqueue_job(blocking_job(&pid_file));
    let pids = wait_pids(&pid_file).await;
    d.send(Signal::Terminate);
    assert_gone(&pids).await;
    until_ticking("the job's final update", || reported(&fake, id)).await;
    drop(frozen);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.failure_reason.as_deref(), Some("runner_system_failure"));
    assert_gone(&pids).await;
}

/// SIGQUIT, then SIGINT: the graceful wait turns into an abort.
#[tokio::test(start_paused = true)]
async fn interrupt_after_quit_aborts_the_job() {
    let frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    let d = InProcess::start(sb.config());
    let pid_file = sb.path("force.pids");
    let id = fake.enqueue_job(blocking_job(&pid_file));
    let pids = wait_pids(&pid_file).await;
    d.send(Signal::Quit);
    settle().await;
    assert!(!d.task.is_finished(), "SIGQUIT must wait for the running job");
    d.send(Signal::Interrupt);
    assert_gone(&pids).await;
    until_ticking("the job's final update", || reported(&fake, id)).await;
    drop(frozen);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
    assert_eq!(status(&fake, id), "failed");
}

/// While the aborted job cannot report (GitLab hangs), a second SIGTERM exits at once, with a failure code.
#[tokio::test(start_paused = true)]
async fn second_terminate_exits_at_once() {
    let _frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    let d = InProcess::start(sb.config());
    let pid_file = sb.path("second.pids");
    fake.enqueue_job(blocking_job(&pid_file));
    let pids = wait_pids(&pid_file).await;
    // Every API request now hangs for an hour of (frozen) time: the abort can never be reported.
    fake.faults().delay(Duration::from_secs(3600));
    d.send(Signal::Terminate);
    settle().await;
    assert!(!d.task.is_finished(), "the abort cannot have been reported");
    d.send(Signal::Terminate);
    assert_eq!(d.exit_frozen().await, ExitCode::FAILURE);
    assert_gone(&pids).await;
}

/// A job that cannot be reported holds the shutdown only for `shutdown_timeout`, then the daemon exits non-zero.
#[tokio::test(start_paused = true)]
async fn shutdown_timeout_bounds_the_abort() {
    let frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    let d = InProcess::start(sb.config());
    let pid_file = sb.path("timeout.pids");
    fake.enqueue_job(blocking_job(&pid_file));
    let pids = wait_pids(&pid_file).await;
    fake.faults().delay(Duration::from_secs(3600));
    let sent = Instant::now();
    d.send(Signal::Terminate);
    // Time may run now: only the daemon's shutdown_timeout (10 s, global_toml) and the fake's hour are pending.
    drop(frozen);
    assert_eq!(d.exit().await, ExitCode::FAILURE);
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(3600),
        "exited {took:?} after SIGTERM, shutdown_timeout is 10 s"
    );
    assert_gone(&pids).await;
}

/// SIGHUP reloads config.toml: a runner that was replaced stops asking, the new one takes the next job, and the job
/// that was running on the old entry is untouched.
#[tokio::test(start_paused = true)]
async fn reload_replaces_the_runner_and_leaves_the_running_job_alone() {
    let frozen = freeze();
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 2, "", "");
    let d = InProcess::start(sb.config());
    let (spec, started, gate) = gated_job(&sb, "steady");
    let first = fake.enqueue_job(spec);
    until("the job to start", || started.exists()).await;

    let new_token = write_config(&fake, &sb, 2, "", "");
    let new_id = fake
        .runners()
        .into_iter()
        .find(|r| r.token == new_token)
        .unwrap()
        .id;
    // The clock is frozen, so only the signal (not the 3 s file check) can make the daemon see the edit.
    d.send(Signal::Reload);
    let second = fake.enqueue_job(JobSpec::new("after", &["echo next"]).variable("GIT_STRATEGY", "none"));
    until("the reloaded runner to finish the second job", || {
        reported(&fake, second)
    })
    .await;
    assert_eq!(
        fake.job(second).unwrap().runner_id,
        Some(new_id),
        "the second job must go to the new runner entry"
    );
    assert_eq!(
        status(&fake, first),
        "running",
        "the reload touched the running job"
    );

    std::fs::write(&gate, "").unwrap();
    until("the first job's final update", || reported(&fake, first)).await;
    drop(frozen);
    until_clock_runs("both jobs to finish", || {
        fake.job(first).unwrap().is_finished() && fake.job(second).unwrap().is_finished()
    })
    .await;
    for id in [first, second] {
        let job = fake.job(id).unwrap();
        assert_eq!(job.status, "success", "{}", job.trace_text());
    }
    assert!(
        fake.job(first)
            .unwrap()
            .trace_text()
            .contains("finished-normally")
    );
    d.send(Signal::Quit);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
}

/// Virtual times (relative to the first) at which the fake saw the first `n` job requests, sampled every 100 ms of
/// virtual time; the sampling timer also keeps the clock from jumping further than that at once.
async fn request_times(fake: &FakeGitlab, n: usize) -> Vec<Duration> {
    let count = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
            .count()
    };
    let start = Instant::now();
    let mut first = None;
    let mut seen = 0;
    let mut times = Vec::new();
    while times.len() < n {
        let now = count();
        while seen < now && times.len() < n {
            let t = *first.get_or_insert(Instant::now());
            times.push(Instant::now() - t);
            seen += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "only {times:?} requests within an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times
}

#[track_caller]
fn assert_times(got: &[Duration], want_s: &[u64]) {
    let ok = got.len() == want_s.len()
        && got
            .iter()
            .zip(want_s)
            .all(|(g, w)| g.abs_diff(Duration::from_secs(*w)) <= Duration::from_millis(300));
    assert!(ok, "requests at {got:?}, expected at {want_s:?} s");
}

/// A rejected token: a failed request is retried after `check_interval`; after `unhealthy_requests_limit`
/// failures in a row the runner pauses for `unhealthy_interval`, then tries once more.
#[tokio::test(start_paused = true)]
async fn failed_requests_back_off_and_pause_the_unhealthy_runner() {
    let fake = fake().await;
    let sb = Sandbox::new();
    let text = "concurrent = 1\ncheck_interval = 10\nshutdown_timeout = 10\n".to_string()
        + &shell_runner_toml(
            "rejected",
            &fake.url(),
            "glrt-this-token-is-unknown",
            sb.dir.path(),
            "  unhealthy_requests_limit = 2\n  unhealthy_interval = \"60s\"\n",
        );
    std::fs::write(sb.config(), text).unwrap();
    let d = InProcess::start(sb.config());
    // 0: fail (1/2), 10: fail (2/2), 20: pause 60 s, 80: one more try fails, 90: pause, 150: try again.
    let times = request_times(&fake, 4).await;
    assert_times(&times, &[0, 10, 80, 150]);
    d.send(Signal::Quit);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
}

/// With no job waiting (and no long polling), the runner asks every `check_interval`.
#[tokio::test(start_paused = true)]
async fn an_idle_runner_asks_every_check_interval() {
    let fake = fake().await;
    let sb = Sandbox::new();
    write_config(&fake, &sb, 1, "", "");
    // global_toml says check_interval = 1; make it longer than the config check (3 s) to tell them apart.
    let text = sb
        .read_config()
        .replace("check_interval = 1", "check_interval = 7");
    std::fs::write(sb.config(), text).unwrap();
    let d = InProcess::start(sb.config());
    let times = request_times(&fake, 5).await;
    // The first answer carries a new queue state, so the second request follows at once.
    assert_times(&times, &[0, 0, 7, 14, 21]);
    d.send(Signal::Quit);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A token obtained an hour ago that expires in three hours is reset at 75% of its lifetime (two hours from now),
/// config.toml gets the new token, and the runner goes on taking jobs with it.
#[tokio::test(start_paused = true)]
async fn the_token_is_rotated_at_three_quarters_of_its_lifetime() {
    let fake = fake().await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("rotate");
    let now = time::OffsetDateTime::now_utc();
    let extra = format!(
        "  token_obtained_at = {}\n  token_expires_at = {}\n",
        rfc3339(now - time::Duration::hours(1)),
        rfc3339(now + time::Duration::hours(3)),
    );
    // A long check_interval keeps the two virtual hours cheap in requests.
    let text = "concurrent = 1\ncheck_interval = 600\nshutdown_timeout = 10\n".to_string()
        + &shell_runner_toml("rotate", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let start = Instant::now();
    let d = InProcess::start(sb.config());
    let current = || {
        fake.runners()
            .into_iter()
            .find(|r| r.description == "rotate")
            .unwrap()
            .token
    };
    let deadline = std::time::Instant::now() + GUARD;
    while current() == token {
        assert!(
            std::time::Instant::now() < deadline,
            "the token was never rotated"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let at = start.elapsed();
    assert!(
        at.abs_diff(Duration::from_secs(2 * 3600)) <= Duration::from_secs(30),
        "rotated after {at:?}, expected two hours"
    );
    let new_token = current();
    until_clock_runs("config.toml to hold the new token", || {
        sb.read_config().contains(&new_token)
    })
    .await;
    assert!(!sb.read_config().contains(&token));
    // The old token is gone on the server, so a job can only be taken once the runner reloaded with the new one.
    // A long job timeout: the clock runs while bash does.
    let id = fake.enqueue_job(
        JobSpec::new("after-rotation", &["echo rotated-ok"])
            .variable("GIT_STRATEGY", "none")
            .timeout(30 * 24 * 3600),
    );
    until_clock_runs("the job after the rotation", || {
        fake.job(id).unwrap().is_finished()
    })
    .await;
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "success", "{}", job.trace_text());
    d.send(Signal::Quit);
    assert_eq!(d.exit().await, ExitCode::SUCCESS);
}
