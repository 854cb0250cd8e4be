//! `FF_USE_PARALLEL_ARTIFACT_TRANSFER`: a dependency's archive that GitLab redirects to object storage comes in
//! parallel ranged GETs written at their offsets (checked byte for byte by the consuming job), one stream without
//! the flag, and one stream when the store ignores `Range`; the `artifacts-downloader` helper does the same when
//! its environment has the flag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fake_gitlab::{ArtifactSpec, JobSpec, RequestLog};

use crate::support::hooks::{Env, fake_options};

/// 5 MiB parts (the smallest the knob allows) instead of gitlab-runner's 16 MiB, so a 12 MB archive has three.
const PART: u64 = 5 * 1024 * 1024;

async fn env_with_producer() -> (Env, i64, u64) {
    let knob = format!("{PART},{PART}");
    let env = Env::start_with(
        fake_options(),
        1,
        &[("OXRUNNER_TEST_ARTIFACT_PARTS", knob.as_str())],
        "",
    )
    .await;
    // Random bytes do not compress: the archive stays above two parts.
    let producer = JobSpec::new(
        "build",
        &[
            "head -c 12000000 /dev/urandom > big.bin",
            "sha256sum big.bin > big.sum",
        ],
    )
    .variable("GIT_STRATEGY", "empty")
    .artifact(ArtifactSpec {
        paths: vec!["big.bin".into(), "big.sum".into()],
        ..ArtifactSpec::default()
    });
    let a = env.fake.enqueue_job(producer);
    env.succeeded(a).await;
    let size = env.fake.job(a).unwrap().artifacts[0].bytes.len() as u64;
    assert!(size > 2 * PART, "archive of {size} bytes");
    (env, a, size)
}

fn consumer(a: i64, parallel: &str) -> JobSpec {
    JobSpec::new("test", &["sha256sum -c big.sum"])
        .variable("GIT_STRATEGY", "empty")
        .variable("FF_USE_PARALLEL_ARTIFACT_TRANSFER", parallel)
        .dependency(a)
}

/// The object-storage GETs of job `a`'s archive, in the order the fake answered them.
fn storage_gets(env: &Env, a: i64) -> Vec<RequestLog> {
    let prefix = format!("/object-storage/artifacts/{a}/");
    env.fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_download_comes_in_parallel_ranges_with_the_flag_and_in_one_stream_without() {
    let (env, a, size) = env_with_producer().await;

    let b = env.fake.enqueue_job(consumer(a, "false"));
    env.succeeded(b).await;
    let gets = storage_gets(&env, a);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].header("range"), None, "{gets:?}");

    let c = env.fake.enqueue_job(consumer(a, "true"));
    let log = env.succeeded(c).await.trace_text();
    // gitlab-runner's downloader logs these in the job log.
    for line in [
        "Direct download from 127.0.0.1",
        "Artifact download: parallel, 16 streams, 5 MiB chunk size",
    ] {
        assert!(log.contains(line), "{line:?} missing from the job log:\n{log}");
    }
    let gets: Vec<RequestLog> = storage_gets(&env, a).into_iter().skip(1).collect();
    let mut ranges: Vec<(u64, u64)> = gets
        .iter()
        .map(|r| {
            assert_eq!(r.status, 206, "{r:?}");
            let spec = r.header("range").expect("every GET asks for a range");
            let (from, to) = spec.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
            (from.parse().unwrap(), to.parse().unwrap())
        })
        .collect();
    ranges.sort_unstable();
    assert!(
        gets.iter().all(|r| r.header("job-token").is_none()),
        "the job token never goes to object storage: {gets:?}"
    );
    let want = vec![
        (0, PART - 1),
        (PART, 2 * PART - 1),
        (2 * PART, (3 * PART).min(size) - 1),
    ];
    assert_eq!(ranges, want, "archive of {size} bytes: {gets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ignores_range_is_read_as_one_stream() {
    let (env, a, _) = env_with_producer().await;
    env.fake.faults().object_storage_ignores_range(true);

    let b = env.fake.enqueue_job(consumer(a, "true"));
    env.succeeded(b).await;
    let gets = storage_gets(&env, a);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].status, 200, "{gets:?}");
    assert!(
        gets[0].header("range").is_some(),
        "asked for a range first: {gets:?}"
    );
}

/// The `artifacts-downloader` helper (what a custom executor's stage runs) reads the flag from its environment,
/// as gitlab-runner's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downloader_helper_takes_the_flag_from_its_environment() {
    let (env, a, _) = env_with_producer().await;
    let bin = crate::support::bin();
    let script =
        format!("mkdir dl && cd dl && \"$HELPER_BIN\" artifacts-downloader --id {a} && sha256sum -c big.sum");
    let job = JobSpec::new("helper", &[script.as_str()])
        .variable("GIT_STRATEGY", "empty")
        .variable("HELPER_BIN", bin)
        .variable("FF_USE_PARALLEL_ARTIFACT_TRANSFER", "true")
        .variable("OXRUNNER_TEST_ARTIFACT_PARTS", &format!("{PART},{PART}"));
    let b = env.fake.enqueue_job(job);
    let log = env.succeeded(b).await.trace_text();
    assert!(
        log.contains("Artifact download: parallel, 16 streams, 5 MiB chunk size"),
        "{log}"
    );
    let gets = storage_gets(&env, a);
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert!(
        gets.iter()
            .all(|r| r.status == 206 && r.header("range").is_some()),
        "{gets:?}"
    );
}
