//! The guide's internal-address case at job time: GitLab puts its own external address into the repository URL;
//! when the fetch from that address fails and it differs from the runner's `url`, the job log says to set
//! `clone_url`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fake_gitlab::JobSpec;

use crate::support::{self as common, Sandbox};

fn git_info(repo_url: &str) -> serde_json::Value {
    serde_json::json!({
        "repo_url": repo_url,
        "repo_object_format": "sha1",
        "ref": "main",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "before_sha": "0000000000000000000000000000000000000000",
        "ref_type": "branch",
        "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
        "depth": 20,
        "protected": false,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_another_host_than_url_fails_with_the_clone_url_hint() {
    let sb = Sandbox::new();
    let fake = common::fake(1, 1).await;
    let token = fake.create_runner_token("hint");
    // GitLab's "external_url": an address this runner cannot reach (a port nobody listens on).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let external = format!("127.0.0.1:{port}");
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml("hint", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    let id = fake.enqueue_job(JobSpec::new("build", &["echo never"]).payload_field(
        "git_info",
        git_info(&format!("http://gitlab-ci-token:secret@{external}/group/p.git")),
    ));
    let job = common::finished(&fake, id, Duration::from_secs(90), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(
        trace.contains(&format!(
            "hint: GitLab put {external} into the repository URL, but this runner reaches GitLab at {}",
            fake.url().trim_start_matches("http://").trim_end_matches('/')
        )),
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "set clone_url = \"{}\"",
            fake.url().trim_end_matches('/')
        )),
        "{trace}"
    );
    assert!(!trace.contains("never"), "{trace}");
    common::quit_ok(d).await;
}
