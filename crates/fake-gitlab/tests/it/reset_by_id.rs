//! `POST /api/v4/runners/:id/reset_authentication_token` with a personal access token, as GitLab answers it:
//! 401 for a missing or unknown token, 404 for an unknown runner, 201 with the new token otherwise; the old
//! token stops working and the new one works, also when the old one had expired.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support as common;

use common::client;
use fake_gitlab::{FakeGitlab, FakeOptions};
use serde_json::{Value, json};

async fn reset(c: &reqwest::Client, fake: &FakeGitlab, id: &str, pat: Option<&str>) -> reqwest::Response {
    let mut req = c.post(format!(
        "{}/api/v4/runners/{id}/reset_authentication_token",
        fake.url()
    ));
    if let Some(pat) = pat {
        req = req.header("PRIVATE-TOKEN", pat);
    }
    req.send().await.unwrap()
}

async fn verify_status(c: &reqwest::Client, fake: &FakeGitlab, token: &str) -> u16 {
    c.post(format!("{}/api/v4/runners/verify", fake.url()))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_personal_access_token_resets_a_runner_by_id() {
    let fake = FakeGitlab::start(FakeOptions {
        runner_token_expires_in: Some(Duration::from_secs(3600)),
        ..common::opts()
    })
    .await
    .unwrap();
    let c = client();
    let pat = FakeOptions::default().admin_personal_access_token;
    let old = fake.create_runner_token("r");
    let id = fake.runners()[0].id.to_string();

    let resp = reset(&c, &fake, &id, None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["message"], "401 Unauthorized");
    assert_eq!(reset(&c, &fake, &id, Some("glpat-wrong")).await.status(), 401);
    // A runner token is not a personal access token.
    assert_eq!(reset(&c, &fake, &id, Some(&old)).await.status(), 401);
    let resp = reset(&c, &fake, "999", Some(&pat)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["message"],
        "404 Runner Not Found"
    );
    assert_eq!(
        verify_status(&c, &fake, &old).await,
        200,
        "failed resets leave the token alone"
    );

    let resp = reset(&c, &fake, &id, Some(&pat)).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let new = body["token"].as_str().unwrap();
    assert!(new.starts_with("glrt-") && new != old, "{new}");
    let expires = body["token_expires_at"].as_str().unwrap();
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(50) && left <= time::Duration::hours(1),
        "{left}"
    );
    assert_eq!(verify_status(&c, &fake, &old).await, 403, "the old token is dead");
    assert_eq!(verify_status(&c, &fake, new).await, 200);
    assert_eq!(fake.runners()[0].token, new);
}

#[tokio::test]
async fn a_personal_access_token_revives_a_runner_whose_token_expired() {
    let fake = FakeGitlab::start(FakeOptions {
        runner_token_expires_in: Some(Duration::ZERO),
        ..common::opts()
    })
    .await
    .unwrap();
    let c = client();
    let old = fake.create_runner_token("r");
    assert_eq!(verify_status(&c, &fake, &old).await, 403, "expired at once");
    let resp = c
        .post(format!(
            "{}/api/v4/runners/reset_authentication_token",
            fake.url()
        ))
        .json(&json!({ "token": old }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "an expired token cannot reset itself");
    let id = fake.runners()[0].id.to_string();
    let pat = FakeOptions::default().admin_personal_access_token;
    let resp = reset(&c, &fake, &id, Some(&pat)).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_ne!(body["token"].as_str().unwrap(), old);
}

/// Like GitLab: `Authorization: Bearer` works as well as `PRIVATE-TOKEN`, and a non-numeric id is a 400.
#[tokio::test]
async fn bearer_tokens_work_and_a_non_numeric_id_is_a_bad_request() {
    let fake = FakeGitlab::start(common::opts()).await.unwrap();
    let c = client();
    let pat = FakeOptions::default().admin_personal_access_token;
    let _ = fake.create_runner_token("r");
    let id = fake.runners()[0].id.to_string();
    let url = |id: &str| format!("{}/api/v4/runners/{id}/reset_authentication_token", fake.url());
    let resp = c.post(url(&id)).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(reset(&c, &fake, "abc", Some(&pat)).await.status(), 400);
}
