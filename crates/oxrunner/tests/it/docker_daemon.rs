#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue #5 acceptance through the daemon: `oxrunner run` with `executor = "docker"` and a gitlab-runner style
//! `[runners.docker]` section against fake-gitlab, on the machine's real dockerd. Each test has its own fake,
//! runner token (hence label) and sandbox, so they run in parallel. Without a Docker engine they skip with a
//! printed reason, unless `CI=true`, where they fail.

use crate::support::docker as docker_common;

use docker_common::{DockerOpts, Env, docker_available, project_files, walk, zip_entries, zip_read};
use fake_gitlab::{ArtifactSpec, CacheSpec, ImageSpec, JobSpec};

fn busybox(spec: JobSpec) -> JobSpec {
    spec.image(ImageSpec::new("oxrunner-test/busybox"))
}

fn no_git(spec: JobSpec) -> JobSpec {
    spec.variable("GIT_STRATEGY", "none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn busybox_job_prints_variables_and_a_repository_file_inside_the_image() {
    if !docker_available() {
        return;
    }
    // Only the test image has this file; if the host had it too, the check below would prove nothing.
    assert!(
        !std::path::Path::new("/etc/oxrunner-image").exists(),
        "the host has /etc/oxrunner-image, so it cannot tell host from container"
    );
    let mut env = Env::start(DockerOpts::default()).await;
    let project = env
        .fake
        .create_project("group/docker-e2e", &project_files(env.sb.dir.path()))
        .unwrap();
    let sandbox = env.sb.dir.path().display().to_string();
    let id = env.fake.enqueue_job(
        busybox(JobSpec::new(
            "vars",
            &[
                "echo \"GREETING=$GREETING\"",
                "echo \"JOB=$CI_JOB_ID PROJECT=$CI_PROJECT_PATH\"",
                "echo \"PWD-IS-PROJECT-DIR=$(test \"$(pwd)\" = \"$CI_PROJECT_DIR\" && echo yes)\"",
                "cat hello.txt",
                "cat /etc/oxrunner-image",
                // The runner's own files (its sandbox) are not visible inside the container.
                &format!("test ! -e {sandbox} && echo sandbox-not-visible"),
            ],
        ))
        .project(project.id)
        .variable("GREETING", "hello-docker"),
    );
    let job = env.succeeded(id).await;
    let trace = job.trace_text();
    assert!(trace.contains("GREETING=hello-docker"), "{trace}");
    assert!(
        trace.contains(&format!("JOB={id} PROJECT=group/docker-e2e")),
        "{trace}"
    );
    assert!(trace.contains("PWD-IS-PROJECT-DIR=yes"), "{trace}");
    assert!(trace.contains("hello from the repository"), "{trace}");
    assert!(trace.contains("oxrunner busybox test image"), "{trace}");
    assert!(trace.contains("sandbox-not-visible"), "{trace}");
    assert_eq!(job.checksum_ok, Some(true));
    // busybox has no git: the checkout was made on the runner's side (beside config.toml) and copied in.
    let checkouts = walk(&env.sb.path("etc/builds"));
    assert!(
        checkouts.iter().any(|p| p.ends_with("hello.txt")),
        "no runner-side checkout under etc/builds: {checkouts:?}"
    );
    // gitlab-runner's own line names the executor and the image.
    assert!(
        trace.contains("Using Docker executor with image oxrunner-test/busybox"),
        "{trace}"
    );
    env.daemon().quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn exit_code_3_fails_with_script_failure_and_runs_after_script() {
    if !docker_available() {
        return;
    }
    let env = Env::start(DockerOpts::default()).await;
    let id = env.fake.enqueue_job(
        busybox(no_git(JobSpec::new(
            "fails",
            &["echo about-to-fail", "exit 3", "echo not-reached"],
        )))
        .after_script(&["echo \"after-script in $(cat /etc/oxrunner-image)\""]),
    );
    let job = env.finished(id).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"), "{trace}");
    assert_eq!(job.exit_code, Some(3), "{trace}");
    let last = job.updates.last().expect("a final update");
    assert_eq!(last["state"], "failed", "{last}");
    assert_eq!(last["exit_code"], 3, "{last}");
    assert!(trace.contains("about-to-fail"), "{trace}");
    assert!(!trace.contains("not-reached"), "{trace}");
    assert!(
        trace.contains("after-script in oxrunner busybox test image"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn missing_image_with_pull_policy_never_fails_naming_the_image() {
    if !docker_available() {
        return;
    }
    let env = Env::start(DockerOpts {
        pull_policy: "\"never\"".into(),
        ..DockerOpts::default()
    })
    .await;
    let missing = "oxrunner-test/no-such-image:never-built";
    let id = env
        .fake
        .enqueue_job(no_git(JobSpec::new("missing", &["echo must-not-run"])).image(ImageSpec::new(missing)));
    let job = env.finished(id).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    // gitlab-runner's image_pull_failure is not in the fake's (GitLab's) `features.failure_reasons`, so it is
    // sent as runner_system_failure, as gitlab-runner's failure reason mapper does.
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains(missing),
        "the message must name the image:\n{trace}"
    );
    assert!(
        trace.contains("never"),
        "the message must name the policy:\n{trace}"
    );
    assert!(!trace.contains("must-not-run"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn allowed_images_refuses_an_image_outside_the_list() {
    if !docker_available() {
        return;
    }
    let env = Env::start(DockerOpts {
        docker_extra: "    allowed_images = [\"oxrunner-test/*\"]\n".into(),
        ..DockerOpts::default()
    })
    .await;
    let refused = env.fake.enqueue_job(
        no_git(JobSpec::new("refused", &["echo must-not-run"])).image(ImageSpec::new("busybox")),
    );
    let job = env.finished(refused).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(
        trace.contains("\"busybox\""),
        "the message must name the image:\n{trace}"
    );
    assert!(trace.contains("allowed images"), "{trace}");
    assert!(
        trace.contains("oxrunner-test/*"),
        "the message must show the list:\n{trace}"
    );
    assert!(!trace.contains("must-not-run"), "{trace}");

    // The same runner runs an image the list allows.
    let allowed = env.fake.enqueue_job(
        no_git(JobSpec::new("allowed", &["cat /etc/oxrunner-image"]))
            .image(ImageSpec::new("oxrunner-test/busybox:latest")),
    );
    let job = env.succeeded(allowed).await;
    assert!(
        job.trace_text().contains("oxrunner busybox test image"),
        "{}",
        job.trace_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn artifacts_are_uploaded_and_dependencies_appear_in_the_next_container() {
    if !docker_available() {
        return;
    }
    let env = Env::start(DockerOpts::default()).await;
    let producer = busybox(no_git(JobSpec::new(
        "build",
        &[
            "mkdir -p out/sub",
            "echo alpha > out/a.txt",
            "echo beta > out/sub/b.txt",
            "echo noise > out/skip.log",
        ],
    )))
    .artifact(ArtifactSpec {
        paths: vec!["out/".into()],
        exclude: vec!["out/*.log".into()],
        ..ArtifactSpec::default()
    });
    let a = env.fake.enqueue_job(producer);
    let job_a = env.succeeded(a).await;
    let trace = job_a.trace_text();
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{trace}"
    );
    let archive = job_a
        .artifacts
        .iter()
        .find(|x| x.artifact_type == "archive")
        .expect("the archive is stored");
    assert_eq!(archive.artifact_format, "zip");
    let tmp = env.sb.path("tmp");
    assert_eq!(
        zip_entries(&tmp, &archive.bytes),
        vec!["out/", "out/a.txt", "out/sub/", "out/sub/b.txt"]
    );
    assert_eq!(zip_read(&tmp, &archive.bytes, "out/sub/b.txt"), "beta\n");

    let consumer = busybox(no_git(JobSpec::new(
        "test",
        &[
            "test \"$(cat out/a.txt)\" = alpha",
            "test \"$(cat out/sub/b.txt)\" = beta",
            "test ! -e out/skip.log",
            "cat /etc/oxrunner-image",
            "echo dependency-ok",
        ],
    )))
    .dependency(a);
    let b = env.fake.enqueue_job(consumer);
    let job_b = env.succeeded(b).await;
    let trace = job_b.trace_text();
    assert!(
        trace.contains(&format!("Downloading artifacts for build ({a})...")),
        "{trace}"
    );
    assert!(trace.contains("oxrunner busybox test image"), "{trace}");
    assert!(trace.contains("dependency-ok"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn concurrent_docker_jobs_of_a_project_share_one_cache() {
    if !docker_available() {
        return;
    }
    let env = Env::start(DockerOpts {
        concurrent: 4,
        ..DockerOpts::default()
    })
    .await;
    let project = env
        .fake
        .create_project("group/cached", &project_files(env.sb.dir.path()))
        .unwrap();
    let cache = || CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["node_modules/"]);
    let producer = busybox(no_git(JobSpec::new(
        "install",
        &["mkdir -p node_modules/pkg", "echo v1 > node_modules/pkg/index.js"],
    )))
    .project(project.id)
    .cache(cache());
    let p = env.fake.enqueue_job(producer);
    let trace = env.succeeded(p).await.trace_text();
    assert!(trace.contains("Creating cache deps-main..."), "{trace}");
    assert!(trace.contains("Created cache"), "{trace}");

    // Four consumers at once: each lands in its own `concurrent` slot, and each must see the producer's cache
    // (gitlab-runner's per-slot cache volumes are what breaks this). They push too: concurrent writers.
    let consumers: Vec<i64> = (0..4)
        .map(|i| {
            env.fake.enqueue_job(
                busybox(no_git(JobSpec::new(
                    &format!("test {i}"),
                    &[
                        "test \"$(cat node_modules/pkg/index.js)\" = v1",
                        "echo restored-in-$(cat /etc/oxrunner-image | cut -d' ' -f1)",
                        "sleep 2",
                    ],
                )))
                .project(project.id)
                .cache(cache()),
            )
        })
        .collect();
    for id in consumers {
        let trace = env.succeeded(id).await.trace_text();
        assert!(trace.contains("Checking cache for deps-main..."), "{trace}");
        assert!(trace.contains("Successfully extracted cache"), "{trace}");
        assert!(trace.contains("restored-in-oxrunner"), "{trace}");
    }
    assert!(
        env.fake.max_concurrent_running() >= 2,
        "the consumers never overlapped, the test proves nothing"
    );
    let archives: Vec<_> = walk(&env.sb.cache_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("deps-main"))
        .collect();
    assert_eq!(archives.len(), 1, "one archive for the key: {archives:?}");
    assert!(archives[0].ends_with("deps-main/cache.zip"), "{archives:?}");
}
