//! Signing without a key file, against stand-ins on 127.0.0.1: a metadata server (which insists on
//! `Metadata-Flavor: Google`, as GCE's does) and IAM Credentials' `signBlob`, which signs with the test account's
//! RSA key, so the signature-verifying bucket of `gcs_server_tests.rs` accepts the URLs only when every step is
//! right. No request leaves the loopback: the metadata host and the IAM base are both set to the stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;
use oxrunner_config::CacheGcsConfig;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::server_tests::{Bucket, start};
use super::{GcsStore, GoogleEnv};

const ACCOUNT: &str = "/computeMetadata/v1/instance/service-accounts/default";

struct Google {
    email: String,
    key: RsaKeyPair,
    /// What the token answer says about its lifetime.
    expires_in: u64,
    tokens: AtomicUsize,
    emails: AtomicUsize,
    signed: AtomicUsize,
    /// Every refusal, for the assertions.
    refused: Mutex<Vec<String>>,
}

fn current_token(g: &Google) -> String {
    format!("ya29.oxrt-{}", g.tokens.load(Ordering::SeqCst))
}

async fn google(
    State(g): State<Arc<Google>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let refuse = |why: &str| {
        g.refused.lock().unwrap().push(why.to_owned());
        (
            StatusCode::FORBIDDEN,
            format!("{{\"error\":{{\"message\":\"{why}\"}}}}"),
        )
    };
    let path = uri.path();
    if path.starts_with("/computeMetadata/") {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return refuse("missing Metadata-Flavor");
        }
        return match path.strip_prefix(ACCOUNT) {
            Some("/email") => {
                g.emails.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, g.email.clone())
            }
            Some("/token") => {
                g.tokens.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "access_token": current_token(&g),
                    "expires_in": g.expires_in,
                    "token_type": "Bearer",
                });
                (StatusCode::OK, body.to_string())
            }
            _ => (StatusCode::NOT_FOUND, String::new()),
        };
    }
    if method != Method::POST || path != format!("/v1/projects/-/serviceAccounts/{}:signBlob", g.email) {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let bearer = format!("Bearer {}", current_token(&g));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return refuse("not the current token");
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(request["payload"].as_str().unwrap()).unwrap();
    let mut signature = vec![0u8; g.key.public_modulus_len()];
    g.key
        .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &payload, &mut signature)
        .unwrap();
    g.signed.fetch_add(1, Ordering::SeqCst);
    let answer = serde_json::json!({ "keyId": "oxrt", "signedBlob": b64.encode(signature) });
    (StatusCode::OK, answer.to_string())
}

async fn start_google(expires_in: u64) -> (std::net::SocketAddr, Arc<Google>, Arc<Bucket>) {
    let (email, pem) = super::tests::test_account();
    let PrivateKeyDer::Pkcs8(der) = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap() else {
        panic!("the test key is PKCS#8");
    };
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let bucket = Arc::new(Bucket {
        public_key: key.public_key().as_ref().to_vec(),
        ..Bucket::default()
    });
    let g = Arc::new(Google {
        email,
        key,
        expires_in,
        tokens: AtomicUsize::new(0),
        emails: AtomicUsize::new(0),
        signed: AtomicUsize::new(0),
        refused: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().fallback(google).with_state(Arc::clone(&g));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, g, bucket)
}

/// A store with no key, its metadata server and IAM at `google`, its bucket at `bucket`.
fn keyless_store(google: std::net::SocketAddr, bucket: std::net::SocketAddr) -> GcsStore {
    let cfg = CacheGcsConfig {
        bucket_name: Some("runner-cache".into()),
        ..CacheGcsConfig::default()
    };
    let env = GoogleEnv {
        adc: None,
        metadata_host: Some(google.to_string()),
    };
    GcsStore::with_env(&cfg, Some(1 << 20), &env)
        .unwrap()
        .with_iam_base(reqwest::Url::parse(&format!("http://{google}/")).unwrap())
        .with_endpoint(bucket)
}

async fn send(signed: &super::Presigned, method: reqwest::Method, body: &[u8]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, signed.url.clone())
        .body(body.to_vec());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// Upstream's `gcs` with no key signs through the metadata server's account: an upload and a download signed
/// so (runner-side, async) and a URL for a job-side helper (signed while a script is rendered, sync) are all
/// accepted by the verifying bucket; the e-mail is asked once and the token reused while fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_urls_are_signed_through_the_metadata_server_and_sign_blob() {
    let (google_addr, google, bucket) = start_google(3600).await;
    let (bucket_addr, _server) = start(Arc::clone(&bucket)).await;
    let store = keyless_store(google_addr, bucket_addr);
    let ten_minutes = Duration::from_secs(600);

    let put = store.signed_put("o", ten_minutes).await.unwrap();
    assert!(
        put.url
            .query()
            .unwrap()
            .contains("X-Goog-Credential=test-iam-credentials%40")
    );
    assert_eq!(
        send(&put, reqwest::Method::PUT, b"cache bytes").await.status(),
        200
    );
    let get = store.signed_get("o", ten_minutes).await.unwrap();
    let resp = send(&get, reqwest::Method::GET, b"").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"cache bytes");
    // As `hooks/inscript.rs` signs: from synchronous code inside the runtime.
    let for_script = store.presign_get("o", ten_minutes);
    assert_eq!(send(&for_script, reqwest::Method::GET, b"").await.status(), 200);

    assert!(
        bucket.refused.lock().unwrap().is_empty(),
        "{:?}",
        bucket.refused.lock().unwrap()
    );
    assert!(
        google.refused.lock().unwrap().is_empty(),
        "{:?}",
        google.refused.lock().unwrap()
    );
    assert_eq!(google.signed.load(Ordering::SeqCst), 3);
    assert_eq!(google.emails.load(Ordering::SeqCst), 1);
    assert_eq!(google.tokens.load(Ordering::SeqCst), 1);
    let shown = format!("{store:?}");
    assert!(!shown.contains("ya29."), "{shown}");
}

/// A token is renewed before it expires: one that is within the renewal margin already is fetched again for
/// the next URL, and `signBlob` only accepts the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_close_to_expiry_is_renewed_before_signing() {
    let (google_addr, google, bucket) = start_google(60).await;
    let (bucket_addr, _server) = start(Arc::clone(&bucket)).await;
    let store = keyless_store(google_addr, bucket_addr);
    for _ in 0..2 {
        let get = store
            .signed_get("missing", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(send(&get, reqwest::Method::GET, b"").await.status(), 404);
    }
    assert_eq!(google.tokens.load(Ordering::SeqCst), 2);
    assert!(
        google.refused.lock().unwrap().is_empty(),
        "{:?}",
        google.refused.lock().unwrap()
    );
    assert!(
        bucket.refused.lock().unwrap().is_empty(),
        "{:?}",
        bucket.refused.lock().unwrap()
    );
}

/// Off GCE (nothing answers at the metadata host) signing fails with a clear error and a hint, runner-side as
/// an error, and in doctor as a failed check naming the bucket.
#[tokio::test]
async fn without_a_metadata_server_signing_fails_with_a_hint() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let store = keyless_store(addr, addr);
    let why = store.signed_get("o", Duration::from_secs(60)).await.unwrap_err();
    assert!(
        why.contains("no credentials are set")
            && why.contains("metadata server")
            && why.contains("hint: set CredentialsFile"),
        "{why}"
    );
}
