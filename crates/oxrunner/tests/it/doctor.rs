//! `oxrunner doctor` against fake-gitlab on 127.0.0.1: a healthy shell runner passes with only ✓ lines and changes
//! nothing in GitLab, and each broken condition (wrong token, self-signed certificate, unreachable clone_url,
//! unwritable builds_dir, stopped engine, socket without permission) gives a ✗ line with its fix and exit status 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use crate::support::{self as common, Output, Sandbox};

/// A shell runner entry whose directories live in the sandbox, set up the usual self-hosted way: `url` is an
/// internal address and no `clone_url` (doctor mentions this only as an informational ✓ line).
pub fn healthy_shell_toml(sb: &Sandbox, url: &str, token: &str, extra: &str) -> String {
    common::global_toml(1, "") + &common::shell_runner_toml("doc", url, token, sb.dir.path(), extra)
}

pub fn write_config(sb: &Sandbox, text: &str) {
    std::fs::write(sb.config(), text).unwrap();
    std::fs::set_permissions(sb.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub async fn doctor(sb: &Sandbox, extra: &[&str]) -> Output {
    let cfg = sb.config_str();
    let mut args = vec!["doctor", "-c", &cfg];
    args.extend_from_slice(extra);
    sb.run(&args, &[], None).await
}

/// The check lines with a mark other than ✓.
pub fn not_ok(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("  ✗ ") || l.starts_with("  ! "))
        .map(str::to_string)
        .collect()
}

#[track_caller]
pub fn assert_fails_with(out: &Output, line: &str, fix: &str) {
    assert_eq!(out.code, Some(1), "{}", out.all());
    let pos = out
        .stdout
        .find(&format!("  ✗ {line}"))
        .unwrap_or_else(|| panic!("no ✗ line `{line}`:\n{}", out.all()));
    // The ✗ line and its indented cause/fix lines.
    let mut lines = out.stdout[pos..].lines();
    let mut block = lines.next().unwrap_or_default().to_string();
    for l in lines.take_while(|l| l.starts_with("      ")) {
        block.push('\n');
        block.push_str(l);
    }
    assert!(
        block.contains("cause:") && block.contains(fix),
        "fix `{fix}` missing in:\n{block}\n---\n{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_shell_runner_prints_only_checkmarks_and_changes_nothing_in_gitlab() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let cfg = sb.config_str();
    let url = fake.url();
    // Registering creates the runner manager (system id) a running runner would have.
    sb.run(
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
            "--name",
            "doc",
        ],
        &[],
        None,
    )
    .await
    .assert_ok();
    write_config(&sb, &healthy_shell_toml(&sb, &url, &token, ""));
    let before = serde_json::to_value(fake.runners()).unwrap();

    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(not_ok(&out), Vec::<String>::new(), "{}", out.all());
    for expected in [
        "✓ config.toml parses",
        "✓ mode 0600",
        "✓ TCP: connected to 127.0.0.1:",
        "✓ GitLab accepts the token",
        "✓ clock: within",
        "✓ url uses the internal address 127.0.0.1",
        "✓ git: git version",
        "✓ shell: bash",
        "is writable by",
        "all checks passed",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            out.all()
        );
    }
    assert!(!out.all().contains(&token), "the token leaked:\n{}", out.all());
    // The local cache store is described on the cache_dir line, not by a separate unconditional ✓.
    assert!(!out.stdout.contains("cache: local store"), "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "✓ cache_dir {} is writable by",
            sb.path("cache").display()
        )) && out
            .stdout
            .contains("shared by all concurrent jobs of this runner"),
        "{}",
        out.all()
    );
    assert_eq!(
        serde_json::to_value(fake.runners()).unwrap(),
        before,
        "verify changed GitLab's records"
    );
    assert!(
        !sb.path("builds").exists(),
        "doctor must not create the builds dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_fails_with_the_register_fix_and_json_says_so() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    write_config(
        &sb,
        &healthy_shell_toml(&sb, &fake.url(), "glrt-not-a-real-token", ""),
    );
    let out = doctor(&sb, &[]).await;
    assert_fails_with(&out, "GitLab refuses the token", "oxrunner register --url");
    assert!(!out.all().contains("glrt-not-a-real-token"), "{}", out.all());

    let out = doctor(&sb, &["--json"]).await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let checks = v["sections"][1]["checks"].as_array().unwrap();
    let refused = checks
        .iter()
        .find(|c| {
            c["message"]
                .as_str()
                .unwrap()
                .starts_with("GitLab refuses the token")
        })
        .unwrap();
    assert_eq!(refused["status"], "fail");
    assert!(refused["fix"].as_str().unwrap().contains("oxrunner register"));
    assert_eq!(v["sections"][1]["runner"], "doc");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_clone_url_fails() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml(
            "doc",
            &fake.url(),
            &token,
            sb.dir.path(),
            &format!("  clone_url = \"http://127.0.0.1:{port}\"\n"),
        );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_fails_with(
        &out,
        &format!("clone_url http://127.0.0.1:{port}/ is not reachable"),
        "set clone_url to an address of GitLab",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_url_without_clone_url_is_informational_only() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml("doc", &fake.url(), &token, sb.dir.path(), "");
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(not_ok(&out), Vec::<String>::new(), "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "✓ url uses the internal address 127.0.0.1; if GitLab's external_url is another name, set clone_url = \"{}\"",
            fake.url().trim_end_matches('/')
        )),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_builds_dir_that_cannot_be_created_fails() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    std::fs::write(sb.path("afile"), "not a directory").unwrap();
    let builds = sb.path("afile").join("builds");
    let extra = format!("  clone_url = \"{}\"\n", fake.url());
    let text = common::global_toml(1, "")
        + &common::shell_runner_toml("doc", &fake.url(), &token, sb.dir.path(), &extra).replace(
            &sb.path("builds").display().to_string(),
            &builds.display().to_string(),
        );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_fails_with(
        &out,
        &format!("builds_dir {} is not writable", builds.display()),
        "point builds_dir elsewhere",
    );
    assert!(
        out.stdout.contains("exists and is not a directory"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_docker_engine_fails() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    // A socket file nobody listens on: what a stopped dockerd leaves behind.
    let sock = sb.path("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  \
         clone_url = \"{url}\"\n  [runners.docker]\n    host = \"unix://{}\"\n    image = \"alpine:latest\"\n",
        common::global_toml(1, ""),
        sock.display(),
        url = fake.url(),
    );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_fails_with(
        &out,
        &format!("docker: no engine answers at unix://{}", sock.display()),
        "start dockerd",
    );
}

/// The account of `--user` and of the permission test; removed on drop.
struct TestUser(String);

impl TestUser {
    /// `None` (after saying why) when not root outside CI; under `CI=true` not being root fails.
    fn create(tag: &str) -> Option<TestUser> {
        if !nix::unistd::Uid::effective().is_root() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true: this test needs root (useradd)"
            );
            eprintln!("SKIPPED: needs root to create a test user");
            return None;
        }
        let name = format!("oxrt-{tag}{}", std::process::id());
        let out = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/bash", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(TestUser(name))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").arg(&self.0).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_dir_not_writable_by_the_user_account_fails() {
    let Some(user) = TestUser::create("doc") else {
        return;
    };
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    // The sandbox is root's (mode 0700): the account cannot even reach it.
    write_config(&sb, &healthy_shell_toml(&sb, &fake.url(), &token, ""));
    let out = doctor(&sb, &["--user", &user.0]).await;
    assert_fails_with(
        &out,
        &format!(
            "builds_dir {} is not writable by {}",
            sb.path("builds").display(),
            user.0
        ),
        &format!("chown {}", user.0),
    );
    assert!(
        out.stdout.contains(&format!("✓ account: jobs run as {}", user.0)),
        "{}",
        out.all()
    );

    let out = doctor(&sb, &["--user", "oxrt-nobody-here"]).await;
    assert_fails_with(
        &out,
        "account: user \"oxrt-nobody-here\" does not exist",
        "useradd",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_shell_runner_with_a_non_root_user_prints_only_checkmarks() {
    let Some(user) = TestUser::create("ok") else {
        return;
    };
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    write_config(&sb, &healthy_shell_toml(&sb, &fake.url(), &token, ""));
    // The account owns the sandbox, where its builds and cache directories go; the config stays root's.
    let uid = nix::unistd::User::from_name(&user.0).unwrap().unwrap().uid;
    nix::unistd::chown(sb.dir.path(), Some(uid), None).unwrap();
    let out = doctor(&sb, &["--user", &user.0]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    // A shell runner whose account cannot use a Docker socket on this host is healthy: few jobs call docker.
    assert_eq!(not_ok(&out), Vec::<String>::new(), "{}", out.all());
    assert!(
        out.stdout.contains(&format!("✓ account: jobs run as {}", user.0)),
        "{}",
        out.all()
    );
    if std::path::Path::new("/var/run/docker.sock").exists() {
        assert!(
            out.stdout.contains("usermod -aG") || out.stdout.contains("✓ docker: jobs can use"),
            "{}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_socket_without_permission_fails_for_a_non_root_runner() {
    let Some(user) = TestUser::create("dsk") else {
        return;
    };
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    // A listening socket the runner's account may not open.
    let sock = sb.path("engine.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o000)).unwrap();
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  \
         clone_url = \"{url}\"\n  [runners.docker]\n    host = \"unix://{}\"\n    image = \"alpine:latest\"\n",
        common::global_toml(1, ""),
        sock.display(),
        url = fake.url(),
    );
    write_config(&sb, &text);
    // The account runs doctor: it owns the config and may traverse the sandbox.
    let uid = nix::unistd::User::from_name(&user.0).unwrap().unwrap().uid;
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [
        sb.config().parent().unwrap(),
        sb.config().as_path(),
        sb.home().as_path(),
    ] {
        nix::unistd::chown(p, Some(uid), None).unwrap();
    }
    let out = run_as(&sb, &user.0, &["doctor", "-c", &sb.config_str()]).await;
    assert_fails_with(
        &out,
        &format!("docker: permission denied on {}", sock.display()),
        &format!("usermod -aG root {}", user.0),
    );
}

async fn run_as(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut full = vec!["-u", user, "--", common::bin()];
    full.extend_from_slice(args);
    let out = tokio::process::Command::new("runuser")
        .args(&full)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", sb.home())
        .current_dir(sb.dir.path())
        .output()
        .await
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn healthy_docker_runner_prints_only_checkmarks() {
    if !crate::support::docker::docker_available() {
        return;
    }
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  \
         [runners.docker]\n    image = \"{image}\"\n    pull_policy = [\"if-not-present\"]\n",
        common::global_toml(1, ""),
        url = fake.url(),
        image = crate::support::docker::IMAGE,
    );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(not_ok(&out), Vec::<String>::new(), "{}", out.all());
    for expected in [
        "answers at unix:///var/run/docker.sock",
        &format!(
            "✓ docker: default image {} is present",
            crate::support::docker::IMAGE
        ),
        "✓ docker: jobs get no Docker daemon",
        "all checks passed",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn warnings_name_the_mode_a_misspelled_key_and_an_unsupported_remote_cache_without_failing() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let extra = "  colume = 1\n  [runners.cache]\n    Type = \"s3v2\"\n";
    write_config(&sb, &healthy_shell_toml(&sb, &fake.url(), &token, extra));
    std::fs::set_permissions(sb.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "warnings alone must not fail:\n{}", out.all());
    let warnings = not_ok(&out);
    assert_eq!(warnings.len(), 3, "{}", out.all());
    assert!(
        warnings[0].contains("config lint: runners[0].colume"),
        "{}",
        out.all()
    );
    assert!(warnings[1].contains("mode 0644"), "{}", out.all());
    assert!(
        warnings[2].contains("Type = \"s3v2\" is not supported yet"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains(&format!("chmod 600 {}", sb.config().display())),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("0 problem(s), 3 warning(s)"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_this_build_lacks_fails() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let text = healthy_shell_toml(&sb, &fake.url(), &token, "")
        .replace("executor = \"shell\"", "executor = \"kubernetes\"");
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_fails_with(
        &out,
        "executor \"kubernetes\" is not available",
        "keep this runner on gitlab-runner",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_runner_without_dirs_leaves_them_to_config_exec() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"custom\"\n  \
         [runners.custom]\n    run_exec = \"/bin/true\"\n",
        common::global_toml(1, ""),
        fake.url(),
    );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    for what in ["builds_dir", "cache_dir"] {
        assert!(
            out.stdout.contains(&format!("✓ {what}: chosen by config_exec")),
            "{}",
            out.all()
        );
        assert!(
            !out.stdout.contains(&format!("{what} /")),
            "a directory no custom job uses was judged:\n{}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_from_gitlab_is_not_a_checkmark() {
    // A server on 127.0.0.1 that answers every request with 502, like a proxy whose GitLab is down.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ =
                c.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let sb = Sandbox::new();
    let url = format!("http://127.0.0.1:{port}/");
    write_config(&sb, &healthy_shell_toml(&sb, &url, "glrt-doctor-test-token", ""));
    let out = doctor(&sb, &[]).await;
    assert!(
        out.stdout
            .contains("  ! HTTP: the server answers with status 502"),
        "{}",
        out.all()
    );
}

/// Doctor's own process is judged by the kernel: a supplementary group the process has (as systemd's
/// SupplementaryGroups= or newgrp give it) but the group database does not list still grants access.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_judges_its_own_process_by_its_real_groups() {
    let Some(user) = TestUser::create("grp") else {
        return;
    };
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let u = nix::unistd::User::from_name(&user.0).unwrap().unwrap();
    // builds_dir under a directory only root and group 0 may write; the account is not in group 0 in /etc/group.
    let gdir = sb.path("group-only");
    std::fs::create_dir(&gdir).unwrap();
    nix::unistd::chown(
        &gdir,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    std::fs::set_permissions(&gdir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"shell\"\n  \
         builds_dir = \"{}\"\n  cache_dir = \"{}\"\n",
        common::global_toml(1, ""),
        fake.url(),
        gdir.join("builds").display(),
        sb.path("cache").display(),
    );
    write_config(&sb, &text);
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [
        sb.dir.path(),
        sb.config().parent().unwrap(),
        sb.config().as_path(),
        sb.home().as_path(),
    ] {
        nix::unistd::chown(p, Some(u.uid), None).unwrap();
    }
    let out = tokio::process::Command::new("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg(format!("--groups={},0", u.gid))
        .args(["--", common::bin(), "doctor", "-c", &sb.config_str()])
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", sb.home())
        .current_dir(sb.dir.path())
        .output()
        .await
        .unwrap();
    let out = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.stdout.contains(&format!(
            "✓ builds_dir {} is writable by {}",
            gdir.join("builds").display(),
            user.0
        )),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_registry_that_needs_a_login_is_a_warning_not_a_failure() {
    if !crate::support::docker::docker_available() {
        return;
    }
    // A registry on 127.0.0.1 (the engine allows plain HTTP there) that refuses anonymous access.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 8192];
            let _ = c.read(&mut buf);
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let _ = c.write_all(
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"oxrt\"\r\n\
                     Docker-Distribution-API-Version: registry/2.0\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let image = format!("127.0.0.1:{port}/oxrt-private/app:latest");
    let text = format!(
        "{}\n[[runners]]\n  name = \"doc\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  \
         [runners.docker]\n    image = \"{image}\"\n    pull_policy = [\"if-not-present\"]\n",
        common::global_toml(1, ""),
        url = fake.url(),
    );
    write_config(&sb, &text);
    let out = doctor(&sb, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "  ! docker: default image {image} is in a registry that needs a login"
        )) && out.stdout.contains("DOCKER_AUTH_CONFIG"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_from_the_environment_is_named_and_no_direct_probe_is_reported() {
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    write_config(&sb, &healthy_shell_toml(&sb, &fake.url(), &token, ""));
    // A proxy address nobody listens on: the runner's client would fail there, whatever a direct probe finds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let cfg = sb.config_str();
    let args = ["doctor", "-c", cfg.as_str()];
    let out = sb
        .run(&args, &[("HTTP_PROXY", &proxy), ("NO_PROXY", "")], None)
        .await;
    assert!(
        out.stdout.contains(&format!(
            "  ! connection: the runner reaches GitLab through the proxy {proxy}/ (HTTP_PROXY)"
        )),
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("✓ TCP: connected"), "{}", out.all());
    // NO_PROXY exempts it: the direct checks apply again.
    let out = sb
        .run(&args, &[("HTTP_PROXY", &proxy), ("NO_PROXY", "127.0.0.1")], None)
        .await;
    assert!(out.stdout.contains("✓ TCP: connected"), "{}", out.all());
    assert!(!out.stdout.contains("through the proxy"), "{}", out.all());
}
