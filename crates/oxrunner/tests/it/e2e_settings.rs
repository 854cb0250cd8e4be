//! `config.toml` settings gitlab-runner acts on that oxrunner used to parse and drop, end to end against
//! fake-gitlab: each test sets one and checks what reaches GitLab or the job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Daemon, Sandbox, fake, global_toml, quit_ok, shell_runner_toml, wait_polling};
use fake_gitlab::FakeGitlab;

fn start(fake: &FakeGitlab, sb: &Sandbox, global_extra: &str, runner_extra: &str) -> (Daemon, String) {
    let token = fake.create_runner_token("settings");
    let text = global_toml(1, global_extra)
        + &shell_runner_toml("settings", &fake.url(), &token, sb.dir.path(), runner_extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    (sb.spawn(&["run", "-c", &cfg]), token)
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_reach_gitlab_with_the_runners_over_the_global_ones() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (d, token) = start(
        &fake,
        &sb,
        "labels = { team = \"ci\", env = \"global\" }",
        "  labels = { env = \"runner\", zone = \"a\" }",
    );
    wait_polling(&fake, &d, Duration::from_secs(30)).await;
    let runner = fake.runners().into_iter().find(|r| r.token == token).unwrap();
    let labels = runner.info.as_ref().and_then(|i| i.get("labels")).cloned();
    assert_eq!(
        labels,
        Some(serde_json::json!({"env": "runner", "team": "ci", "zone": "a"})),
        "{:?}\n{}",
        runner.info,
        d.log()
    );
    quit_ok(d).await;
}

/// Polls the runner's log until `cond` holds; `timeout` only guards against a hang.
async fn wait_log(d: &Daemon, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let log = d.log();
        if cond(&log) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn job_status_final_update_retry_limit_bounds_the_final_update() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let mark = sb.dir.path().join("go");
    let (d, _) = start(&fake, &sb, "", "  job_status_final_update_retry_limit = 2");
    let script = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.1; done; echo finishing",
        mark.display()
    );
    let id = fake
        .enqueue_job(fake_gitlab::JobSpec::new("final", &[script.as_str()]).variable("GIT_STRATEGY", "none"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fake.job(id).is_some_and(|j| j.trace_text().contains("started")) {
        assert!(tokio::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // From now on GitLab rejects every job update: only the final one is left to send.
    fake.faults()
        .fail_next(fake_gitlab::Endpoint::JobUpdate, 10_000, 500);
    std::fs::write(&mark, "").unwrap();
    wait_log(
        &d,
        "the runner to give up on the final update",
        Duration::from_secs(120),
        |log| {
            log.lines()
                .any(|l| l.contains("final job update failed") && !l.contains("retrying"))
        },
    )
    .await;
    let log = d.log();
    let retries = log.matches("final job update failed, retrying").count();
    assert_eq!(retries, 1, "two tries, so one retry:\n{log}");
    fake.faults().clear();
    quit_ok(d).await;
}

/// `tls-cert-file`/`tls-key-file`: the runner's client certificate reaches the job as
/// `CI_SERVER_TLS_CERT_FILE`/`CI_SERVER_TLS_KEY_FILE` and git presents it to the GitLab host (`http.<url>.sslCert`
/// and `sslKey`, as gitlab-runner configures them); the key never shows in the log.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_certificate_reaches_git_and_the_job() {
    let pki = fake_gitlab::TestPki::generate().unwrap();
    let fake = fake_gitlab::FakeGitlab::start(fake_gitlab::FakeOptions {
        tls: Some(pki.server.clone()),
        ..fake_gitlab::FakeOptions::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/mtls", &crate::support::project_files(sb.dir.path()))
        .unwrap();
    let client = fake_gitlab::TlsMaterial::self_signed_ca(
        "oxrunner test client",
        &["client.invalid"],
        std::time::SystemTime::now() - Duration::from_secs(60),
        std::time::SystemTime::now() + Duration::from_secs(3600),
    )
    .unwrap();
    let (ca, cert, key) = (sb.path("ca.pem"), sb.path("client.pem"), sb.path("client.key"));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &client.cert_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let extra = format!(
        "  tls-ca-file = \"{}\"\n  tls-cert-file = \"{}\"\n  tls-key-file = \"{}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    let (d, _) = start(&fake, &sb, "", &extra);
    let script = [
        format!("cmp \"$CI_SERVER_TLS_CERT_FILE\" {} && echo cert-file-matches", cert.display()),
        format!("cmp \"$CI_SERVER_TLS_KEY_FILE\" {} && echo key-file-matches", key.display()),
        "test \"$(git config --get-regexp 'http\\..*\\.sslcert' | cut -d' ' -f2)\" = \"$CI_SERVER_TLS_CERT_FILE\" \
         && echo git-presents-the-cert"
            .to_owned(),
        "test \"$(git config --get-regexp 'http\\..*\\.sslkey' | cut -d' ' -f2)\" = \"$CI_SERVER_TLS_KEY_FILE\" \
         && echo git-uses-the-key"
            .to_owned(),
        "cat \"$CI_SERVER_TLS_KEY_FILE\"".to_owned(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let id = fake.enqueue_job(fake_gitlab::JobSpec::new("mtls", &script).project(project.id));
    let job = crate::support::finished(&fake, id, Duration::from_secs(60), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    for line in [
        "cert-file-matches",
        "key-file-matches",
        "git-presents-the-cert",
        "git-uses-the-key",
    ] {
        assert!(trace.contains(&format!("\n{line}\n")), "{line}:\n{trace}");
    }
    let key_body = client.key_pem.lines().nth(1).unwrap();
    assert!(!trace.contains(key_body), "the key leaked:\n{trace}");
    quit_ok(d).await;
}

/// `[runners.artifact] upload_timeout` bounds each upload: a GitLab slower than it fails the upload.
#[tokio::test(flavor = "multi_thread")]
async fn artifact_upload_timeout_bounds_the_upload() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let mark = sb.dir.path().join("go");
    let (d, _) = start(
        &fake,
        &sb,
        "",
        "  [runners.artifact]\n    upload_timeout = \"1s\"",
    );
    let script = format!(
        "echo started; echo data > out.txt; while [ ! -e {} ]; do sleep 0.1; done",
        mark.display()
    );
    let id = fake.enqueue_job(
        fake_gitlab::JobSpec::new("upload", &[script.as_str()])
            .variable("GIT_STRATEGY", "empty")
            .artifact(fake_gitlab::ArtifactSpec {
                paths: vec!["out.txt".into()],
                ..fake_gitlab::ArtifactSpec::default()
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fake.job(id).is_some_and(|j| j.trace_text().contains("started")) {
        assert!(tokio::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every answer now takes 3 s: longer than the upload may.
    fake.faults().delay(Duration::from_secs(3));
    std::fs::write(&mark, "").unwrap();
    let job = crate::support::finished(&fake, id, Duration::from_secs(180), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}\n{}", d.log());
    // fake-gitlab still stores what arrives after the runner gave up; the runner's side is what counts.
    assert!(
        trace.contains("Uploading artifacts") && trace.contains("timed out"),
        "{trace}"
    );
    fake.faults().clear();
    quit_ok(d).await;
}
