use std::time::{Duration, Instant};

use bytes::Bytes;
use oxrunner_api::{
    ApiError, Client, ClientConfig, JobRequest, JobRequestOutcome, PatchOutcome, RegisterRunnerRequest,
    RunnerInfo, UpdateJobRequest, UpdateOutcome,
};
use serde_json::json;

use crate::common::{Req, json, resp, start};

const FIXTURE: &str = include_str!("../fixtures/job-response.network-gitlab_test.json");

fn job_request(token: &str) -> JobRequest {
    JobRequest {
        info: RunnerInfo::oxrunner("shell", "bash"),
        token: token.into(),
        system_id: "s_0123456789ab".into(),
        ..Default::default()
    }
}

fn job_201() -> axum::response::Response {
    resp(201, &[("Content-Type", "application/json")], FIXTURE)
}

#[tokio::test]
async fn request_job_sends_headers_and_body_token() {
    let srv = start(|_r: &Req, _| job_201()).await;
    // A legacy "/ci" suffix and a trailing slash are stripped.
    let client = Client::new(ClientConfig {
        url: format!("{}ci/", srv.url),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(client.base_url(), format!("{}api/v4/", srv.url));
    let out = client.request_job(&job_request("glrt-secret")).await.unwrap();
    let JobRequestOutcome::Job(job) = out else {
        panic!("expected a job, got {out:?}")
    };
    assert_eq!(job.id, 10);

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/jobs/request")
    );
    assert_eq!(r.header("RUNNER-TOKEN"), Some("glrt-secret"));
    assert!(
        r.header("User-Agent").unwrap().starts_with("oxrunner "),
        "{:?}",
        r.header("User-Agent")
    );
    let rid = r.header("X-Request-Id").unwrap();
    assert!(
        rid.len() == 32 && rid.chars().all(|c| c.is_ascii_hexdigit()),
        "{rid}"
    );
    assert!(r.header("Content-Type").unwrap().starts_with("application/json"));
    assert_eq!(r.header("Accept"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["token"], "glrt-secret");
    assert_eq!(body["system_id"], "s_0123456789ab");
    assert_eq!(body["info"]["name"], "oxrunner");
    assert!(body.get("last_update").is_none());
    assert!(body["info"]["features"]["cancelable"].as_bool().unwrap());
}

#[tokio::test]
async fn no_job_conflict_and_forbidden() {
    let srv = start(|_r: &Req, n| match n {
        0 => resp(204, &[], ""),
        1 => resp(409, &[], ""),
        2 => json(403, &[], json!({"message": "403 Forbidden"})),
        _ => json(422, &[], json!({"message": "Runner is orphaned"})),
    })
    .await;
    let c = srv.client();
    assert!(matches!(
        c.request_job(&job_request("t")).await.unwrap(),
        JobRequestOutcome::NoJob
    ));
    assert!(matches!(
        c.request_job(&job_request("t")).await.unwrap(),
        JobRequestOutcome::Conflict
    ));
    let err = c.request_job(&job_request("t")).await.unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
    match c.request_job(&job_request("t")).await.unwrap() {
        JobRequestOutcome::Rejected { status, message } => {
            assert_eq!(status, 422);
            assert_eq!(message, "Runner is orphaned");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn last_update_round_trip() {
    let srv = start(|_r: &Req, n| resp(204, &[("X-GitLab-Last-Update", &format!("lu-{n}"))], "")).await;
    let c = srv.client();
    c.request_job(&job_request("t")).await.unwrap();
    assert_eq!(c.last_update(), "lu-0");
    // Clones share the value, as several pollers of one runner do.
    c.clone().request_job(&job_request("t")).await.unwrap();
    c.request_job(&job_request("t")).await.unwrap();
    let reqs = srv.requests();
    assert!(reqs[0].json().get("last_update").is_none());
    assert_eq!(reqs[1].json()["last_update"], "lu-0");
    assert_eq!(reqs[2].json()["last_update"], "lu-1");
}

#[tokio::test]
async fn retries_503_then_succeeds_with_fresh_request_ids() {
    let srv = start(|_r: &Req, n| if n < 2 { resp(503, &[], "busy") } else { job_201() }).await;
    let out = srv.client().request_job(&job_request("t")).await.unwrap();
    assert!(matches!(out, JobRequestOutcome::Job(_)));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    let ids: std::collections::HashSet<_> = reqs
        .iter()
        .map(|r| r.header("X-Request-Id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    // The body is re-created for every attempt.
    assert!(reqs.iter().all(|r| r.json()["token"] == "t"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let srv = start(|_r: &Req, n| {
        if n == 0 {
            resp(429, &[("Retry-After", "1")], "")
        } else {
            resp(204, &[], "")
        }
    })
    .await;
    let started = Instant::now();
    let out = srv.client().request_job(&job_request("t")).await.unwrap();
    assert!(matches!(out, JobRequestOutcome::NoJob));
    // The exponential backoff would have waited at most 100 ms; Retry-After asked for a second.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(srv.requests().len(), 2);
}

#[tokio::test]
async fn gives_up_after_five_attempts() {
    let srv = start(|_r: &Req, _| resp(503, &[], "")).await;
    let out = srv.client().request_job(&job_request("t")).await.unwrap();
    assert!(matches!(out, JobRequestOutcome::Unavailable), "{out:?}");
    assert_eq!(srv.requests().len(), 5);
}

#[tokio::test]
async fn json_is_decoded_only_with_json_content_type() {
    // GitLab has assigned the job either way: the runner gets what it needs to fail it instead of an error.
    let srv = start(|_r: &Req, _| resp(201, &[("Content-Type", "text/plain")], FIXTURE)).await;
    let out = srv.client().request_job(&job_request("t")).await.unwrap();
    let JobRequestOutcome::Unreadable(u) = out else {
        panic!("expected an unreadable job, got {out:?}");
    };
    assert!(u.id.is_some() && u.token.is_some(), "{u:?}");
    assert!(u.error.contains("Content-Type"), "{}", u.error);
    let srv = start(|_r: &Req, _| json(201, &[], json!({"id": "not a number"}))).await;
    let out = srv.client().request_job(&job_request("t")).await.unwrap();
    let JobRequestOutcome::Unreadable(u) = out else {
        panic!("expected an unreadable job, got {out:?}");
    };
    assert_eq!((u.id, u.token.as_deref()), (None, None));
    assert!(u.error.contains("`id`"), "{}", u.error);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Client::new(ClientConfig {
        url: format!("http://127.0.0.1:{port}/"),
        ..Default::default()
    })
    .unwrap();
    let err = c.request_job(&job_request("t")).await.unwrap_err();
    assert!(matches!(err, ApiError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
}

#[tokio::test]
async fn register_verify_unregister_reset() {
    let srv = start(|r: &Req, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/v4/runners") => json(
            201,
            &[],
            json!({"id": 12345, "token": "glrt-new", "token_expires_at": null}),
        ),
        ("POST", "/api/v4/runners/verify") if r.json()["token"] == "legacy" => resp(200, &[], "200"),
        ("POST", "/api/v4/runners/verify") => json(
            200,
            &[],
            json!({"id": 54321, "token": "glrt-x", "token_expires_at": "2684-10-16T13:25:59Z"}),
        ),
        ("DELETE", "/api/v4/runners") | ("DELETE", "/api/v4/runners/managers") => resp(204, &[], ""),
        ("POST", "/api/v4/runners/reset_authentication_token") => json(
            201,
            &[],
            json!({"token": "glrt-rotated", "token_expires_at": "2030-01-01T00:00:00Z"}),
        ),
        _ => resp(404, &[], ""),
    })
    .await;
    let c = srv.client();
    let reg = c
        .register_runner(&RegisterRunnerRequest {
            description: "d".into(),
            tag_list: "a,b".into(),
            run_untagged: true,
            info: RunnerInfo::oxrunner("shell", "bash"),
            token: "GR1348941reg".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (reg.id, reg.token.as_str(), reg.token_expires_at.as_deref()),
        (12345, "glrt-new", None)
    );
    assert!(!format!("{reg:?}").contains("glrt-new"));

    let v = c
        .verify_runner("glrt-x", "s_0123456789ab", &RunnerInfo::oxrunner("shell", "bash"))
        .await
        .unwrap();
    assert_eq!(v.id, 54321);
    assert_eq!(v.token_expires_at.as_deref(), Some("2684-10-16T13:25:59Z"));
    let legacy = c
        .verify_runner("legacy", "", &RunnerInfo::default())
        .await
        .unwrap();
    assert_eq!(legacy.id, 0);

    c.unregister_runner("old-token").await.unwrap();
    c.unregister_runner_manager("glrt-x", "s_0123456789ab")
        .await
        .unwrap();
    let reset = c.reset_token("glrt-x").await.unwrap();
    assert_eq!(reset.token, "glrt-rotated");

    let reqs = srv.requests();
    let reg_req = &reqs[0];
    assert_eq!(reg_req.header("RUNNER-TOKEN"), Some("GR1348941reg"));
    assert_eq!(reg_req.json()["token"], "GR1348941reg");
    assert_eq!(reg_req.json()["tag_list"], "a,b");
    assert!(reg_req.json().get("maintenance_note").is_none());
    assert_eq!(reqs[1].json()["system_id"], "s_0123456789ab");
    assert_eq!(reqs[1].header("RUNNER-TOKEN"), Some("glrt-x"));
    assert_eq!(reqs[3].json(), json!({"token": "old-token"}));
    assert_eq!(reqs[3].header("RUNNER-TOKEN"), Some("old-token"));
    assert_eq!(reqs[4].path, "/api/v4/runners/managers");
    assert_eq!(
        reqs[4].json(),
        json!({"token": "glrt-x", "system_id": "s_0123456789ab"})
    );
    assert_eq!(
        reqs[5].header("RUNNER-TOKEN"),
        None,
        "reset sends the token in the body only"
    );
    assert_eq!(reqs[5].json(), json!({"token": "glrt-x"}));
}

#[tokio::test]
async fn register_errors_carry_hints() {
    let limit = include_str!("../fixtures/error-response-runner-limit.json");
    let srv = start(move |_r: &Req, n| match n {
        0 => json(410, &[], json!({"message": "runner registration is disallowed"})),
        1 => resp(400, &[("Content-Type", "application/json")], limit),
        _ => json(403, &[], json!({"message": "403 Forbidden"})),
    })
    .await;
    let c = srv.client();
    let req = RegisterRunnerRequest {
        token: "reg".into(),
        ..Default::default()
    };
    let gone = c.register_runner(&req).await.unwrap_err();
    assert!(matches!(gone, ApiError::Gone { .. }), "{gone:?}");
    assert!(gone.to_string().contains("--token glrt-"), "{gone}");
    let limit = c.register_runner(&req).await.unwrap_err();
    assert!(matches!(limit, ApiError::Status { status: 400, .. }), "{limit:?}");
    assert!(
        limit
            .to_string()
            .contains("Maximum number of ci registered group runners (3) exceeded"),
        "{limit}"
    );
    let forbidden = c.register_runner(&req).await.unwrap_err();
    assert!(
        forbidden.to_string().contains("check registration token"),
        "{forbidden}"
    );
}

fn update(state: &str, exit_code: Option<i32>) -> UpdateJobRequest {
    UpdateJobRequest {
        info: RunnerInfo::oxrunner("shell", "bash"),
        token: "job-tok".into(),
        state: state.into(),
        exit_code,
        ..Default::default()
    }
}

#[tokio::test]
async fn update_job_status_mapping() {
    let srv = start(|_r: &Req, n| match n {
        0 => resp(
            200,
            &[("Job-Status", "running"), ("X-GitLab-Trace-Update-Interval", "7")],
            "200",
        ),
        1 => resp(202, &[("Job-Status", "running")], "202"),
        2 => resp(200, &[("Job-Status", "success")], "200"),
        3 => resp(412, &[], ""),
        4 => resp(200, &[("Job-Status", "canceling")], ""),
        5 => resp(200, &[("Job-Status", "canceled")], ""),
        6 => resp(403, &[], ""),
        7 => resp(404, &[], ""),
        8 => resp(400, &[], ""),
        _ => resp(200, &[("X-GitLab-Trace-Update-Interval", "99999")], ""),
    })
    .await;
    let c = srv.client();
    let mut results = Vec::new();
    for _ in 0..10 {
        results.push(
            c.update_job(77, "job-tok", &update("running", None))
                .await
                .unwrap(),
        );
    }
    let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
    use UpdateOutcome::*;
    assert_eq!(
        outcomes,
        vec![
            Succeeded,
            Accepted,
            Succeeded,
            TraceValidationFailed,
            Succeeded,
            Abort,
            Abort,
            Abort,
            Failed,
            Succeeded
        ]
    );
    assert_eq!(results[0].update_interval, Some(Duration::from_secs(7)));
    assert!(!results[0].cancel_requested);
    assert!(results[4].cancel_requested);
    assert_eq!(
        results[9].update_interval,
        Some(Duration::from_secs(15 * 60)),
        "capped"
    );
    let reqs = srv.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("PUT", "/api/v4/jobs/77")
    );
    assert_eq!(reqs[0].header("JOB-TOKEN"), Some("job-tok"));
    assert_eq!(reqs[0].json()["token"], "job-tok");
    assert_eq!(reqs[0].json()["state"], "running");
}

#[tokio::test]
async fn a_final_update_answered_200_is_recorded_whatever_job_status_says() {
    // GitLab reports the job's state after the update: `failed` for a job the runner just failed, `canceled`
    // for a job that was being canceled. Only a keep-alive seeing such a state means the job was stopped.
    let srv = start(|r: &Req, _| {
        let state = r.json()["state"].as_str().unwrap_or_default().to_string();
        let answer = if state == "running" {
            "failed".to_string()
        } else {
            state
        };
        resp(200, &[("Job-Status", answer.as_str())], "200")
    })
    .await;
    let c = srv.client();
    for state in ["failed", "success"] {
        let r = c.update_job(5, "job-tok", &update(state, Some(1))).await.unwrap();
        assert_eq!(r.outcome, UpdateOutcome::Succeeded, "final `{state}`");
    }
    let r = c
        .update_job(5, "job-tok", &update("running", None))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        UpdateOutcome::Abort,
        "a running job that GitLab failed"
    );
    let canceled = start(|_r: &Req, _| resp(200, &[("Job-Status", "canceled")], "200")).await;
    let r = canceled
        .client()
        .update_job(5, "job-tok", &update("failed", Some(1)))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        UpdateOutcome::Succeeded,
        "a final update of a job being canceled"
    );
    let gone = start(|_r: &Req, _| resp(403, &[("Job-Status", "failed")], "")).await;
    let r = gone
        .client()
        .update_job(5, "job-tok", &update("failed", Some(1)))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        UpdateOutcome::Abort,
        "403: GitLab no longer runs the job"
    );
}

#[tokio::test]
async fn update_job_sends_exit_code_and_output() {
    let srv = start(|_r: &Req, _| resp(200, &[], "")).await;
    let mut req = update("failed", Some(3));
    req.failure_reason = Some("script_failure".into());
    req.output = Some(oxrunner_api::JobTraceOutput {
        checksum: oxrunner_api::crc32_checksum(0xab),
        bytesize: 5,
    });
    srv.client().update_job(1, "job-tok", &req).await.unwrap();
    let body = srv.requests()[0].json();
    assert_eq!(body["exit_code"], 3);
    assert_eq!(body["failure_reason"], "script_failure");
    assert_eq!(
        body["output"],
        json!({"checksum": "crc32:000000ab", "bytesize": 5})
    );
}

#[tokio::test]
async fn patch_trace_accepts_and_resyncs() {
    let srv = start(|r: &Req, n| match n {
        0 => resp(
            202,
            &[
                ("Range", "0-5"),
                ("Job-Status", "running"),
                ("X-GitLab-Trace-Update-Interval", "4"),
            ],
            "",
        ),
        1 => resp(416, &[("Range", "0-3")], ""),
        2 => resp(416, &[], ""),
        3 => resp(202, &[("Job-Status", "canceling")], r.body.clone()),
        4 => resp(404, &[], ""),
        _ => resp(403, &[("Job-Status", "canceled")], ""),
    })
    .await;
    let c = srv.client();
    let r0 = c
        .patch_trace(5, "jt", 0, Bytes::from_static(b"hello"), false)
        .await
        .unwrap();
    assert_eq!(r0.outcome, PatchOutcome::Accepted { new_offset: 5 });
    assert_eq!(r0.update_interval, Some(Duration::from_secs(4)));
    let r1 = c
        .patch_trace(5, "jt", 5, Bytes::from_static(b" world"), true)
        .await
        .unwrap();
    assert_eq!(r1.outcome, PatchOutcome::RangeMismatch { server_size: 3 });
    let r2 = c
        .patch_trace(5, "jt", 3, Bytes::from_static(b"lo"), false)
        .await
        .unwrap();
    assert_eq!(
        r2.outcome,
        PatchOutcome::Failed,
        "416 without Range cannot be resynced"
    );
    let r3 = c
        .patch_trace(5, "jt", 3, Bytes::from_static(b"lo"), false)
        .await
        .unwrap();
    assert!(r3.cancel_requested);
    assert_eq!(
        c.patch_trace(5, "jt", 5, Bytes::from_static(b"x"), false)
            .await
            .unwrap()
            .outcome,
        PatchOutcome::NotFound
    );
    assert_eq!(
        c.patch_trace(5, "jt", 5, Bytes::from_static(b"x"), false)
            .await
            .unwrap()
            .outcome,
        PatchOutcome::Abort
    );
    // Empty patches are never sent.
    let empty = c.patch_trace(5, "jt", 9, Bytes::new(), false).await.unwrap();
    assert_eq!(empty.outcome, PatchOutcome::Accepted { new_offset: 9 });

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("PATCH", "/api/v4/jobs/5/trace")
    );
    assert_eq!(reqs[0].query, "debug_trace=false");
    assert_eq!(reqs[1].query, "debug_trace=true");
    assert_eq!(reqs[0].header("Content-Range"), Some("0-4"));
    assert_eq!(reqs[1].header("Content-Range"), Some("5-10"));
    assert_eq!(reqs[0].header("Content-Type"), Some("text/plain"));
    assert_eq!(reqs[0].header("JOB-TOKEN"), Some("jt"));
    assert_eq!(&reqs[0].body[..], b"hello");
}

#[test]
fn invalid_urls_are_rejected_with_redaction() {
    let err = Client::new(ClientConfig {
        url: "ftp://user:pw-secret@host/".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ApiError::InvalidUrl { .. }));
    assert!(!err.to_string().contains("pw-secret"), "{err}");
    assert!(!format!("{err:?}").contains("pw-secret"), "{err:?}");
}

/// The adaptive request concurrency halves on back-pressure: a job request that met a retryable answer says so,
/// even when a later attempt got through; one that did not, does not.
#[tokio::test]
async fn track_retries_tells_whether_gitlab_asked_for_a_retry() {
    let srv = start(|_r: &Req, n| {
        if n == 0 {
            resp(429, &[("Retry-After", "0")], "")
        } else {
            resp(204, &[], "")
        }
    })
    .await;
    let client = srv.client();
    let req = job_request("glrt-retry");
    let (out, retried) = oxrunner_api::track_retries(client.request_job(&req)).await;
    assert!(matches!(out, Ok(JobRequestOutcome::NoJob)), "{out:?}");
    assert!(retried, "the 429 was not noticed");
    let (out, retried) = oxrunner_api::track_retries(client.request_job(&req)).await;
    assert!(matches!(out, Ok(JobRequestOutcome::NoJob)), "{out:?}");
    assert!(!retried, "a clean 204 counted as a retry");
    assert_eq!(srv.requests().len(), 3);
}
