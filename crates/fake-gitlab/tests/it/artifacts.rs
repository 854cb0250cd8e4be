#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use common::{client, header, pick, put_state, start, var};
use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};
use serde_json::json;

async fn upload(
    c: &reqwest::Client,
    fake: &FakeGitlab,
    id: i64,
    jt: &str,
    data: Vec<u8>,
    query: &str,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(data).file_name("artifacts.zip");
    let form = reqwest::multipart::Form::new().part("file", part);
    c.post(format!("{}/api/v4/jobs/{id}/artifacts?{query}", fake.url()))
        .header("JOB-TOKEN", jt)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_then_download_from_a_dependent_job() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let project = fake.create_project("g/p", dir.path()).unwrap();
    let build = fake.enqueue_job(JobSpec::new("build", &["true"]).project(project.id));
    let p = pick(&c, &fake, &token).await;
    let jt = p["token"].as_str().unwrap().to_string();
    let data = b"PK\x03\x04 pretend zip".to_vec();
    let resp = upload(
        &c,
        &fake,
        build,
        &jt,
        data.clone(),
        "artifact_format=zip&artifact_type=archive&expire_in=1+week",
    )
    .await;
    assert_eq!(resp.status(), 201);
    let stored = &fake.job(build).unwrap().artifacts[0];
    assert_eq!(stored.filename, "artifacts.zip");
    assert_eq!(stored.artifact_type, "archive");
    assert_eq!(stored.artifact_format, "zip");
    assert_eq!(stored.expire_in.as_deref(), Some("1 week"));
    assert_eq!(stored.bytes, data);
    assert_eq!(
        put_state(&c, &fake, build, &jt, json!({ "state": "success" }))
            .await
            .status(),
        200
    );

    let test = fake.enqueue_job(
        JobSpec::new("test", &["true"])
            .project(project.id)
            .dependency(build),
    );
    let p = pick(&c, &fake, &token).await;
    assert_eq!(p["id"], test);
    let dep = &p["dependencies"][0];
    assert_eq!(dep["id"], build);
    assert_eq!(dep["name"], "build");
    assert_eq!(dep["artifacts_file"]["filename"], "artifacts.zip");
    assert_eq!(dep["artifacts_file"]["size"], data.len());
    let dep_token = dep["token"].as_str().unwrap();
    assert_eq!(
        var(&p, "CI_PIPELINE_ID").unwrap()["value"],
        fake.job(build).unwrap().pipeline_id.to_string()
    );

    let url = format!("{}/api/v4/jobs/{build}/artifacts", fake.url());
    let resp = c.get(&url).header("JOB-TOKEN", dep_token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);

    // direct_download redirects to object storage on the same server.
    let resp = c
        .get(format!("{url}?direct_download=true"))
        .header("JOB-TOKEN", dep_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = header(&resp, "location").unwrap();
    assert!(location.starts_with(&format!("{}/object-storage/", fake.url())));
    let resp = c.get(&location).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
    let resp = c
        .get(&location)
        .header("Range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        header(&resp, "content-range").unwrap(),
        format!("bytes 2-5/{}", data.len())
    );
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data[2..=5].to_vec());
    let tampered = format!("{}x", location);
    assert_eq!(c.get(tampered).send().await.unwrap().status(), 403);

    // Tokens of finished jobs are dead; a job without archive has nothing to download.
    let resp = c.get(&url).header("JOB-TOKEN", &jt).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(format!("{}/api/v4/jobs/{test}/artifacts", fake.url()))
        .header("JOB-TOKEN", dep_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn upload_over_the_limit_is_413() {
    let fake = FakeGitlab::start(FakeOptions {
        max_artifact_size: Some(1024),
        ..common::opts()
    })
    .await
    .unwrap();
    let c = client();
    let token = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]));
    let p = pick(&c, &fake, &token).await;
    let jt = p["token"].as_str().unwrap();
    let resp = upload(&c, &fake, id, jt, vec![0u8; 4096], "artifact_type=archive").await;
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "413 Payload Too Large");
    assert!(fake.job(id).unwrap().artifacts.is_empty());
    let resp = upload(&c, &fake, id, jt, vec![0u8; 1000], "").await;
    assert_eq!(resp.status(), 201);
    let resp = upload(&c, &fake, id, "glcbt-bad", vec![0u8; 10], "").await;
    assert_eq!(resp.status(), 403);
}
