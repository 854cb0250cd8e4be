//! An AWS bucket without `BucketLocation`, used by the job-side helpers of an in-script executor: the URLs they
//! get are signed for the region the bucket names, once the job's remote cache was prepared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxrunner_api::{Client, ClientConfig};
use oxrunner_core::{
    CacheSpec, CancellationToken, JobHooks, JobPlan, JobStatus, RunnerContext, Stage, StageCtx, TraceWriter,
    Variables,
};

use super::RemoteSetup;
use crate::hooks::RunnerHooks;

#[tokio::test]
async fn in_script_urls_are_signed_for_the_region_the_bucket_names() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::MOVED_PERMANENTLY,
            [("x-amz-bucket-region", "eu-west-3")],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let cache: oxrunner_config::CacheConfig = toml::from_str(
        "Type = \"s3\"\nShared = true\n[s3]\nAccessKey = \"AKIDINSCRIPT\"\nSecretKey = \"store-secret-key\"\n\
         BucketName = \"b\"\n",
    )
    .unwrap();
    let remote = RemoteSetup::from_config(Some(&cache), "abcdefghi")
        .with_region_probe(format!("http://{addr}/b/").parse().unwrap())
        .prepared(true)
        .await;
    server.abort();

    let dir = tempfile::tempdir().unwrap();
    let ctx = RunnerContext {
        builds_dir: dir.path().join("builds"),
        cache_dir: dir.path().join("cache"),
        ..RunnerContext::default()
    };
    let client = Client::new(ClientConfig {
        url: "http://127.0.0.1:1/".into(),
        ..ClientConfig::default()
    })
    .unwrap();
    let hooks = RunnerHooks::for_gitlab(client, 4, "glcbt-x", &ctx)
        .with_helper_command("/opt/oxrunner".into())
        .with_remote_cache(remote);
    let plan = JobPlan {
        job_id: 4,
        project_id: 7,
        project_path: "group/project".into(),
        caches: vec![CacheSpec {
            key: "k".into(),
            paths: vec!["vendor/".into()],
            ..CacheSpec::default()
        }],
        ..JobPlan::default()
    };
    let vars = Variables::default();
    let (trace, _handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    let sctx = StageCtx {
        plan: &plan,
        runner: &ctx,
        stage: Stage::RestoreCache,
        project_dir: dir.path().join("builds/p"),
        tmp_dir: dir.path().join("builds/p.tmp"),
        variables: &vars,
        status: JobStatus::Success,
        cancel: CancellationToken::new(),
    };
    let body = hooks.stage_script(&sctx, &trace).unwrap().unwrap();
    let line = body.lines().find(|l| l.contains("cache-extractor")).unwrap();
    assert!(line.contains("https://b.s3.amazonaws.com/project/7/k?"), "{body}");
    assert!(line.contains("%2Feu-west-3%2Fs3%2Faws4_request"), "{body}");
    assert!(!line.contains("us-east-1"), "{body}");
}

/// Each job builds its store afresh; the region a probe found is kept for the process, so only the first job of
/// a runner waits for it.
#[tokio::test]
async fn the_bucket_region_is_probed_once_per_process() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().fallback({
        let hits = std::sync::Arc::clone(&hits);
        move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                (
                    axum::http::StatusCode::MOVED_PERMANENTLY,
                    [("x-amz-bucket-region", "ap-south-2")],
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let cache: oxrunner_config::CacheConfig = toml::from_str(
        "Type = \"s3\"\nShared = true\n[s3]\nAccessKey = \"AKIDONCE\"\nSecretKey = \"k\"\nBucketName = \"once\"\n",
    )
    .unwrap();
    let mut urls = Vec::new();
    for _ in 0..3 {
        let remote = RemoteSetup::from_config(Some(&cache), "abcdefghi")
            .with_region_probe(format!("http://{addr}/probed-once/").parse().unwrap())
            .prepared(true)
            .await;
        let RemoteSetup::Ready(remote) = remote else {
            panic!("no remote cache");
        };
        let signed = remote
            .store
            .presign_get("project/7/k", std::time::Duration::from_secs(60));
        urls.push(signed.url.to_string());
    }
    server.abort();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    for url in &urls {
        assert!(url.contains("%2Fap-south-2%2Fs3%2Faws4_request"), "{url}");
    }
}
