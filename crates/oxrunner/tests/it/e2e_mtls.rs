//! GitLab behind a proxy that requires client certificates: fake-gitlab asks every client for a certificate
//! issued by the test CA. With `tls-cert-file`/`tls-key-file` the runner registers and its job's API calls and git
//! clone go through; without them registration fails with an error that names the certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{self as common, Sandbox, register_args};
use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec, TestPki};

async fn mtls_fake() -> (FakeGitlab, TestPki) {
    let pki = TestPki::generate().unwrap();
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(pki.server.clone()),
        client_ca: Some(pki.ca_pem.clone()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    (fake, pki)
}

/// Writes the CA, client certificate and key into the sandbox; returns their paths.
fn tls_files(sb: &Sandbox, pki: &TestPki) -> (String, String, String) {
    let (ca, cert, key) = (sb.path("ca.pem"), sb.path("client.pem"), sb.path("client.key"));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.client.cert_pem).unwrap();
    std::fs::write(&key, &pki.client.key_pem).unwrap();
    let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    (s(ca), s(cert), s(key))
}

#[tokio::test(flavor = "multi_thread")]
async fn register_needs_the_client_certificate() {
    let (fake, pki) = mtls_fake().await;
    let url = fake.url();

    let sb = Sandbox::new();
    let (ca, _, _) = tls_files(&sb, &pki);
    let cfg = sb.config_str();
    let out = sb
        .run(
            &register_args(&cfg, &url, "no-cert", &["--tls-ca-file", &ca]),
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(
        out.stderr
            .contains("the server did not accept our client certificate or requires one"),
        "the error must name the certificate:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: pass --tls-cert-file <cert.pem> and --tls-key-file <key.pem>"),
        "{}",
        out.stderr
    );
    assert!(fake.runners().is_empty());

    let sb = Sandbox::new();
    let (ca, cert, key) = tls_files(&sb, &pki);
    let cfg = sb.config_str();
    let extra = [
        "--tls-ca-file",
        &ca,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
    ];
    sb.run(&register_args(&cfg, &url, "with-cert", &extra), &[], None)
        .await
        .assert_ok();
    assert_eq!(fake.runners().len(), 1);
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_clones_through_the_proxy_with_the_client_certificate() {
    let (fake, pki) = mtls_fake().await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/mtls-clone", &common::project_files(sb.dir.path()))
        .unwrap();
    let (ca, cert, key) = tls_files(&sb, &pki);
    let token = fake.create_runner_token("mtls");
    let extra =
        format!("  tls-ca-file = \"{ca}\"\n  tls-cert-file = \"{cert}\"\n  tls-key-file = \"{key}\"\n");
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml("mtls", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    let id = fake.enqueue_job(
        JobSpec::new("mtls", &["cat hello.txt", "echo \"HEAD=$(git rev-parse HEAD)\""])
            .project(project.id)
            .variable("GIT_STRATEGY", "clone"),
    );
    let job = common::finished(&fake, id, Duration::from_secs(90), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains("\nhello from the repository\n"), "{trace}");
    assert!(trace.contains(&format!("\nHEAD={}\n", project.sha)), "{trace}");
    common::quit_ok(d).await;
}
