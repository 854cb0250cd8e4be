#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use common::{client, header, info, patch_trace, pick, request_job, start};
use fake_gitlab::{Endpoint, FaultConfig, JobSpec};
use serde_json::json;

#[tokio::test]
async fn next_requests_fail_with_the_given_status() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    fake.faults().retry_after(Some(2));
    fake.faults().fail_next(Endpoint::JobRequest, 2, 503);
    let r = request_job(&c, &fake, &token, None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("2"));
    assert!(header(&r, "x-request-id").is_some());
    assert_eq!(request_job(&c, &fake, &token, None).await.status(), 503);
    assert_eq!(request_job(&c, &fake, &token, None).await.status(), 204);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 204]);
    // Tokens never reach the request log.
    let logged = format!("{:?}", fake.requests());
    assert!(!logged.contains(&token));
    assert_eq!(fake.requests()[0].header("runner-token"), Some("[REDACTED]"));
}

#[tokio::test]
async fn trace_faults_416_and_5xx() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]));
    let jt = pick(&c, &fake, &token).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(patch_trace(&c, &fake, id, &jt, 0, b"abc").await.status(), 202);
    fake.faults().trace_416_probability(1.0);
    let r = patch_trace(&c, &fake, id, &jt, 3, b"def").await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range").as_deref(), Some("0-3"));
    fake.faults().clear();
    fake.faults().trace_5xx_probability(1.0);
    assert_eq!(patch_trace(&c, &fake, id, &jt, 3, b"def").await.status(), 500);
    fake.faults().clear();
    assert_eq!(patch_trace(&c, &fake, id, &jt, 3, b"def").await.status(), 202);
    assert_eq!(fake.job(id).unwrap().trace, b"abcdef");
}

#[tokio::test]
async fn dropped_connections_fail_the_request() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    fake.faults().drop_connection_probability(1.0);
    let result = async {
        let r = c
            .post(format!("{}/api/v4/runners/verify", fake.url()))
            .json(&json!({ "token": token, "info": info(false) }))
            .send()
            .await?;
        r.bytes().await
    }
    .await;
    assert!(result.is_err(), "expected a broken connection");
    fake.faults().clear();
    let r = c
        .post(format!("{}/api/v4/runners/verify", fake.url()))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn sample(seed: u64) -> Vec<u16> {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["true"]));
    let jt = pick(&c, &fake, &token).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    fake.faults().set(FaultConfig {
        seed: Some(seed),
        trace_5xx_probability: 0.5,
        ..FaultConfig::default()
    });
    let mut statuses = Vec::new();
    let mut offset = 0;
    for _ in 0..16 {
        let r = patch_trace(&c, &fake, id, &jt, offset, b"0123456789").await;
        if r.status() == 202 {
            offset += 10;
        }
        statuses.push(r.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn faults_are_deterministic_for_a_seed() {
    let a = sample(7).await;
    let b = sample(7).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&202), "{a:?}");
}
