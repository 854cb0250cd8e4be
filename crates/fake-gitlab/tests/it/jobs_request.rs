#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::time::Duration;

use common::{client, header, pick, request_job, start, var};
use fake_gitlab::{ArtifactSpec, CacheSpec, FakeGitlab, FakeOptions, ImageSpec, JobSpec};
use serde_json::{Value, json};

#[tokio::test]
async fn request_returns_a_full_gitlab_payload() {
    let fake = start().await;
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "hello").unwrap();
    let project = fake.create_project("group/sub/app", dir.path()).unwrap();
    let token = fake.create_runner_token("my runner");
    let id = fake.enqueue_job(
        JobSpec::new("build", &["make", "make test"])
            .project(project.id)
            .stage("build")
            .before_script(&["echo before"])
            .after_script(&["echo after"])
            .variable("FOO", "bar")
            .masked_variable("SECRET", "s3cr3t-value")
            .file_variable("CFG", "a=b")
            .timeout(600)
            .image(ImageSpec::new("alpine:3.20").entrypoint(&[""]))
            .service(ImageSpec::new("postgres:16").alias("db"))
            .artifact(ArtifactSpec::paths(&["out/"]))
            .cache(CacheSpec::new("deps", &["vendor/"])),
    );
    let payload = pick(&c, &fake, &token).await;
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "running");
    assert_eq!(payload["id"], id);
    let job_token = payload["token"].as_str().unwrap();
    assert!(job_token.starts_with("glcbt-"));
    assert_eq!(job.token, job_token);

    let git = &payload["git_info"];
    let url = fake.url();
    let hostport = url.trim_start_matches("http://");
    assert_eq!(
        git["repo_url"],
        format!("http://gitlab-ci-token:{job_token}@{hostport}/group/sub/app.git")
    );
    assert_eq!(git["sha"], project.sha.as_str());
    assert_eq!(git["ref"], "main");
    assert_eq!(git["ref_type"], "branch");
    assert_eq!(git["depth"], 20);
    let refspecs: Vec<&str> = git["refspecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(refspecs.contains(&"+refs/heads/main:refs/remotes/origin/main"));
    assert!(refspecs[0].starts_with("+refs/pipelines/"));

    assert_eq!(payload["runner_info"]["timeout"], 600);
    assert_eq!(payload["job_info"]["name"], "build");
    assert_eq!(payload["job_info"]["stage"], "build");
    assert_eq!(payload["job_info"]["project_id"], project.id);

    let steps = payload["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], "script");
    assert_eq!(steps[0]["script"], json!(["echo before", "make", "make test"]));
    assert_eq!(steps[0]["when"], "on_success");
    assert_eq!(steps[1]["name"], "after_script");
    assert_eq!(steps[1]["when"], "always");

    let jt = var(&payload, "CI_JOB_TOKEN").unwrap();
    assert_eq!(jt["value"], job_token);
    assert_eq!(jt["masked"], true);
    assert_eq!(jt["public"], false);
    for (k, v) in [
        ("CI_JOB_ID", id.to_string()),
        ("CI_JOB_NAME", "build".to_string()),
        ("CI_JOB_STAGE", "build".to_string()),
        ("CI_COMMIT_SHA", project.sha.clone()),
        ("CI_COMMIT_REF_NAME", "main".to_string()),
        ("CI_COMMIT_BRANCH", "main".to_string()),
        ("CI_PROJECT_ID", project.id.to_string()),
        ("CI_PROJECT_PATH", "group/sub/app".to_string()),
        ("CI_PROJECT_NAME", "app".to_string()),
        ("CI_PROJECT_NAMESPACE", "group/sub".to_string()),
        ("CI_SERVER_URL", url.clone()),
        ("CI_SERVER_HOST", "127.0.0.1".to_string()),
        ("CI_SERVER_PROTOCOL", "http".to_string()),
        ("CI_API_V4_URL", format!("{url}/api/v4")),
        ("CI_RUNNER_DESCRIPTION", "my runner".to_string()),
        ("GITLAB_CI", "true".to_string()),
        ("CI", "true".to_string()),
        ("FOO", "bar".to_string()),
    ] {
        assert_eq!(var(&payload, k).unwrap()["value"], v.as_str(), "{k}");
    }
    assert_eq!(var(&payload, "SECRET").unwrap()["masked"], true);
    assert_eq!(var(&payload, "CFG").unwrap()["file"], true);
    assert_eq!(payload["image"]["name"], "alpine:3.20");
    assert_eq!(payload["services"][0]["alias"], "db");
    assert_eq!(payload["artifacts"][0]["paths"], json!(["out/"]));
    assert_eq!(payload["cache"][0]["key"], "deps");
    assert_eq!(payload["features"]["trace_sections"], true);
    assert!(
        payload["features"]["failure_reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("script_failure"))
    );

    // The runner info of the request is recorded.
    let runner = &fake.runners()[0];
    assert_eq!(runner.managers[0].system_id, "s_0123456789ab");
    assert_eq!(job.runner_id, Some(runner.id));
}

#[tokio::test]
async fn no_job_answers_204_with_last_update_then_long_polls() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let resp = request_job(&c, &fake, &token, None).await;
    assert_eq!(resp.status(), 204);
    let last = header(&resp, "x-gitlab-last-update").expect("X-GitLab-Last-Update");
    assert!(!last.is_empty());

    // Same value again: Workhorse holds the request for the long-poll duration (1 s here),
    // then answers 204 without a new X-GitLab-Last-Update.
    let started = std::time::Instant::now();
    let resp = request_job(&c, &fake, &token, Some(&last)).await;
    assert_eq!(resp.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(header(&resp, "gitlab-ci-builds-polling").as_deref(), Some("yes"));
    assert_eq!(header(&resp, "x-gitlab-last-update"), None);
}

#[tokio::test]
async fn long_poll_wakes_up_when_a_job_is_enqueued() {
    let fake = FakeGitlab::start(FakeOptions {
        long_poll: Duration::from_secs(60),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let c = client();
    let token = fake.create_runner_token("r");
    let resp = request_job(&c, &fake, &token, None).await;
    let last = header(&resp, "x-gitlab-last-update").unwrap();

    let poll = {
        let c = c.clone();
        let url = fake.url();
        let token = token.clone();
        let last = last.clone();
        tokio::spawn(async move {
            c.post(format!("{url}/api/v4/jobs/request"))
                .json(&json!({ "token": token, "last_update": last }))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]));
    let resp = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("long poll must wake up on enqueue")
        .unwrap();
    assert_eq!(resp.status(), 204);
    // The runner keeps its old last_update, so the next request reaches Rails and gets the job.
    let resp = request_job(&c, &fake, &token, Some(&last)).await;
    assert_eq!(resp.status(), 201);
    let payload: Value = resp.json().await.unwrap();
    assert_eq!(payload["id"], id);
}

#[tokio::test]
async fn jobs_go_only_to_runners_with_matching_tags() {
    let fake = start().await;
    let c = client();
    let untagged = fake.create_runner_token("plain");
    let docker = fake.create_runner_token_with_tags("docker", &["docker"], false);
    let id = fake.enqueue_job(JobSpec::new("tagged", &["true"]).tags(&["docker"]));
    assert_eq!(request_job(&c, &fake, &untagged, None).await.status(), 204);
    let plain = fake.enqueue_job(JobSpec::new("plain", &["true"]));
    let p = pick(&c, &fake, &docker).await;
    assert_eq!(p["id"], id);
    assert_eq!(request_job(&c, &fake, &docker, None).await.status(), 204);
    let p = pick(&c, &fake, &untagged).await;
    assert_eq!(p["id"], plain);
    assert_eq!(var(&p, "CI_RUNNER_TAGS").unwrap()["value"], "[]");
}

#[tokio::test]
async fn request_rejects_unknown_or_mismatched_tokens() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    assert_eq!(request_job(&c, &fake, "glrt-nope", None).await.status(), 403);
    let resp = c
        .post(format!("{}/api/v4/jobs/request", fake.url()))
        .header("RUNNER-TOKEN", "glrt-other")
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c
        .post(format!("{}/api/v4/jobs/request", fake.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn raw_payload_is_sent_as_is_with_the_fakes_identity() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let raw: Value =
        serde_json::from_str(include_str!("fixtures/job-response.network-gitlab_test.json")).unwrap();
    let id = fake.enqueue_job(JobSpec::raw(raw.clone()));
    let p = pick(&c, &fake, &token).await;
    assert_eq!(p["id"], id);
    assert_eq!(p["token"], fake.job(id).unwrap().token.as_str());
    assert_eq!(p["services"], raw["services"]);
    assert_eq!(p["dependencies"], raw["dependencies"]);
}

#[tokio::test]
async fn paused_runners_get_no_jobs_and_router_discovery_is_not_implemented() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    assert!(fake.set_runner_paused(&token, true));
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]));
    assert_eq!(request_job(&c, &fake, &token, None).await.status(), 204);
    assert!(fake.set_runner_paused(&token, false));
    assert_eq!(pick(&c, &fake, &token).await["id"], id);
    assert!(!fake.set_runner_paused("glrt-unknown", true));

    let url = format!("{}/api/v4/runners/router/discovery", fake.url());
    let resp = c.get(&url).header("RUNNER-TOKEN", &token).send().await.unwrap();
    assert_eq!(resp.status(), 501);
    let resp = c.get(&url).header("RUNNER-TOKEN", "glrt-x").send().await.unwrap();
    assert_eq!(resp.status(), 403);
}

/// Job requests held by long polling are counted while they are open, so tests can see a runner's request
/// concurrency.
#[tokio::test]
async fn held_job_requests_are_counted_in_flight() {
    let fake = FakeGitlab::start(FakeOptions {
        long_poll: Duration::from_secs(60),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let c = client();
    let token = fake.create_runner_token("r");
    let resp = request_job(&c, &fake, &token, None).await;
    let last = header(&resp, "x-gitlab-last-update").unwrap();
    assert_eq!(
        (fake.job_requests_in_flight(), fake.max_job_requests_in_flight()),
        (0, 1)
    );
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let (c, url, token, last) = (c.clone(), fake.url(), token.clone(), last.clone());
            tokio::spawn(async move {
                c.post(format!("{url}/api/v4/jobs/request"))
                    .json(&json!({ "token": token, "last_update": last }))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.job_requests_in_flight() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two polls were never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.enqueue_job(JobSpec::new("j", &["true"]));
    for p in polls {
        assert_eq!(p.await.unwrap().status(), 204);
    }
    assert_eq!(
        (fake.job_requests_in_flight(), fake.max_job_requests_in_flight()),
        (0, 2)
    );
}
