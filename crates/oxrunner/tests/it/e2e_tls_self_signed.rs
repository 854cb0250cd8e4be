//! Issue 11 item 3 end to end: GitLab served with the most common self-hosted certificate, one made by
//! `openssl req -x509` (self-signed, `CA:TRUE`), trusted by passing that very certificate as
//! `--tls-ca-file` or as `<config dir>/certs/<host>.crt`. Registration, a job's API calls, its git clone
//! and its artifact upload and download all go over HTTPS to the fake on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Sandbox, register_args};
use fake_gitlab::{ArtifactSpec, FakeGitlab, FakeOptions, JobSpec, TlsMaterial};

/// `openssl req -x509` with OpenSSL's default extensions; `None` (after saying so) when the tool is
/// missing outside CI. Under `CI=true` a missing tool fails the test.
fn openssl_self_signed(dir: &Path) -> Option<TlsMaterial> {
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
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: the openssl CLI is not available ({e})");
            return None;
        }
        Err(e) => panic!("the openssl CLI is required under CI=true: {e}"),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "this test is about OpenSSL's default, a CA certificate"
    );
    Some(TlsMaterial {
        cert_pem: std::fs::read_to_string(&cert).unwrap(),
        key_pem: std::fs::read_to_string(&key).unwrap(),
    })
}

async fn https_fake(tls: &TlsMaterial) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        tls: Some(tls.clone()),
        long_poll: Duration::from_secs(2),
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn register_and_verify_with_the_self_signed_certificate_as_tls_ca_file() {
    let sb = Sandbox::new();
    let Some(tls) = openssl_self_signed(sb.dir.path()) else {
        return;
    };
    let fake = https_fake(&tls).await;
    let ca = sb.path("gitlab.crt").to_string_lossy().into_owned();
    let cfg = sb.config_str();
    let url = fake.url();
    sb.run(
        &register_args(&cfg, &url, "self-signed", &["--tls-ca-file", &ca]),
        &[],
        None,
    )
    .await
    .assert_ok();
    assert_eq!(fake.runners().len(), 1);
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert!(out.all().contains("is valid"), "{}", out.all());
}

/// gitlab-runner's file name is the URL's host without the port: `certs/127.0.0.1.crt`.
#[tokio::test(flavor = "multi_thread")]
async fn register_with_the_self_signed_certificate_in_the_certs_folder() {
    let sb = Sandbox::new();
    let Some(tls) = openssl_self_signed(sb.dir.path()) else {
        return;
    };
    let fake = https_fake(&tls).await;
    let url = fake.url().replace("://localhost:", "://127.0.0.1:");
    let certs = sb.config().parent().unwrap().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("127.0.0.1.crt"), &tls.cert_pem).unwrap();
    let cfg = sb.config_str();
    sb.run(&register_args(&cfg, &url, "self-signed", &[]), &[], None)
        .await
        .assert_ok();
    assert_eq!(fake.runners().len(), 1);
}

/// The job's API calls, its clone (git gets the certificate as CI_SERVER_TLS_CA_FILE), the artifact
/// upload and, in a second job, the artifact download through the object-storage redirect.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_clone_and_move_artifacts_over_https() {
    let sb = Sandbox::new();
    let Some(tls) = openssl_self_signed(sb.dir.path()) else {
        return;
    };
    let fake = https_fake(&tls).await;
    let src = common::project_files(sb.dir.path());
    let project = fake.create_project("group/self-signed", &src).unwrap();
    let token = fake.create_runner_token("self-signed");
    let extra = format!("  tls-ca-file = \"{}\"\n", sb.path("gitlab.crt").display());
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml("self-signed", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let mut d = sb.spawn(&["run", "-c", &cfg]);

    let build = fake.enqueue_job(
        JobSpec::new(
            "build",
            &["cp hello.txt out.txt", "echo \"HEAD=$(git rev-parse HEAD)\""],
        )
        .project(project.id)
        .artifact(ArtifactSpec::paths(&["out.txt"])),
    );
    let job = common::finished(&fake, build, Duration::from_secs(90), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains(&format!("HEAD={}", project.sha)), "{trace}");
    assert!(
        trace.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{trace}"
    );
    assert_eq!(job.artifacts.len(), 1, "{trace}");

    let test = fake.enqueue_job(
        JobSpec::new("test", &["grep -q 'hello from the repository' out.txt"])
            .variable("GIT_STRATEGY", "none")
            .project(project.id)
            .dependency(build),
    );
    let job = common::finished(&fake, test, Duration::from_secs(90), &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(
        trace.contains("Downloading artifacts from coordinator... ok"),
        "{trace}"
    );
    // Accepting the certificate is the normal case, not an error to report on every connection.
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && l.to_lowercase().contains("certificate")),
        "{log}"
    );
    assert!(d.quit(Duration::from_secs(30)).await.success());
}

/// Registration against `served` with `trusted` as the CA file must fail without reaching GitLab;
/// returns stderr.
async fn refused(served: &TlsMaterial, trusted: &str) -> (String, String) {
    let fake = https_fake(served).await;
    let sb = Sandbox::new();
    let ca = sb.path("trusted.pem");
    std::fs::write(&ca, trusted).unwrap();
    let ca_s = ca.to_string_lossy().into_owned();
    let cfg = sb.config_str();
    let url = fake.url();
    let out = sb
        .run(
            &register_args(&cfg, &url, "self-signed", &["--tls-ca-file", &ca_s]),
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(fake.runners().is_empty());
    assert!(
        fake.requests().is_empty(),
        "no request may reach the server: {:?}",
        fake.requests()
    );
    let hint = out
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("hint:"))
        .unwrap_or_else(|| panic!("no hint line:\n{}", out.stderr))
        .to_string();
    (out.stderr.clone(), hint.replace(&ca_s, "<ca file>"))
}

fn rcgen_self_signed(names: &[&str], from: SystemTime, to: SystemTime) -> TlsMaterial {
    TlsMaterial::self_signed_ca("gitlab.test", names, from, to).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn other_expired_or_misnamed_self_signed_certificates_are_refused() {
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let good = rcgen_self_signed(&["localhost", "127.0.0.1"], now - day, now + 30 * day);

    // A different certificate in the file (e.g. the one from before a renewal).
    let stale = rcgen_self_signed(&["localhost", "127.0.0.1"], now - day, now + 30 * day);
    let (stderr, hint) = refused(&good, &stale.cert_pem).await;
    assert!(
        stderr.contains("certificate signed by unknown authority"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CN=gitlab.test"),
        "names the presented certificate:\n{stderr}"
    );
    assert!(hint.contains("<ca file> contains neither"), "{hint}");
    assert!(
        !hint.contains("pass --tls-ca-file"),
        "it was passed already: {hint}"
    );

    // Trusted, but expired.
    let expired = rcgen_self_signed(&["localhost", "127.0.0.1"], now - 60 * day, now - day);
    let (stderr, hint) = refused(&expired, &expired.cert_pem).await;
    assert!(stderr.contains("certificate has expired"), "{stderr}");
    assert!(hint.contains("renew"), "{hint}");

    // Trusted, but for another host.
    let misnamed = rcgen_self_signed(&["gitlab.example.com"], now - day, now + 30 * day);
    let (stderr, hint) = refused(&misnamed, &misnamed.cert_pem).await;
    assert!(stderr.contains("not valid for localhost"), "{stderr}");
    assert!(hint.contains("subjectAltName=DNS:localhost"), "{hint}");
}
