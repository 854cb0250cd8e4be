//! Multipart uploads against a small in-test S3 stand-in: S3's "200 with an error body" on complete is a failure,
//! retried, and then the upload is aborted so no parts stay behind; an archive replaced at its path mid-upload
//! does not mix into the parts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Upload;
use crate::hooks::remote::parts::PartPlan;
use crate::hooks::remote::s3::S3Store;
use crate::hooks::remote::transfer::client;

#[derive(Clone, Default)]
struct Stand {
    /// Each request: method, and for a part its number, size and distinct byte values.
    seen: Arc<Mutex<Vec<String>>>,
    /// On create, a different archive is renamed over this path (as a newer save of the same key does).
    replace: Option<PathBuf>,
}

async fn answer(stand: Stand, req: Request) -> Response {
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
    let mut values: Vec<u8> = body.to_vec();
    values.sort_unstable();
    values.dedup();
    stand.seen.lock().unwrap().push(format!(
        "{method} {}",
        part.as_deref().map_or(String::new(), |p| format!(
            "part {p} ({} bytes of {values:?})",
            body.len()
        ))
    ));
    match (method.as_str(), part) {
        ("POST", _) if has("uploads") => {
            if let Some(path) = &stand.replace {
                let newer = path.with_extension("newer");
                std::fs::write(&newer, vec![9u8; 3_000]).unwrap();
                std::fs::rename(&newer, path).unwrap();
            }
            (
                StatusCode::OK,
                "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><UploadId>u-1\
                 </UploadId></InitiateMultipartUploadResult>",
            )
                .into_response()
        }
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

/// Uploads 2,500 bytes of 7s from a fresh file in 1,000-byte parts; the error and the requests the stand-in saw.
async fn upload(replace: bool) -> (String, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("cache.zip");
    std::fs::write(&src, vec![7u8; 2_500]).unwrap();
    let stand = Stand {
        replace: replace.then(|| src.clone()),
        ..Stand::default()
    };
    let app = axum::Router::new().fallback({
        let stand = stand.clone();
        move |req: Request| answer(stand.clone(), req)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg: oxrunner_config::CacheS3Config = toml::from_str(&format!(
        "ServerAddress = \"{addr}\"\nAccessKey = \"AK\"\nSecretKey = \"sk-multipart\"\nBucketName = \"b\"\n\
         BucketLocation = \"garage\"\nInsecure = true\n"
    ))
    .unwrap();
    let store = S3Store::from_config(&cfg).unwrap();
    let http = client(Duration::from_secs(30)).unwrap();
    let upload = Upload {
        http: &http,
        store: &store,
        object: "project/1/k",
        src: &src,
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
    let mut seen = stand.seen.lock().unwrap().clone();
    seen[1..4].sort();
    (why, seen, warnings.into_inner().unwrap())
}

#[tokio::test]
async fn a_complete_that_keeps_failing_in_its_body_aborts_the_upload() {
    let (why, seen, warnings) = upload(false).await;
    assert!(
        why.contains("could not complete the multipart upload: InternalError"),
        "{why}"
    );
    assert!(
        !why.contains("X-Amz-Signature") && !why.contains("sk-multipart"),
        "{why}"
    );
    assert_eq!(
        seen,
        [
            "POST ",
            "PUT part 1 (1000 bytes of [7])",
            "PUT part 2 (1000 bytes of [7])",
            "PUT part 3 (500 bytes of [7])",
            "POST ",
            "POST ",
            "POST ",
            "DELETE ",
        ]
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[tokio::test]
async fn parts_come_from_the_archive_that_was_opened_even_if_the_path_is_replaced() {
    let (_, seen, _) = upload(true).await;
    assert_eq!(
        seen[1..4],
        [
            "PUT part 1 (1000 bytes of [7])",
            "PUT part 2 (1000 bytes of [7])",
            "PUT part 3 (500 bytes of [7])",
        ]
    );
}

/// A create whose answer never comes may have started an upload: trying again would start a second one and
/// leave the first behind, so it is not retried.
#[tokio::test]
async fn a_create_without_an_answer_is_not_sent_twice() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let server = tokio::spawn({
        let accepted = Arc::clone(&accepted);
        async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                *accepted.lock().unwrap() += 1;
                held.push(conn);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("cache.zip");
    std::fs::write(&src, vec![7u8; 2_500]).unwrap();
    let cfg: oxrunner_config::CacheS3Config = toml::from_str(&format!(
        "ServerAddress = \"{addr}\"\nAccessKey = \"AK\"\nSecretKey = \"sk\"\nBucketName = \"b\"\n\
         BucketLocation = \"garage\"\nInsecure = true\n"
    ))
    .unwrap();
    let store = S3Store::from_config(&cfg).unwrap();
    let http = client(Duration::from_secs(1)).unwrap();
    let upload = Upload {
        http: &http,
        store: &store,
        object: "project/1/k",
        src: &src,
        plan: PartPlan {
            threshold: 1_000,
            part_size: 1_000,
            in_flight: 2,
        },
        lifetime: Duration::from_secs(600),
        describe: "bucket \"b\"",
    };
    let why = upload.run(&|_| {}).await.unwrap_err();
    server.abort();
    assert!(why.contains("timed out") || why.contains("failed"), "{why}");
    assert_eq!(*accepted.lock().unwrap(), 1, "{why}");
}
