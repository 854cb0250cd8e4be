#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use common::{client, info, start};
use fake_gitlab::{FakeGitlab, FakeOptions};
use serde_json::{Value, json};

async fn post(c: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    let token = body["token"].as_str().unwrap_or("").to_string();
    c.post(url)
        .header("RUNNER-TOKEN", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn register_with_legacy_token_creates_a_runner() {
    let fake = start().await;
    let c = client();
    let resp = post(
        &c,
        format!("{}/api/v4/runners", fake.url()),
        json!({ "token": "GR1348941fake-registration", "description": "r1", "tag_list": "docker, linux",
                "run_untagged": false, "locked": true, "info": info(false) }),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("glrtr-"), "{token}");
    assert!(body["id"].as_i64().unwrap() > 0);
    assert!(body["token_expires_at"].is_null());
    let runners = fake.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(runners[0].tags, vec!["docker", "linux"]);
    assert!(!runners[0].run_untagged);
    assert_eq!(runners[0].description, "r1");
    assert!(!format!("{:?}", runners[0]).contains(token));
}

#[tokio::test]
async fn register_rejects_bad_token_and_invalid_bodies() {
    let fake = start().await;
    let c = client();
    let url = format!("{}/api/v4/runners", fake.url());
    let resp = post(&c, url.clone(), json!({ "token": "nope" })).await;
    assert_eq!(resp.status(), 403);
    let resp = post(&c, url.clone(), json!({ "description": "x" })).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "token is missing");
    let resp = post(
        &c,
        url.clone(),
        json!({ "token": "GR1348941fake-registration", "access_level": "bogus" }),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &c,
        url.clone(),
        json!({ "token": "GR1348941fake-registration", "run_untagged": false }),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"]["tags_list"].is_array());
    let resp = post(
        &c,
        url,
        json!({ "token": "GR1348941fake-registration", "maximum_timeout": 10 }),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(fake.runners().is_empty());
}

#[tokio::test]
async fn register_is_gone_when_registration_tokens_are_disabled() {
    let fake = FakeGitlab::start(FakeOptions {
        registration_disabled: true,
        ..common::opts()
    })
    .await
    .unwrap();
    let resp = post(
        &client(),
        format!("{}/api/v4/runners", fake.url()),
        json!({ "token": "GR1348941fake-registration" }),
    )
    .await;
    assert_eq!(resp.status(), 410);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("410 Gone"));
}

#[tokio::test]
async fn verify_records_the_manager_and_rejects_unknown_tokens() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("ui runner");
    assert!(token.starts_with("glrt-"));
    let resp = post(
        &c,
        format!("{}/api/v4/runners/verify", fake.url()),
        json!({ "token": token, "system_id": "s_0123456789ab", "info": info(true) }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token"], token.as_str());
    assert_eq!(body["id"], fake.runners()[0].id);
    let runner = &fake.runners()[0];
    assert_eq!(runner.managers[0].system_id, "s_0123456789ab");
    assert!(runner.feature("cancel_gracefully"));

    let resp = post(
        &c,
        format!("{}/api/v4/runners/verify", fake.url()),
        json!({ "token": "glrt-unknown" }),
    )
    .await;
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn unregister_runner_and_manager() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let verify = format!("{}/api/v4/runners/verify", fake.url());
    for sid in ["s_aaaaaaaaaaaa", "s_bbbbbbbbbbbb"] {
        let r = post(&c, verify.clone(), json!({ "token": token, "system_id": sid })).await;
        assert_eq!(r.status(), 200);
    }
    let managers = format!("{}/api/v4/runners/managers", fake.url());
    let del = |body: Value| {
        c.delete(managers.clone())
            .header("RUNNER-TOKEN", token.clone())
            .json(&body)
            .send()
    };
    assert_eq!(del(json!({ "token": token })).await.unwrap().status(), 400);
    assert_eq!(
        del(json!({ "token": token, "system_id": "s_aaaaaaaaaaaa" }))
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        del(json!({ "token": token, "system_id": "s_aaaaaaaaaaaa" }))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        del(json!({ "token": "glrt-x", "system_id": "s_bbbbbbbbbbbb" }))
            .await
            .unwrap()
            .status(),
        403
    );
    let runners = fake.runners();
    assert_eq!(runners.len(), 1, "deleting a manager keeps the runner");
    assert_eq!(runners[0].managers.len(), 1);

    let url = format!("{}/api/v4/runners", fake.url());
    let resp = c
        .delete(url.clone())
        .header("RUNNER-TOKEN", token.clone())
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(fake.runners().is_empty());
    let resp = c
        .delete(url)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn reset_authentication_token_rotates() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let url = format!("{}/api/v4/runners/reset_authentication_token", fake.url());
    let resp = c
        .post(url.clone())
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let new = body["token"].as_str().unwrap();
    assert!(new.starts_with("glrt-") && new != token);
    assert!(body.get("token_expires_at").is_some());
    let resp = c.post(url).json(&json!({ "token": token })).send().await.unwrap();
    assert_eq!(resp.status(), 403, "the old token is dead");
    let verify = post(
        &c,
        format!("{}/api/v4/runners/verify", fake.url()),
        json!({ "token": new }),
    )
    .await;
    assert_eq!(verify.status(), 200);
}

#[tokio::test]
async fn tokens_expire_when_a_lifetime_is_configured() {
    let fake = FakeGitlab::start(FakeOptions {
        runner_token_expires_in: Some(std::time::Duration::from_secs(3600)),
        ..common::opts()
    })
    .await
    .unwrap();
    let c = client();
    let resp = post(
        &c,
        format!("{}/api/v4/runners", fake.url()),
        json!({ "token": "GR1348941fake-registration" }),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    let expires = body["token_expires_at"].as_str().unwrap();
    let at = time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).unwrap();
    let left = at - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(55) && left <= time::Duration::minutes(60));

    let dead = FakeGitlab::start(FakeOptions {
        runner_token_expires_in: Some(std::time::Duration::ZERO),
        ..common::opts()
    })
    .await
    .unwrap();
    let token = dead.create_runner_token("short-lived");
    let resp = post(
        &c,
        format!("{}/api/v4/runners/verify", dead.url()),
        json!({ "token": token }),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = c
        .delete(format!("{}/api/v4/runners", dead.url()))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
