//! Object names (upstream's layout), signed URLs and what configuration errors and `Debug` show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oxrunner_config::{CacheConfig, CacheS3Config, Secret};

use super::transfer::clean_url;
use super::{RemoteCache, RemoteSetup};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

fn s3(extra: impl FnOnce(&mut CacheS3Config)) -> CacheConfig {
    let mut s3 = CacheS3Config {
        server_address: Some("127.0.0.1:3900".into()),
        access_key: Some(Secret::new("GKexampleaccess")),
        secret_key: Some(Secret::new(SECRET)),
        bucket_name: Some("runner-cache".into()),
        bucket_location: Some("garage".into()),
        insecure: Some(true),
        ..CacheS3Config::default()
    };
    extra(&mut s3);
    CacheConfig {
        cache_type: Some("s3".into()),
        s3: Some(s3),
        ..CacheConfig::default()
    }
}

fn ready(cfg: &CacheConfig) -> std::sync::Arc<RemoteCache> {
    match RemoteSetup::from_config(Some(cfg), "abcdefghi") {
        RemoteSetup::Ready(r) => r,
        other => panic!("not ready: {other:?}"),
    }
}

fn broken(cfg: &CacheConfig) -> String {
    match RemoteSetup::from_config(Some(cfg), "abcdefghi") {
        RemoteSetup::Broken(why) => why,
        other => panic!("not broken: {other:?}"),
    }
}

#[test]
fn object_names_follow_gitlab_runner() {
    let mut cfg = s3(|_| {});
    let r = ready(&cfg);
    assert_eq!(
        r.object_name(42, "deps-main", false).as_deref(),
        Some("runner/abcdefghi/project/42/deps-main")
    );
    cfg.shared = Some(true);
    cfg.path = Some("ci/caches/".into());
    let r = ready(&cfg);
    assert_eq!(
        r.object_name(42, "deps-main", false).as_deref(),
        Some("ci/caches/project/42/deps-main")
    );
    // FF_HASH_CACHE_KEYS: the first two characters become a level of their own.
    assert_eq!(
        r.object_name(42, "ab12cd", true).as_deref(),
        Some("ci/caches/project/42/ab/ab12cd")
    );
    assert_eq!(
        r.object_name(42, "a/../b", false).as_deref(),
        Some("ci/caches/project/42/b")
    );
    // Leaving the project's prefix is refused, as upstream does.
    assert_eq!(r.object_name(42, "../43/x", false), None);
    assert_eq!(r.object_name(42, "..", false), None);
    assert_eq!(r.object_name(42, "x", true), None);
}

#[test]
fn signed_urls_carry_the_signature_and_are_shown_without_it() {
    let r = ready(&s3(|c| c.server_side_encryption = Some("S3".into())));
    let get = r.store.presign_get("project/1/k", Duration::from_secs(600));
    assert_eq!(get.url.scheme(), "http");
    assert_eq!(get.url.path(), "/runner-cache/project/1/k");
    let query = get.url.query().unwrap();
    assert!(query.contains("X-Amz-Signature="), "{query}");
    assert!(query.contains("X-Amz-Credential=GKexampleaccess%2F"), "{query}");
    assert!(query.contains("%2Fgarage%2Fs3%2Faws4_request"), "{query}");
    assert!(!get.url.as_str().contains(SECRET));
    assert_eq!(
        clean_url(get.url.as_str()),
        "http://127.0.0.1:3900/runner-cache/project/1/k"
    );
    let shown = format!("{get:?}");
    assert!(!shown.contains("X-Amz-Signature"), "{shown}");

    let put = r.store.presign_put("project/1/k", Duration::from_secs(600));
    assert_eq!(
        put.headers,
        vec![("x-amz-server-side-encryption".to_owned(), "AES256".to_owned())]
    );
    let query = put.url.query().unwrap();
    assert!(
        query.contains("X-Amz-SignedHeaders=host%3Bx-amz-server-side-encryption"),
        "{query}"
    );
}

#[test]
fn aws_endpoints_use_virtual_hosts_unless_path_style() {
    let cfg = s3(|c| {
        c.server_address = None;
        c.insecure = None;
        c.bucket_location = Some("eu-west-1".into());
    });
    let url = ready(&cfg).store.presign_get("o", Duration::from_secs(60)).url;
    assert_eq!(url.host_str(), Some("runner-cache.s3.amazonaws.com"));
    assert_eq!(url.scheme(), "https");
    let cfg = s3(|c| {
        c.server_address = None;
        c.path_style = Some(true);
    });
    let url = ready(&cfg).store.presign_get("o", Duration::from_secs(60)).url;
    assert_eq!(url.host_str(), Some("s3.amazonaws.com"));
    assert_eq!(url.path(), "/runner-cache/o");
}

#[test]
fn debug_output_never_shows_secrets() {
    let cfg = s3(|c| c.session_token = Some(Secret::new("SESSIONTOKENVALUE")));
    let setup = RemoteSetup::from_config(Some(&cfg), "abcdefghi");
    let shown = format!("{setup:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("SESSIONTOKENVALUE"), "{shown}");
    assert!(shown.contains("runner-cache"), "{shown}");
}

#[test]
fn configuration_errors_are_named_with_a_hint() {
    let why = broken(&s3(|c| c.bucket_name = None));
    assert!(
        why.contains("BucketName is missing") && why.contains("hint:"),
        "{why}"
    );
    let why = broken(&s3(|c| c.secret_key = None));
    assert!(why.contains("needs both AccessKey and SecretKey"), "{why}");
    let why = broken(&s3(|c| c.server_side_encryption = Some("ROT13".into())));
    assert!(why.contains("ServerSideEncryption = \"ROT13\""), "{why}");
    assert!(!why.contains(SECRET));
}

#[test]
fn a_bad_server_address_is_shown_without_its_user_info() {
    let why = broken(&s3(|c| {
        c.server_address = Some("admin:Hunter2Secret@bad host:9000".into())
    }));
    assert!(why.contains("ServerAddress"), "{why}");
    assert!(why.contains("<redacted>@bad host:9000"), "{why}");
    assert!(!why.contains("Hunter2Secret") && !why.contains("admin:"), "{why}");
}

#[test]
fn iam_without_credentials_in_the_environment_is_a_clear_error() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        // The runner's own environment answers IAM here; the error case cannot be shown.
        return;
    }
    let why = broken(&s3(|c| c.authentication_type = Some("iam".into())));
    assert!(why.contains("AuthenticationType = \"iam\""), "{why}");
    assert!(why.contains("instance metadata"), "{why}");
    assert!(why.contains("hint:"), "{why}");
}

#[test]
fn other_types_and_no_type_leave_the_local_cache() {
    assert!(matches!(
        RemoteSetup::from_config(None, "abcdefghi"),
        RemoteSetup::None
    ));
    let cfg = CacheConfig {
        cache_type: Some("s3v2".into()),
        ..CacheConfig::default()
    };
    assert!(matches!(
        RemoteSetup::from_config(Some(&cfg), "abcdefghi"),
        RemoteSetup::None
    ));
}

#[tokio::test]
async fn a_wrong_region_answer_names_bucket_location() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            "<Error><Code>AuthorizationQueryParametersError</Code><Message>Error parsing the \
             X-Amz-Credential parameter; the region 'us-east-1' is wrong; expecting 'eu-west-3'</Message></Error>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let signed = super::s3::Presigned {
        url: format!("http://{addr}/bucket/key?X-Amz-Signature=abc")
            .parse()
            .unwrap(),
        headers: Vec::new(),
    };
    let http = super::transfer::client(std::time::Duration::from_secs(30)).unwrap();
    let dest = tempfile::NamedTempFile::new().unwrap();
    let plan = super::parts::PartPlan::default();
    let why = super::parts::download(&http, &signed, dest.as_file(), plan, "S3 bucket", &|_| {}, None)
        .await
        .unwrap_err();
    server.abort();
    assert!(why.contains("400 Bad Request"), "{why}");
    assert!(why.contains("hint:") && why.contains("BucketLocation"), "{why}");
}

#[tokio::test]
async fn an_aws_bucket_without_location_is_signed_for_the_region_it_names() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::MOVED_PERMANENTLY,
            [("x-amz-bucket-region", "eu-west-3")],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = s3(|c| c.bucket_location = None);
    let store = super::S3Store::from_config(cfg.s3.as_ref().unwrap())
        .unwrap()
        .with_region_probe(format!("http://{addr}/runner-cache/").parse().unwrap());
    let before = store.presign_get("k", Duration::from_secs(60)).url.to_string();
    assert!(before.contains("us-east-1"), "{before}");
    store.detect_region().await;
    server.abort();
    let after = store.presign_get("k", Duration::from_secs(60)).url.to_string();
    assert!(
        after.contains("eu-west-3") && !after.contains("us-east-1"),
        "{after}"
    );
}
