//! Issue #5 acceptance, the seed's setup: oxrunner itself runs in a container (`oxrunner-test/oxrunner:test`, built here
//! from this test build's binary by `scripts/docker-images --oxrunner`) that mounts only the engine's socket and
//! its config directory. It registers through the same image (`docker run --rm ... register -n`), then `run`s a
//! docker job to success, with the sources fetched and the artifacts uploaded by the runner itself; a
//! `docker stop` (SIGTERM) mid-job ends it without leaving job objects behind; a `docker start` brings it back with
//! its cache; after a `docker kill` (SIGKILL) mid-job, the next start removes what the killed run left.
//! The runner's container uses the host network only so that it reaches fake-gitlab on 127.0.0.1; the job's
//! container never talks to GitLab. Runs on a real dockerd; with `CI=true` a missing engine fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;
use crate::support::docker_e2e;

use std::time::Duration;

use common::{Sandbox, fake, project_files, wait_status};
use docker_e2e::{
    EngineGuard, build_oxrunner_image, docker, docker_ok, engine_ready, has_output_line, leftovers,
    unique_name, wait_no_leftovers,
};
use fake_gitlab::{ArtifactSpec, CacheSpec, FakeGitlab, ImageSpec, JobRecord, JobSpec};

const IMAGE: &str = "oxrunner-test/oxrunner:test";
const REG: &str = "GR1348941fake-registration";
const FINISH: Duration = Duration::from_secs(120);

/// The runner container's log, for failure messages.
fn runner_log(name: &str) -> String {
    let out = docker(&["logs", name]);
    format!("{}{}", out.stdout, out.stderr)
}

/// Waits for the job to finish; fails at once, with the runner's log, if the runner's container stopped.
async fn finished(fake: &FakeGitlab, id: i64, runner: &str) -> JobRecord {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let job = fake.job(id).expect("unknown job");
        if job.is_finished() {
            return job;
        }
        let running = docker_ok(&["inspect", "--format", "{{.State.Running}}", runner]);
        assert!(
            running == "true",
            "the runner's container stopped while job {id} was {}; log:\n{}",
            job.status,
            runner_log(runner)
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not finish within {FINISH:?}: {job:?}\nrunner log:\n{}",
            runner_log(runner)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the engine has a container of this runner's job (it really is mid-job, not still preparing).
async fn wait_job_container(short_token: &str, job: i64, runner: &str) {
    let by_runner = format!("label={}={short_token}", docker_e2e::LABEL_RUNNER);
    let by_job = format!("label=com.oxrunner.job={job}");
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let ids = docker_ok(&["ps", "-q", "--filter", &by_runner, "--filter", &by_job]);
        if !ids.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} never got a running container; runner log:\n{}",
            runner_log(runner)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn oxrunner_in_a_container_registers_runs_docker_jobs_and_survives_stop_restart_and_kill() {
    if !engine_ready() {
        return;
    }
    build_oxrunner_image(IMAGE);
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let config_dir = sb.config().parent().unwrap().to_string_lossy().into_owned();
    let config_mount = format!("{config_dir}:/etc/gitlab-runner");
    let url = fake.url();
    let mut guard = EngineGuard::new();

    // The seed's one-shot registration, non-interactive (no terminal here, so no -t -i).
    let register = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &config_mount,
        IMAGE,
        "register",
        "--non-interactive",
        "--url",
        &url,
        "--registration-token",
        REG,
        "--executor",
        "docker",
        // The seed's `--docker-image docker:latest`, as its stand-in of our own name space (a test image tagged
        // `docker:latest` would shadow the user's real one).
        "--docker-image",
        "oxrunner-test/docker:latest",
        // No registry is reachable: the default pull policy (always) could not start any job.
        "--docker-pull-policy",
        "if-not-present",
        "--description",
        "Docker Runner",
    ]);
    assert!(
        register.ok,
        "register failed:\n{}{}",
        register.stdout, register.stderr
    );
    assert!(!register.stdout.contains(REG) && !register.stderr.contains(REG));
    let runners = fake.runners();
    assert_eq!(runners.len(), 1, "{runners:?}");
    let config = sb.config_toml();
    let entry = config["runners"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(entry["executor"].as_str(), Some("docker"));
    assert_eq!(entry["token"].as_str(), Some(runners[0].token.as_str()));
    let short_token = oxrunner_config::short_token(&runners[0].token);
    guard.short_tokens.push(short_token.clone());

    // The seed's runner container: the engine's socket and the config directory, nothing else.
    let name = unique_name("oxrunner-in-container");
    guard.containers.push(name.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &config_mount,
        IMAGE,
        "run",
    ]);

    // The seed's `docker exec -it gitlab-runner /bin/bash`, then the runner under its upstream name.
    let listed = docker(&["exec", &name, "/bin/bash", "-c", "gitlab-runner list"]);
    assert!(
        listed.ok && format!("{}{}", listed.stdout, listed.stderr).contains("Docker Runner"),
        "gitlab-runner list in the runner's container: {listed:?}"
    );

    let project = fake
        .create_project("group/in-container", &project_files(sb.dir.path()))
        .unwrap();
    let build = fake.enqueue_job(
        JobSpec::new(
            "build",
            &[
                "cat hello.txt",
                "cat /etc/oxrunner-image",
                "echo built-in-a-container > result.txt",
                "mkdir -p cache-dir && echo cached-before-restart > cache-dir/c.txt",
            ],
        )
        .project(project.id)
        .image(ImageSpec::new("oxrunner-test/busybox:latest"))
        .artifact(ArtifactSpec::paths(&["result.txt"]))
        .cache(CacheSpec::new("seed-cache", &["cache-dir/"])),
    );
    let job = finished(&fake, build, &name).await;
    let trace = job.trace_text();
    assert_eq!(
        job.status,
        "success",
        "{job:?}\n{trace}\nrunner log:\n{}",
        runner_log(&name)
    );
    assert!(has_output_line(&trace, "hello from the repository"), "{trace}");
    assert!(has_output_line(&trace, "oxrunner busybox test image"), "{trace}");
    let archive = job
        .artifacts
        .iter()
        .find(|a| a.artifact_type == "archive")
        .unwrap_or_else(|| panic!("no artifacts archive uploaded: {job:?}\n{trace}"));
    assert!(
        String::from_utf8_lossy(&archive.bytes).contains("result.txt"),
        "result.txt is not in the uploaded archive ({} bytes)",
        archive.size
    );
    let left = wait_no_leftovers(&short_token, Duration::from_secs(30)).await;
    assert!(left.is_empty(), "the finished job left {left:?}");

    // A long job, then the seed's way of stopping the runner: `docker stop` sends SIGTERM to its PID 1.
    let slow = fake.enqueue_job(slow_job(project.id));
    wait_status(&fake, slow, "running", FINISH).await;
    wait_job_container(&short_token, slow, &name).await;
    docker_ok(&["stop", "-t", "60", &name]);
    assert_exited_cleanly(&name);
    let job = fake.job(slow).unwrap();
    assert_eq!(
        job.status,
        "failed",
        "{job:?}\nrunner log:\n{}",
        runner_log(&name)
    );
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{job:?}"
    );
    let left = leftovers(&short_token);
    assert!(
        left.is_empty(),
        "SIGTERM left job objects on the engine: {left:?}\nrunner log:\n{}",
        runner_log(&name)
    );

    // The seed runs the container with `--restart unless-stopped`: started again, the runner still has its cache
    // store, which lives in the mounted config directory.
    docker_ok(&["start", &name]);
    let again = fake.enqueue_job(
        JobSpec::new("after-restart", &["cat cache-dir/c.txt"])
            .project(project.id)
            .image(ImageSpec::new("oxrunner-test/busybox:latest"))
            .cache(CacheSpec {
                policy: "pull".into(),
                ..CacheSpec::new("seed-cache", &["cache-dir/"])
            }),
    );
    let job = finished(&fake, again, &name).await;
    let trace = job.trace_text();
    assert_eq!(
        job.status,
        "success",
        "{job:?}\n{trace}\nrunner log:\n{}",
        runner_log(&name)
    );
    assert!(has_output_line(&trace, "cached-before-restart"), "{trace}");

    // SIGKILL mid-job: nothing cleans up then, so the job's objects stay until the runner's next start removes them.
    let killed = fake.enqueue_job(slow_job(project.id));
    wait_status(&fake, killed, "running", FINISH).await;
    wait_job_container(&short_token, killed, &name).await;
    docker_ok(&["kill", &name]);
    let left = leftovers(&short_token);
    assert!(
        left.iter().any(|o| o.starts_with("container ")),
        "the killed runner's job container is gone already: {left:?}"
    );
    docker_ok(&["start", &name]);
    let left = wait_no_leftovers(&short_token, Duration::from_secs(60)).await;
    assert!(
        left.is_empty(),
        "the restarted runner did not remove the killed run's objects: {left:?}\nrunner log:\n{}",
        runner_log(&name)
    );
    docker_ok(&["stop", "-t", "60", &name]);
    assert_exited_cleanly(&name);
    drop(guard);
}

/// A busybox job that runs until it is stopped.
fn slow_job(project: i64) -> JobSpec {
    JobSpec::new("slow", &["echo slow-started", "sleep 600"])
        .project(project)
        .variable("GIT_STRATEGY", "none")
        .image(ImageSpec::new("oxrunner-test/busybox:latest"))
}

#[track_caller]
fn assert_exited_cleanly(name: &str) {
    let state = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.ExitCode}}",
        name,
    ]);
    assert_eq!(
        state,
        "false 0",
        "the runner did not exit cleanly on SIGTERM; log:\n{}",
        runner_log(name)
    );
}

/// A plain HTTP/1.0 GET on 127.0.0.1; `None` while nothing answers yet.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let status = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

/// README's container form with metrics: `docker run -p 9252:9252 ... run --listen-address :9252`. The runner's
/// container sits on a bridge network of the test's own (not the host's network) and publishes the metrics port
/// on a loopback port of the host, which serves `/metrics` and `/health/ready` from inside the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: run with --include-ignored (CI=true runs it)"]
async fn oxrunner_container_publishes_its_metrics_port_when_asked() {
    if !engine_ready() {
        return;
    }
    build_oxrunner_image(IMAGE);
    let sb = Sandbox::new();
    std::fs::write(sb.config(), "concurrent = 3\n").unwrap();
    let config_dir = sb.config().parent().unwrap().to_string_lossy().into_owned();
    let config_mount = format!("{config_dir}:/etc/gitlab-runner");
    // Declared before the engine guard, so that on a failure the container goes first and then its network.
    let network = NetworkGuard(unique_name("oxrunner-test-metrics-net"));
    docker_ok(&["network", "create", &network.0]);
    let mut guard = EngineGuard::new();
    let name = unique_name("oxrunner-test-metrics");
    guard.containers.push(name.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network.0,
        "-p",
        "127.0.0.1::9252",
        "-v",
        &config_mount,
        IMAGE,
        "run",
        "--listen-address",
        ":9252",
    ]);
    let published = docker_ok(&["port", &name, "9252/tcp"]);
    let port: u16 = published
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no loopback port published for 9252: {published:?}"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        match http_get(port, "/metrics") {
            Some((200, body)) if body.contains("gitlab_runner_concurrent") => break body,
            _ if tokio::time::Instant::now() > deadline => {
                panic!(
                    "no metrics on 127.0.0.1:{port}; runner log:\n{}",
                    runner_log(&name)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let concurrent = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gitlab_runner_concurrent "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(
        concurrent,
        Some(3.0),
        "the published metrics do not show config.toml's concurrent = 3:\n{metrics}"
    );
    assert!(metrics.contains("gitlab_runner_version_info{"), "{metrics}");
    let ready = http_get(port, "/health/ready").map(|(s, _)| s);
    assert_eq!(ready, Some(200), "runner log:\n{}", runner_log(&name));

    docker_ok(&["stop", "-t", "30", &name]);
    assert_exited_cleanly(&name);
    drop(guard);
    drop(network);
}

/// A network the test created, removed when dropped (after the containers on it: drop the engine guard first).
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}
