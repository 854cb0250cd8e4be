//! The correlation id a job keeps from its `POST /jobs/request` (sent to git as `X-Gitaly-Correlation-ID`): the
//! `X-Request-Id` the server answered with, else the one the runner sent, as gitlab-runner's `getCorrelationID`.

use oxrunner_api::{JobRequest, JobRequestOutcome, RunnerInfo};

use crate::common::{Req, resp, start};

const FIXTURE: &str = include_str!("../fixtures/job-response.network-gitlab_test.json");

async fn correlation_id(answer: &'static [(&'static str, &'static str)]) -> (String, String) {
    let srv = start(move |_r: &Req, _| {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(answer);
        resp(201, &headers, FIXTURE)
    })
    .await;
    let req = JobRequest {
        info: RunnerInfo::oxrunner("shell", "bash"),
        token: "glrt-x".into(),
        ..Default::default()
    };
    let out = srv.client().request_job(&req).await.unwrap();
    let JobRequestOutcome::Job(job) = out else {
        panic!("expected a job, got {out:?}")
    };
    let sent = srv.requests()[0].header("X-Request-Id").unwrap().to_owned();
    (job.job_request_correlation_id, sent)
}

#[tokio::test]
async fn the_servers_request_id_wins() {
    let (id, sent) = correlation_id(&[("X-Request-Id", "01JABCDEFSERVERSIDE")]).await;
    assert_eq!(id, "01JABCDEFSERVERSIDE");
    assert_ne!(id, sent);
}

#[tokio::test]
async fn without_one_the_sent_id_is_kept() {
    let (id, sent) = correlation_id(&[]).await;
    assert_eq!(id, sent);
    assert_eq!(id.len(), 32, "{id}");
}

/// An id git could not carry in a header line (a space, here) counts as none: the sent id is kept, so the git
/// requests still name the job's request instead of no id at all.
#[tokio::test]
async fn an_unusable_server_id_falls_back_to_the_sent_one() {
    let (id, sent) = correlation_id(&[("X-Request-Id", "two words")]).await;
    assert_eq!(id, sent);
    assert_eq!(id.len(), 32, "{id}");
}
