//! `register` as gitlab-runner's `askExecutorOptions` leaves the runner entry: only the chosen executor's sections
//! (also when a `--template-config` brings others), the `/cache` volume for Docker runners, and a rollback message
//! that says what was removed for each token kind. The first two are done by `ConfigDocument::append_runner`
//! (`register_shape`); these tests hold that in place for the template path.

use crate::support::{self as common, Sandbox, fake};

fn runner0(sb: &Sandbox) -> toml::Table {
    sb.config_toml()["runners"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone()
}

fn volumes(r: &toml::Table) -> Vec<String> {
    r.get("docker")
        .and_then(|d| d.get("volumes"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn template_sections_of_other_executors_are_dropped() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (url, cfg) = (fake.url(), sb.config_str());
    let template = sb.path("template.toml");
    std::fs::write(
        &template,
        "[[runners]]\n  limit = 4\n  [runners.docker]\n    image = \"busybox\"\n  [runners.kubernetes]\n    namespace = \"ci\"\n  [runners.custom]\n    run_exec = \"/bin/true\"\n",
    )
    .unwrap();
    let tpl = template.to_str().unwrap();
    let args = common::register_args(&cfg, &url, "tpl-shell", &["--template-config", tpl]);
    sb.run(&args, &[], None).await.assert_ok();
    let r = runner0(&sb);
    assert_eq!(r.get("limit").and_then(|v| v.as_integer()), Some(4), "{r:#?}");
    for section in ["docker", "kubernetes", "custom"] {
        assert!(
            r.get(section).is_none(),
            "[runners.{section}] kept for a shell runner: {r:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_runners_get_the_cache_volume_unless_disabled_or_mounted() {
    let fake = fake(1, 1).await;
    let cases: [(&[&str], &[&str]); 3] = [
        (&[], &["/cache"]),
        (&["--docker-disable-cache"], &[]),
        (&["--docker-volumes=/srv/c:/cache"], &["/srv/c:/cache"]),
    ];
    for (extra, want) in cases {
        let sb = Sandbox::new();
        let (url, cfg) = (fake.url(), sb.config_str());
        let mut args = common::register_args(&cfg, &url, "dock", &["--docker-image=alpine:3"]);
        let at = args.iter().position(|a| *a == "shell").unwrap();
        args[at] = "docker";
        args.extend_from_slice(extra);
        sb.run(&args, &[], None).await.assert_ok();
        assert_eq!(volumes(&runner0(&sb)), want, "{extra:?}");
    }
}

/// With a `glrt-` token only this machine's runner manager is removed; the runner made in the UI stays, and the
/// message says so.
#[tokio::test(flavor = "multi_thread")]
async fn failed_register_with_an_authentication_token_names_the_runner_manager() {
    let fake = fake(1, 1).await;
    let token = fake.create_runner_token("ui-made");
    let sb = Sandbox::new();
    let (url, cfg) = (fake.url(), sb.config_str());
    let args = [
        "register", "-c", &cfg, "--url", &url, "--token", &token, "--name", "m",
    ];
    let out = sb.run(&args, &[], Some("")).await;
    out.assert_failed();
    assert_eq!(
        fake.runners().len(),
        1,
        "the UI-made runner must stay:\n{}",
        out.all()
    );
    assert!(
        out.stderr.contains("the runner manager") && out.stderr.contains("removed from GitLab again"),
        "{}",
        out.stderr
    );
}

/// Ctrl-C the moment GitLab has created the runner, while its answer may still be on the way: the handler is in
/// place before the request is sent (it used to be installed when a spawned task was first polled, after the
/// answer), so register waits for the answer and removes the runner again.
#[tokio::test(flavor = "multi_thread")]
async fn interrupt_right_after_creation_still_removes_the_runner() {
    use std::time::{Duration, Instant};
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let (url, cfg) = (fake.url(), sb.config_str());
    let mut cmd = sb.command();
    cmd.args([
        "register",
        "-c",
        &cfg,
        "--url",
        &url,
        "--registration-token",
        crate::support::REG,
        "--name",
        "racy",
        "--tag-list",
        "a",
        "--maintenance-note",
        "n",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.runners().is_empty() {
        assert!(Instant::now() < deadline, "GitLab never saw the runner");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(fake.runners().is_empty(), "runner left in GitLab:\n{stderr}");
}
