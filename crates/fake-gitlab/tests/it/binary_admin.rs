#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_url_and_is_driven_by_the_admin_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-gitlab"))
        .args(["--listen", "127.0.0.1:0", "--long-poll-secs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let c = reqwest::Client::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("x"), "y").unwrap();
    let project: Value = c
        .post(format!("{url}/fake-admin/projects"))
        .json(&json!({ "path": "g/p", "from_dir": src.path() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runner: Value = c
        .post(format!("{url}/fake-admin/runners"))
        .json(&json!({ "description": "bin" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = runner["token"].as_str().unwrap();
    let job: Value = c
        .post(format!("{url}/fake-admin/jobs"))
        .json(&json!({ "name": "hello", "script": ["echo hi"], "project": project["id"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_i64().unwrap();

    let resp = c
        .post(format!("{url}/api/v4/jobs/request"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let payload: Value = resp.json().await.unwrap();
    let jt = payload["token"].as_str().unwrap();
    let resp = c
        .patch(format!("{url}/api/v4/jobs/{id}/trace"))
        .header("JOB-TOKEN", jt)
        .header("Content-Range", "0-2")
        .body("hi\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let record: Value = c
        .get(format!("{url}/fake-admin/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "running");
    assert_eq!(record["trace"], "hi\n");

    let resp = c
        .post(format!("{url}/fake-admin/faults"))
        .json(&json!({ "fail_next": [{ "endpoint": "job_update", "count": 1, "status": 502 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let put = || {
        c.put(format!("{url}/api/v4/jobs/{id}"))
            .header("JOB-TOKEN", jt)
            .json(&json!({ "token": jt, "state": "running" }))
            .send()
    };
    assert_eq!(put().await.unwrap().status(), 502);
    assert_eq!(put().await.unwrap().status(), 200);

    let canceled: Value = c
        .post(format!("{url}/fake-admin/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(canceled["status"], "canceled");
    let requests: Value = c
        .get(format!("{url}/fake-admin/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(requests.as_array().unwrap().len() >= 4);
    drop(child);
}
