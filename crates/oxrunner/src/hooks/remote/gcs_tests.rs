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
fn without_settings_the_application_default_file_is_used_and_else_the_metadata_server() {
    let cfg = config(|g| g.credentials_file = None);
    let gcs = cfg.gcs.as_ref().unwrap();
    let env = |adc: Option<&str>, host: Option<&str>| super::GoogleEnv {
        adc: adc.map(str::to_owned),
        metadata_host: host.map(str::to_owned),
    };
    let path = data("test_service_account.not-a-test.json").display().to_string();
    let signer = super::signer(gcs, &env(Some(&path), None), "googleapis.com").unwrap();
    assert!(format!("{signer:?}").contains("test-iam-credentials@"));
    let why = super::signer(
        gcs,
        &env(Some("/nonexistent/oxrt-adc.json"), None),
        "googleapis.com",
    )
    .unwrap_err();
    assert!(why.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{why}");

    // No key anywhere: Google's link-local metadata server, or GCE_METADATA_HOST; IAM in the bucket's universe.
    let shown = format!(
        "{:?}",
        super::signer(gcs, &env(None, None), "example.test").unwrap()
    );
    assert!(
        shown.contains("http://169.254.169.254/") && shown.contains("https://iamcredentials.example.test/"),
        "{shown}"
    );
    let shown = format!(
        "{:?}",
        super::signer(gcs, &env(None, Some("127.0.0.1:9")), "googleapis.com").unwrap()
    );
    assert!(shown.contains("http://127.0.0.1:9/"), "{shown}");
    let why = super::signer(gcs, &env(None, Some("a/b?c")), "googleapis.com").unwrap_err();
    assert!(
        why.contains("GCE_METADATA_HOST") && why.contains("hint:"),
        "{why}"
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// One DER element at the start of `der`: (tag, content, rest).
fn der_element(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, 2 + n)
    };
    (tag, &der[start..start + len], &der[start + len..])
}

/// The test key as PKCS#1 (`RSA PRIVATE KEY`): the octet string inside its PKCS#8 `PrivateKeyInfo`.
fn test_key_pkcs1() -> String {
    use rustls_pki_types::pem::PemObject;
    let (_, pkcs8_pem) = test_account();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
    let (_, info, _) = der_element(der.secret_pkcs8_der());
    let (_, _version, rest) = der_element(info);
    let (_, _algorithm, rest) = der_element(rest);
    let (tag, rsa_key, _) = der_element(rest);
    assert_eq!(tag, 0x04, "PKCS#8 holds the key in an OCTET STRING");
    pem("RSA PRIVATE KEY", rsa_key)
}

/// A fixed upload request: its signed URL is the one Google's own Python library makes. Generated with
/// google-cloud-storage 3.x (`PYTHONPATH=<site-packages> python3`):
/// ```text
/// from google.oauth2 import service_account
/// from google.cloud.storage import _signing
/// creds = service_account.Credentials.from_service_account_file(
///     "crates/oxrunner/tests/data/gcs-v4/test_service_account.not-a-test.json")
/// print(_signing.generate_signed_url_v4(
///     creds, "/runner-cache/runner/abcdefghi/project/1/deps",
///     expiration=3600, api_access_endpoint="https://storage.googleapis.com", method="PUT",
///     headers={"Content-Type": "application/octet-stream", "X-Goog-Content-Length-Range": "0,1000"},
///     _request_timestamp="20261207T053000Z"))
/// ```
const PYTHON_PUT_URL: &str = "https://storage.googleapis.com/runner-cache/runner/abcdefghi/project/1/deps?\
    X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.\
    gserviceaccount.com%2F20261207%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20261207T053000Z&\
    X-Goog-Expires=3600&X-Goog-SignedHeaders=content-type%3Bhost%3Bx-goog-content-length-range&X-Goog-Signature=\
    3338946f8de23302e378ca26369ad3d3d795060c1a87f03b563d2e85f591e1eaec5fadea57d10e043427b04d8f016a261b24074a0128c0ac8\
    b7088ca994cfdd6e9544344871fcf9b17dd62d2c3bf5b61e043f061a4d8ec4c592af2da1809218bbcc10377e28f6eeaf1bdbbd779ae761ca5\
    0288a52335c55772370a555b9755066e0805739ab09d80f5385e39cd11df279fe4136b1ed06a426674590c416379cd616d03c3904cdcb9144\
    4ecf2eea59a5c81e550c3bca4ccb622d60338cf88d2ea2a82ae2493027818506b69a161c63a393dcdfbe28c88b33b26c9e23220976db80e1f\
    06f6a92050fb4f83dfb0e933f4bb1eabc6bb297827d7201fed86f0dec9b7";

fn fixed_put(signer: &Signer) -> String {
    let headers = [
        ("Content-Type".to_owned(), "application/octet-stream".to_owned()),
        ("X-Goog-Content-Length-Range".to_owned(), "0,1000".to_owned()),
    ];
    let path = encode_path(&["runner-cache", "runner/abcdefghi/project/1/deps"]);
    signer
        .sign_url(&V4Request {
            method: "PUT",
            scheme: "https",
            host: "storage.googleapis.com",
            path: &path,
            headers: &headers,
            query: &[],
            timestamp: time::macros::datetime!(2026-12-07 05:30:00 UTC),
            expires_secs: 3600,
        })
        .unwrap()
}

#[test]
fn an_upload_url_matches_googles_python_library_with_pkcs8_and_pkcs1_keys() {
    let (email, pkcs8) = test_account();
    assert_eq!(
        fixed_put(&Signer::new(&email, &pkcs8, "test").unwrap()),
        PYTHON_PUT_URL
    );
    let pkcs1 = test_key_pkcs1();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(
        fixed_put(&Signer::new(&email, &pkcs1, "test").unwrap()),
        PYTHON_PUT_URL
    );
}

#[test]
fn an_ec_key_is_refused_as_not_an_rsa_key() {
    use aws_lc_rs::encoding::AsDer;
    let ec =
        aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING)
            .unwrap();
    let sec1 = pem("EC PRIVATE KEY", ec.private_key().as_der().unwrap().as_ref());
    let why = Signer::new("a@b", &sec1, "PrivateKey").unwrap_err();
    assert!(
        why.contains("from PrivateKey is not an RSA key") && why.contains("hint:"),
        "{why}"
    );
}

#[test]
fn a_mixed_case_universe_domain_is_signed_lowercased_as_the_url_carries_it() {
    let r = ready(&config(|g| g.universe_domain = Some("Example.TEST".into())));
    let url = r.store.presign_get("o", std::time::Duration::from_secs(60)).url;
    assert_eq!(url.host_str(), Some("storage.example.test"));
    assert!(
        r.store.describe().ends_with("at https://storage.example.test"),
        "{}",
        r.store.describe()
    );
}

/// Bad credentials files are refused by what they are, never by quoting what they hold.
#[test]
fn credentials_file_errors_never_quote_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = key_fragment();
    let cases = [
        ("string.json", format!("\"{secret}\"")),
        ("type.json", format!("{{\"type\":\"{secret}\"}}")),
        (
            "number.json",
            format!("{{\"type\":\"service_account\",\"client_email\":[\"{secret}\"]}}"),
        ),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let why = broken(&config(|g| g.credentials_file = Some(path.display().to_string())));
        assert!(!why.contains(&secret), "{name}: {why}");
        assert!(why.contains("hint:") && why.contains(name), "{name}: {why}");
    }
    let why = broken(&config(|g| {
        g.credentials_file = Some(dir.path().join("string.json").display().to_string())
    }));
    assert!(why.contains("line 1, column"), "{why}");
}

#[test]
fn a_credentials_file_over_the_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    // Valid JSON throughout: cut at the limit, it would read as broken JSON instead.
    let padding = " ".repeat(usize::try_from(super::CREDENTIALS_FILE_LIMIT).unwrap());
    std::fs::write(&path, format!("{{\"type\":\"service_account\"{padding}}}")).unwrap();
    let why = broken(&config(|g| g.credentials_file = Some(path.display().to_string())));
    assert!(
        why.contains("larger than 1024 KiB") && why.contains("hint:"),
        "{why}"
    );
}

/// A FIFO as CredentialsFile: refused at once, where opening it used to block the thread until a writer came.
#[test]
fn a_fifo_as_credentials_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("creds.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cfg = config(|g| g.credentials_file = Some(fifo.display().to_string()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(broken(&cfg));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(why) => assert!(
            why.contains("is not a regular file") && why.contains("hint:"),
            "{why}"
        ),
        Err(_) => {
            // Unblock the stuck reader so the test process can end.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("reading a FIFO as CredentialsFile blocked for 30 s");
        }
    }
}
