//! Review findings of the job router (issue #15) that need the binary: secrets in trace-level logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};

use crate::support::{Sandbox, finished, quit_ok, shell_runner_toml};

const ON: &str = "  [runners.feature_flags]\n    FF_USE_JOB_ROUTER = true\n";

/// `--log-level trace` with a `ws://`/`wss://` router: the WebSocket library traces the raw upgrade request,
/// bearer token included; the runner's log must never show the token.
#[tokio::test]
async fn trace_level_never_logs_the_token_of_a_websocket_router() {
    for tls in [false, true] {
        let pki = fake_gitlab::TestPki::generate().unwrap();
        let fake = FakeGitlab::start(FakeOptions {
            long_poll: Duration::ZERO,
            trace_update_interval: 1,
            job_router: true,
            tls: tls.then(|| pki.server.clone()),
            ..FakeOptions::default()
        })
        .await
        .unwrap();
        fake.set_router_discovery(Some(fake.router_tunnel_url().unwrap()));
        let sb = Sandbox::new();
        let ca = sb.path("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let token = fake.create_runner_token("router");
        let extra = format!("  tls-ca-file = \"{}\"\n{ON}", ca.display());
        let text = "concurrent = 1\ncheck_interval = 1\nshutdown_timeout = 10\n".to_string()
            + &shell_runner_toml("router", &fake.url(), &token, sb.dir.path(), &extra);
        std::fs::write(sb.config(), text).unwrap();
        let d = sb.spawn(&["--log-level", "trace", "run", "-c", &sb.config_str()]);
        let id = fake.enqueue_job(JobSpec::new("traced", &["echo ran"]).variable("GIT_STRATEGY", "none"));
        assert_eq!(
            finished(&fake, id, Duration::from_secs(60), &d).await.status,
            "success"
        );
        assert_eq!(fake.router_log().jobs, vec![id], "{}", d.log());
        let log = d.log();
        assert!(!log.contains(&token), "the runner token is in the log:\n{log}");
        quit_ok(d).await;
    }
}
