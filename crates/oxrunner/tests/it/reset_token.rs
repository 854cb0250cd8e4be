//! Issue #13 item 4: `reset-token` against fake-gitlab, with the runner's own token and with `--pat`. The new
//! token and its expiry land in config.toml (0600, other runners untouched); the old token stops working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions};

use crate::support::{Output, Sandbox, global_toml, shell_runner_toml};

async fn fake(token_lifetime: Duration) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        runner_token_expires_in: Some(token_lifetime),
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

/// Two runners created "in the UI", written into the sandbox's config.toml with their ids.
fn two_runners(fake: &FakeGitlab, sb: &Sandbox) -> [(i64, String); 2] {
    let a = fake.create_runner_token("alpha");
    let b = fake.create_runner_token("beta");
    let id = |t: &str| fake.runners().iter().find(|r| r.token == t).unwrap().id;
    let mut text = global_toml(1, "");
    for (name, token) in [("alpha", &a), ("beta", &b)] {
        text.push_str(&shell_runner_toml(
            name,
            &fake.url(),
            token,
            &sb.path("w"),
            &format!("  id = {}\n", id(token)),
        ));
    }
    std::fs::write(sb.config(), text).unwrap();
    [(id(&a), a), (id(&b), b)]
}

fn runner<'a>(cfg: &'a toml::Table, name: &str) -> &'a toml::Table {
    cfg["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_table().unwrap())
        .find(|r| r["name"].as_str() == Some(name))
        .unwrap()
}

fn server_token(fake: &FakeGitlab, id: i64) -> String {
    fake.runners().into_iter().find(|r| r.id == id).unwrap().token
}

fn assert_saved(sb: &Sandbox, fake: &FakeGitlab, name: &str, id: i64, old: &str, out: &Output) {
    let new = server_token(fake, id);
    assert_ne!(new, old, "GitLab did not issue a new token:\n{}", out.all());
    let cfg = sb.config_toml();
    let r = runner(&cfg, name);
    assert_eq!(r["token"].as_str(), Some(new.as_str()), "{}", out.all());
    let server_expiry = fake
        .runners()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
        .token_expires_at
        .unwrap();
    let written = r["token_expires_at"].as_datetime().unwrap().to_string();
    let parse =
        |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parse(&written), parse(&server_expiry));
    assert!(r.contains_key("token_obtained_at"), "{r:?}");
    assert!(
        !out.all().contains(&new),
        "the new token leaked into the output:\n{}",
        out.all()
    );
    let mode = std::fs::metadata(sb.config()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_token_by_name_rotates_one_runner_and_saves_it() {
    let fake = fake(Duration::from_secs(3600)).await;
    let sb = Sandbox::new();
    let [(a_id, a), (b_id, b)] = two_runners(&fake, &sb);
    let out = sb
        .run(
            &["reset-token", "-c", &sb.config_str(), "--name", "alpha"],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert_saved(&sb, &fake, "alpha", a_id, &a, &out);
    assert!(
        !fake.runners().iter().any(|r| r.token == a),
        "the old token must be dead"
    );
    assert_eq!(server_token(&fake, b_id), b);
    assert_eq!(
        runner(&sb.config_toml(), "beta")["token"].as_str(),
        Some(b.as_str())
    );
    // The rewrite keeps the rest of the file.
    assert_eq!(sb.config_toml()["concurrent"].as_integer(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_token_all_runners() {
    let fake = fake(Duration::from_secs(3600)).await;
    let sb = Sandbox::new();
    let [(a_id, a), (b_id, b)] = two_runners(&fake, &sb);
    let out = sb
        .run(
            &["reset-token", "-c", &sb.config_str(), "--all-runners"],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert_saved(&sb, &fake, "alpha", a_id, &a, &out);
    assert_saved(&sb, &fake, "beta", b_id, &b, &out);
}

/// `--pat` uses the personal-access-token endpoint by runner id, which also revives a runner whose own token has
/// expired (it cannot reset itself any more).
#[tokio::test(flavor = "multi_thread")]
async fn reset_token_with_a_personal_access_token_by_url_and_id() {
    let fake = fake(Duration::ZERO).await;
    let sb = Sandbox::new();
    let [(a_id, a), (b_id, b)] = two_runners(&fake, &sb);
    let cfg = sb.config_str();
    let url = fake.url();
    let id = a_id.to_string();

    let out = sb
        .run(&["reset-token", "-c", &cfg, "--name", "alpha"], &[], None)
        .await;
    out.assert_failed();
    assert!(out.stderr.contains("403"), "{}", out.all());
    assert_eq!(
        runner(&sb.config_toml(), "alpha")["token"].as_str(),
        Some(a.as_str())
    );

    let out = sb
        .run(
            &[
                "reset-token",
                "-c",
                &cfg,
                "--url",
                &url,
                "--id",
                &id,
                "--pat",
                "glpat-wrong",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(out.stderr.contains("401"), "{}", out.all());
    assert!(
        !out.all().contains("glpat-wrong"),
        "the PAT leaked:\n{}",
        out.all()
    );
    assert_eq!(
        runner(&sb.config_toml(), "alpha")["token"].as_str(),
        Some(a.as_str())
    );

    let pat = FakeOptions::default().admin_personal_access_token;
    let out = sb
        .run(
            &[
                "reset-token",
                "-c",
                &cfg,
                "-u",
                &format!("{url}/"),
                "-i",
                &id,
                "--pat",
                &pat,
            ],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert!(!out.all().contains(&pat), "the PAT leaked:\n{}", out.all());
    assert_saved(&sb, &fake, "alpha", a_id, &a, &out);
    let reset = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("reset_authentication_token"))
        .map(|r| r.path)
        .collect::<Vec<_>>();
    assert!(
        reset.contains(&format!("/api/v4/runners/{a_id}/reset_authentication_token")),
        "{reset:?}"
    );
    assert_eq!(server_token(&fake, b_id), b);
}

/// `--all-runners` saves each new token as soon as GitLab issues it: while the next runner's reset hangs (its
/// GitLab accepts the connection and never answers), the first runner's new token is already in the file.
#[tokio::test(flavor = "multi_thread")]
async fn all_runners_saves_each_new_token_before_the_next_reset() {
    let fake = fake(Duration::from_secs(3600)).await;
    let sb = Sandbox::new();
    let [(a_id, a), _] = two_runners(&fake, &sb);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let text = sb.read_config();
    let at = text.rfind(&fake.url()).unwrap();
    let text = format!("{}{silent_url}{}", &text[..at], &text[at + fake.url().len()..]);
    std::fs::write(sb.config(), text).unwrap();

    let mut child = sb
        .command()
        .args(["reset-token", "-c", &sb.config_str(), "--all-runners"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let saved = loop {
        let new = server_token(&fake, a_id);
        let cfg = sb.read_config().parse::<toml::Table>().ok();
        if new != a && cfg.as_ref().map(|c| runner(c, "alpha")["token"].as_str()) == Some(Some(new.as_str()))
        {
            break true;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().await.unwrap();
    assert!(
        saved,
        "alpha's new token was not saved while beta's reset was pending"
    );
    assert!(
        still_running,
        "the reset of beta should still be waiting for its GitLab"
    );
    drop(silent);
}

/// The PAT can come from `OXRUNNER_PAT` alone, so it never appears in the process list.
#[tokio::test(flavor = "multi_thread")]
async fn reset_token_takes_the_personal_access_token_from_the_environment() {
    let fake = fake(Duration::ZERO).await;
    let sb = Sandbox::new();
    let [(a_id, a), (b_id, b)] = two_runners(&fake, &sb);
    let cfg = sb.config_str();
    let url = fake.url();
    let id = a_id.to_string();
    let pat = FakeOptions::default().admin_personal_access_token;
    let out = sb
        .run(
            &["reset-token", "-c", &cfg, "-u", &url, "-i", &id],
            &[("OXRUNNER_PAT", pat.as_str())],
            None,
        )
        .await;
    out.assert_ok();
    assert!(!out.all().contains(&pat), "the PAT leaked:\n{}", out.all());
    assert_saved(&sb, &fake, "alpha", a_id, &a, &out);
    assert_eq!(server_token(&fake, b_id), b);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_token_says_which_runner_is_missing() {
    let fake = fake(Duration::from_secs(3600)).await;
    let sb = Sandbox::new();
    let _ = two_runners(&fake, &sb);
    let before = sb.read_config();
    let cfg = sb.config_str();
    for (args, says) in [
        (
            vec!["reset-token", "-c", &cfg],
            "say which runner's token to reset",
        ),
        (
            vec!["reset-token", "-c", &cfg, "-n", "gamma"],
            "no runner named `gamma`",
        ),
        (
            vec!["reset-token", "-c", &cfg, "-u", "http://127.0.0.1:9/", "-i", "1"],
            "no runner with url",
        ),
    ] {
        let out = sb.run(&args, &[], None).await;
        out.assert_failed();
        assert!(
            out.stderr.contains(says) && out.stderr.contains("hint:"),
            "{args:?}:\n{}",
            out.all()
        );
    }
    assert_eq!(sb.read_config(), before);
}
