//! Issue #15 item 5: how oxrunner reports itself. GitLab decides a runner's upgrade status from the leading
//! `info.version` (any suffix ranks below the release, so it must be the plain release), and jobs gate on
//! `CI_RUNNER_VERSION`: both carry the gitlab-runner release oxrunner follows; the product and its own version
//! are in `info.name`, `info.revision` and the User-Agent (ARCHITECTURE.md, "Identity").

use std::time::Duration;

use crate::support::{self as common, Sandbox, fake};

/// `19.4.0`, the release `data/upstream-flags.tsv` came from.
fn expected_version() -> String {
    let header = include_str!("../../data/upstream-flags.tsv")
        .lines()
        .next()
        .unwrap();
    let upstream = header
        .split("(VERSION ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    upstream.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn register_and_jobs_report_the_gitlab_runner_release_we_follow() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (url, cfg) = (fake.url(), sb.config_str());
    sb.run(&common::register_args(&cfg, &url, "ident", &[]), &[], None)
        .await
        .assert_ok();
    let runner = &fake.runners()[0];
    let info = runner.info.clone().expect("register sent no info");
    let want = expected_version();
    assert_eq!(info["version"], want.as_str(), "{info:#}");
    assert_eq!(info["name"], "oxrunner");
    let revision = info["revision"].as_str().unwrap_or_default().to_string();
    let own = format!("oxrunner-{}-", env!("CARGO_PKG_VERSION"));
    assert!(
        revision.starts_with(&own) && revision.len() > own.len() && !revision.ends_with("unknown"),
        "{info:#}"
    );
    assert_eq!(info["platform"], "linux");
    assert!(info["architecture"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(info["executor"], "shell");
    assert_eq!(info["shell"], "bash");
    let ua = fake
        .requests()
        .iter()
        .find_map(|r| r.header("user-agent").map(str::to_string))
        .expect("no User-Agent sent");
    let arch = info["architecture"].as_str().unwrap_or_default();
    assert_eq!(
        ua,
        format!("oxrunner {} (rust; linux/{arch})", env!("CARGO_PKG_VERSION"))
    );

    let token = runner.token.clone();
    let id = fake.enqueue_job(
        fake_gitlab::JobSpec::new(
            "ident",
            &["echo \"version=$CI_RUNNER_VERSION revision=$CI_RUNNER_REVISION\""],
        )
        .variable("GIT_STRATEGY", "none"),
    );
    let builds = sb.path("builds");
    let mut daemon = sb.spawn(&[
        "run-single",
        "--url",
        &url,
        "--token",
        &token,
        "--builds-dir",
        builds.to_str().unwrap(),
        "--max-builds",
        "1",
    ]);
    let job = common::finished(&fake, id, Duration::from_secs(60), &daemon).await;
    let trace = job.trace_text();
    assert!(
        trace.contains(&format!("version={want} revision={revision}")),
        "{trace}"
    );
    daemon.wait(Duration::from_secs(30)).await;

    let v = sb.run(&["-v"], &[], None).await;
    assert!(
        v.stdout.contains("Compatible:   gitlab-runner ") && v.stdout.contains(&want),
        "{}",
        v.stdout
    );
}
