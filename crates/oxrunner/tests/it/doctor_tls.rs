//! `oxrunner doctor` against fake-gitlab over HTTPS with a self-signed certificate (`openssl req -x509`): without
//! the CA it names the presented chain, the missing certificate, the fix and git's view; with the certificate in
//! `<config dir>/certs/<host>.crt` every check passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, TlsMaterial};

use crate::doctor::{assert_fails_with, doctor, healthy_shell_toml, not_ok, write_config};
use crate::support::Sandbox;

/// `openssl req -x509` (self-signed, CA:TRUE); `None` outside CI when the tool is missing.
fn self_signed(dir: &Path) -> Option<TlsMaterial> {
    let (cert, key) = (dir.join("gitlab.crt"), dir.join("gitlab.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .args([
            "-subj",
            "/CN=gitlab.test",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: the openssl CLI is not available ({e})");
            return None;
        }
        Err(e) => panic!("the openssl CLI is required under CI=true: {e}"),
    }
    Some(TlsMaterial {
        cert_pem: std::fs::read_to_string(&cert).unwrap(),
        key_pem: std::fs::read_to_string(&key).unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_certificate_shows_the_chain_the_missing_certificate_and_the_fix() {
    let sb = Sandbox::new();
    let Some(tls) = self_signed(sb.dir.path()) else {
        return;
    };
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(tls.clone()),
        long_poll: Duration::from_secs(2),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let url = fake.url().replace("://localhost:", "://127.0.0.1:");
    let token = fake.create_runner_token("doc");
    write_config(&sb, &healthy_shell_toml(&sb, &url, &token, ""));

    let out = doctor(&sb, &[]).await;
    let certs = sb.config().parent().unwrap().join("certs");
    assert_fails_with(
        &out,
        "TLS: the server's certificate is not trusted",
        &format!("{}/127.0.0.1.crt", certs.display()),
    );
    assert!(
        out.stdout
            .contains("set tls-ca-file = \"<ca.pem>\" in [[runners]]"),
        "{}",
        out.all()
    );
    for expected in [
        "certificate signed by unknown authority",
        "the server presented:",
        "[0] subject \"CN=gitlab.test\"",
        "self-signed",
        "missing: \"CN=gitlab.test\" itself (self-signed)",
        "git on this host would not trust 127.0.0.1 either",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            out.all()
        );
    }

    // The fix doctor gave: the certificate at <config dir>/certs/<host>.crt.
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("127.0.0.1.crt"), &tls.cert_pem).unwrap();
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(not_ok(&out), Vec::<String>::new(), "{}", out.all());
    assert!(
        out.stdout.contains("✓ TLS: certificate verified"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("✓ GitLab accepts the token"), "{}", out.all());
}
