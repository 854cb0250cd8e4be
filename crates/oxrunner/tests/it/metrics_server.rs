//! Issue #13: the metrics server of `oxrunner run --listen-address`, scraped while shell jobs run against
//! fake-gitlab. Values are checked, not only names: the running job with its stage, failures by reason, API
//! statuses under injected 5xx answers, `/health/ready`, `/debug/jobs/list` and `HEAD /metrics`.

use crate::support as common;

use std::time::Duration;

use common::{Daemon, Sandbox, fake, global_toml, quit_ok, shell_runner_toml, wait_file_lines, wait_status};
use fake_gitlab::{Endpoint, FailRule, FakeGitlab, FaultConfig, JobSpec};

const FINISH: Duration = Duration::from_secs(60);

/// Starts `oxrunner run` on a config with one shell runner, `extra` added to its global part; returns the daemon
/// and its runner's short token.
fn start(fake: &FakeGitlab, sb: &Sandbox, global_extra: &str, args: &[&str]) -> (Daemon, String) {
    let token = fake.create_runner_token("metrics");
    let text = global_toml(2, global_extra)
        + &shell_runner_toml("metrics", &fake.url(), &token, sb.dir.path(), "limit = 3\n");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let mut all = vec!["run", "-c", cfg.as_str()];
    all.extend_from_slice(args);
    (sb.spawn(&all), oxrunner_config::short_token(&token))
}

/// The address the daemon says its metrics server listens on (port 0 was asked for: the kernel picks one).
async fn metrics_address(d: &Daemon) -> String {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let log = d.log();
        if let Some(line) = log.lines().find(|l| l.contains("Metrics server listening")) {
            let addr = line
                .split("address=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            return addr.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics server in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(addr: &str, path: &str) -> reqwest::Response {
    reqwest::get(format!("http://{addr}{path}")).await.unwrap()
}

async fn scrape(addr: &str) -> String {
    let resp = get(addr, "/metrics").await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, v) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
        all.then(|| v.parse().unwrap())
    })
}

/// Scrapes until `name{labels}` has `want`; the timeout only guards against a hang.
async fn wait_value(addr: &str, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    wait_for(addr, name, labels, &format!("{want}"), |v| v == Some(want)).await
}

/// Scrapes until the value of `name{labels}` (`None`: no such series) satisfies `ok`.
async fn wait_for(
    addr: &str,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(Option<f64>) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let text = scrape(addr).await;
        if ok(value(&text, name, labels)) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} never became {what}; last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scrape_shows_the_running_job_failures_and_the_process() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (d, short) = start(&fake, &sb, "", &["--listen-address", "127.0.0.1:0"]);
    let addr = metrics_address(&d).await;

    let ready = get(&addr, "/health/ready").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\n");
    let idle = wait_value(
        &addr,
        "gitlab_runner_jobs",
        &[("runner", &short), ("state", "idle")],
        0.0,
    )
    .await;
    assert_eq!(value(&idle, "gitlab_runner_concurrent", &[]), Some(2.0), "{idle}");
    assert_eq!(
        value(
            &idle,
            "gitlab_runner_limit",
            &[("runner", &short), ("runner_name", "metrics")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&idle, "gitlab_runner_version_info", &[("name", "oxrunner")]),
        Some(1.0)
    );
    assert!(
        value(&idle, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0),
        "{idle}"
    );
    assert!(value(&idle, "process_open_fds", &[]).is_some_and(|v| v > 0.0));
    assert!(value(&idle, "process_start_time_seconds", &[]).is_some_and(|v| v > 1.0e9));

    // A job blocked in its script: listed as running in step_script.
    let marker = sb.path("started");
    let id = fake.enqueue_job(
        JobSpec::new(
            "blocks",
            &[&format!("echo up > {}", marker.display()), "sleep 600"],
        )
        .variable("GIT_STRATEGY", "none"),
    );
    wait_file_lines(&marker, 1, FINISH).await;
    let running = [
        ("runner", short.as_str()),
        ("state", "running"),
        ("stage", "step_script"),
        ("executor_stage", "prepare"),
    ];
    wait_value(&addr, "gitlab_runner_jobs", &running, 1.0).await;
    let list = get(&addr, "/debug/jobs/list").await;
    assert_eq!(list.headers()["x-list-version"], "2");
    let list = list.text().await.unwrap();
    assert!(
        list.contains(&format!(
            "/-/jobs/{id} state=running stage=step_script executor_stage=prepare duration="
        )),
        "{list}"
    );

    // Cancel it; then a failing script.
    fake.cancel_job(id);
    fake.wait_job_finished(id, FINISH).await.unwrap();
    // A finished job's series goes away, as upstream's does (only present state permutations are exported).
    wait_for(&addr, "gitlab_runner_jobs", &running, "absent", |v| v.is_none()).await;
    let failing = fake.enqueue_job(JobSpec::new("fails", &["exit 3"]).variable("GIT_STRATEGY", "none"));
    wait_status(&fake, failing, "failed", FINISH).await;
    let script_failure = [("runner", short.as_str()), ("failure_reason", "script_failure")];
    let text = wait_value(&addr, "gitlab_runner_failed_jobs_total", &script_failure, 1.0).await;
    assert_eq!(
        value(
            &text,
            "gitlab_runner_failed_jobs_total",
            &[("failure_reason", "job_canceled")]
        ),
        Some(1.0),
        "{text}"
    );
    let text = wait_value(&addr, "gitlab_runner_jobs_total", &[("runner", &short)], 2.0).await;
    assert_eq!(
        value(
            &text,
            "gitlab_runner_job_duration_seconds_count",
            &[("runner", &short)]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "gitlab_runner_api_request_statuses_total",
            &[("endpoint", "update_job"), ("status", "200"), ("method", "put")]
        )
        .is_some_and(|v| v >= 2.0),
        "{text}"
    );

    // HEAD answers like GET without a body; other methods are refused.
    let client = reqwest::Client::new();
    let head = client
        .head(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        head.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let post = client
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_statuses_count_injected_5xx_answers_and_attempts() {
    let fake = fake(0, 1).await;
    // Five 500s exhaust one request's attempts: its final status is 500.
    fake.faults().set(FaultConfig {
        fail_next: vec![FailRule {
            endpoint: Endpoint::JobRequest,
            count: 5,
            status: 500,
        }],
        retry_after: Some(0),
        ..FaultConfig::default()
    });
    let sb = Sandbox::new();
    // config.toml's listen_address, with the port given.
    let (d, short) = start(&fake, &sb, "listen_address = \"127.0.0.1:0\"", &[]);
    let addr = metrics_address(&d).await;
    let failed = [
        ("runner", short.as_str()),
        ("endpoint", "request_job"),
        ("status", "500"),
        ("method", "post"),
    ];
    let text = wait_value(&addr, "gitlab_runner_api_request_statuses_total", &failed, 1.0).await;
    assert!(
        value(
            &text,
            "gitlab_runner_api_request_duration_seconds_count",
            &[("endpoint", "request_job"), ("status_class", "5xx")]
        ) == Some(1.0),
        "{text}"
    );
    // Later requests succeed (204: no job).
    let text = wait_for(
        &addr,
        "gitlab_runner_api_request_statuses_total",
        &[("endpoint", "request_job"), ("status", "204")],
        "at least 1",
        |v| v.is_some_and(|v| v >= 1.0),
    )
    .await;
    let attempts = value(
        &text,
        "gitlab_runner_api_request_retries_total",
        &[("path", "/api/v4/jobs/request"), ("method", "post")],
    );
    assert!(attempts.is_some_and(|a| a >= 6.0), "{text}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_port_fails_the_start_with_a_hint() {
    let fake = fake(1, 1).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sb = Sandbox::new();
    let (mut d, _) = start(
        &fake,
        &sb,
        "",
        &["--listen-address", &format!("127.0.0.1:{port}")],
    );
    let status = d
        .wait(FINISH)
        .await
        .expect("the daemon kept running on a busy port");
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(log.contains("hint:"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_and_artifact_transfers_are_counted_with_bytes_and_stage_durations() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (d, short) = start(&fake, &sb, "", &["--listen-address", "127.0.0.1:0"]);
    let addr = metrics_address(&d).await;
    let first = fake.enqueue_job(
        JobSpec::new(
            "makes",
            &["mkdir -p out", "head -c 300000 /dev/urandom > out/data.bin"],
        )
        .variable("GIT_STRATEGY", "none")
        .variable("FF_EXPORT_HIGH_CARDINALITY_METRICS", "true")
        .cache(fake_gitlab::CacheSpec::new("metrics-cache", &["out/"]))
        .artifact(fake_gitlab::ArtifactSpec::paths(&["out/"])),
    );
    wait_status(&fake, first, "success", FINISH).await;
    let second = fake.enqueue_job(
        JobSpec::new("uses", &["true"])
            .variable("GIT_STRATEGY", "none")
            .cache(fake_gitlab::CacheSpec::new("metrics-cache", &["out/"]))
            .dependency(first),
    );
    wait_status(&fake, second, "success", FINISH).await;
    let text = wait_value(&addr, "gitlab_runner_jobs_total", &[("runner", &short)], 2.0).await;
    for (kind, direction) in [
        ("cache", "upload"),
        ("cache", "download"),
        ("artifact", "upload"),
        ("artifact", "download"),
    ] {
        let labels = [("kind", kind), ("direction", direction), ("outcome", "success")];
        let bytes = value(&text, "gitlab_runner_transfer_bytes_total", &labels);
        // The random 300 kB do not compress: every archive is at least that large.
        assert!(
            bytes.is_some_and(|b| b >= 300_000.0),
            "{kind} {direction}: {bytes:?}\n{text}"
        );
        assert!(
            value(&text, "gitlab_runner_transfer_duration_seconds_count", &labels).is_some_and(|n| n >= 1.0),
            "{text}"
        );
    }
    // Stage durations only for the job that asked for them, as upstream's feature flag does.
    let stage = [("runner", short.as_str()), ("stage", "step_script")];
    assert_eq!(
        value(&text, "gitlab_runner_job_stage_duration_seconds_count", &stage),
        Some(1.0),
        "{text}"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_bound_address_and_names_the_change() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (d, short) = start(&fake, &sb, "listen_address = \"127.0.0.1:0\"", &[]);
    let addr = metrics_address(&d).await;
    // gitlab-runner binds its metrics listener once, at start: a changed address waits for a restart.
    let config = std::fs::read_to_string(sb.config()).unwrap();
    std::fs::write(
        sb.config(),
        config.replace(
            "listen_address = \"127.0.0.1:0\"",
            "listen_address = \"127.0.0.1:1\"",
        ),
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + FINISH;
    while !d.log().contains("listen_address changed") {
        assert!(tokio::time::Instant::now() < deadline, "no warning:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = wait_value(&addr, "gitlab_runner_configuration_loaded_total", &[], 2.0).await;
    assert!(
        value(
            &text,
            "gitlab_runner_jobs",
            &[("runner", &short), ("state", "idle")]
        )
        .is_some()
    );
    quit_ok(d).await;
}

/// The token rotation's write of config.toml is a configuration save: `gitlab_runner_configuration_saved_total`
/// goes to 1 (and no saving error) once GitLab has handed out the new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_rotation_counts_as_a_configuration_save() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("rotate-metrics");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Obtained long ago, expiring tomorrow: past 75% of its lifetime, so it is rotated at once.
    let extra = format!("  token_obtained_at = 2020-01-01T00:00:00Z\n  token_expires_at = {expires}\n");
    let text =
        global_toml(1, "") + &shell_runner_toml("rotate-metrics", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg, "--listen-address", "127.0.0.1:0"]);
    let addr = metrics_address(&d).await;
    let text = wait_value(&addr, "gitlab_runner_configuration_saved_total", &[], 1.0).await;
    assert_eq!(
        value(&text, "gitlab_runner_configuration_saving_error_total", &[]),
        Some(0.0),
        "{text}"
    );
    let runner = fake
        .runners()
        .into_iter()
        .find(|r| r.description == "rotate-metrics")
        .unwrap();
    assert_ne!(runner.token, token, "counted a save without a rotation");
    assert!(sb.read_config().contains(&runner.token));
    quit_ok(d).await;
}
