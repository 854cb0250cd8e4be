//! `GET /runners/router/discovery` with the job router stand-in on: its address for a known runner token (or the
//! address a test put in its place), 403 for an unknown one.

use fake_gitlab::{FakeGitlab, FakeOptions};

#[tokio::test]
async fn discovery_names_the_router() {
    let fake = FakeGitlab::start(FakeOptions {
        job_router: true,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let token = fake.create_runner_token("r");
    let url = format!("{}/api/v4/runners/router/discovery", fake.url());
    let c = reqwest::Client::new();
    let get = |t: String| c.get(&url).header("RUNNER-TOKEN", t).send();
    let resp = get(token.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let own = fake.router_url().unwrap();
    assert!(own.starts_with("grpc://127.0.0.1:"), "{own}");
    assert_eq!(body["server_url"], own.as_str());

    fake.set_router_discovery(Some("wss://kas.example.invalid".to_string()));
    let body: serde_json::Value = get(token.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(body["server_url"], "wss://kas.example.invalid");

    assert_eq!(get("glrt-unknown".to_string()).await.unwrap().status(), 403);
    assert_eq!(fake.router_discoveries(), 3);
    assert_eq!(fake.router_log().calls, 0);
}
