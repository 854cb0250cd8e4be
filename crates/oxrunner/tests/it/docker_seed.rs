//! Issue #5 acceptance, the seed's pipeline: `oxrunner run` with the seed's docker runner config.toml runs the
//! seed's `deploy_job` (`image: docker:latest`) and a job on the pipeline's default `image: node:8.4.0`, against
//! the local stand-in images of `scripts/docker-images`. The stand-ins live under `oxrunner-test/` (a test image
//! tagged `docker:latest` would shadow the user's real one), so the config and the jobs name
//! `oxrunner-test/docker:latest` and `oxrunner-test/node:8.4.0`: the same paths (runner default image, job image,
//! pipeline default image) with a name of our own. With the seed's `volumes` the job's `docker info` reaches
//! the host's engine; without the socket volume the job fails and its log says which volume is missing.
//! Runs on a real dockerd; with `CI=true` a missing engine fails instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;
use crate::support::docker_e2e;

use std::time::Duration;

use common::{Daemon, Sandbox, fake, finished, global_toml, project_files};
use docker_e2e::{EngineGuard, engine_id, engine_ready, has_output_line, wait_no_leftovers};
use fake_gitlab::{FakeGitlab, ImageSpec, JobSpec};

const FINISH: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(60);
const SEED_VOLUMES: &str = r#"["/cache", "/var/run/docker.sock:/var/run/docker.sock"]"#;

/// The seed's docker runner (its Q&A 2 config.toml) with `volumes` as given, its `image = "docker:latest"` naming the
/// stand-in `oxrunner-test/docker:latest`. `pull_policy` is added: the seed pulls `docker:latest` from Docker Hub,
/// and here the stand-in images exist only locally.
fn seed_config(url: &str, token: &str, volumes: &str) -> String {
    global_toml(4, "")
        + &format!(
            "\n[[runners]]\n  name = \"Docker Runner\"\n  url = \"{url}\"\n  token = \"{token}\"\n  \
             executor = \"docker\"\n  [runners.docker]\n    tls_verify = false\n    image = \"oxrunner-test/docker:latest\"\n    \
             privileged = false\n    disable_cache = false\n    volumes = {volumes}\n    shm_size = 0\n    \
             pull_policy = [\"if-not-present\"]\n  [runners.cache]\n"
        )
}

struct Seed {
    fake: FakeGitlab,
    sb: Sandbox,
    daemon: Daemon,
    short_token: String,
    project: i64,
    guard: EngineGuard,
}

async fn start(volumes: &str) -> Seed {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/seed", &project_files(sb.dir.path()))
        .unwrap();
    let token = fake.create_runner_token("Docker Runner");
    let short_token = oxrunner_config::short_token(&token);
    let mut guard = EngineGuard::new();
    guard.short_tokens.push(short_token.clone());
    std::fs::write(sb.config(), seed_config(&fake.url(), &token, volumes)).unwrap();
    let cfg = sb.config_str();
    let daemon = sb.spawn(&["run", "-c", &cfg]);
    Seed {
        fake,
        sb,
        daemon,
        short_token,
        project: project.id,
        guard,
    }
}

impl Seed {
    /// Stops the runner gracefully and checks that none of its containers, networks or volumes remain.
    async fn finish(mut self) {
        let status = self.daemon.quit(EXIT).await;
        assert!(
            status.success(),
            "runner exit {status:?}; log:\n{}",
            self.daemon.log()
        );
        let left = wait_no_leftovers(&self.short_token, Duration::from_secs(30)).await;
        assert!(
            left.is_empty(),
            "objects left on the engine: {left:?}\nrunner log:\n{}",
            self.daemon.log()
        );
        drop(self.guard);
        drop(self.sb);
    }
}

/// The seed's `deploy_job` (`image: docker:latest`, here its stand-in), with `docker info` first as the seed's Q&A 2
/// runs `docker login` against the engine.
fn deploy_job(project: i64) -> JobSpec {
    JobSpec::new("deploy_job", &["docker info", "echo \"Deploy okay.\""])
        .stage("deploy")
        .project(project)
        .image(ImageSpec::new("oxrunner-test/docker:latest"))
}

/// Prints the image the job's own container was created from (the container's hostname is its id).
const WHICH_IMAGE: &str = "docker inspect --format 'job-image={{.Config.Image}}' \"$(hostname)\"";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn seed_deploy_job_reaches_the_host_engine_and_default_images_apply() {
    if !engine_ready() {
        return;
    }
    let seed = start(SEED_VOLUMES).await;
    let deploy = seed
        .fake
        .enqueue_job(deploy_job(seed.project).variable("GIT_STRATEGY", "none"));
    // GitLab puts the pipeline's top-level `image: node:8.4.0` (here its stand-in) into every job that names none.
    let build = seed.fake.enqueue_job(
        JobSpec::new(
            "build",
            &["cat hello.txt", WHICH_IMAGE, "cat /etc/oxrunner-image"],
        )
        .project(seed.project)
        .image(ImageSpec::new("oxrunner-test/node:8.4.0")),
    );
    // A job without any image runs in the runner's `[runners.docker] image`.
    let bare = seed
        .fake
        .enqueue_job(JobSpec::new("bare", &[WHICH_IMAGE]).project(seed.project));

    let job = finished(&seed.fake, deploy, FINISH, &seed.daemon).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{job:?}\n{trace}\n{}", seed.daemon.log());
    let id = engine_id();
    assert!(
        trace.contains(&format!("ID: {id}")),
        "the job's `docker info` did not show the host engine ({id}):\n{trace}"
    );
    assert!(has_output_line(&trace, "Deploy okay."), "{trace}");

    let job = finished(&seed.fake, build, FINISH, &seed.daemon).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{job:?}\n{trace}\n{}", seed.daemon.log());
    assert!(
        has_output_line(&trace, "job-image=oxrunner-test/node:8.4.0"),
        "{trace}"
    );
    assert!(has_output_line(&trace, "hello from the repository"), "{trace}");
    // The job ran in the stand-in image, not on the runner's host.
    assert!(
        has_output_line(
            &trace,
            "oxrunner tools test image (bash, git, docker CLI, busybox)"
        ),
        "{trace}"
    );

    let job = finished(&seed.fake, bare, FINISH, &seed.daemon).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{job:?}\n{trace}\n{}", seed.daemon.log());
    assert!(
        has_output_line(&trace, "job-image=oxrunner-test/docker:latest"),
        "{trace}"
    );

    seed.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn without_the_socket_volume_the_deploy_job_fails_and_its_log_names_the_volume() {
    if !engine_ready() {
        return;
    }
    let seed = start(r#"["/cache"]"#).await;
    let deploy = seed.fake.enqueue_job(deploy_job(seed.project));
    let job = finished(&seed.fake, deploy, FINISH, &seed.daemon).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{job:?}\n{trace}\n{}", seed.daemon.log());
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"), "{trace}");
    assert_eq!(job.exit_code, Some(1), "{trace}");
    assert!(trace.contains("Cannot connect to the Docker daemon"), "{trace}");
    assert!(!has_output_line(&trace, "Deploy okay."), "{trace}");
    // The seed's answer to this error: mount the socket through `[runners.docker] volumes`.
    let hints: Vec<&str> = trace.lines().filter(|l| l.contains("hint:")).collect();
    let hints = hints.join("\n");
    assert!(
        hints.contains("[runners.docker] volumes") && hints.contains("/var/run/docker.sock"),
        "no hint names the socket volume:\n{trace}"
    );
    seed.finish().await;
}
