#![allow(dead_code)]

use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions};
use serde_json::{Value, json};

pub fn opts() -> FakeOptions {
    FakeOptions {
        long_poll: Duration::from_secs(1),
        ..FakeOptions::default()
    }
}

pub async fn start() -> FakeGitlab {
    FakeGitlab::start(opts()).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn info(cancel_gracefully: bool) -> Value {
    json!({
        "name": "oxrunner", "version": "0.1.0", "revision": "test", "platform": "linux",
        "architecture": "amd64", "executor": "shell", "shell": "bash",
        "features": { "variables": true, "trace_checksum": true, "cancel_gracefully": cancel_gracefully,
                      "two_phase_job_commit": true }
    })
}

pub async fn request_job(
    c: &reqwest::Client,
    fake: &FakeGitlab,
    token: &str,
    last_update: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "token": token, "info": info(true), "system_id": "s_0123456789ab" });
    if let Some(l) = last_update {
        body["last_update"] = json!(l);
    }
    c.post(format!("{}/api/v4/jobs/request", fake.url()))
        .header("RUNNER-TOKEN", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Picks the next job and returns its payload.
pub async fn pick(c: &reqwest::Client, fake: &FakeGitlab, token: &str) -> Value {
    let resp = request_job(c, fake, token, None).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

pub async fn put_state(
    c: &reqwest::Client,
    fake: &FakeGitlab,
    id: i64,
    job_token: &str,
    body: Value,
) -> reqwest::Response {
    let mut body = body;
    body["token"] = json!(job_token);
    body["info"] = info(true);
    c.put(format!("{}/api/v4/jobs/{id}", fake.url()))
        .header("JOB-TOKEN", job_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn patch_trace(
    c: &reqwest::Client,
    fake: &FakeGitlab,
    id: i64,
    job_token: &str,
    start: usize,
    data: &[u8],
) -> reqwest::Response {
    let end = start + data.len() - 1;
    c.patch(format!("{}/api/v4/jobs/{id}/trace?debug_trace=false", fake.url()))
        .header("JOB-TOKEN", job_token)
        .header("Content-Range", format!("{start}-{end}"))
        .header("Content-Type", "text/plain")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

pub fn crc(data: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    format!("crc32:{:08x}", h.finalize())
}

pub fn var<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    payload["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == key)
}
