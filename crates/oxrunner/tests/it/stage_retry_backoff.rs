#![allow(clippy::unwrap_used, clippy::expect_used)]
//! FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY on the runner-side artifact download: a failed download is retried
//! after upstream's backoff, and the warning names the wait.

use crate::support::hooks as hooks_common;

use fake_gitlab::{ArtifactSpec, Endpoint, JobSpec};
use hooks_common::{Env, fake_options};

fn empty_job(name: &str, script: &[&str]) -> JobSpec {
    JobSpec::new(name, script).variable("GIT_STRATEGY", "empty")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_artifact_download_is_retried_after_the_flag_off_backoff() {
    let env = Env::start(fake_options(), 1).await;
    let a = env
        .fake
        .enqueue_job(empty_job("build", &["echo x > keep.txt"]).artifact(ArtifactSpec::paths(&["keep.txt"])));
    env.succeeded(a).await;
    env.fake.faults().fail_next(Endpoint::ArtifactDownload, 3, 400);
    // The API client tries a download three times itself; the fourth request (the stage's second attempt) works.
    // With the flag off the first retry waits 1 s (5 s with it on), which keeps this test quick.
    let b = env.fake.enqueue_job(
        empty_job("test", &["cat keep.txt"])
            .dependency(a)
            .variable("ARTIFACT_DOWNLOAD_ATTEMPTS", "2")
            .variable("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "false"),
    );
    let rec = env.finished(b).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("retrying in 1s (attempt 2 of 2)"), "{trace}");
}
