#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::process::Command;

use common::{client, pick, put_state, start};
use fake_gitlab::JobSpec;
use serde_json::json;

fn git(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap()
}

// git runs as a blocking child process: the server needs its own worker thread meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_with_the_job_token_and_refuse_without() {
    let fake = start().await;
    let c = client();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("src")).unwrap();
    std::fs::write(src.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(src.path().join(".gitlab-ci.yml"), "job:\n  script: [true]\n").unwrap();
    let project = fake.create_project("acme/widget", src.path()).unwrap();
    assert_eq!(project.sha.len(), 40);
    assert!(!src.path().join(".git").exists(), "the source dir is left alone");

    let runner = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]).project(project.id));
    let payload = pick(&c, &fake, &runner).await;
    let repo_url = payload["git_info"]["repo_url"].as_str().unwrap().to_string();
    let refspecs: Vec<String> = payload["git_info"]["refspecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let work = tempfile::tempdir().unwrap();
    let out = git(&["clone", "--quiet", &repo_url, "checkout"], work.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checkout = work.path().join("checkout");
    assert_eq!(
        std::fs::read_to_string(checkout.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    let head = git(&["rev-parse", "HEAD"], &checkout);
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), project.sha);

    // The way gitlab-runner fetches: init + fetch with GitLab's refspecs (incl. the pipeline ref).
    let fetch_dir = work.path().join("fetch");
    assert!(
        git(&["init", "--quiet", fetch_dir.to_str().unwrap()], work.path())
            .status
            .success()
    );
    let mut args = vec!["fetch", "--quiet", "--depth", "20", repo_url.as_str()];
    args.extend(refspecs.iter().map(String::as_str));
    let out = git(&args, &fetch_dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let plain_url = format!("{}/acme/widget.git", fake.url());
    let out = git(&["clone", "--quiet", &plain_url, "anon"], work.path());
    assert!(!out.status.success());
    let resp = c
        .get(format!("{plain_url}/info/refs?service=git-upload-pack"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));

    // Once the job is finished its token no longer opens the repository.
    let jt = payload["token"].as_str().unwrap();
    assert_eq!(
        put_state(&c, &fake, id, jt, json!({ "state": "success" }))
            .await
            .status(),
        200
    );
    let out = git(&["clone", "--quiet", &repo_url, "late"], work.path());
    assert!(!out.status.success());
}

#[tokio::test]
async fn push_commit_moves_main_for_later_jobs() {
    let fake = start().await;
    let c = client();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), "1").unwrap();
    let project = fake.create_project("g/p", src.path()).unwrap();
    std::fs::write(src.path().join("a"), "2").unwrap();
    let sha = fake.push_commit(project.id, src.path(), "second").unwrap();
    assert_ne!(sha, project.sha);
    let runner = fake.create_runner_token("r");
    fake.enqueue_job(JobSpec::new("j", &["true"]).project(project.id));
    let p = pick(&c, &fake, &runner).await;
    assert_eq!(p["git_info"]["sha"], sha.as_str());
    assert!(fake.create_project("g/p", src.path()).is_err());
    assert!(fake.create_project("../escape", src.path()).is_err());
}
