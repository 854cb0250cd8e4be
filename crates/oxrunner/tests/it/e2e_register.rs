//! Issue #2 acceptance: `register`, `verify`, `list`, `unregister` and `-v` of the real binary against
//! fake-gitlab over real sockets (HTTP here; HTTPS in `tls.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::os::unix::fs::PermissionsExt;

use common::{Output, Sandbox, fake, register_args};
use fake_gitlab::{FakeGitlab, FakeOptions};

const REG: &str = "GR1348941fake-registration";

fn assert_no_secret(out: &Output, secret: &str) {
    assert!(
        !out.all().contains(secret),
        "the full token leaked into the output:\n{}",
        out.all()
    );
}

fn runners(cfg: &toml::Table) -> Vec<toml::Table> {
    cfg["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_table().unwrap().clone())
        .collect()
}

fn s<'a>(t: &'a toml::Table, key: &str) -> &'a str {
    t.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("`{key}` missing or not a string in {t:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_shell_runner_command_writes_the_seed_config() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--registration-token",
                REG,
                "--executor",
                "shell",
                "--description",
                "Shell Runner",
            ],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert_no_secret(&out, REG);

    let server = fake.runners();
    assert_eq!(server.len(), 1);
    assert_eq!(server[0].description, "Shell Runner");
    assert!(!server[0].created_in_ui);
    assert_no_secret(&out, &server[0].token);

    let mode = std::fs::metadata(sb.config()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "config.toml must be private");

    let toml = sb.config_toml();
    assert!(toml["concurrent"].as_integer().unwrap() >= 1);
    assert_eq!(toml["check_interval"].as_integer(), Some(0));
    let rs = runners(&toml);
    assert_eq!(rs.len(), 1);
    assert_eq!(s(&rs[0], "name"), "Shell Runner");
    assert_eq!(s(&rs[0], "url"), url);
    assert_eq!(s(&rs[0], "token"), server[0].token);
    assert_eq!(s(&rs[0], "executor"), "shell");
    assert!(
        rs[0].get("docker").is_none(),
        "a shell runner has no [runners.docker]"
    );
    assert!(
        rs[0].get("cache").is_some(),
        "[runners.cache] is written as in the seed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_docker_runner_command_then_second_register_appends() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    sb.run(
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "--url",
            &url,
            "--registration-token",
            REG,
            "--executor",
            "docker",
            "--docker-image",
            "docker:latest",
            "--description",
            "Docker Runner",
        ],
        &[],
        None,
    )
    .await
    .assert_ok();

    let toml = sb.config_toml();
    assert_eq!(toml["check_interval"].as_integer(), Some(0));
    let rs = runners(&toml);
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(s(r, "name"), "Docker Runner");
    assert_eq!(s(r, "url"), url);
    assert_eq!(s(r, "executor"), "docker");
    assert!(s(r, "token").starts_with("glrtr-"));
    let docker = r["docker"].as_table().expect("[runners.docker]");
    assert_eq!(docker["tls_verify"].as_bool(), Some(false));
    assert_eq!(docker["image"].as_str(), Some("docker:latest"));
    assert_eq!(docker["privileged"].as_bool(), Some(false));
    assert_eq!(docker["disable_cache"].as_bool(), Some(false));
    let volumes: Vec<&str> = docker["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["/cache"]);
    assert_eq!(docker["shm_size"].as_integer(), Some(0));
    assert!(r.get("cache").is_some(), "[runners.cache] missing");

    // A hand-written comment survives the next registration, which appends.
    let text = sb.read_config();
    std::fs::write(sb.config(), format!("# managed by hand: keep me\n{text}")).unwrap();
    sb.run(
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "--url",
            &url,
            "--registration-token",
            REG,
            "--executor",
            "shell",
            "--description",
            "Shell Runner",
        ],
        &[],
        None,
    )
    .await
    .assert_ok();
    let text = sb.read_config();
    assert!(
        text.contains("# managed by hand: keep me"),
        "comment lost:\n{text}"
    );
    let rs = runners(&sb.config_toml());
    let names: Vec<&str> = rs.iter().map(|r| s(r, "name")).collect();
    assert_eq!(names, ["Docker Runner", "Shell Runner"]);
    assert_eq!(fake.runners().len(), 2);
    let mode = std::fs::metadata(sb.config()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn glrt_token_via_token_and_via_registration_token() {
    let fake = fake(1, 1).await;
    let url = fake.url();
    for flag in ["--token", "--registration-token"] {
        let sb = Sandbox::new();
        let token = fake.create_runner_token(&format!("ui runner {flag}"));
        let cfg = sb.config_str();
        let out = sb
            .run(
                &[
                    "register",
                    "-n",
                    "-c",
                    &cfg,
                    "--url",
                    &url,
                    flag,
                    &token,
                    "--executor",
                    "shell",
                    "--name",
                    "ui-runner",
                ],
                &[],
                None,
            )
            .await;
        out.assert_ok();
        assert_no_secret(&out, &token);
        let rs = runners(&sb.config_toml());
        assert_eq!(rs.len(), 1, "{flag}");
        assert_eq!(s(&rs[0], "token"), token, "{flag}");
        assert_eq!(s(&rs[0], "name"), "ui-runner");
        // No new runner is created: the UI one is verified and gets this machine as a manager.
        let record = fake.runners().into_iter().find(|r| r.token == token).unwrap();
        assert_eq!(record.managers.len(), 1, "{flag}: {record:?}");
    }
    assert_eq!(fake.runners().len(), 2);
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/api/v4/runners"),
        "a glrt- token must never go to POST /runners"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_disabled_410_says_to_create_a_runner_in_the_ui() {
    let fake = FakeGitlab::start(FakeOptions {
        registration_disabled: true,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--registration-token",
                REG,
                "--executor",
                "shell",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("410") || err.contains("gone") || err.contains("disabled"),
        "{err}"
    );
    assert!(err.contains("--token"), "should tell to use --token:\n{err}");
    assert!(
        err.contains("ui") || err.contains("new runner") || err.contains("create"),
        "{err}"
    );
    assert!(!sb.config().exists() || runners_or_empty(&sb).is_empty());
}

fn runners_or_empty(sb: &Sandbox) -> Vec<toml::Table> {
    let t = sb.config_toml();
    if t.contains_key("runners") {
        runners(&t)
    } else {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_from_environment_variables() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    let out = sb
        .run(
            &["register", "-n"],
            &[
                ("CI_SERVER_URL", &url),
                ("REGISTRATION_TOKEN", REG),
                ("RUNNER_EXECUTOR", "docker"),
                ("RUNNER_NAME", "from-env"),
                ("DOCKER_IMAGE", "alpine:3.20"),
                ("CONFIG_FILE", &cfg),
            ],
            None,
        )
        .await;
    out.assert_ok();
    let rs = runners(&sb.config_toml());
    assert_eq!(rs.len(), 1);
    assert_eq!(s(&rs[0], "name"), "from-env");
    assert_eq!(s(&rs[0], "url"), url);
    assert_eq!(s(&rs[0], "executor"), "docker");
    assert_eq!(rs[0]["docker"]["image"].as_str(), Some("alpine:3.20"));
    assert_eq!(fake.runners()[0].description, "from-env");
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_register_reads_answers_from_stdin() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    let answers = format!("{url}\n{REG}\nmy interactive runner\nfoo, bar\nsome note\nshell\n");
    let out = sb.run(&["register", "-c", &cfg], &[], Some(&answers)).await;
    out.assert_ok();
    assert_no_secret(&out, REG);
    let rs = runners(&sb.config_toml());
    assert_eq!(rs.len(), 1);
    assert_eq!(s(&rs[0], "name"), "my interactive runner");
    assert_eq!(s(&rs[0], "executor"), "shell");
    assert_eq!(s(&rs[0], "url"), url);
    let record = &fake.runners()[0];
    assert_eq!(record.description, "my interactive runner");
    assert_eq!(record.tags, ["foo", "bar"]);
    assert_eq!(record.maintenance_note.as_deref(), Some("some note"));
    assert!(
        !record.run_untagged,
        "tagged runners do not pick untagged jobs by default"
    );
    assert_no_secret(&out, &record.token);
}

/// Registers a legacy runner and a UI runner in one config; returns their tokens.
async fn two_runners(fake: &FakeGitlab, sb: &Sandbox) -> (String, String) {
    let url = fake.url();
    let cfg = sb.config_str();
    sb.run(&register_args(&cfg, &url, "legacy", &[]), &[], None)
        .await
        .assert_ok();
    let glrt = fake.create_runner_token("ui");
    sb.run(
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "--url",
            &url,
            "--token",
            &glrt,
            "--executor",
            "shell",
            "--name",
            "ui",
        ],
        &[],
        None,
    )
    .await
    .assert_ok();
    let legacy = fake
        .runners()
        .into_iter()
        .find(|r| !r.created_in_ui)
        .unwrap()
        .token;
    (legacy, glrt)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_prints_short_tokens_only() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (legacy, glrt) = two_runners(&fake, &sb).await;
    let cfg = sb.config_str();
    let out = sb.run(&["list", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert_no_secret(&out, &legacy);
    assert_no_secret(&out, &glrt);
    let all = out.all();
    assert!(all.contains("legacy") && all.contains("ui"), "{all}");
    let short_glrt = &glrt["glrt-".len().."glrt-".len() + 8];
    assert!(
        all.contains(short_glrt),
        "short token of the UI runner missing:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_keeps_known_runners_and_delete_drops_unknown_ones() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (legacy, glrt) = two_runners(&fake, &sb).await;
    let cfg = sb.config_str();
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert_eq!(out.all().matches("is valid").count(), 2, "{}", out.all());

    // A runner deleted in GitLab meanwhile (its token is unknown to the server).
    let gone = "glrt-thisrunnerwasdeleted0";
    let text = sb.read_config();
    std::fs::write(
        sb.config(),
        format!(
            "{text}\n[[runners]]\n  name = \"deleted\"\n  url = \"{}\"\n  token = \"{gone}\"\n  executor = \"shell\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    assert!(
        out.all().contains("is not valid") || out.all().contains("is removed"),
        "{}",
        out.all()
    );
    assert_eq!(
        runners(&sb.config_toml()).len(),
        3,
        "without --delete nothing is removed"
    );

    let out = sb.run(&["verify", "-c", &cfg, "--delete"], &[], None).await;
    out.assert_ok();
    for t in [&legacy, &glrt] {
        assert_no_secret(&out, t);
    }
    assert_no_secret(&out, gone);
    let names: Vec<String> = runners(&sb.config_toml())
        .iter()
        .map(|r| s(r, "name").to_string())
        .collect();
    assert_eq!(names, ["legacy", "ui"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unregister_by_name_by_url_and_token_and_all() {
    let fake = fake(1, 1).await;
    let url = fake.url();

    // --name on a legacy runner deletes the runner in GitLab.
    let sb = Sandbox::new();
    let cfg = sb.config_str();
    let (legacy, glrt) = two_runners(&fake, &sb).await;
    let out = sb
        .run(&["unregister", "-c", &cfg, "--name", "legacy"], &[], None)
        .await;
    out.assert_ok();
    assert_no_secret(&out, &legacy);
    assert!(
        fake.runners().iter().all(|r| r.token != legacy),
        "legacy runner still known to GitLab"
    );
    let names: Vec<String> = runners(&sb.config_toml())
        .iter()
        .map(|r| s(r, "name").to_string())
        .collect();
    assert_eq!(names, ["ui"]);

    // --url + --token on a glrt runner only removes this machine's runner manager.
    let out = sb
        .run(
            &["unregister", "-c", &cfg, "--url", &url, "--token", &glrt],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert_no_secret(&out, &glrt);
    let ui = fake
        .runners()
        .into_iter()
        .find(|r| r.token == glrt)
        .expect("UI runner must survive");
    assert!(ui.managers.is_empty(), "runner manager not removed: {ui:?}");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.starts_with("/api/v4/runners/managers")),
        "glrt tokens unregister through DELETE /runners/managers"
    );
    assert!(runners_or_empty(&sb).is_empty());

    // --all-runners.
    let sb2 = Sandbox::new();
    let cfg2 = sb2.config_str();
    let (legacy2, glrt2) = two_runners(&fake, &sb2).await;
    let out = sb2
        .run(&["unregister", "-c", &cfg2, "--all-runners"], &[], None)
        .await;
    out.assert_ok();
    assert_no_secret(&out, &legacy2);
    assert_no_secret(&out, &glrt2);
    assert!(runners_or_empty(&sb2).is_empty());
    assert!(fake.runners().iter().all(|r| r.token != legacy2));
    let ui2 = fake.runners().into_iter().find(|r| r.token == glrt2).unwrap();
    assert!(ui2.managers.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn version_flag_prints_the_gitlab_runner_layout() {
    let sb = Sandbox::new();
    let out = sb.run(&["-v"], &[], None).await;
    out.assert_ok();
    for key in ["Version:", "Git revision:", "OS/Arch:"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(key)),
            "missing `{key}` line:\n{}",
            out.stdout
        );
    }
    let arch = out.stdout.lines().find(|l| l.starts_with("OS/Arch:")).unwrap();
    assert!(arch.contains("linux/"), "{arch}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_flags_with_an_authentication_token_are_refused_with_a_hint() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("ui");
    let url = fake.url();
    let cfg = sb.config_str();
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--token",
                &token,
                "--executor",
                "shell",
                "--tag-list",
                "a,b",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(
        out.stderr.contains("--tag-list") && out.stderr.contains("hint:"),
        "{}",
        out.stderr
    );
    assert_no_secret(&out, &token);
    assert!(!sb.config().exists() || runners_or_empty(&sb).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_delete_drops_a_legacy_runner_deleted_on_the_server() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (legacy, _glrt) = two_runners(&fake, &sb).await;
    // Someone deletes the runner in GitLab: unregister it by token from another machine's (empty) config.
    let other = Sandbox::new();
    std::fs::write(other.config(), "concurrent = 1\n").unwrap();
    let ocfg = other.config_str();
    let url = fake.url();
    let out = other
        .run(
            &["unregister", "-c", &ocfg, "--url", &url, "--token", &legacy],
            &[],
            None,
        )
        .await;
    out.assert_ok();
    assert_no_secret(&out, &legacy);
    assert!(fake.runners().iter().all(|r| r.token != legacy));

    let cfg = sb.config_str();
    let out = sb.run(&["verify", "-c", &cfg, "--delete"], &[], None).await;
    out.assert_ok();
    assert!(out.all().contains("is removed"), "{}", out.all());
    let names: Vec<String> = runners(&sb.config_toml())
        .iter()
        .map(|r| s(r, "name").to_string())
        .collect();
    assert_eq!(names, ["ui"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn register_without_url_fails_non_interactively_with_a_hint() {
    let sb = Sandbox::new();
    let cfg = sb.config_str();
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--registration-token",
                REG,
                "--executor",
                "shell",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("--url"),
        "{}",
        out.stderr
    );
    assert_no_secret(&out, REG);
}

/// The seed's config has `url = "https://gitlab.example/"`: a trailing slash must not break any endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn url_with_trailing_slash_works_for_every_command() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = format!("{}/", fake.url());
    let cfg = sb.config_str();
    sb.run(&register_args(&cfg, &url, "slash", &[]), &[], None)
        .await
        .assert_ok();
    let out = sb.run(&["verify", "-c", &cfg], &[], None).await;
    out.assert_ok();
    assert!(out.all().contains("is valid"), "{}", out.all());
    sb.run(&["unregister", "-c", &cfg, "--name", "slash"], &[], None)
        .await
        .assert_ok();
    assert!(fake.runners().is_empty());
    assert!(
        fake.requests().iter().all(|r| !r.path.starts_with("//")),
        "double slash in a request path: {:?}",
        fake.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_register_with_an_authentication_token() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let token = fake.create_runner_token("ui-interactive");
    let cfg = sb.config_str();
    let answers = format!("{url}\n{token}\nlocal-name\ndocker\nalpine:latest\n");
    let out = sb.run(&["register", "-c", &cfg], &[], Some(&answers)).await;
    out.assert_ok();
    assert_no_secret(&out, &token);
    let rs = runners(&sb.config_toml());
    assert_eq!(rs.len(), 1);
    assert_eq!(s(&rs[0], "name"), "local-name");
    assert_eq!(s(&rs[0], "token"), token);
    assert_eq!(s(&rs[0], "executor"), "docker");
    assert_eq!(rs[0]["docker"]["image"].as_str(), Some("alpine:latest"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_tokens_and_executors_leave_no_trace() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    // An unknown glrt token: 403 from verify.
    let bad = "glrt-doesnotexist12345678";
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--token",
                bad,
                "--executor",
                "shell",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert_no_secret(&out, bad);
    assert!(
        out.stderr.contains("403") || out.stderr.to_lowercase().contains("forbidden"),
        "{}",
        out.stderr
    );
    // A wrong registration token.
    let wrong = "GR1348941wrong-token-value";
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--registration-token",
                wrong,
                "--executor",
                "shell",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert_no_secret(&out, wrong);
    // An executor oxrunner does not have: refused before anything is registered.
    let out = sb
        .run(
            &[
                "register",
                "-n",
                "-c",
                &cfg,
                "--url",
                &url,
                "--registration-token",
                REG,
                "--executor",
                "kubernetes",
            ],
            &[],
            None,
        )
        .await;
    out.assert_failed();
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(
        fake.runners().is_empty(),
        "a runner was left registered in GitLab"
    );
    assert!(!sb.config().exists() || runners_or_empty(&sb).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unregister_of_an_unknown_name_fails_and_keeps_the_file() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    two_runners(&fake, &sb).await;
    let before = sb.read_config();
    let cfg = sb.config_str();
    let out = sb
        .run(&["unregister", "-c", &cfg, "--name", "nope"], &[], None)
        .await;
    out.assert_failed();
    assert_eq!(sb.read_config(), before);
    assert_eq!(fake.runners().len(), 2);
}

/// Rewrites by unregister and verify --delete keep config.toml private (it holds tokens).
#[tokio::test(flavor = "multi_thread")]
async fn rewritten_config_stays_private() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    two_runners(&fake, &sb).await;
    let cfg = sb.config_str();
    let mode = || std::fs::metadata(sb.config()).unwrap().permissions().mode() & 0o777;
    // Even if someone loosened it meanwhile.
    std::fs::set_permissions(sb.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    sb.run(&["unregister", "-c", &cfg, "--name", "legacy"], &[], None)
        .await
        .assert_ok();
    assert_eq!(mode(), 0o600, "unregister left the tokens world-readable");
    let text = sb.read_config();
    std::fs::write(
        sb.config(),
        format!(
            "{text}\n[[runners]]\n  name = \"gone\"\n  url = \"{}\"\n  token = \"glrt-unknowntothefake000\"\n  executor = \"shell\"\n",
            fake.url()
        ),
    )
    .unwrap();
    sb.run(&["verify", "-c", &cfg, "--delete"], &[], None)
        .await
        .assert_ok();
    assert_eq!(mode(), 0o600);
    let names: Vec<String> = runners(&sb.config_toml())
        .iter()
        .map(|r| s(r, "name").to_string())
        .collect();
    assert_eq!(names, ["ui"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_on_a_missing_config_explain_what_to_do() {
    let sb = Sandbox::new();
    let cfg = sb.config_str();
    for cmd in ["verify", "unregister"] {
        let out = sb
            .run(
                &[cmd, "-c", &cfg, "--all-runners"][..if cmd == "verify" { 3 } else { 4 }],
                &[],
                None,
            )
            .await;
        out.assert_failed();
        assert!(out.stderr.contains("hint:"), "{cmd}: {}", out.stderr);
        assert!(out.stderr.contains("config.toml"), "{cmd}: {}", out.stderr);
    }
}

/// An unreachable GitLab is not "runner deleted": verify --delete keeps the runner, unregister keeps it in the file
/// and says so through the exit code, while the reachable runner is handled normally.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_never_drops_a_runner_from_the_config() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    two_runners(&fake, &sb).await;
    // A port nothing listens on: bind, note the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let text = sb.read_config();
    std::fs::write(
        sb.config(),
        format!(
            "{text}\n[[runners]]\n  name = \"offline\"\n  url = \"{dead}\"\n  token = \"glrt-offlinerunnertoken00\"\n  executor = \"shell\"\n"
        ),
    )
    .unwrap();
    let cfg = sb.config_str();
    let out = sb.run(&["verify", "-c", &cfg, "--delete"], &[], None).await;
    out.assert_failed();
    assert_no_secret(&out, "glrt-offlinerunnertoken00");
    assert_eq!(
        runners(&sb.config_toml()).len(),
        3,
        "verify --delete dropped a runner it could not reach"
    );

    let out = sb
        .run(&["unregister", "-c", &cfg, "--all-runners"], &[], None)
        .await;
    out.assert_failed();
    let names: Vec<String> = runners_or_empty(&sb)
        .iter()
        .map(|r| s(r, "name").to_string())
        .collect();
    assert_eq!(names, ["offline"], "only the unreachable runner stays");
    assert!(
        fake.runners().iter().all(|r| r.created_in_ui),
        "legacy runner not unregistered"
    );
}
