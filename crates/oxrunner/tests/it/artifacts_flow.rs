#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Artifacts end to end: the real `oxrunner run` against the fake GitLab uploads, downloads, and fails clearly
//! on 413 and on missing dependency archives.

use crate::support::hooks as hooks_common;

use fake_gitlab::{ArtifactSpec, Endpoint, FakeOptions, JobSpec};
use hooks_common::{Env, fake_options, run, write_file, zip_entries};

fn empty_job(name: &str, script: &[&str]) -> JobSpec {
    JobSpec::new(name, script).variable("GIT_STRATEGY", "empty")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_dotenv_upload_then_dependency_download() {
    let env = Env::start(fake_options(), 2).await;
    let producer = empty_job(
        "build",
        &[
            "mkdir -p out/sub",
            "echo alpha > out/a.txt",
            "echo beta > out/sub/b.txt",
            "echo noise > out/skip.log",
            "printf 'BUILD_VERSION=1.2.3\\n' > build.env",
        ],
    )
    .artifact(ArtifactSpec {
        paths: vec!["out/".into()],
        exclude: vec!["out/*.log".into()],
        expire_in: Some("1 day".into()),
        ..ArtifactSpec::default()
    })
    .artifact(ArtifactSpec {
        paths: vec!["build.env".into()],
        artifact_type: "dotenv".into(),
        artifact_format: "gzip".into(),
        ..ArtifactSpec::default()
    });
    let a = env.fake.enqueue_job(producer);
    let job_a = env.succeeded(a).await;
    let trace = job_a.trace_text();
    assert!(
        trace.contains("Uploading artifacts for successful job"),
        "{trace}"
    );
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{trace}"
    );
    assert!(
        trace.contains("Uploading artifacts as \"dotenv\" to coordinator... 201 Created"),
        "{trace}"
    );

    let archive = job_a
        .artifacts
        .iter()
        .find(|x| x.artifact_type == "archive")
        .expect("archive stored");
    assert_eq!(archive.artifact_format, "zip");
    assert_eq!(archive.filename, "artifacts.zip");
    assert_eq!(archive.expire_in.as_deref(), Some("1 day"));
    let zip = write_file(env.dir.path(), "a.zip", &archive.bytes);
    let (ok, _) = run("unzip", &["-tq", zip.to_str().unwrap()]);
    assert!(ok, "unzip -t rejected the uploaded archive");
    assert_eq!(
        zip_entries(&zip),
        vec!["out/", "out/a.txt", "out/sub/", "out/sub/b.txt"]
    );

    let dotenv = job_a
        .artifacts
        .iter()
        .find(|x| x.artifact_type == "dotenv")
        .expect("dotenv stored");
    assert_eq!(dotenv.artifact_format, "gzip");
    assert_eq!(dotenv.filename, "artifacts.gz");
    let gz = write_file(env.dir.path(), "dotenv.gz", &dotenv.bytes);
    let (ok, text) = run("gzip", &["-dc", gz.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(text, "BUILD_VERSION=1.2.3\n");

    let consumer = empty_job(
        "test",
        &[
            "test \"$(cat out/a.txt)\" = alpha",
            "test \"$(cat out/sub/b.txt)\" = beta",
            "test ! -e out/skip.log",
        ],
    )
    .dependency(a);
    let b = env.fake.enqueue_job(consumer);
    let job_b = env.succeeded(b).await;
    let trace = job_b.trace_text();
    assert!(
        trace.contains(&format!("Downloading artifacts for build ({a})...")),
        "{trace}"
    );
    assert!(
        trace.contains("Downloading artifacts from coordinator... ok"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_upload_fails_the_job_and_names_both_limits() {
    let opts = FakeOptions {
        max_artifact_size: Some(4096),
        ..fake_options()
    };
    let env = Env::start(opts, 1).await;
    let job = empty_job("big", &["head -c 32768 /dev/urandom > big.bin"])
        .artifact(ArtifactSpec::paths(&["big.bin"]));
    let id = env.fake.enqueue_job(job);
    let rec = env.finished(id).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "failed", "{trace}");
    assert_eq!(rec.failure_reason.as_deref(), Some("script_failure"), "{trace}");
    assert!(rec.artifacts.is_empty());
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... too large archive"),
        "{trace}"
    );
    assert!(trace.contains("responseStatus=413"), "{trace}");
    // Random bytes do not compress: the archive is a little over 32 KiB.
    assert!(trace.contains("The artifact archive is 32."), "{trace}");
    assert!(trace.contains(" KiB ("), "{trace}");
    assert!(trace.contains("Maximum artifacts size"), "{trace}");
    assert!(trace.contains("Admin Area > Settings > CI/CD"), "{trace}");
    assert!(trace.contains("nginx['client_max_body_size']"), "{trace}");
    assert!(trace.contains("/etc/gitlab/gitlab.rb"), "{trace}");
    assert!(trace.contains("Job failed: too large archive"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dependency_archive_fails_with_missing_dependency_failure() {
    let env = Env::start(fake_options(), 1).await;
    let a = env
        .fake
        .enqueue_job(empty_job("build", &["echo x > keep.txt"]).artifact(ArtifactSpec::paths(&["keep.txt"])));
    env.succeeded(a).await;
    // The archive "expires" between the jobs: GitLab still lists it, the download answers 404.
    env.fake.faults().fail_next(Endpoint::ArtifactDownload, 1, 404);
    let b = env
        .fake
        .enqueue_job(empty_job("test", &["echo should not run"]).dependency(a));
    let rec = env.finished(b).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "failed", "{trace}");
    assert_eq!(
        rec.failure_reason.as_deref(),
        Some("missing_dependency_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("Downloading artifacts from coordinator... not found"),
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "the artifacts of job \"build\" ({a}) do not exist or have expired"
        )),
        "{trace}"
    );
    assert!(!trace.contains("$ echo should not run"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_warn_and_on_failure_artifacts_follow_the_job_state() {
    let env = Env::start(fake_options(), 1).await;
    let job = empty_job("flaky", &["echo log > debug.txt", "exit 3"])
        .artifact(ArtifactSpec::paths(&["nothing-here/", "debug.txt"]))
        .artifact(ArtifactSpec {
            paths: vec!["debug.txt".into()],
            when: "on_failure".into(),
            artifact_type: "trace_dump".into(),
            ..ArtifactSpec::default()
        });
    let id = env.fake.enqueue_job(job);
    let rec = env.finished(id).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "failed", "{trace}");
    assert_eq!(rec.exit_code, Some(3), "{trace}");
    assert!(trace.contains("Uploading artifacts for failed job"), "{trace}");
    // Only the on_failure entry runs after a failure.
    assert_eq!(rec.artifacts.len(), 1, "{trace}");
    assert_eq!(rec.artifacts[0].artifact_type, "trace_dump");

    let ok = env.fake.enqueue_job(
        empty_job("fine", &["echo log > debug.txt"])
            .artifact(ArtifactSpec::paths(&["nothing-here/", "debug.txt"])),
    );
    let rec = env.succeeded(ok).await;
    let trace = rec.trace_text();
    assert!(
        trace.contains("WARNING: nothing-here: no matching files"),
        "{trace}"
    );
    let zip = write_file(env.dir.path(), "fine.zip", &rec.artifacts[0].bytes);
    assert_eq!(zip_entries(&zip), vec!["debug.txt"]);
}
