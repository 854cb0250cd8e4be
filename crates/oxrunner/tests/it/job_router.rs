//! Issue #15: `FF_USE_JOB_ROUTER`. Jobs come through fake-gitlab's job router stand-in (an HTTP/2 gRPC server on
//! 127.0.0.1 serving the same queue as `POST /jobs/request`), which records what it served; every way around it
//! ends in the direct request. The breaker and discovery-cache tests run the daemon in-process under a paused
//! clock (the harness of `daemon_inprocess.rs`; the jobs only `echo`, so the clock may run while they do); the log-line tests run the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec, RouterMode};
use oxrunner::daemon::signals::Signal;
use tokio::time::Instant;

use crate::daemon_inprocess::{InProcess, reported, until_clock_runs};
use crate::support::{Sandbox, finished, quit_ok, shell_runner_toml};

const ON: &str = "  [runners.feature_flags]\n    FF_USE_JOB_ROUTER = true\n";

async fn fake(job_router: bool) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        long_poll: Duration::ZERO,
        trace_update_interval: 1,
        job_router,
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

/// One shell runner polling every `check_interval` seconds, with `extra` in its `[[runners]]` entry.
fn config(fake: &FakeGitlab, sb: &Sandbox, check_interval: u32, extra: &str) {
    let token = fake.create_runner_token("router");
    let text = format!("concurrent = 2\ncheck_interval = {check_interval}\nshutdown_timeout = 10\n")
        + &shell_runner_toml("router", &fake.url(), &token, sb.dir.path(), extra);
    std::fs::write(sb.config(), text).unwrap();
}

fn job(name: &str) -> JobSpec {
    JobSpec::new(name, &[&format!("echo ran-{name}")]).variable("GIT_STRATEGY", "none")
}

/// Direct `POST /jobs/request` calls the fake saw.
fn direct_requests(fake: &FakeGitlab) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

fn status(fake: &FakeGitlab, id: i64) -> String {
    fake.job(id).unwrap().status
}

/// Waits on a running clock for GitLab to count job `id` as finished (after the runner's final update, GitLab
/// may answer 202 and take the trace a little later), then returns its status.
async fn final_status(fake: &FakeGitlab, id: i64) -> String {
    until_clock_runs("GitLab to finish the job", || status(fake, id) != "running").await;
    status(fake, id)
}

/// With the flag on, the job is asked for and handed out through the router only, with the runner's token as
/// a bearer token and `gitlab-agent-type: runner`, and the queue state the router relays is echoed as
/// `last_update` in the next request.
#[tokio::test(start_paused = true)]
async fn the_job_comes_through_the_router_and_runs() {
    let fake = fake(true).await;
    let sb = Sandbox::new();
    config(&fake, &sb, 1, ON);
    let d = InProcess::start(sb.config());
    until_clock_runs("two router calls", || fake.router_log().requests.len() >= 2).await;
    let id = fake.enqueue_job(job("routed"));
    until_clock_runs("the routed job's final update", || reported(&fake, id)).await;
    let log = fake.router_log();
    assert_eq!(log.jobs, vec![id], "{log:?}");
    assert_eq!(direct_requests(&fake), 0, "the job was asked for directly");
    assert_eq!(fake.router_discoveries(), 1);
    assert!(log.last_authorized);
    assert_eq!(log.last_agent_type.as_deref(), Some("runner"));
    assert!(log.last_request_id.is_some_and(|r| !r.is_empty()));
    assert!(
        log.requests[0].get("last_update").is_none(),
        "{:?}",
        log.requests[0]
    );
    assert!(
        log.requests[1]["last_update"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "the relayed queue state was not echoed: {:?}",
        log.requests[1]
    );
    assert_eq!(final_status(&fake, id).await, "success");
    let record = fake.job(id).unwrap();
    assert!(record.trace_text().contains("ran-routed"));
    d.send(Signal::Quit);
    d.exit().await;
}

/// The flag off: neither discovery nor the router is contacted, even when GitLab has one.
#[tokio::test(start_paused = true)]
async fn flag_off_never_contacts_the_router() {
    let fake = fake(true).await;
    let sb = Sandbox::new();
    config(
        &fake,
        &sb,
        1,
        "  [runners.feature_flags]\n    FF_USE_JOB_ROUTER = false\n",
    );
    let d = InProcess::start(sb.config());
    let id = fake.enqueue_job(job("direct"));
    until_clock_runs("the job's final update", || reported(&fake, id)).await;
    assert_eq!(final_status(&fake, id).await, "success");
    assert_eq!(fake.router_log().calls, 0);
    assert_eq!(fake.router_discoveries(), 0);
    assert!(direct_requests(&fake) > 0);
    d.send(Signal::Quit);
    d.exit().await;
}

/// A GitLab without a router (discovery answers 501): jobs are asked for directly, and the answer "none" is
/// kept for the discovery's hour like a router's address.
#[tokio::test(start_paused = true)]
async fn no_router_falls_back_and_the_answer_is_kept_for_an_hour() {
    let fake = fake(false).await;
    let sb = Sandbox::new();
    config(&fake, &sb, 10, ON);
    let d = InProcess::start(sb.config());
    until_clock_runs("the first discovery", || fake.router_discoveries() == 1).await;
    let first = Instant::now();
    until_clock_runs("a direct request", || direct_requests(&fake) >= 1).await;
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert_eq!(
        fake.router_discoveries(),
        1,
        "discovery asked again within the hour"
    );
    assert!(direct_requests(&fake) > 10);
    until_clock_runs("the discovery after an hour", || fake.router_discoveries() == 2).await;
    assert!(first.elapsed() >= Duration::from_secs(60 * 60));
    d.send(Signal::Quit);
    d.exit().await;
}

/// A router's address is kept for an hour too: many `GetJob` calls, one discovery.
#[tokio::test(start_paused = true)]
async fn discovery_is_cached_for_its_ttl() {
    let fake = fake(true).await;
    let sb = Sandbox::new();
    config(&fake, &sb, 10, ON);
    let d = InProcess::start(sb.config());
    until_clock_runs("a router call", || fake.router_log().calls >= 1).await;
    let first = Instant::now();
    tokio::time::sleep(Duration::from_secs(59 * 60)).await;
    assert!(fake.router_log().calls > 10, "{:?}", fake.router_log().calls);
    assert_eq!(fake.router_discoveries(), 1);
    until_clock_runs("the discovery after an hour", || fake.router_discoveries() == 2).await;
    assert!(first.elapsed() >= Duration::from_secs(60 * 60));
    d.send(Signal::Quit);
    d.exit().await;
}

/// An unreachable router (`Unavailable`) counts towards the breaker: below the threshold the runner waits
/// without a job; after three failures spread over at least 5 s the breaker trips and jobs are asked for
/// directly. For 30 s the router is left alone, then one trial finds it back and jobs come through it again.
#[tokio::test(start_paused = true)]
async fn breaker_trips_after_the_threshold_and_recovers() {
    let fake = fake(true).await;
    fake.set_router_mode(RouterMode::Unavailable);
    let sb = Sandbox::new();
    config(&fake, &sb, 1, ON);
    let d = InProcess::start(sb.config());
    let started = Instant::now();
    until_clock_runs("the direct request after the trip", || {
        direct_requests(&fake) >= 1
    })
    .await;
    let tripped = Instant::now();
    let calls_at_trip = fake.router_log().calls;
    assert!(calls_at_trip >= 3, "tripped after {calls_at_trip} router calls");
    assert!(
        tripped - started >= Duration::from_secs(5),
        "tripped within the grace"
    );

    // While the breaker is open, jobs are asked for directly and the router is left alone.
    tokio::time::sleep_until(tripped + Duration::from_secs(29)).await;
    assert_eq!(
        fake.router_log().calls,
        calls_at_trip,
        "the router was called while the breaker was open"
    );
    assert!(direct_requests(&fake) > 10);
    assert!(fake.router_log().jobs.is_empty());

    fake.set_router_mode(RouterMode::Serving);
    until_clock_runs("the trial call", || !fake.router_log().requests.is_empty()).await;
    assert!(tripped.elapsed() >= Duration::from_secs(30));
    let b = fake.enqueue_job(job("after-recovery"));
    until_clock_runs("job B's final update", || reported(&fake, b)).await;
    assert_eq!(fake.router_log().jobs, vec![b]);
    assert_eq!(final_status(&fake, b).await, "success");
    d.send(Signal::Quit);
    d.exit().await;
}

/// `Unimplemented` means the router was turned off: the request goes directly at once (no breaker), and the
/// next request discovers again. Once it is back, jobs come through it.
#[tokio::test(start_paused = true)]
async fn unimplemented_disables_the_router_until_discovered_again() {
    let fake = fake(true).await;
    fake.set_router_mode(RouterMode::Disabled);
    let sb = Sandbox::new();
    config(&fake, &sb, 1, ON);
    let d = InProcess::start(sb.config());
    let a = fake.enqueue_job(job("while-disabled"));
    until_clock_runs("job A's final update", || reported(&fake, a)).await;
    assert_eq!(final_status(&fake, a).await, "success");
    let log = fake.router_log();
    assert!(log.jobs.is_empty() && log.calls >= 1, "{log:?}");
    assert!(direct_requests(&fake) >= 1);
    until_clock_runs("a second discovery", || fake.router_discoveries() >= 2).await;

    fake.set_router_mode(RouterMode::Serving);
    // A call answered `Unimplemented` just before the switch still goes on to a direct request: job B is queued only
    // once the router has taken a call in its serving mode (the runner's one request loop asks in turn).
    let before = fake.router_log().calls;
    until_clock_runs("a call to the serving router", || {
        fake.router_log().calls > before
    })
    .await;
    let b = fake.enqueue_job(job("enabled-again"));
    until_clock_runs("job B's final update", || reported(&fake, b)).await;
    assert_eq!(fake.router_log().jobs, vec![b]);
    d.send(Signal::Quit);
    d.exit().await;
}

fn run_config(fake: &FakeGitlab, sb: &Sandbox) -> String {
    config(fake, sb, 1, ON);
    sb.config_str()
}

/// A router nobody answers at (connection refused): the requests fail as `Unavailable` until the breaker
/// trips, which upstream's warning names, and the job is then asked for directly.
#[tokio::test]
async fn router_down_falls_back_with_the_breaker_warning() {
    let fake = fake(true).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    fake.set_router_discovery(Some(format!("grpc://127.0.0.1:{port}")));
    let sb = Sandbox::new();
    let cfg = run_config(&fake, &sb);
    let d = sb.spawn(&["run", "-c", &cfg]);
    let id = fake.enqueue_job(job("router-down"));
    let record = finished(&fake, id, Duration::from_secs(60), &d).await;
    assert_eq!(record.status, "success", "{}", d.log());
    let log = d.log();
    assert!(log.contains("Using job router at grpc://127.0.0.1:"), "{log}");
    assert!(log.contains("Error requesting a job"), "{log}");
    assert!(
        log.contains("Job router circuit breaker tripped, falling back to direct job requests"),
        "{log}"
    );
    quit_ok(d).await;
}

/// An address the runner cannot use (a scheme that is neither gRPC nor WebSocket) is a dial failure: upstream's
/// warning, then the direct request, every time; an `Unimplemented` answer is logged as upstream logs it.
#[tokio::test]
async fn unusable_address_and_disabled_router_are_logged_as_upstream() {
    let fake = fake(true).await;
    fake.set_router_discovery(Some("https://127.0.0.1:1/".to_string()));
    let sb = Sandbox::new();
    let cfg = run_config(&fake, &sb);
    let d = sb.spawn(&["run", "-c", &cfg]);
    let a = fake.enqueue_job(job("dial-failed"));
    assert_eq!(
        finished(&fake, a, Duration::from_secs(60), &d).await.status,
        "success"
    );
    let log = d.log();
    assert!(
        log.contains("Job router dial failed, falling back to direct job requests"),
        "{log}"
    );
    assert!(log.contains("unsupported scheme in kas address"), "{log}");
    assert_eq!(fake.router_log().calls, 0);

    quit_ok(d).await;
    fake.set_router_discovery(None);
    fake.set_router_mode(RouterMode::Disabled);
    let d = sb.spawn(&["run", "-c", &cfg]);
    let b = fake.enqueue_job(job("disabled"));
    assert_eq!(
        finished(&fake, b, Duration::from_secs(60), &d).await.status,
        "success"
    );
    let log = d.log();
    assert!(
        log.contains("Job router is disabled, falling back to direct job requests"),
        "{log}"
    );
    quit_ok(d).await;
}

/// `grpcs://`: the router is reached over TLS (ALPN `h2`) and verified with the runner's `tls-ca-file`, as GitLab
/// is. The binary on a real clock: in-process under the paused clock this case once fell back to the direct
/// request (likely the clock jumping past the call's deadline while both ends of the TLS handshake, tasks of one
/// runtime, waited on each other).
#[tokio::test]
async fn grpcs_router_is_verified_with_the_runners_ca_file() {
    let pki = fake_gitlab::TestPki::generate().unwrap();
    let fake = FakeGitlab::start(FakeOptions {
        long_poll: Duration::ZERO,
        trace_update_interval: 1,
        job_router: true,
        tls: Some(pki.server.clone()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    assert!(fake.router_url().unwrap().starts_with("grpcs://localhost:"));
    let sb = Sandbox::new();
    let ca = sb.path("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    config(
        &fake,
        &sb,
        1,
        &format!("  tls-ca-file = \"{}\"\n{ON}", ca.display()),
    );
    let d = sb.spawn(&["run", "-c", &sb.config_str()]);
    let id = fake.enqueue_job(job("over-tls"));
    assert_eq!(
        finished(&fake, id, Duration::from_secs(60), &d).await.status,
        "success"
    );
    assert_eq!(fake.router_log().jobs, vec![id], "{}", d.log());
    assert_eq!(direct_requests(&fake), 0, "{}", d.log());
    quit_ok(d).await;
}

/// `ws://` and `wss://` (KAS's usual external URL): gRPC through a WebSocket tunnel with the `ws-tunnel`
/// subprotocol and the runner's bearer token, `wss://` verified with the runner's `tls-ca-file`.
#[tokio::test]
async fn websocket_tunnel_router_serves_the_job() {
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
        let tunnel = fake.router_tunnel_url().unwrap();
        assert!(tunnel.starts_with(if tls {
            "wss://localhost:"
        } else {
            "ws://127.0.0.1:"
        }));
        fake.set_router_discovery(Some(tunnel));
        let sb = Sandbox::new();
        let ca = sb.path("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        config(
            &fake,
            &sb,
            1,
            &format!("  tls-ca-file = \"{}\"\n{ON}", ca.display()),
        );
        let d = sb.spawn(&["run", "-c", &sb.config_str()]);
        let id = fake.enqueue_job(job("tunnelled"));
        assert_eq!(
            finished(&fake, id, Duration::from_secs(60), &d).await.status,
            "success"
        );
        let log = fake.router_log();
        assert_eq!(log.jobs, vec![id], "{}", d.log());
        assert!(log.tunnels >= 1 && log.last_authorized, "{log:?}");
        assert_eq!(direct_requests(&fake), 0, "{}", d.log());
        quit_ok(d).await;
    }
}
