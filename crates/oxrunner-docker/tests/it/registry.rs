#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Pulls against a registry on 127.0.0.1 (the engine treats loopback registries as plain-HTTP ones): credentials
//! reach the registry, and a failed pull is an image_pull_failure naming the image.

use crate::support as common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use oxrunner_config::DockerConfig;
use oxrunner_core::{Executor, FailureReason, RegistryCredential};
use oxrunner_docker::DockerExecutor;

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A registry that demands basic auth everywhere and then has no manifests.
async fn fake_registry() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let record = record.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            record.lock().unwrap().push((uri.path().to_owned(), auth.clone()));
            if auth.is_none() {
                return (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", "Basic realm=\"oxrunner-test\"")],
                    "auth required",
                )
                    .into_response();
            }
            if uri.path() == "/v2/" {
                return (StatusCode::OK, "{}").into_response();
            }
            (
                StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn job_credentials_reach_the_registry_and_a_failed_pull_names_the_image() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let (port, seen) = fake_registry().await;
    let registry = format!("127.0.0.1:{port}");
    let image = format!("{registry}/oxrunner/private:1");
    let mut plan = common::plan_with_image(401, &image);
    plan.credentials = vec![RegistryCredential {
        kind: "registry".into(),
        url: registry.clone(),
        username: "gitlab-ci-token".into(),
        password: "s3cret-job-token".into(),
    }];
    let cfg = DockerConfig {
        pull_policy: vec!["always".into()],
        ..common::config()
    };
    let ctx = common::runner();
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    let trace = common::Trace::new();
    let err = exec.prepare(&plan, &trace.writer).await.unwrap_err();
    exec.cleanup().await;

    assert_eq!(err.reason(), FailureReason::ImagePullFailure, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("failed to pull image \"{image}\"")),
        "{err}"
    );
    let expected = format!("Basic {}", base64_encode("gitlab-ci-token:s3cret-job-token"));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(path, auth)| path.contains("/manifests/") && auth.as_deref() == Some(expected.as_str())),
        "{seen:?}"
    );
    let log = trace.text();
    assert!(
        log.contains("Authenticating with credentials of gitlab-ci-token"),
        "{log}"
    );
    assert!(!log.contains("s3cret-job-token"), "{log}");
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
