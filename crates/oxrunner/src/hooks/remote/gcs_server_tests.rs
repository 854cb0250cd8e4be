//! GCS transfers against a stand-in bucket on 127.0.0.1 that checks every request as GCS does: the V4 query
//! parameters, the expiry, and the RSA signature over the canonical request it rebuilds from what arrived
//! (method, path, query, signed headers), with the service account's public key. No live GCS request is made:
//! GCS has no endpoint setting upstream, so the store's host is replaced here (`GcsStore::with_endpoint`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use oxrunner_config::CacheGcsConfig;
use oxrunner_core::{CacheSpec, JobPlan, JobStatus, RunnerContext, Stage, StageCtx, TraceWriter, Variables};
use time::OffsetDateTime;

use super::super::flow::{self, Restored};
use super::super::{ObjectStore, RemoteCache};
use super::{GcsStore, Signer, V4Request, encode_path};

#[derive(Default)]
pub(super) struct Bucket {
    pub(super) public_key: Vec<u8>,
    pub(super) objects: Mutex<HashMap<String, Vec<u8>>>,
    /// Every refusal, with its reason, for the assertions.
    pub(super) refused: Mutex<Vec<String>>,
    pub(super) content_types: Mutex<Vec<String>>,
    /// Each object's `Last-Modified` (set by a `PUT`, or by a test).
    pub(super) modified: Mutex<HashMap<String, std::time::SystemTime>>,
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `Ok(())` when the request is signed, unexpired and its signature verifies; the refusal otherwise.
fn check(
    bucket: &Bucket,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, String)> {
    let refuse = |status, code: &str| Err((status, code.to_owned()));
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let param =
        |q: &[(String, String)], name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| decode(v));
    for name in [
        "X-Goog-Algorithm",
        "X-Goog-Credential",
        "X-Goog-Date",
        "X-Goog-Expires",
        "X-Goog-SignedHeaders",
        "X-Goog-Signature",
    ] {
        if param(&query, name).is_none() {
            return refuse(StatusCode::BAD_REQUEST, &format!("MissingParameter {name}"));
        }
    }
    if param(&query, "X-Goog-Algorithm").as_deref() != Some("GOOG4-RSA-SHA256") {
        return refuse(StatusCode::BAD_REQUEST, "InvalidAlgorithm");
    }
    let date = param(&query, "X-Goog-Date").unwrap();
    let signed_at = time::PrimitiveDateTime::parse(
        &date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| (StatusCode::BAD_REQUEST, "InvalidDate".to_owned()))?
    .assume_utc();
    let expires: i64 = param(&query, "X-Goog-Expires").unwrap().parse().unwrap_or(-1);
    let now = OffsetDateTime::now_utc();
    if !(1..=604_800).contains(&expires) || signed_at > now + time::Duration::minutes(15) {
        return refuse(StatusCode::BAD_REQUEST, "InvalidExpiry");
    }
    if now > signed_at + time::Duration::seconds(expires) {
        return refuse(StatusCode::BAD_REQUEST, "ExpiredToken");
    }
    let signature = hex::decode(param(&query, "X-Goog-Signature").unwrap())
        .map_err(|_| (StatusCode::BAD_REQUEST, "InvalidSignature".to_owned()))?;
    query.retain(|(k, _)| k != "X-Goog-Signature");
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signed_headers = param(&query, "X-Goog-SignedHeaders").unwrap();
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let value = if name == "host" {
            super::host_without_port(value)
        } else {
            value
        };
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = format!(
        "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD",
        uri.path()
    );
    let credential = param(&query, "X-Goog-Credential").unwrap();
    let scope = credential.split_once('/').map(|(_, s)| s).unwrap_or_default();
    let digest = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ));
    let to_sign = format!("GOOG4-RSA-SHA256\n{date}\n{scope}\n{digest}");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &bucket.public_key)
        .verify(to_sign.as_bytes(), &signature)
        .map_err(|_| (StatusCode::FORBIDDEN, "SignatureDoesNotMatch".to_owned()))
}

async fn serve(
    State(bucket): State<Arc<Bucket>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let none = HeaderMap::new();
    if let Err((status, code)) = check(&bucket, &method, &uri, &headers) {
        bucket.refused.lock().unwrap().push(code.clone());
        let body = format!(
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>refused</Message></Error>"
        );
        return (status, none, body.into_bytes());
    }
    let key = uri.path().to_owned();
    let mut objects = bucket.objects.lock().unwrap();
    match method {
        Method::PUT => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            bucket.content_types.lock().unwrap().push(ct.to_owned());
            bucket
                .modified
                .lock()
                .unwrap()
                .insert(key.clone(), std::time::SystemTime::now());
            objects.insert(key, body.to_vec());
            (StatusCode::OK, none, Vec::new())
        }
        // Ranges are not served: the whole object answers every GET, as a store ignoring `Range` would.
        Method::GET | Method::HEAD => match objects.get(&key) {
            Some(data) => {
                let mut out = HeaderMap::new();
                if let Some(date) = bucket.modified.lock().unwrap().get(&key) {
                    out.insert("last-modified", httpdate::fmt_http_date(*date).parse().unwrap());
                }
                (StatusCode::OK, out, data.clone())
            }
            None => (
                StatusCode::NOT_FOUND,
                none,
                b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
                    .to_vec(),
            ),
        },
        _ => (StatusCode::METHOD_NOT_ALLOWED, none, Vec::new()),
    }
}

pub(super) async fn start(bucket: Arc<Bucket>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(serve).with_state(bucket);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

fn account_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("account.json");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/gcs-v4/test_service_account.not-a-test.json"),
        &path,
    )
    .unwrap();
    path
}

fn remote_for(addr: std::net::SocketAddr, account: &std::path::Path) -> RemoteCache {
    let cfg = CacheGcsConfig {
        credentials_file: Some(account.display().to_string()),
        bucket_name: Some("runner-cache".into()),
        ..CacheGcsConfig::default()
    };
    let store = GcsStore::from_config(&cfg, Some(1 << 20))
        .unwrap()
        .with_endpoint(addr);
    RemoteCache {
        store: ObjectStore::Gcs(store),
        path: String::new(),
        shared: false,
        short_token: "abcdefghi".into(),
        max_upload: Some(1 << 20),
        parts: super::super::parts::PartPlan::default(),
    }
}

/// A cache pushed by one runner's job is restored by another's, through signed URLs only; the bucket verified
/// every signature, and the job log shows the URLs without one.
#[tokio::test]
async fn a_cache_pushed_through_signed_urls_is_restored_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let account = account_file(dir.path());
    let (email, pem) = super::tests::test_account();
    let signer = Signer::new(&email, &pem, "test").unwrap();
    let bucket = Arc::new(Bucket {
        public_key: signer.key.public_key().as_ref().to_vec(),
        ..Bucket::default()
    });
    let (addr, server) = start(Arc::clone(&bucket)).await;
    let remote = remote_for(addr, &account);

    let ctx = RunnerContext {
        builds_dir: dir.path().join("builds"),
        cache_dir: dir.path().join("cache"),
        ..RunnerContext::default()
    };
    let plan = JobPlan {
        job_id: 9,
        project_id: 7,
        caches: vec![CacheSpec {
            key: "deps".into(),
            paths: vec!["vendor/".into()],
            ..CacheSpec::default()
        }],
        ..JobPlan::default()
    };
    let vars = Variables::default();
    let (trace, handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    let sctx = StageCtx {
        plan: &plan,
        runner: &ctx,
        stage: Stage::ArchiveCache,
        project_dir: dir.path().join("builds/p"),
        tmp_dir: dir.path().join("builds/p.tmp"),
        variables: &vars,
        status: JobStatus::Success,
        cancel: oxrunner_core::CancellationToken::new(),
    };

    let restored = dir.path().join("restored/cache.zip");
    assert_eq!(
        flow::download_key(&remote, &sctx, "deps", &restored, &trace, None, false).await,
        Restored::Missing
    );
    assert!(!flow::remote_has(&remote, &sctx, "deps", &trace).await);

    let archive = dir.path().join("cache.zip");
    std::fs::write(&archive, "PK-archive-bytes").unwrap();
    let sent = flow::upload_key(&remote, &sctx, "deps", &archive, &trace)
        .await
        .unwrap();
    assert_eq!(sent, 16);
    assert!(flow::remote_has(&remote, &sctx, "deps", &trace).await);
    assert_eq!(
        bucket.objects.lock().unwrap().keys().cloned().collect::<Vec<_>>(),
        vec!["/runner-cache/runner/abcdefghi/project/7/deps".to_owned()]
    );
    // Exactly the signed content type, not a second one.
    assert_eq!(
        *bucket.content_types.lock().unwrap(),
        vec!["application/octet-stream".to_owned()]
    );

    // A restore elsewhere (a fresh local path) gets it from the bucket.
    assert_eq!(
        flow::download_key(&remote, &sctx, "deps", &restored, &trace, None, false).await,
        Restored::Downloaded {
            bytes: 16,
            extracted: flow::Overlapped::NotRun
        }
    );
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), "PK-archive-bytes");
    assert_eq!(*bucket.refused.lock().unwrap(), Vec::<String>::new());

    trace.flush();
    let log = String::from_utf8(handle.read_all().unwrap()).unwrap();
    assert!(
        log.contains(&format!(
            "Uploading cache.zip to http://{addr}/runner-cache/runner/abcdefghi/project/7/deps"
        )),
        "{log}"
    );
    assert!(
        !log.contains("X-Goog-Signature") && !log.contains("X-Goog-Credential"),
        "{log}"
    );
    server.abort();
}

/// A download is dated with the object's `Last-Modified`, as upstream's cache-extractor dates it, so the next
/// restore compares the store's clock with itself: an object committed while this machine was downloading an older
/// one (dated before the download ended) is fetched, not taken for older than the local copy; the same object again
/// is up to date and not downloaded.
#[tokio::test]
async fn a_download_is_dated_by_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let account = account_file(dir.path());
    let (email, pem) = super::tests::test_account();
    let signer = Signer::new(&email, &pem, "test").unwrap();
    let bucket = Arc::new(Bucket {
        public_key: signer.key.public_key().as_ref().to_vec(),
        ..Bucket::default()
    });
    let (addr, server) = start(Arc::clone(&bucket)).await;
    let remote = remote_for(addr, &account);
    let ctx = RunnerContext::default();
    let plan = JobPlan {
        project_id: 7,
        ..JobPlan::default()
    };
    let vars = Variables::default();
    let (trace, handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    let sctx = StageCtx {
        plan: &plan,
        runner: &ctx,
        stage: Stage::RestoreCache,
        project_dir: dir.path().join("builds/p"),
        tmp_dir: dir.path().join("builds/p.tmp"),
        variables: &vars,
        status: JobStatus::Success,
        cancel: oxrunner_core::CancellationToken::new(),
    };
    let object = "/runner-cache/runner/abcdefghi/project/7/deps".to_owned();
    let now = std::time::SystemTime::now();
    let put = |content: &str, age: u64| {
        bucket
            .objects
            .lock()
            .unwrap()
            .insert(object.clone(), content.as_bytes().to_vec());
        bucket
            .modified
            .lock()
            .unwrap()
            .insert(object.clone(), now - Duration::from_secs(age));
    };
    let local = dir.path().join("store/cache.zip");
    let download = || flow::download_key(&remote, &sctx, "deps", &local, &trace, None, false);
    let dated =
        |p: &std::path::Path| httpdate::fmt_http_date(std::fs::metadata(p).unwrap().modified().unwrap());

    put("version one", 120);
    assert!(matches!(download().await, Restored::Downloaded { .. }));
    assert_eq!(
        dated(&local),
        httpdate::fmt_http_date(now - Duration::from_secs(120))
    );
    // Another machine committed a newer object, a minute old: newer than the copy's date, older than its file.
    put("version two", 60);
    assert!(matches!(download().await, Restored::Downloaded { .. }));
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "version two");
    assert_eq!(download().await, Restored::UpToDate);
    // `force`: downloaded although up to date (a local copy that would not extract).
    assert!(matches!(
        flow::download_key(&remote, &sctx, "deps", &local, &trace, None, true).await,
        Restored::Downloaded { .. }
    ));

    trace.flush();
    let log = String::from_utf8(handle.read_all().unwrap()).unwrap();
    assert_eq!(log.matches("cache.zip is up to date").count(), 1, "{log}");
    server.abort();
}

/// The stand-in really checks: a URL altered after signing, or signed long ago, is refused, and the error a job
/// log shows names the bucket and GCS's code, never the signature.
#[tokio::test]
async fn altered_or_expired_urls_are_refused_with_a_readable_error() {
    let dir = tempfile::tempdir().unwrap();
    let account = account_file(dir.path());
    let (email, pem) = super::tests::test_account();
    let signer = Signer::new(&email, &pem, "test").unwrap();
    let bucket = Arc::new(Bucket {
        public_key: signer.key.public_key().as_ref().to_vec(),
        ..Bucket::default()
    });
    let (addr, server) = start(Arc::clone(&bucket)).await;
    let remote = remote_for(addr, &account);
    let http = super::super::transfer::client(Duration::from_secs(30)).unwrap();
    let dest = tempfile::NamedTempFile::new().unwrap();

    let mut signed = remote
        .store
        .presign_get("project/7/deps", Duration::from_secs(600));
    let other = signed.url.path().replace("/deps", "/other");
    signed.url.set_path(&other);
    let why = super::super::parts::download(
        &http,
        &signed,
        dest.as_file(),
        super::super::parts::PartPlan::default(),
        &remote.store.describe(),
        &|_| {},
        None,
    )
    .await
    .unwrap_err();
    assert!(
        why.contains("403 Forbidden") && why.contains("SignatureDoesNotMatch"),
        "{why}"
    );
    assert!(why.contains("GCS bucket \"runner-cache\""), "{why}");
    assert!(!why.contains("X-Goog-Signature"), "{why}");
    assert!(
        why.contains("hint: check the service account's key") && !why.contains("AccessKey"),
        "{why}"
    );

    let path = encode_path(&["runner-cache", "project/7/deps"]);
    let host = addr.to_string();
    let old = signer
        .sign_url(&V4Request {
            method: "GET",
            scheme: "http",
            host: &host,
            path: &path,
            headers: &[],
            query: &[],
            timestamp: OffsetDateTime::now_utc() - time::Duration::hours(2),
            expires_secs: 60,
        })
        .unwrap();
    let expired = super::super::s3::Presigned {
        url: old.parse().unwrap(),
        headers: Vec::new(),
    };
    let why = super::super::parts::download(
        &http,
        &expired,
        dest.as_file(),
        super::super::parts::PartPlan::default(),
        "GCS bucket",
        &|_| {},
        None,
    )
    .await
    .unwrap_err();
    assert!(why.contains("ExpiredToken"), "{why}");
    assert_eq!(
        *bucket.refused.lock().unwrap(),
        vec!["SignatureDoesNotMatch".to_owned(), "ExpiredToken".to_owned()]
    );
    server.abort();
}

/// The `oxrunner` binary next to the test harness (cargo builds it for the crate's integration tests).
fn helper_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("oxrunner");
    assert!(
        bin.is_file(),
        "{} is missing: build the binary first (`cargo build -p oxrunner`)",
        bin.display()
    );
    bin
}

/// Where the job's files are out of the runner's reach (custom executor), the job-side helpers move the cache
/// with the URL and headers the runner signed, as `hooks/inscript.rs` hands them over: the URL in the
/// environment, the signed headers as `--header`.
#[tokio::test]
async fn the_job_side_helpers_push_and_restore_through_gcs_signed_urls() {
    let dir = tempfile::tempdir().unwrap();
    let account = account_file(dir.path());
    let (email, pem) = super::tests::test_account();
    let signer = Signer::new(&email, &pem, "test").unwrap();
    let bucket = Arc::new(Bucket {
        public_key: signer.key.public_key().as_ref().to_vec(),
        ..Bucket::default()
    });
    let (addr, server) = start(Arc::clone(&bucket)).await;
    let remote = remote_for(addr, &account);
    let object = remote.object_name(7, "deps", false).unwrap();

    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("vendor")).unwrap();
    std::fs::write(project.join("vendor/lib.txt"), "vendored").unwrap();
    let put = remote.store.presign_put(&object, Duration::from_secs(600));
    let mut archiver = tokio::process::Command::new(helper_binary());
    archiver
        .current_dir(&project)
        .env("OXRUNNER_CACHE_URL", put.url.as_str())
        .args(["cache-archiver", "--path", "vendor/", "--file"])
        .arg(dir.path().join("a/cache.zip"));
    for (k, v) in &put.headers {
        archiver.arg(format!("--header={k}: {v}"));
    }
    let out = archiver.output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert_eq!(*bucket.refused.lock().unwrap(), Vec::<String>::new(), "{log}");
    assert!(!log.contains("X-Goog-Signature"), "{log}");
    assert_eq!(
        *bucket.content_types.lock().unwrap(),
        vec!["application/octet-stream".to_owned()]
    );

    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let get = remote.store.presign_get(&object, Duration::from_secs(600));
    let out = tokio::process::Command::new(helper_binary())
        .current_dir(&elsewhere)
        .env("OXRUNNER_CACHE_URL", get.url.as_str())
        .args(["cache-extractor", "--file"])
        .arg(dir.path().join("b/cache.zip"))
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("vendor/lib.txt")).unwrap(),
        "vendored",
        "{log}"
    );
    assert_eq!(*bucket.refused.lock().unwrap(), Vec::<String>::new(), "{log}");
    server.abort();
}

/// GCS checks the signature against the Host the client sent, which is the URL's host, lowercased: a
/// `UniverseDomain` written in capitals must be signed that way too.
#[test]
fn a_mixed_case_universe_domain_signs_the_host_the_request_carries() {
    let dir = tempfile::tempdir().unwrap();
    let (email, pem) = super::tests::test_account();
    let bucket = Bucket {
        public_key: Signer::new(&email, &pem, "test")
            .unwrap()
            .key
            .public_key()
            .as_ref()
            .to_vec(),
        ..Bucket::default()
    };
    let cfg = CacheGcsConfig {
        credentials_file: Some(account_file(dir.path()).display().to_string()),
        bucket_name: Some("runner-cache".into()),
        universe_domain: Some("Example.TEST".into()),
        ..CacheGcsConfig::default()
    };
    let signed = GcsStore::from_config(&cfg, None)
        .unwrap()
        .presign_get("o", Duration::from_secs(60));
    let uri: Uri = signed.url.as_str().parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", signed.url.host_str().unwrap().parse().unwrap());
    assert_eq!(headers["host"], "storage.example.test");
    check(&bucket, &Method::GET, &uri, &headers).unwrap();
}
