//! Issue #13: the runner's own log in gitlab-runner's shapes. `--log-format json` lines are parsed and checked
//! field by field; config.toml's `log_level` and `log_format` are honoured, and a reload applies a change.

use crate::support as common;

use std::time::Duration;

use common::{Daemon, Sandbox, fake, global_toml, quit_ok, shell_runner_toml, wait_status};
use fake_gitlab::{FakeGitlab, JobSpec};

const FINISH: Duration = Duration::from_secs(60);

fn write_config(fake: &FakeGitlab, sb: &Sandbox, token: &str, global_extra: &str) {
    let text =
        global_toml(1, global_extra) + &shell_runner_toml("logs", &fake.url(), token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
}

/// Every line of the log parsed as JSON; fails on a line that is not one object.
fn json_lines(d: &Daemon) -> Vec<serde_json::Value> {
    d.log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", d.log()));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

async fn wait_log(d: &Daemon, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + FINISH;
    while !cond(&d.log()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_carry_level_msg_time_and_fields_at_the_top() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("logs");
    write_config(&fake, &sb, &token, "");
    let cfg = sb.config_str();
    let d = sb.spawn(&["--log-format", "json", "run", "-c", &cfg]);
    let id = fake.enqueue_job(JobSpec::new("ok", &["true"]).variable("GIT_STRATEGY", "none"));
    wait_status(&fake, id, "success", FINISH).await;
    wait_log(&d, "the final update", |l| {
        l.contains("GitLab accepted the final update")
    })
    .await;

    let lines = json_lines(&d);
    let received = lines
        .iter()
        .find(|v| v["msg"] == "Checking for jobs... received")
        .unwrap_or_else(|| panic!("no pickup line:\n{}", d.log()));
    assert_eq!(received["level"], "info");
    assert_eq!(received["job"], id);
    assert_eq!(received["runner"], oxrunner_config::short_token(&token));
    assert!(received["project"].is_i64(), "{received}");
    let time = received["time"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(),
        "{time}"
    );
    for v in &lines {
        assert!(v.get("fields").is_none() && v.get("timestamp").is_none(), "{v}");
        assert!(
            matches!(v["level"].as_str(), Some("debug" | "info" | "warning" | "error")),
            "{v}"
        );
    }
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_log_level_and_format_apply_at_start_and_on_reload() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("logs");
    write_config(&fake, &sb, &token, "log_level = \"debug\"\nlog_format = \"json\"");
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    // Job requests without a job are logged at debug level only.
    wait_log(&d, "a debug line", |l| l.contains("\"level\":\"debug\"")).await;
    assert!(json_lines(&d).iter().any(|v| v["level"] == "debug"));

    // Back to the default text layout and level on reload: debug lines stop, text lines start.
    write_config(&fake, &sb, &token, "log_level = \"info\"\nlog_format = \"text\"");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_log(&d, "a text line after the reload", |l| {
        l.lines()
            .any(|line| line.starts_with("time=") && line.contains(" level=info msg="))
    })
    .await;
    quit_ok(d).await;
}
