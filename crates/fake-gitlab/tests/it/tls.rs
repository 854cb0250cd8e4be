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

/// What `openssl req -x509` makes: one self-signed certificate with `CA:TRUE`, served as is.
#[tokio::test(flavor = "multi_thread")]
async fn serves_a_self_signed_ca_certificate() {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let tls = fake_gitlab::TlsMaterial::self_signed_ca(
        "gitlab.test",
        &["localhost", "127.0.0.1"],
        now - day,
        now + day,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("cert.pem");
    std::fs::write(&pem, &tls.cert_pem).unwrap();
    let text = match std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&pem)
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: the openssl CLI is not available ({e})");
            return;
        }
        Err(e) => panic!("the openssl CLI is required under CI=true: {e}"),
    };
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(
        text.contains("Issuer: CN = gitlab.test") && text.contains("Subject: CN = gitlab.test"),
        "{text}"
    );
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    let cert_pem = tls.cert_pem.trim().to_string();
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(tls),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let served = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &fake.url().replace("https://localhost", "127.0.0.1"),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&served.stdout);
    assert!(
        shown.contains(&cert_pem),
        "the fake serves exactly that certificate:\n{shown}"
    );
}

#[tokio::test]
async fn a_client_ca_without_tls_is_refused_not_ignored() {
    let pki = TestPki::generate().unwrap();
    let Err(err) = FakeGitlab::start(FakeOptions {
        client_ca: Some(pki.ca_pem.clone()),
        ..FakeOptions::default()
    })
    .await
    else {
        panic!("the fake served plain HTTP although a client CA was asked for");
    };
    let text = err.to_string();
    assert!(text.contains("client_ca is set without tls"), "{text}");
    assert!(text.contains("\nhint: "), "{text}");
}
