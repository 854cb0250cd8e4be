#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::time::Duration;

use common::{client, crc, header, patch_trace, pick, put_state, request_job, start};
use fake_gitlab::JobSpec;
use serde_json::{Value, json};

async fn running_job(fake: &fake_gitlab::FakeGitlab, c: &reqwest::Client) -> (i64, String) {
    let token = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["echo hi"]));
    let p = pick(c, fake, &token).await;
    (id, p["token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn state_flow_with_two_phase_commit() {
    let fake = start().await;
    let c = client();
    let (id, jt) = running_job(&fake, &c).await;

    let resp = put_state(&c, &fake, id, &jt, json!({ "state": "running" })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("running"));
    assert_eq!(
        header(&resp, "x-gitlab-trace-update-interval").as_deref(),
        Some("3")
    );

    let trace = b"line one\nline two\n";
    let resp = patch_trace(&c, &fake, id, &jt, 0, trace).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").unwrap(), format!("0-{}", trace.len()));
    assert_eq!(header(&resp, "job-status").as_deref(), Some("running"));

    let final_body =
        json!({ "state": "success", "output": { "checksum": crc(trace), "bytesize": trace.len() } });
    let resp = put_state(&c, &fake, id, &jt, final_body.clone()).await;
    assert_eq!(resp.status(), 202, "live trace chunks: still processing");
    assert_eq!(resp.text().await.unwrap(), "202");
    assert_eq!(fake.job(id).unwrap().status, "running");

    let resp = put_state(&c, &fake, id, &jt, final_body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("success"));
    let job = fake.wait_job_finished(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(job.status, "success");
    assert_eq!(job.checksum_ok, Some(true));
    assert_eq!(job.trace, trace);
    assert_eq!(job.updates.len(), 3);

    // The job is over: further updates are refused with its status.
    let resp = put_state(&c, &fake, id, &jt, json!({ "state": "running" })).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("success"));
    let resp = patch_trace(&c, &fake, id, &jt, trace.len(), b"more").await;
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn failed_update_records_reason_exit_code_and_bad_checksum() {
    let fake = start().await;
    let c = client();
    let (id, jt) = running_job(&fake, &c).await;
    let resp = put_state(
        &c,
        &fake,
        id,
        &jt,
        json!({ "state": "failed", "failure_reason": "script_failure", "exit_code": 42,
                "output": { "checksum": "crc32:00000001", "bytesize": 0 } }),
    )
    .await;
    // No trace chunks: nothing to wait for, the state is applied at once.
    assert_eq!(resp.status(), 200);
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "failed");
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(job.exit_code, Some(42));
    assert_eq!(job.checksum_ok, Some(false));

    let (id, jt) = running_job(&fake, &c).await;
    let resp = put_state(
        &c,
        &fake,
        id,
        &jt,
        json!({ "state": "failed", "failure_reason": "made_up_reason" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fake.job(id).unwrap().failure_reason.as_deref(),
        Some("unknown_failure")
    );
}

#[tokio::test]
async fn trace_patch_resyncs_with_416_and_range() {
    let fake = start().await;
    let c = client();
    let (id, jt) = running_job(&fake, &c).await;
    assert_eq!(patch_trace(&c, &fake, id, &jt, 0, b"abc").await.status(), 202);
    // A gap: the server tells where its trace ends.
    let resp = patch_trace(&c, &fake, id, &jt, 10, b"xyz").await;
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-3"));
    // An overlap is refused too.
    let resp = patch_trace(&c, &fake, id, &jt, 1, b"bc").await;
    assert_eq!(resp.status(), 416);
    let resp = patch_trace(&c, &fake, id, &jt, 3, b"def").await;
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-6"));
    assert_eq!(fake.job(id).unwrap().trace, b"abcdef");

    let resp = c
        .patch(format!("{}/api/v4/jobs/{id}/trace", fake.url()))
        .header("JOB-TOKEN", &jt)
        .body("no range")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn wrong_job_token_or_unknown_job_is_forbidden() {
    let fake = start().await;
    let c = client();
    let (id, _jt) = running_job(&fake, &c).await;
    let resp = patch_trace(&c, &fake, id, "glcbt-wrong", 0, b"x").await;
    assert_eq!(resp.status(), 403);
    let resp = put_state(&c, &fake, 9999, "glcbt-wrong", json!({ "state": "running" })).await;
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn graceful_cancel_goes_through_canceling() {
    let fake = start().await;
    let c = client();
    // `common::request_job` advertises cancel_gracefully.
    let (id, jt) = running_job(&fake, &c).await;
    fake.cancel_job(id);
    assert_eq!(fake.job(id).unwrap().status, "canceling");
    let resp = patch_trace(&c, &fake, id, &jt, 0, b"bye\n").await;
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("canceling"));
    let resp = put_state(&c, &fake, id, &jt, json!({ "state": "running" })).await;
    assert_eq!(header(&resp, "job-status").as_deref(), Some("canceling"));
    let resp = put_state(
        &c,
        &fake,
        id,
        &jt,
        json!({ "state": "failed", "failure_reason": "script_failure" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("canceled"));
    assert_eq!(fake.job(id).unwrap().status, "canceled");
}

#[tokio::test]
async fn hard_cancel_and_pending_cancel() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let id = fake.enqueue_job(JobSpec::new("j", &["sleep 100"]));
    let resp = c
        .post(format!("{}/api/v4/jobs/request", fake.url()))
        .json(&json!({ "token": token, "info": { "features": { "cancel_gracefully": false } } }))
        .send()
        .await
        .unwrap();
    let p: Value = resp.json().await.unwrap();
    let jt = p["token"].as_str().unwrap();
    fake.cancel_job(id);
    assert_eq!(fake.job(id).unwrap().status, "canceled");
    let resp = patch_trace(&c, &fake, id, jt, 0, b"x").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("canceled"));
    let resp = put_state(&c, &fake, id, jt, json!({ "state": "running" })).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "job-status").as_deref(), Some("canceled"));

    let pending = fake.enqueue_job(JobSpec::new("p", &["true"]));
    fake.cancel_job(pending);
    assert_eq!(fake.job(pending).unwrap().status, "canceled");
    assert_eq!(request_job(&c, &fake, &token, None).await.status(), 204);
}

#[tokio::test]
async fn counts_concurrently_running_jobs() {
    let fake = start().await;
    let c = client();
    let token = fake.create_runner_token("r");
    let ids: Vec<i64> = (0..3)
        .map(|i| fake.enqueue_job(JobSpec::new(&format!("j{i}"), &["true"])))
        .collect();
    let mut tokens = Vec::new();
    for _ in &ids[..2] {
        tokens.push(
            pick(&c, &fake, &token).await["token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(fake.max_concurrent_running(), 2);
    for (id, jt) in ids.iter().zip(&tokens) {
        let r = put_state(&c, &fake, *id, jt, json!({ "state": "success" })).await;
        assert_eq!(r.status(), 200);
    }
    let _ = pick(&c, &fake, &token).await;
    assert_eq!(fake.max_concurrent_running(), 2);
    assert!(
        fake.wait_job_finished(ids[2], Duration::from_millis(100))
            .await
            .is_none()
    );
}
