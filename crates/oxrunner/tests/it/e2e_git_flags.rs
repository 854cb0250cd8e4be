//! The feature flags of git's requests, end to end with the shell executor against fake-gitlab's git over HTTP,
//! read from the requests the fake recorded:
//! - `FF_USE_GITALY_CORRELATION_ID` (default on): every git request carries `X-Gitaly-Correlation-ID` with the
//!   `X-Request-Id` GitLab answered the job request with, and the job log names it, as gitlab-runner's does.
//! - `FF_USE_GIT_PROACTIVE_AUTH` (default off): git's first request carries the credentials, so no 401 comes back.
//! - `FF_USE_GIT_BUNDLE_URIS` (default on): the checkout's git configuration has `transfer.bundleURI = true`.
//!
//! A git older than a flag needs ignores its setting: the job log then names the flag in one warning instead, so
//! the tests hold with Debian 12's git 2.39 as with a newer one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fake_gitlab::{FakeGitlab, JobSpec, RequestLog};

use crate::support::{
    Daemon, Sandbox, fake, finished, global_toml, project_files, quit_ok, shell_runner_toml,
};

const FINISH: Duration = Duration::from_secs(90);

const SCRIPT: &[&str] = &["echo \"bundle=$(git config --get transfer.bundleURI || echo unset)\""];

/// Runs one job with `vars` and returns its log, the id the fake answered its job request with and the git
/// requests of its get_sources.
async fn job(
    fake: &FakeGitlab,
    d: &Daemon,
    project: i64,
    vars: &[(&str, &str)],
) -> (String, String, Vec<RequestLog>) {
    let seen = fake.requests().len();
    let mut spec = JobSpec::new("flags", SCRIPT).project(project);
    for (k, v) in vars {
        spec = spec.variable(k, v);
    }
    let id = fake.enqueue_job(spec);
    let record = finished(fake, id, FINISH, d).await;
    let trace = record.trace_text();
    assert_eq!(record.status, "success", "{trace}\n{}", d.log());
    let new: Vec<RequestLog> = fake.requests().into_iter().skip(seen).collect();
    let handed_out: Vec<&RequestLog> = new
        .iter()
        .filter(|r| r.path.starts_with("/api/v4/jobs/request") && r.status == 201)
        .collect();
    assert_eq!(handed_out.len(), 1, "{new:#?}");
    let request_id = handed_out[0].request_id.clone();
    let git: Vec<RequestLog> = new.into_iter().filter(|r| r.path.contains(".git/")).collect();
    assert!(!git.is_empty(), "no git request seen:\n{trace}");
    (trace, request_id, git)
}

#[tokio::test(flavor = "multi_thread")]
async fn git_requests_follow_the_flags() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/flags", &project_files(sb.dir.path()))
        .unwrap();
    let token = fake.create_runner_token("flags");
    let text = global_toml(1, "") + &shell_runner_toml("flags", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);

    // The defaults: correlation id and bundle URIs on, proactive auth off.
    let (trace, request_id, git) = job(&fake, &d, project.id, &[]).await;
    assert!(!request_id.is_empty());
    assert!(
        trace.contains(&format!("Gitaly correlation ID: {request_id}")),
        "{trace}"
    );
    for r in &git {
        assert_eq!(
            r.header("x-gitaly-correlation-id"),
            Some(request_id.as_str()),
            "{r:?}"
        );
    }
    assert!(trace.contains("\nbundle=true\n"), "{trace}");
    // Without proactive auth git asks without credentials first and is refused.
    assert!(git[0].header("authorization").is_none(), "{:?}", git[0]);
    assert_eq!(git[0].status, 401, "{:?}", git[0]);

    // Each flag the other way.
    let (trace, _, git) = job(
        &fake,
        &d,
        project.id,
        &[
            ("FF_USE_GITALY_CORRELATION_ID", "false"),
            ("FF_USE_GIT_BUNDLE_URIS", "false"),
            ("FF_USE_GIT_PROACTIVE_AUTH", "true"),
            // A partial clone: the checkout fetches the blobs, and authenticates up front as well.
            ("GIT_FETCH_EXTRA_FLAGS", "--filter=blob:none --prune"),
            ("GIT_STRATEGY", "clone"),
        ],
    )
    .await;
    assert!(!trace.contains("Gitaly correlation ID"), "{trace}");
    assert!(
        git.iter().all(|r| r.header("x-gitaly-correlation-id").is_none()),
        "{git:#?}"
    );
    assert!(trace.contains("\nbundle=unset\n"), "{trace}");
    if git_version() >= (2, 46) {
        assert!(git[0].header("authorization").is_some(), "{:?}", git[0]);
        assert!(git.iter().all(|r| r.status == 200), "{git:#?}");
        assert!(!trace.contains("has no effect"), "{trace}");
    } else {
        assert!(
            trace.contains("FF_USE_GIT_PROACTIVE_AUTH (needs git 2.46.0 or later) has no effect"),
            "{trace}"
        );
    }
    // The fetch's handshake, then the checkout's own fetch of the missing blobs (each after a 401 where git
    // ignored proactive auth).
    let handshakes = git
        .iter()
        .filter(|r| r.path.contains("/info/refs") && r.status == 200)
        .count();
    assert_eq!(handshakes, 2, "the checkout fetched no blobs: {git:#?}");

    // No start-up warning names the flags: they are honoured.
    for name in [
        "FF_USE_GITALY_CORRELATION_ID",
        "FF_USE_GIT_BUNDLE_URIS",
        "FF_USE_GIT_PROACTIVE_AUTH",
    ] {
        assert!(!d.log().contains(name), "{}", d.log());
    }
    quit_ok(d).await;
}

/// `(major, minor)` of the git the daemon runs (the tests' own PATH).
pub(crate) fn git_version() -> (u32, u32) {
    let out = std::process::Command::new("git")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number = text.split_whitespace().nth(2).unwrap_or_default();
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A git that says it is Debian 12's 2.39.5 (and is the real one otherwise) first in the daemon's PATH: a clone
/// job with proactive auth and bundle URIs names both flags in one warning and still succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_git_gets_one_warning_naming_the_flags_it_ignores() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/oldgit", &project_files(sb.dir.path()))
        .unwrap();
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = sb.path("oldgit-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'git version 2.39.5'; exit 0; fi\nexec '{}' \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let token = fake.create_runner_token("oldgit");
    let text = global_toml(1, "") + &shell_runner_toml("oldgit", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn_with_env(&["run", "-c", &cfg], &[("PATH", &path)]);

    let (trace, _, _) = job(
        &fake,
        &d,
        project.id,
        &[("FF_USE_GIT_PROACTIVE_AUTH", "true"), ("GIT_STRATEGY", "clone")],
    )
    .await;
    let warned: Vec<&str> = trace.lines().filter(|l| l.contains("has no effect")).collect();
    assert_eq!(warned.len(), 1, "{trace}");
    for name in [
        "FF_USE_GIT_BUNDLE_URIS (needs git 2.40.0 or later)",
        "FF_USE_GIT_PROACTIVE_AUTH (needs git 2.46.0 or later)",
        "is git version 2.39.5",
    ] {
        assert!(warned[0].contains(name), "{trace}");
    }

    // Flags that are off need nothing.
    let (trace, _, _) = job(&fake, &d, project.id, &[("FF_USE_GIT_BUNDLE_URIS", "false")]).await;
    assert!(!trace.contains("has no effect"), "{trace}");
    quit_ok(d).await;
}
