//! FF_USE_GIT_NATIVE_CLONE end to end against fake-gitlab's git over HTTP: with `GIT_STRATEGY=clone` the job's
//! sources come from `git clone` when the job's git is at least 2.49 (shown with a `git` that reports 2.49 and
//! passes everything else to the real one, whose `clone --branch` is all that path needs for a branch), and from
//! the init + fetch path with an older git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use fake_gitlab::JobSpec;

use crate::support::{Sandbox, fake, finished, global_toml, project_files, quit_ok, shell_runner_toml};

const FINISH: Duration = Duration::from_secs(90);

/// Whether `version` (`2.47.3`) is at least 2.49.
fn at_least_2_49(version: &str) -> bool {
    let mut fields = version.split('.').map(|f| f.parse::<u32>().unwrap_or(0));
    let (major, minor) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
    (major, minor) >= (2, 49)
}

fn local_git() -> (String, String) {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = Command::new("git").arg("version").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    (path, version.split_whitespace().nth(2).unwrap().to_owned())
}

/// Runs one clone job (FF_USE_GIT_NATIVE_CLONE on) with `path` as the job's PATH, and returns its log.
async fn clone_job(path: &str, job: &str) -> String {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/native", &project_files(sb.dir.path()))
        .unwrap();
    let token = fake.create_runner_token("native");
    let extra = format!("  environment = [\"PATH={path}\"]\n");
    let text = global_toml(1, "") + &shell_runner_toml("native", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);
    let id = fake.enqueue_job(
        JobSpec::new(job, &["cat hello.txt", "echo \"HEAD=$(git rev-parse HEAD)\""])
            .project(project.id)
            .variable("GIT_STRATEGY", "clone")
            .variable("FF_USE_GIT_NATIVE_CLONE", "true"),
    );
    let record = finished(&fake, id, FINISH, &d).await;
    let trace = record.trace_text();
    assert_eq!(record.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains("\nhello from the repository\n"), "{trace}");
    assert!(trace.contains(&format!("\nHEAD={}\n", project.sha)), "{trace}");
    // The flag is honoured now: no start-up warning names it.
    assert!(!d.log().contains("FF_USE_GIT_NATIVE_CLONE"), "{}", d.log());
    quit_ok(d).await;
    trace
}

fn cloned(trace: &str) -> bool {
    trace.contains("Git version at least \"2.49\"")
        && trace.contains("Cloning repository for main with git depth set to 20...")
}

fn fetched(trace: &str) -> bool {
    trace.contains("Fetching changes with git depth set to 20...")
        && trace.contains("Created fresh repository.")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_git_takes_the_path_its_version_allows() {
    let (_, version) = local_git();
    let trace = clone_job(&std::env::var("PATH").unwrap(), "local-git").await;
    if at_least_2_49(&version) {
        assert!(cloned(&trace) && !fetched(&trace), "git {version}:\n{trace}");
    } else {
        assert!(fetched(&trace) && !cloned(&trace), "git {version}:\n{trace}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_of_2_49_clones_the_branch() {
    let (real, _) = local_git();
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("git");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'git version 2.49.0'; exit 0; fi\nexec '{real}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let trace = clone_job(&path, "git-2-49").await;
    assert!(cloned(&trace), "{trace}");
    assert!(!fetched(&trace), "{trace}");
}
