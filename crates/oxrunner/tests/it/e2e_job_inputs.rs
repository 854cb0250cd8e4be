//! Issue #15: job inputs end to end. `oxrunner run` (shell executor) against fake-gitlab, with payloads carrying
//! `inputs` of every type: `${{ job.inputs.* }}` in scripts becomes the values, the flag turns it off, a sensitive
//! input or a malformed one fails the job before anything runs, a job without inputs keeps its `${{ }}`, and the
//! metrics server counts interpolations and failures under upstream's names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Daemon, Sandbox, fake, finished, global_toml, quit_ok, shell_runner_toml};
use fake_gitlab::{FakeGitlab, JobSpec};
use serde_json::json;

const FINISH: Duration = Duration::from_secs(60);

fn start(fake: &FakeGitlab, sb: &Sandbox) -> Daemon {
    let token = fake.create_runner_token("inputs");
    let text = global_toml(1, "listen_address = \"127.0.0.1:0\"")
        + &shell_runner_toml("inputs", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

/// A job with one input of each type.
fn typed(name: &str, script: &[&str]) -> JobSpec {
    JobSpec::new(name, script)
        .variable("GIT_STRATEGY", "none")
        .input("target", "string", json!("staging"))
        .input("replicas", "number", json!(3))
        .input("ratio", "number", json!(0.5))
        .input("debug", "boolean", json!(true))
        .input("tags", "array", json!(["smoke", "fast"]))
        .input("db", "struct", json!({"host": "db.local", "port": 5432}))
}

const SCRIPT: &[&str] = &[
    "echo \"target=${{ job.inputs.target }}\"",
    "echo \"replicas=${{ job.inputs.replicas }} next=${{ job.inputs.replicas + 1 }} ratio=${{ job.inputs.ratio }}\"",
    "echo \"debug=${{ job.inputs.debug }} flag=${{ job.inputs.debug && '-v' || '' }}\"",
    "echo 'tags=${{ job.inputs.tags }} first=${{ job.inputs.tags[0] }}'",
    "echo 'db=${{ job.inputs.db }} host=${{ job.inputs.db.host }}'",
    "echo 'literal=\\${{ kept }}' \"home=${HOME:+set}\"",
];

async fn metrics_address(d: &Daemon) -> String {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let log = d.log();
        if let Some(addr) = log
            .lines()
            .find(|l| l.contains("Metrics server listening"))
            .and_then(|l| l.split("address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return addr.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics server in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample `series` (name with its labels, exactly as exposed) of a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_are_interpolated_refused_or_left_alone_as_upstream_does() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb);

    // Every type reaches the script as text.
    let id = fake.enqueue_job(typed("typed", SCRIPT));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    for line in [
        "target=staging",
        "replicas=3 next=4 ratio=0.5",
        "debug=true flag=-v",
        r#"tags=["smoke","fast"] first=smoke"#,
        r#"db={"host":"db.local","port":5432} host=db.local"#,
        "literal=${{ kept }} home=set",
    ] {
        assert!(trace.contains(&format!("\n{line}\n")), "{line} missing:\n{trace}");
    }
    let features = fake.runners()[0].info.clone().unwrap()["features"].clone();
    assert_eq!(features["job_inputs"], json!(true), "{features}");

    // The flag off: nothing is interpolated (the shell prints the expressions as they are).
    let id = fake.enqueue_job(
        typed("flag-off", &["echo 'raw=${{ job.inputs.target }}'"])
            .variable("FF_ENABLE_JOB_INPUTS_INTERPOLATION", "false"),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(trace.contains("\nraw=${{ job.inputs.target }}\n"), "{trace}");

    // No inputs: `${{ }}` is left alone, even a malformed one.
    let id = fake.enqueue_job(
        JobSpec::new("no-inputs", &["echo 'plain=${{ 1 + 2 }} ${{ broken'"]).variable("GIT_STRATEGY", "none"),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(trace.contains("\nplain=${{ 1 + 2 }} ${{ broken\n"), "{trace}");

    // A sensitive input in an expression fails the job before its script runs, and its value is never shown.
    let id = fake.enqueue_job(
        typed(
            "sensitive",
            &["echo ran-the-script", "echo \"${{ job.inputs.token }}\""],
        )
        .sensitive_input("token", "string", json!("s3cr3t-v4lue")),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(
        trace.contains(
            "Job failed: failed to interpolate job inputs: steps[0] (script).script[1]: \
             sensitive inputs are unsupported in interpolations yet"
        ),
        "{trace}"
    );
    assert!(
        trace.contains("hint: sensitive job inputs cannot be used"),
        "{trace}"
    );
    assert!(!trace.contains("ran-the-script"), "{trace}");
    assert!(!trace.contains("s3cr3t-v4lue"), "{trace}");
    // GitLab did not announce runner_configuration_error: mapped as gitlab-runner maps it.
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"), "{trace}");

    // Content of another type than announced fails with upstream's words.
    let id = fake.enqueue_job(
        JobSpec::new("mismatch", &["echo ran-the-script"])
            .variable("GIT_STRATEGY", "none")
            .input("count", "number", json!("three")),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(
        trace.contains(
            "failed to interpolate job inputs: mismatching type of input \"count\". Announced \"number\", but got \"string\""
        ),
        "{trace}"
    );
    assert!(!trace.contains("ran-the-script"), "{trace}");

    // An expression that does not evaluate names itself.
    let id = fake.enqueue_job(typed("unknown", &["echo ${{ job.inputs.nope }}"]));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(
        trace.contains("`${{ job.inputs.nope }}`: attribute `nope` not found"),
        "{trace}"
    );
    assert!(trace.contains("hint: check the `${{ }}` expressions"), "{trace}");

    // Upstream's metrics: the five lines with an expression of the first job, one failure of each kind counted.
    let addr = metrics_address(&d).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "gitlab_runner_job_inputs_interpolations_total"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gitlab_runner_job_inputs_interpolation_failures_total{error_type=\"sensitive_unsupported\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gitlab_runner_job_inputs_interpolation_failures_total{error_type=\"evaluation\"}"
        ),
        Some(1.0),
        "{text}"
    );
    quit_ok(d).await;
}

/// The image is one of the interpolated fields: the Docker executor pulls the interpolated name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_docker_executor_runs_the_interpolated_image() {
    use crate::support::docker::{DockerOpts, Env, docker_available};
    if !docker_available() {
        return;
    }
    let mut env = Env::start(DockerOpts::default()).await;
    let id = env.fake.enqueue_job(
        JobSpec::new(
            "image",
            &["cat /etc/oxrunner-image", "echo \"in=${{ job.inputs.flavour }}\""],
        )
        .image(fake_gitlab::ImageSpec::new(
            "oxrunner-test/${{ job.inputs.flavour }}",
        ))
        .variable("GIT_STRATEGY", "none")
        .input("flavour", "string", json!("busybox")),
    );
    let job = env.succeeded(id).await;
    let trace = job.trace_text();
    assert!(
        trace.contains("Using Docker executor with image oxrunner-test/busybox"),
        "{trace}"
    );
    assert!(trace.contains("oxrunner busybox test image"), "{trace}");
    assert!(trace.contains("\nin=busybox\n"), "{trace}");
    env.daemon().quit().await;
}
