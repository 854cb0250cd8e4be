//! A multipart upload against a small in-test S3 stand-in: S3's "200 with an error body" on complete is a
//! failure, retried, and then the upload is aborted so no parts stay behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Upload;
use crate::hooks::remote::parts::PartPlan;
use crate::hooks::remote::s3::S3Store;
use crate::hooks::remote::transfer::client;

async fn answer(seen: Arc<Mutex<Vec<String>>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().to_string();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let has = |k: &str| {
        query
            .split('&')
            .any(|kv| kv == k || kv.starts_with(&format!("{k}=")))
    };
    let part = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("partNumber="))
        .map(str::to_owned);
    seen.lock().unwrap().push(format!(
        "{method} {}",
        part.as_deref()
            .map_or(String::new(), |p| format!("part {p} ({} bytes)", body.len()))
    ));
    match (method.as_str(), part) {
        ("POST", _) if has("uploads") => (
            StatusCode::OK,
            "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><UploadId>u-1</UploadId>\
             </InitiateMultipartUploadResult>",
        )
            .into_response(),
        ("PUT", Some(p)) => (StatusCode::OK, [("etag", format!("\"etag-{p}\""))]).into_response(),
        // Completing: S3's quirk, a 200 whose body is an error.
        ("POST", _) => (
            StatusCode::OK,
            "<Error><Code>InternalError</Code><Message>try again</Message></Error>",
        )
            .into_response(),
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::test]
async fn a_complete_that_keeps_failing_in_its_body_aborts_the_upload() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |req: Request| answer(Arc::clone(&log), req));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg: oxrunner_config::CacheS3Config = toml::from_str(&format!(
        "ServerAddress = \"{addr}\"\nAccessKey = \"AK\"\nSecretKey = \"sk-multipart\"\nBucketName = \"b\"\n\
         BucketLocation = \"garage\"\nInsecure = true\n"
    ))
    .unwrap();
    let store = S3Store::from_config(&cfg).unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), vec![7u8; 2_500]).unwrap();
    let http = client(Duration::from_secs(30)).unwrap();
    let upload = Upload {
        http: &http,
        store: &store,
        object: "project/1/k",
        src: src.path(),
        plan: PartPlan {
            threshold: 1_000,
            part_size: 1_000,
            in_flight: 2,
        },
        lifetime: Duration::from_secs(600),
        describe: "bucket \"b\"",
    };
    let warnings = Mutex::new(Vec::new());
    let why = upload
        .run(&|m: &str| warnings.lock().unwrap().push(m.to_owned()))
        .await
        .unwrap_err();
    server.abort();
    assert!(
        why.contains("could not complete the multipart upload: InternalError"),
        "{why}"
    );
    assert!(
        !why.contains("X-Amz-Signature") && !why.contains("sk-multipart"),
        "{why}"
    );
    let mut seen = seen.lock().unwrap().clone();
    seen[1..4].sort();
    assert_eq!(
        seen,
        [
            "POST ",
            "PUT part 1 (1000 bytes)",
            "PUT part 2 (1000 bytes)",
            "PUT part 3 (500 bytes)",
            "POST ",
            "POST ",
            "POST ",
            "DELETE ",
        ]
    );
    assert_eq!(warnings.lock().unwrap().len(), 2, "{warnings:?}");
}
