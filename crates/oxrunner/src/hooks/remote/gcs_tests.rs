//! The V4 signer against Google's published conformance vectors (`tests/data/gcs-v4/`), byte for byte, and the
//! store's configuration: credentials sources, errors with hints, nothing secret in `Debug` or shown URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;

use super::{Signer, V4Request, encode_path};

/// Vectors this signer does not run, each with the reason. Every other `signingV4Tests` case must match.
const NOT_RUN: &[(&str, &str)] = &[];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gcs-v4")
        .join(name)
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

pub(crate) fn test_account() -> (String, String) {
    let account = read_json("test_service_account.not-a-test.json");
    (
        account["client_email"].as_str().unwrap().to_owned(),
        account["private_key"].as_str().unwrap().to_owned(),
    )
}

fn without_scheme(endpoint: &str) -> &str {
    endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest)
}

fn string_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The vector's URL as our signer makes it. Where the client libraries take the host from (`hostname`, then a
/// client endpoint, then an emulator, then the universe domain) is the libraries' option handling; the signer is
/// given the result.
fn sign_vector(signer: &Signer, t: &Value) -> String {
    let s = |k: &str| t[k].as_str().filter(|v| !v.is_empty());
    let scheme = s("scheme").unwrap_or("https");
    let universe = format!("storage.{}", s("universeDomain").unwrap_or("googleapis.com"));
    let mut host = s("hostname")
        .or(s("clientEndpoint").map(without_scheme))
        .or(s("emulatorHostname").map(without_scheme))
        .unwrap_or(&universe)
        .to_owned();
    let bucket = s("bucket").unwrap();
    let object = s("object");
    let path = match s("urlStyle") {
        Some("VIRTUAL_HOSTED_STYLE") => {
            host = format!("{bucket}.{host}");
            encode_path(&[object.unwrap_or_default()])
        }
        Some("BUCKET_BOUND_HOSTNAME") => {
            host = s("bucketBoundHostname").unwrap().to_owned();
            encode_path(&[object.unwrap_or_default()])
        }
        _ => match object {
            Some(o) => encode_path(&[bucket, o]),
            None => encode_path(&[bucket]),
        },
    };
    let timestamp = time::OffsetDateTime::parse(
        s("timestamp").unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let req = V4Request {
        method: s("method").unwrap(),
        scheme,
        host: &host,
        path: &path,
        headers: &string_pairs(&t["headers"]),
        query: &string_pairs(&t["queryParameters"]),
        timestamp,
        expires_secs: t["expiration"].as_u64().unwrap(),
    };
    signer.sign_url(&req).unwrap()
}

#[test]
fn signed_urls_match_googles_v4_conformance_vectors() {
    let (email, key) = test_account();
    let signer = Signer::new(&email, &key, "the test account").unwrap();
    let vectors = read_json("v4_signatures.json");
    let cases = vectors["signingV4Tests"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for t in cases {
        let name = t["description"].as_str().unwrap();
        if NOT_RUN.iter().any(|(n, _)| *n == name) {
            continue;
        }
        ran += 1;
        let got = sign_vector(&signer, t);
        let want = t["expectedUrl"].as_str().unwrap();
        if got != want {
            failures.push(format!("{name}:\n  got  {got}\n  want {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The skip list names real vectors only, and most of them run.
    for (skipped, why) in NOT_RUN {
        assert!(!why.is_empty());
        assert!(
            cases.iter().any(|t| t["description"] == *skipped),
            "{skipped:?} is not a vector"
        );
    }
    assert_eq!(ran + NOT_RUN.len(), cases.len());
    assert!(ran >= 25, "only {ran} vectors ran");
}

fn config(extra: impl FnOnce(&mut oxrunner_config::CacheGcsConfig)) -> oxrunner_config::CacheConfig {
    let mut gcs = oxrunner_config::CacheGcsConfig {
        credentials_file: Some(data("test_service_account.not-a-test.json").display().to_string()),
        bucket_name: Some("runner-cache".into()),
        ..Default::default()
    };
    extra(&mut gcs);
    oxrunner_config::CacheConfig {
        cache_type: Some("gcs".into()),
        gcs: Some(gcs),
        ..Default::default()
    }
}

fn setup(cfg: &oxrunner_config::CacheConfig) -> crate::hooks::remote::RemoteSetup {
    crate::hooks::remote::RemoteSetup::from_config(Some(cfg), "abcdefghi")
}

fn ready(cfg: &oxrunner_config::CacheConfig) -> std::sync::Arc<crate::hooks::remote::RemoteCache> {
    match setup(cfg) {
        crate::hooks::remote::RemoteSetup::Ready(r) => r,
        other => panic!("not ready: {other:?}"),
    }
}

fn broken(cfg: &oxrunner_config::CacheConfig) -> String {
    match setup(cfg) {
        crate::hooks::remote::RemoteSetup::Broken(why) => why,
        other => panic!("not broken: {other:?}"),
    }
}

/// A line from the middle of the test key: it must never show up anywhere.
fn key_fragment() -> String {
    test_account().1.lines().nth(5).unwrap().to_owned()
}

#[test]
fn gcs_and_gcsv2_caches_are_served_through_signed_urls() {
    let r = ready(&config(|_| {}));
    let object = r.object_name(1, "deps", false).unwrap();
    let get = r.store.presign_get(&object, std::time::Duration::from_secs(600));
    assert_eq!(get.url.scheme(), "https");
    assert_eq!(get.url.host_str(), Some("storage.googleapis.com"));
    assert_eq!(get.url.path(), "/runner-cache/runner/abcdefghi/project/1/deps");
    let query = get.url.query().unwrap();
    assert!(query.contains("X-Goog-Algorithm=GOOG4-RSA-SHA256"), "{query}");
    assert!(
        query
            .contains("X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F"),
        "{query}"
    );
    assert!(query.contains("X-Goog-Expires=600&"), "{query}");
    assert!(query.contains("&X-Goog-Signature="), "{query}");
    assert_eq!(
        crate::hooks::remote::transfer::clean_url(get.url.as_str()),
        "https://storage.googleapis.com/runner-cache/runner/abcdefghi/project/1/deps"
    );
    let shown = format!("{get:?} {:?}", setup(&config(|_| {})));
    assert!(!shown.contains("X-Goog-Signature"), "{shown}");
    assert!(
        !shown.contains(&key_fragment()) && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    assert!(shown.contains("test-iam-credentials@"), "{shown}");

    let mut v2 = config(|_| {});
    v2.cache_type = Some("gcsv2".into());
    assert!(matches!(setup(&v2), crate::hooks::remote::RemoteSetup::Ready(_)));
}

#[test]
fn uploads_sign_the_content_type_and_size_limit_upstream_sends() {
    let mut cfg = config(|_| {});
    cfg.max_uploaded_archive_size = Some(1000);
    let put = ready(&cfg)
        .store
        .presign_put("o", std::time::Duration::from_secs(60));
    assert_eq!(
        put.headers,
        vec![
            ("Content-Type".to_owned(), "application/octet-stream".to_owned()),
            ("X-Goog-Content-Length-Range".to_owned(), "0,1000".to_owned()),
        ]
    );
    let query = put.url.query().unwrap();
    assert!(
        query.contains("X-Goog-SignedHeaders=content-type%3Bhost%3Bx-goog-content-length-range"),
        "{query}"
    );
    // A week is the longest V4 allows.
    let get = ready(&cfg)
        .store
        .presign_get("o", std::time::Duration::from_secs(30 * 24 * 3600));
    assert!(get.url.query().unwrap().contains("X-Goog-Expires=604800&"));
}

#[test]
fn access_id_and_private_key_sign_too_and_universe_domain_moves_the_host() {
    let (_, pem) = test_account();
    let cfg = config(|g| {
        g.credentials_file = None;
        g.access_id = Some("cache@example-project.iam.gserviceaccount.com".into());
        g.private_key = Some(oxrunner_config::Secret::new(pem));
        g.universe_domain = Some("example.test".into());
    });
    let url = ready(&cfg)
        .store
        .presign_get("o", std::time::Duration::from_secs(60))
        .url;
    assert_eq!(url.host_str(), Some("storage.example.test"));
    assert!(
        url.query()
            .unwrap()
            .contains("X-Goog-Credential=cache%40example-project.iam.gserviceaccount.com%2F"),
        "{url}"
    );
}

#[test]
fn configuration_errors_name_the_key_with_a_hint_and_never_the_key_material() {
    let (_, pem) = test_account();
    let why = broken(&config(|g| g.bucket_name = None));
    assert!(
        why.contains("BucketName is missing") && why.contains("hint:"),
        "{why}"
    );

    let why = broken(&config(|g| {
        g.credentials_file = None;
        g.access_id = Some("a@b".into());
    }));
    assert!(
        why.contains("AccessID and PrivateKey must be set together") && why.contains("hint:"),
        "{why}"
    );

    // A key pasted with one line cut: not PEM any more; the message quotes none of it.
    let damaged: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----END"))
        .collect::<Vec<_>>()
        .join("\n");
    let why = broken(&config(|g| {
        g.credentials_file = None;
        g.access_id = Some("a@b".into());
        g.private_key = Some(oxrunner_config::Secret::new(damaged));
    }));
    assert!(why.contains("PrivateKey") && why.contains("hint:"), "{why}");
    assert!(!why.contains(&key_fragment()), "{why}");

    let why = broken(&config(|g| {
        g.credentials_file = Some("/nonexistent/oxrt-gcs.json".into())
    }));
    assert!(
        why.contains("cannot read CredentialsFile \"/nonexistent/oxrt-gcs.json\""),
        "{why}"
    );

    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user.json");
    std::fs::write(
        &user,
        r#"{"type":"authorized_user","client_id":"x","refresh_token":"tok-secret"}"#,
    )
    .unwrap();
    let why = broken(&config(|g| g.credentials_file = Some(user.display().to_string())));
    assert!(
        why.contains("type \"authorized_user\"") && why.contains("hint:"),
        "{why}"
    );
    assert!(!why.contains("tok-secret"), "{why}");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(
            "{{\"type\":\"service_account\",\"private_key\":\"{}",
            key_fragment()
        ),
    )
    .unwrap();
    let why = broken(&config(|g| g.credentials_file = Some(bad.display().to_string())));
    assert!(why.contains("is not a service-account JSON file"), "{why}");
    assert!(!why.contains(&key_fragment()), "{why}");

    let why = broken(&config(|g| g.universe_domain = Some("evil.test/x".into())));
    assert!(why.contains("UniverseDomain = \"evil.test/x\""), "{why}");
}

#[test]
fn without_settings_the_application_default_file_is_used_and_else_the_metadata_server_is_refused() {
    let cfg = config(|g| g.credentials_file = None);
    let gcs = cfg.gcs.as_ref().unwrap();
    let why = super::signer(gcs, None).unwrap_err();
    assert!(
        why.contains("metadata server") && why.contains("not supported"),
        "{why}"
    );
    assert!(why.contains("hint: set CredentialsFile"), "{why}");
    let path = data("test_service_account.not-a-test.json").display().to_string();
    let signer = super::signer(gcs, Some(&path)).unwrap();
    assert!(format!("{signer:?}").contains("test-iam-credentials@"));
    let why = super::signer(gcs, Some("/nonexistent/oxrt-adc.json")).unwrap_err();
    assert!(why.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{why}");
}
