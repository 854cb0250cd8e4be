#![allow(clippy::unwrap_used, clippy::expect_used)]

use fake_gitlab::{FakeGitlab, FakeOptions, TestPki};
use serde_json::json;

#[tokio::test]
async fn serves_https_with_a_private_ca() {
    let pki = TestPki::generate().unwrap();
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(pki.server.clone()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    assert!(fake.url().starts_with("https://localhost:"));
    let token = fake.create_runner_token("tls");
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = trusted
        .post(format!("{}/api/v4/runners/verify", fake.url()))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let untrusted = reqwest::Client::new();
    let err = untrusted
        .post(format!("{}/api/v4/runners/verify", fake.url()))
        .json(&json!({ "token": token }))
        .send()
        .await;
    assert!(
        err.is_err(),
        "a client without the CA must refuse the certificate"
    );
    assert!(!format!("{:?}", pki.server).contains("PRIVATE KEY"));
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = FakeGitlab::start(FakeOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..FakeOptions::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("hint:"), "{err}");
}
