//! Issue #3 acceptance: `oxrunner run` / `run-single` as a child process with the shell executor, against
//! fake-gitlab. Each test starts its own fake and runner, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::Path;
use std::time::Duration;

use common::{
    Daemon, Sandbox, alive, fake, finished, global_toml, gone, project_files, quit_ok, shell_runner_toml,
    wait_file_lines, wait_polling, wait_status,
};
use fake_gitlab::{FakeGitlab, FaultConfig, JobSpec};
use nix::sys::signal::Signal;

const FINISH: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

/// A config with one shell runner (token from the fake) and the daemon running on it.
fn start(fake: &FakeGitlab, sb: &Sandbox, concurrent: u32, global_extra: &str, runner_extra: &str) -> Daemon {
    let token = fake.create_runner_token("e2e");
    let text = global_toml(concurrent, global_extra)
        + &shell_runner_toml("e2e", &fake.url(), &token, sb.dir.path(), runner_extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

fn no_repo(spec: JobSpec) -> JobSpec {
    spec.variable("GIT_STRATEGY", "none")
}

/// The pids a job script wrote (`$$` and a background child's `$!`).
fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Script lines that record the shell's pid and a background sleeper's pid, then block.
fn blocking_script(pid_file: &Path) -> Vec<String> {
    let f = pid_file.display();
    vec![
        format!("echo $$ > {f}"),
        "sleep 600 &".to_string(),
        format!("echo $! >> {f}"),
        "sleep 600".to_string(),
    ]
}

/// Job requests the fake has answered so far.
fn job_requests(fake: &FakeGitlab) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

/// Polls `cond` until it holds; `timeout` is only a failure guard.
async fn wait_until(what: &str, timeout: Duration, d: &Daemon, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn job_clones_prints_variables_and_never_leaks_a_masked_value() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/e2e", &project_files(sb.dir.path()))
        .unwrap();
    let d = start(&fake, &sb, 1, "", "");
    let secret = "Sup3rS3cr3tV4lue-9876";
    let id = fake.enqueue_job(
        JobSpec::new(
            "vars",
            &[
                "echo \"GREETING=$GREETING\"",
                "cat hello.txt",
                "echo \"HEAD=$(git rev-parse HEAD)\"",
                "echo \"plain: $MY_SECRET\"",
                // One byte per write: a masker that only looks at single writes would let it through.
                "for i in $(seq 0 $((${#MY_SECRET}-1))); do printf '%s' \"${MY_SECRET:$i:1}\"; done; echo",
                // The two halves straddle trace PATCHes (update interval 1 s).
                "printf 'halves: %s' \"${MY_SECRET:0:8}\"; sleep 2.5; printf '%s\\n' \"${MY_SECRET:8}\"",
                "echo done-printing",
            ],
        )
        .project(project.id)
        .variable("GREETING", "hello-e2e")
        .masked_variable("MY_SECRET", secret),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{job:?}\n{trace}\n{}", d.log());
    assert!(trace.contains("GREETING=hello-e2e"), "{trace}");
    assert!(trace.contains("hello from the repository"), "{trace}");
    assert!(
        trace.contains(&format!("HEAD={}", project.sha)),
        "sha {} not in:\n{trace}",
        project.sha
    );
    assert!(trace.contains("done-printing"));
    assert!(!trace.contains(secret), "masked value in the trace:\n{trace}");
    // Neither half of the straddling print may survive on its own either.
    assert!(!trace.contains(&secret[..8]), "first half leaked:\n{trace}");
    assert!(!trace.contains(&secret[8..]), "second half leaked:\n{trace}");
    assert!(trace.matches("[MASKED]").count() >= 3, "{trace}");
    assert_eq!(job.checksum_ok, Some(true));
    assert!(!d.log().contains(secret));
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_script_reports_script_failure_exit_code_and_after_script() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(
        no_repo(JobSpec::new(
            "fails",
            &["echo about-to-fail", "exit 42", "echo not-reached"],
        ))
        .after_script(&["echo after-script-ran"]),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(job.exit_code, Some(42));
    assert!(trace.contains("about-to-fail"));
    assert!(!trace.contains("not-reached"));
    assert!(trace.contains("after-script-ran"), "{trace}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_sleep_runs_after_script_and_leaves_no_process() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let pid_file = sb.path("cancel.pids");
    let id = fake.enqueue_job(
        no_repo(JobSpec::new("cancel-me", &strs(&blocking_script(&pid_file))))
            .after_script(&["echo after-cancel-ran"]),
    );
    wait_file_lines(&pid_file, 2, FINISH).await;
    wait_status(&fake, id, "running", FINISH).await;
    fake.cancel_job(id);
    let job = match fake.wait_job_finished(id, Duration::from_secs(10)).await {
        Some(job) => job,
        None => panic!(
            "cancel did not end the job within 10 s: {:?}\n{}",
            fake.job(id),
            d.log()
        ),
    };
    assert_eq!(job.status, "canceled");
    assert!(
        job.trace_text().contains("after-cancel-ran"),
        "{}",
        job.trace_text()
    );
    for pid in pids(&pid_file) {
        assert!(
            gone(pid, Duration::from_secs(5)).await,
            "process {pid} of the canceled job survived"
        );
    }
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_timeout_is_reported_and_kills_the_job() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let pid_file = sb.path("timeout.pids");
    let id = fake.enqueue_job(no_repo(JobSpec::new("slow", &strs(&blocking_script(&pid_file)))).timeout(3));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "failed", "{}", job.trace_text());
    assert_eq!(job.failure_reason.as_deref(), Some("job_execution_timeout"));
    for pid in pids(&pid_file) {
        assert!(
            gone(pid, Duration::from_secs(5)).await,
            "process {pid} of the timed-out job survived"
        );
    }
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_is_complete_under_injected_faults() {
    let fake = fake(1, 1).await;
    fake.faults().set(FaultConfig {
        seed: Some(7),
        trace_5xx_probability: 0.3,
        trace_416_probability: 0.1,
        drop_connection_probability: 0.05,
        ..FaultConfig::default()
    });
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "  output_limit = 65536\n");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "many-lines",
        &["seq 1 50000 | sed 's/^/numbered line /'"],
    )));
    let job = finished(&fake, id, Duration::from_secs(120), &d).await;
    fake.faults().clear();
    let patches: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with(&format!("/api/v4/jobs/{id}/trace")))
        .map(|r| r.status)
        .collect();
    assert!(
        patches.iter().any(|s| *s >= 500) && patches.contains(&416),
        "no fault was injected, the test proves nothing: {patches:?}"
    );
    assert_eq!(job.status, "success", "{job:?}\n{}", d.log());
    let trace = job.trace_text();
    let numbers: Vec<u32> = trace
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("numbered line "))
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 50_000, "lines lost or duplicated");
    assert!(numbers.iter().copied().eq(1..=50_000), "lines out of order");
    assert_eq!(
        job.checksum_ok,
        Some(true),
        "the final checksum must match the stored trace"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_limits_parallel_jobs() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 3, "", "");
    let ids: Vec<i64> = (0..9)
        .map(|i| fake.enqueue_job(no_repo(JobSpec::new(&format!("sleep-{i}"), &["sleep 1"]))))
        .collect();
    for id in ids {
        let job = finished(&fake, id, FINISH, &d).await;
        assert_eq!(job.status, "success", "{}", job.trace_text());
    }
    let max = fake.max_concurrent_running();
    assert!(max <= 3, "{max} jobs ran at once with concurrent = 3");
    assert!(
        max >= 2,
        "jobs never overlapped (max {max}): concurrent is not used"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigquit_lets_the_running_job_finish() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let mut d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "graceful",
        &["sleep 3", "echo finished-normally"],
    )));
    wait_status(&fake, id, "running", FINISH).await;
    d.signal(Signal::SIGQUIT);
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert!(job.trace_text().contains("finished-normally"));
    let status = d.wait(EXIT).await.expect("runner did not exit after SIGQUIT");
    assert!(status.success(), "{status:?}\n{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_fails_the_running_job_and_kills_it() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    // shutdown_timeout = 10 comes from global_toml.
    let mut d = start(&fake, &sb, 1, "", "");
    let pid_file = sb.path("term.pids");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "terminated",
        &strs(&blocking_script(&pid_file)),
    )));
    wait_file_lines(&pid_file, 2, FINISH).await;
    d.signal(Signal::SIGTERM);
    let status = d
        .wait(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("runner still running 15 s after SIGTERM (shutdown_timeout 10)"));
    assert!(
        status.success(),
        "jobs were aborted within shutdown_timeout, so exit 0: {status:?}\n{}",
        d.log()
    );
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "failed", "{job:?}\n{}", d.log());
    // gitlab-runner reports a job aborted by the runner's shutdown as a system failure ("aborted: terminated");
    // a script_failure here would mean the abort was mistaken for the script failing.
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{job:?}"
    );
    for pid in pids(&pid_file) {
        assert!(
            gone(pid, Duration::from_secs(5)).await,
            "process {pid} survived SIGTERM of the runner"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_payload_does_not_crash_the_runner() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let mut d = start(&fake, &sb, 1, "", "");
    let payload: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/job-response.network-gitlab_test.json")).unwrap();
    let raw = fake.enqueue_job(JobSpec::raw(payload));
    let normal = fake.enqueue_job(no_repo(JobSpec::new("after-raw", &["echo still-alive"])));
    let raw_job = finished(&fake, raw, FINISH, &d).await;
    assert!(raw_job.is_finished(), "{raw_job:?}");
    let job = finished(&fake, normal, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert!(job.trace_text().contains("still-alive"));
    assert!(d.child.try_wait().unwrap().is_none(), "runner died:\n{}", d.log());
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_single_runs_one_job_and_exits() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("single");
    let url = fake.url();
    let builds = sb.path("builds").to_string_lossy().into_owned();
    let cache = sb.path("cache").to_string_lossy().into_owned();
    let cfg = sb.config_str();
    let id = fake.enqueue_job(no_repo(JobSpec::new("single", &["echo from-run-single"])));
    let second = fake.enqueue_job(no_repo(JobSpec::new("not-taken", &["echo second"])));
    let mut d = sb.spawn(&[
        "run-single",
        "-c",
        &cfg,
        "--url",
        &url,
        "--token",
        &token,
        "--executor",
        "shell",
        "--max-builds",
        "1",
        "--builds-dir",
        &builds,
        "--cache-dir",
        &cache,
    ]);
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert!(job.trace_text().contains("from-run-single"));
    let status = d
        .wait(EXIT)
        .await
        .unwrap_or_else(|| panic!("run-single did not exit:\n{}", d.log()));
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert_eq!(
        fake.job(second).unwrap().status,
        "pending",
        "--max-builds 1 took a second job"
    );
    assert!(!d.log().contains(&token), "full token in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_edit_adding_a_runner_is_picked_up_without_restart() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 2, "", "");
    // Only a runner with tag `second` may take this job, so it stays pending until the new runner exists.
    let second = fake.create_runner_token_with_tags("second", &["second"], false);
    let id = fake.enqueue_job(no_repo(JobSpec::new("tagged", &["echo picked-by-second"])).tags(&["second"]));
    // A request answered after the job was queued saw it and left it: only then does "pending" mean something.
    let asked = job_requests(&fake);
    wait_until("a job request after the enqueue", FINISH, &d, || {
        job_requests(&fake) > asked
    })
    .await;
    assert_eq!(fake.job(id).unwrap().status, "pending");
    let mut text = std::fs::read_to_string(sb.config()).unwrap();
    text += &shell_runner_toml("second", &fake.url(), &second, &sb.path("second"), "");
    std::fs::write(sb.config(), text).unwrap();
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    let second_id = fake.runners().into_iter().find(|r| r.token == second).unwrap().id;
    assert_eq!(job.runner_id, Some(second_id));
    assert!(
        alive(d.pid().as_raw()),
        "runner must keep running across the reload"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 2, "", "");
    let second = fake.create_runner_token_with_tags("hup", &["hup"], false);
    wait_polling(&fake, &d, FINISH).await;
    let id = fake.enqueue_job(no_repo(JobSpec::new("tagged", &["echo picked-after-hup"])).tags(&["hup"]));
    let mut text = std::fs::read_to_string(sb.config()).unwrap();
    text += &shell_runner_toml("hup", &fake.url(), &second, &sb.path("hup"), "");
    std::fs::write(sb.config(), text).unwrap();
    // SIGHUP kills a process that does not handle it; the runner must reload instead.
    d.signal(Signal::SIGHUP);
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert!(alive(d.pid().as_raw()), "runner died on SIGHUP:\n{}", d.log());
    quit_ok(d).await;
}

/// The job token and masked values must never be on a child's command line (visible to every local user via
/// /proc). `GIT_TRACE=<file>` makes every git the job runs (including the runner's own fetch) log its argv.
// Regression: an `insteadOf` rewrite used to hand the credentialed URL to `git-remote-http` as argv.
#[tokio::test(flavor = "multi_thread")]
async fn job_token_never_reaches_a_git_argv() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/argv", &project_files(sb.dir.path()))
        .unwrap();
    let d = start(&fake, &sb, 1, "", "");
    let log = sb.path("git-trace.log");
    let secret = "ArgvS3cretValue-1234";
    let id = fake.enqueue_job(
        JobSpec::new("argv", &["git log -1 --format=%H"])
            .project(project.id)
            .variable("GIT_TRACE", &log.to_string_lossy())
            .masked_variable("MY_SECRET", secret),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}\n{}", job.trace_text(), d.log());
    let argv = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        argv.contains("fetch") || argv.contains("clone"),
        "GIT_TRACE saw no git fetch:\n{argv}"
    );
    let leaks: Vec<&str> = argv.lines().filter(|l| l.contains(&job.token)).collect();
    assert!(
        leaks.is_empty(),
        "the job token was on a git command line:\n{}",
        leaks.join("\n")
    );
    assert!(!argv.contains(secret));
    quit_ok(d).await;
}

/// Debug logging must not print the job payload's secrets: the masked value, the job token, the runner token.
#[tokio::test(flavor = "multi_thread")]
async fn debug_log_keeps_secrets_out() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("debug");
    let text = global_toml(1, "") + &shell_runner_toml("debug", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["--debug", "run", "-c", &cfg]);
    let secret = "DebugS3cretValue-5678";
    let id = fake.enqueue_job(
        no_repo(JobSpec::new("debug", &["echo \"$MY_SECRET\""])).masked_variable("MY_SECRET", secret),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    let log = d.log();
    assert!(!log.is_empty(), "debug logging printed nothing");
    assert!(!log.contains(secret), "masked value in the runner log:\n{log}");
    assert!(!log.contains(&job.token), "job token in the runner log:\n{log}");
    assert!(!log.contains(&token), "runner token in the runner log:\n{log}");
    assert!(!job.trace_text().contains(&job.token));
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_limit_truncates_the_trace_but_the_job_goes_on() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "  output_limit = 4\n");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "chatty",
        &["seq 1 20000", "echo reached-the-end > end.txt", "test -f end.txt"],
    )));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{job:?}");
    let trace = job.trace_text();
    assert!(trace.len() < 8 * 1024, "trace not limited: {} bytes", trace.len());
    assert!(trace.contains("exceeded limit"), "{trace}");
    assert!(!trace.contains("\n20000\n"));
    assert_eq!(job.checksum_ok, Some(true));
    quit_ok(d).await;
}

/// The seed starts the runner before `register` writes config.toml: the service must wait for the file and
/// then pick the new runner up.
#[tokio::test(flavor = "multi_thread")]
async fn run_waits_for_config_then_register_starts_the_runner() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    wait_until("the missing-config warning", FINISH, &d, || {
        d.log().contains("config file does not exist yet")
    })
    .await;
    assert!(
        alive(d.pid().as_raw()),
        "run exited without a config file:\n{}",
        d.log()
    );
    let token = fake.create_runner_token("late");
    let url = fake.url();
    let builds = sb.path("builds").to_string_lossy().into_owned();
    sb.run(
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "--url",
            &url,
            "--token",
            &token,
            "--executor",
            "shell",
            "--name",
            "late",
            "--builds-dir",
            &builds,
        ],
        &[],
        None,
    )
    .await
    .assert_ok();
    let id = fake.enqueue_job(no_repo(JobSpec::new("late", &["echo late-runner-works"])));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn final_update_is_retried_after_server_errors() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(no_repo(JobSpec::new("retry", &["sleep 1", "echo ok"])));
    wait_status(&fake, id, "running", FINISH).await;
    // The next PUTs (the final update) fail; the runner must retry until GitLab takes it.
    fake.faults().fail_next(fake_gitlab::Endpoint::JobUpdate, 2, 502);
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{job:?}\n{}", d.log());
    let puts: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == format!("/api/v4/jobs/{id}"))
        .map(|r| r.status)
        .collect();
    assert!(puts.contains(&502), "fault not hit: {puts:?}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_limit_caps_its_jobs_below_concurrent() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 3, "", "  limit = 1\n");
    let ids: Vec<i64> = (0..3)
        .map(|i| fake.enqueue_job(no_repo(JobSpec::new(&format!("l-{i}"), &["sleep 1"]))))
        .collect();
    for id in ids {
        let job = finished(&fake, id, FINISH, &d).await;
        assert_eq!(job.status, "success");
    }
    assert_eq!(fake.max_concurrent_running(), 1, "limit = 1 was exceeded");
    quit_ok(d).await;
}

/// The seed writes `url = "https://gitlab.example/"`; jobs (API and git clone) must work with it.
#[tokio::test(flavor = "multi_thread")]
async fn job_runs_with_a_trailing_slash_url() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/slash", &project_files(sb.dir.path()))
        .unwrap();
    let token = fake.create_runner_token("slash");
    let url = format!("{}/", fake.url());
    let text = global_toml(1, "") + &shell_runner_toml("slash", &url, &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    let id = fake.enqueue_job(JobSpec::new("slash", &["cat hello.txt"]).project(project.id));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}\n{}", job.trace_text(), d.log());
    assert!(job.trace_text().contains("hello from the repository"));
    quit_ok(d).await;
}

/// A second job of the same project reuses the build directory (fetch strategy) and must check out the new
/// commit pushed meanwhile, not the stale one.
#[tokio::test(flavor = "multi_thread")]
async fn next_job_fetches_the_newly_pushed_commit() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let src = project_files(sb.dir.path());
    let project = fake.create_project("group/push", &src).unwrap();
    let d = start(&fake, &sb, 1, "", "");
    let script = [
        "echo \"HEAD=$(git rev-parse HEAD)\"",
        "cat hello.txt",
        "echo \"DIR=$CI_PROJECT_DIR\"",
    ];
    let first = fake.enqueue_job(JobSpec::new("first", &script).project(project.id));
    let job1 = finished(&fake, first, FINISH, &d).await;
    assert_eq!(job1.status, "success", "{}", job1.trace_text());
    assert!(job1.trace_text().contains(&format!("HEAD={}", project.sha)));

    std::fs::write(src.join("hello.txt"), "second version\n").unwrap();
    let sha2 = fake.push_commit(project.id, &src, "second").unwrap();
    let second = fake.enqueue_job(JobSpec::new("second", &script).project(project.id));
    let job2 = finished(&fake, second, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "success", "{trace}");
    assert!(
        trace.contains(&format!("HEAD={sha2}")),
        "stale checkout:\n{trace}"
    );
    assert!(trace.contains("second version"), "{trace}");
    quit_ok(d).await;
}

/// Two jobs of one project at the same time get different build directories.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_jobs_of_one_project_use_separate_directories() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/twins", &project_files(sb.dir.path()))
        .unwrap();
    let d = start(&fake, &sb, 2, "", "");
    let script = [
        "echo \"DIR=$CI_PROJECT_DIR\"",
        "echo $CI_JOB_ID > marker.txt",
        "sleep 2",
        "test \"$(cat marker.txt)\" = \"$CI_JOB_ID\"",
    ];
    let a = fake.enqueue_job(JobSpec::new("a", &script).project(project.id));
    let b = fake.enqueue_job(JobSpec::new("b", &script).project(project.id));
    let ja = finished(&fake, a, FINISH, &d).await;
    let jb = finished(&fake, b, FINISH, &d).await;
    assert_eq!(ja.status, "success", "{}", ja.trace_text());
    assert_eq!(jb.status, "success", "{}", jb.trace_text());
    let dir = |t: String| {
        t.lines()
            .find_map(|l| l.strip_prefix("DIR=").map(str::to_string))
            .unwrap()
    };
    assert_eq!(
        fake.max_concurrent_running(),
        2,
        "the two jobs did not overlap; the test proves nothing"
    );
    assert_ne!(
        dir(ja.trace_text()),
        dir(jb.trace_text()),
        "parallel jobs shared a build directory"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_token_is_masked_and_odd_output_keeps_the_checksum() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "odd",
        &[
            "echo \"token: $CI_JOB_TOKEN\"",
            "printf 'progress 1\\rprogress 2\\rprogress 3\\n'",
            "printf 'bad bytes: \\377\\376 end\\n'",
            "head -c 300000 /dev/zero | tr '\\0' x",
            "printf 'no newline at the end'",
        ],
    )));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(!trace.contains(&job.token), "CI_JOB_TOKEN in the trace");
    assert!(
        trace.contains("token: [MASKED]"),
        "{}",
        &trace[..trace.len().min(3000)]
    );
    assert!(trace.contains("progress 3"));
    assert!(trace.contains(&"x".repeat(300_000)), "long line cut");
    assert!(trace.contains("no newline at the end"));
    assert_eq!(job.checksum_ok, Some(true));
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_single_wait_timeout_exits_without_jobs() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("idle");
    let url = fake.url();
    let cfg = sb.config_str();
    let mut d = sb.spawn(&[
        "run-single",
        "-c",
        &cfg,
        "--url",
        &url,
        "--token",
        &token,
        "--executor",
        "shell",
        "--wait-timeout",
        "2",
    ]);
    let status = d
        .wait(EXIT)
        .await
        .unwrap_or_else(|| panic!("run-single ignored --wait-timeout:\n{}", d.log()));
    assert!(status.success(), "{status:?}\n{}", d.log());
}

/// A reload (SIGHUP, or an edit of the runner's own entry) must not touch a running job.
#[tokio::test(flavor = "multi_thread")]
async fn reload_during_a_job_leaves_it_running() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "steady",
        &["sleep 3", "echo survived-reload"],
    )));
    wait_status(&fake, id, "running", FINISH).await;
    // Change the runner entry itself (its request loop restarts) and send SIGHUP.
    let text = std::fs::read_to_string(sb.config()).unwrap().replace(
        "executor = \"shell\"",
        "executor = \"shell\"\n  output_limit = 8192",
    );
    std::fs::write(sb.config(), text).unwrap();
    d.signal(Signal::SIGHUP);
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}\n{}", job.trace_text(), d.log());
    assert!(job.trace_text().contains("survived-reload"));
    // And the restarted loop still takes jobs.
    let next = fake.enqueue_job(no_repo(JobSpec::new("after", &["echo next"])));
    assert_eq!(finished(&fake, next, FINISH, &d).await.status, "success");
    quit_ok(d).await;
}

/// `CI_DEBUG_TRACE` echoes every command with its expanded values; masked values and the content of a masked
/// file variable must still never reach the trace.
#[tokio::test(flavor = "multi_thread")]
async fn debug_trace_and_file_variables_stay_masked() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let secret = "TraceS3cretValue-4242";
    let file_secret = "FileS3cretContent-8080";
    let id = fake.enqueue_job(
        no_repo(JobSpec::new(
            "debug-trace",
            &[
                "echo \"value=$MY_SECRET\"",
                "cat \"$MY_FILE\"",
                "echo \"file at $MY_FILE\"",
            ],
        ))
        .variable("CI_DEBUG_TRACE", "true")
        .masked_variable("MY_SECRET", secret)
        .variable_with(
            "MY_FILE",
            file_secret,
            fake_gitlab::VarFlags {
                file: true,
                masked: true,
                ..fake_gitlab::VarFlags::default()
            },
        ),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(
        trace.contains("file at /"),
        "file variable is not a path:\n{trace}"
    );
    assert!(trace.contains("+ "), "CI_DEBUG_TRACE had no effect:\n{trace}");
    assert!(!trace.contains(secret), "masked value in a debug trace:\n{trace}");
    assert!(
        !trace.contains(file_secret),
        "masked file variable content in the trace:\n{trace}"
    );
    assert!(!trace.contains(&job.token));
    quit_ok(d).await;
}

/// The job timeout also bounds after_script (gitlab-runner: "after_script could not run to completion", the job
/// fails with job_execution_timeout): a hanging after_script must not outlive the job's timeout.
#[tokio::test(flavor = "multi_thread")]
async fn hanging_after_script_is_bounded_by_the_job_timeout() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let id = fake.enqueue_job(
        no_repo(JobSpec::new("hang", &["echo main-done"]))
            .after_script(&["echo after-start", "sleep 600"])
            .timeout(3),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    assert!(job.trace_text().contains("after-start"), "{}", job.trace_text());
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.failure_reason.as_deref(), Some("job_execution_timeout"));
    quit_ok(d).await;
}

/// A registered shell runner has no builds_dir (as the seed's config): builds go under the working directory.
#[tokio::test(flavor = "multi_thread")]
async fn default_builds_dir_is_under_the_working_directory() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/wd", &project_files(sb.dir.path()))
        .unwrap();
    let token = fake.create_runner_token("wd");
    let text = format!(
        "{}\n[[runners]]\n  name = \"wd\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"shell\"\n",
        global_toml(1, ""),
        fake.url()
    );
    std::fs::write(sb.config(), text).unwrap();
    let wd = sb.path("workdir");
    std::fs::create_dir_all(&wd).unwrap();
    let cfg = sb.config_str();
    let wd_s = wd.to_string_lossy().into_owned();
    let d = sb.spawn(&["run", "-c", &cfg, "-d", &wd_s]);
    let id = fake.enqueue_job(
        JobSpec::new("wd", &["echo \"DIR=$CI_PROJECT_DIR\"", "cat hello.txt"]).project(project.id),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    let dir = trace
        .lines()
        .find_map(|l| l.strip_prefix("DIR="))
        .unwrap_or_else(|| panic!("{trace}"));
    assert!(
        Path::new(dir).starts_with(wd.join("builds")),
        "build dir {dir} is not under {}/builds",
        wd.display()
    );
    assert!(Path::new(dir).join("hello.txt").is_file());
    quit_ok(d).await;
}

/// A token past 75% of its lifetime is rotated: config.toml gets the new token (still private), the runner
/// reloads with it and keeps taking jobs.
#[tokio::test(flavor = "multi_thread")]
async fn expiring_token_is_rotated_and_the_runner_keeps_working() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("rotate");
    let expires = time_in_a_day();
    let extra = format!("  token_obtained_at = 2020-01-01T00:00:00Z\n  token_expires_at = {expires}\n");
    let text = global_toml(1, "") + &shell_runner_toml("rotate", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    std::fs::set_permissions(sb.config(), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    let deadline = tokio::time::Instant::now() + FINISH;
    let new_token = loop {
        let runner = fake
            .runners()
            .into_iter()
            .find(|r| r.description == "rotate")
            .unwrap();
        if runner.token != token {
            break runner.token;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "token never rotated:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = fake.enqueue_job(no_repo(JobSpec::new("after-rotation", &["echo rotated-ok"])));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    let config = sb.read_config();
    assert!(
        config.contains(&new_token),
        "config.toml not updated with the new token"
    );
    assert!(!config.contains(&token));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(sb.config()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let log = d.log();
    assert!(
        !log.contains(&token) && !log.contains(&new_token),
        "full token in the log:\n{log}"
    );
    quit_ok(d).await;
}

/// RFC 3339 UTC timestamp one day from now (TOML datetime syntax).
fn time_in_a_day() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Runs one job with `CI_DEBUG_TRACE` set to `value` and returns whether GitLab was told it runs in debug mode.
async fn reported_debug_trace(value: &str, runner_extra: &str) -> bool {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", runner_extra);
    let id = fake.enqueue_job(no_repo(
        JobSpec::new("debug", &["echo traced"]).variable("CI_DEBUG_TRACE", value),
    ));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    quit_ok(d).await;
    job.debug_trace
}

/// The `debug_trace` flag GitLab receives follows the job's own rule: Go-style booleans count.
#[tokio::test(flavor = "multi_thread")]
async fn go_style_debug_trace_is_reported_to_gitlab() {
    assert!(reported_debug_trace("TRUE", "").await);
}

/// A runner with `debug_trace_disabled` runs no job in debug mode, so it never tells GitLab one does.
#[tokio::test(flavor = "multi_thread")]
async fn debug_trace_disabled_is_not_reported_to_gitlab() {
    assert!(!reported_debug_trace("true", "debug_trace_disabled = true\n").await);
}

/// A payload the runner refuses still gets the job's full mask set: the refusal names the image, and a masked
/// variable's value in it must not reach the trace.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_job_masks_its_variables() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 1, "", "");
    let secret = "R3fus3dS3cr3t-5150";
    let id = fake.enqueue_job(
        no_repo(JobSpec::new("refused", &["echo never"]))
            .masked_variable("IMAGE_SECRET", secret)
            .payload_field(
                "image",
                serde_json::json!({"name": format!("registry.example.com/{secret}"), "executor_opts": {"docker": {"not_a_key": true}}}),
            ),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(trace.contains("unsupported executor options"), "{trace}");
    assert!(!trace.contains(secret), "masked value in the trace:\n{trace}");
    quit_ok(d).await;
}
