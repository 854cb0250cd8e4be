//! Issue #2 acceptance over HTTPS: a fake GitLab whose certificate is signed by a private CA generated here
//! (rcgen, through `fake_gitlab::TestPki`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use common::{Sandbox, register_args};
use fake_gitlab::{FakeGitlab, FakeOptions, TestPki};

async fn https_fake() -> (FakeGitlab, TestPki) {
    let pki = TestPki::generate().unwrap();
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(pki.server.clone()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    assert!(fake.url().starts_with("https://localhost:"));
    (fake, pki)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_without_the_ca_fails_with_a_hint() {
    let (fake, _pki) = https_fake().await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    let out = sb
        .run(&register_args(&cfg, &url, "tls-runner", &[]), &[], None)
        .await;
    out.assert_failed();
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknown authority"),
        "error should name the certificate problem:\n{}",
        out.stderr
    );
    let hint = out
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("hint:"))
        .unwrap_or_else(|| panic!("no hint line:\n{}", out.stderr));
    assert!(
        out.stderr.contains("--tls-ca-file"),
        "hint should name --tls-ca-file:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("certs"),
        "hint should name the certs folder:\n{}",
        out.stderr
    );
    assert!(!hint.is_empty());
    assert!(fake.runners().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_tls_ca_file_registers_verifies_and_unregisters() {
    let (fake, pki) = https_fake().await;
    let sb = Sandbox::new();
    let ca = sb.path("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca_s = ca.to_string_lossy().into_owned();
    let url = fake.url();
    let cfg = sb.config_str();
    sb.run(
        &register_args(&cfg, &url, "tls-runner", &["--tls-ca-file", &ca_s]),
        &[],
        None,
    )
    .await
    .assert_ok();
    let toml = sb.config_toml();
    let r = toml["runners"][0].as_table().unwrap();
    assert_eq!(
        r["tls-ca-file"].as_str(),
        Some(ca_s.as_str()),
        "tls-ca-file kept for later commands"
    );
    assert_eq!(fake.runners().len(), 1);

    // verify and unregister reuse the runner's tls-ca-file.
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert!(out.all().contains("is valid"), "{}", out.all());
    sb.run(&["unregister", "-c", &cfg, "--all-runners"], &[], None)
        .await
        .assert_ok();
    assert!(fake.runners().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_ca_is_picked_from_the_certs_folder() {
    let (fake, pki) = https_fake().await;
    let sb = Sandbox::new();
    let certs = sb.config().parent().unwrap().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("localhost.crt"), &pki.ca_pem).unwrap();
    let url = fake.url();
    let cfg = sb.config_str();
    sb.run(&register_args(&cfg, &url, "tls-runner", &[]), &[], None)
        .await
        .assert_ok();
    assert_eq!(fake.runners().len(), 1);
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert!(out.all().contains("is valid"), "{}", out.all());
}

/// A job over HTTPS: the API calls and the git clone must both trust the private CA, whether it comes from
/// `tls-ca-file` or from `<config dir>/certs/<host>.crt`.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_clone_over_https_with_the_private_ca() {
    let (fake, pki) = https_fake().await;
    for via_certs_dir in [false, true] {
        let sb = Sandbox::new();
        let src = common::project_files(sb.dir.path());
        let project = fake
            .create_project(&format!("group/tls{}", u8::from(via_certs_dir)), &src)
            .unwrap();
        let token = fake.create_runner_token("tls");
        let extra = if via_certs_dir {
            let certs = sb.config().parent().unwrap().join("certs");
            std::fs::create_dir_all(&certs).unwrap();
            std::fs::write(certs.join("localhost.crt"), &pki.ca_pem).unwrap();
            String::new()
        } else {
            let ca = sb.path("ca.pem");
            std::fs::write(&ca, &pki.ca_pem).unwrap();
            format!("  tls-ca-file = \"{}\"\n", ca.display())
        };
        let text = common::global_toml(1, "")
            + &common::shell_runner_toml("tls", &fake.url(), &token, sb.dir.path(), &extra);
        std::fs::write(sb.config(), text).unwrap();
        let cfg = sb.config_str();
        let d = sb.spawn(&["run", "-c", &cfg]);
        let id = fake.enqueue_job(
            fake_gitlab::JobSpec::new("tls", &["cat hello.txt", "echo \"HEAD=$(git rev-parse HEAD)\""])
                .project(project.id),
        );
        let job = common::finished(&fake, id, std::time::Duration::from_secs(60), &d).await;
        let trace = job.trace_text();
        assert_eq!(
            job.status,
            "success",
            "certs dir: {via_certs_dir}\n{trace}\n{}",
            d.log()
        );
        assert!(trace.contains("hello from the repository"), "{trace}");
        assert!(trace.contains(&format!("HEAD={}", project.sha)));
        let mut d = d;
        let status = d.quit(std::time::Duration::from_secs(30)).await;
        assert!(status.success());
    }
}
