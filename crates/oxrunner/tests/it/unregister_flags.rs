//! Issue #13 item 4: `unregister`'s flags and environment variables as gitlab-runner has them
//! (compat-audit §1c): `CI_SERVER_TOKEN`/`CI_SERVER_URL` instead of flags, a token alone selecting the
//! configured runner, and `--tls-*` (`CI_SERVER_TLS_*`) for a runner that is not in the config file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fake_gitlab::{FakeGitlab, FakeOptions, TestPki};

use crate::support::{Sandbox, fake, global_toml, register_args, shell_runner_toml};

/// A config with two UI-created runners ("alpha", "beta").
fn two_runners(fake: &FakeGitlab, sb: &Sandbox) -> (String, String) {
    let a = fake.create_runner_token("alpha");
    let b = fake.create_runner_token("beta");
    let mut text = global_toml(1, "");
    text.push_str(&shell_runner_toml("alpha", &fake.url(), &a, &sb.path("w"), ""));
    text.push_str(&shell_runner_toml("beta", &fake.url(), &b, &sb.path("w"), ""));
    std::fs::write(sb.config(), text).unwrap();
    (a, b)
}

fn names(sb: &Sandbox) -> Vec<String> {
    sb.config_toml()
        .get("runners")
        .and_then(|r| r.as_array())
        .map(|rs| {
            rs.iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The manager `DELETE /runners/managers` removed: glrt- runners lose only this machine's manager.
fn managers(fake: &FakeGitlab, token: &str) -> usize {
    fake.runners()
        .into_iter()
        .find(|r| r.token == token)
        .unwrap()
        .managers
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn ci_server_url_and_token_from_the_environment_select_the_runner() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (a, b) = two_runners(&fake, &sb);
    let cfg = sb.config_str();
    // Both runners register a manager for this machine first (verify does that, as `run` would).
    sb.run(&["verify", "-c", &cfg], &[], None).await.assert_ok();
    assert_eq!((managers(&fake, &a), managers(&fake, &b)), (1, 1));

    let url = fake.url();
    let out = sb
        .run(
            &["unregister", "-c", &cfg],
            &[("CI_SERVER_URL", url.as_str()), ("CI_SERVER_TOKEN", b.as_str())],
            None,
        )
        .await;
    out.assert_ok();
    assert!(!out.all().contains(&b), "the token leaked:\n{}", out.all());
    assert_eq!(names(&sb), ["alpha"]);
    assert_eq!((managers(&fake, &a), managers(&fake, &b)), (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_alone_or_with_its_name_selects_the_configured_runner() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (a, b) = two_runners(&fake, &sb);
    let cfg = sb.config_str();
    sb.run(&["verify", "-c", &cfg], &[], None).await.assert_ok();

    // Name and token must belong together.
    let out = sb
        .run(&["unregister", "-c", &cfg, "-n", "beta", "-t", &a], &[], None)
        .await;
    out.assert_failed();
    assert!(
        out.stderr.contains("no runner named `beta` with that token") && out.stderr.contains("hint:"),
        "{}",
        out.all()
    );
    assert_eq!(names(&sb), ["alpha", "beta"]);

    sb.run(&["unregister", "-c", &cfg, "-t", &a], &[], None)
        .await
        .assert_ok();
    assert_eq!(names(&sb), ["beta"]);
    sb.run(
        &["unregister", "-c", &cfg, "-n", "beta", "--token", &b],
        &[],
        None,
    )
    .await
    .assert_ok();
    assert!(names(&sb).is_empty());
    assert_eq!((managers(&fake, &a), managers(&fake, &b)), (0, 0));
}

/// A name and a token of different runners fail even with a URL at hand (flag or CI_SERVER_URL, which every CI
/// job has): neither runner is unregistered at GitLab nor removed from the file.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_and_token_mismatch_with_a_url_unregisters_nothing() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (a, b) = two_runners(&fake, &sb);
    let cfg = sb.config_str();
    sb.run(&["verify", "-c", &cfg], &[], None).await.assert_ok();
    let url = fake.url();

    let by_flag = sb
        .run(
            &["unregister", "-c", &cfg, "-n", "beta", "-t", &a, "--url", &url],
            &[],
            None,
        )
        .await;
    let by_env = sb
        .run(
            &["unregister", "-c", &cfg, "-n", "alpha"],
            &[("CI_SERVER_URL", url.as_str()), ("CI_SERVER_TOKEN", b.as_str())],
            None,
        )
        .await;
    for out in [&by_flag, &by_env] {
        out.assert_failed();
        assert!(
            out.stderr.contains("with that token") && out.stderr.contains("hint:"),
            "{}",
            out.all()
        );
    }
    assert_eq!(names(&sb), ["alpha", "beta"]);
    assert_eq!((managers(&fake, &a), managers(&fake, &b)), (1, 1));
}

/// A runner that is not in this config file is unregistered over HTTPS with the CA given by `--tls-ca-file`, or
/// by `CI_SERVER_TLS_CA_FILE`; without it the TLS error says what to pass.
#[tokio::test(flavor = "multi_thread")]
async fn tls_flags_and_their_environment_variables_reach_the_api_client() {
    let pki = TestPki::generate().unwrap();
    let fake = FakeGitlab::start(FakeOptions {
        tls: Some(pki.server.clone()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let url = fake.url();
    // Two legacy runners registered from another machine's config: DELETE /runners removes them outright.
    let other = Sandbox::new();
    let oca = other.path("ca.pem");
    std::fs::write(&oca, &pki.ca_pem).unwrap();
    let oca = oca.to_string_lossy().into_owned();
    let ocfg = other.config_str();
    for name in ["one", "two"] {
        other
            .run(
                &register_args(&ocfg, &url, name, &["--tls-ca-file", &oca]),
                &[],
                None,
            )
            .await
            .assert_ok();
    }
    let token = |name: &str| {
        fake.runners()
            .into_iter()
            .find(|r| r.description == name)
            .unwrap()
            .token
    };
    let (one, two) = (token("one"), token("two"));
    let exists = |t: &str| fake.runners().iter().any(|r| r.token == t);

    let sb = Sandbox::new();
    std::fs::write(sb.config(), "concurrent = 1\n").unwrap();
    let ca = sb.path("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let cfg = sb.config_str();

    let out = sb
        .run(&["unregister", "-c", &cfg, "-u", &url, "-t", &one], &[], None)
        .await;
    out.assert_failed();
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("--tls-ca-file"),
        "{}",
        out.all()
    );
    assert!(exists(&one));

    let out = sb
        .run(
            &[
                "unregister",
                "-c",
                &cfg,
                "-u",
                &url,
                "-t",
                &one,
                "--tls-ca-file",
                &ca,
            ],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert!(!exists(&one));

    let out = sb
        .run(
            &["unregister", "-c", &cfg],
            &[
                ("CI_SERVER_URL", url.as_str()),
                ("CI_SERVER_TOKEN", two.as_str()),
                ("CI_SERVER_TLS_CA_FILE", ca.as_str()),
            ],
            None,
        )
        .await;
    out.assert_ok();
    assert!(!out.all().contains(&two), "the token leaked:\n{}", out.all());
    assert!(!exists(&two));
    assert_eq!(
        sb.read_config(),
        "concurrent = 1\n",
        "a runner that was not in the file changes nothing in it"
    );
}
