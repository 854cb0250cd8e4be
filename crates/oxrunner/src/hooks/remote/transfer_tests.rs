//! The retry policy against a small in-test server: which answers are tried again, how long a store's
//! `Retry-After` may hold a job, and the backoff's spread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{RETRY_AFTER_LIMIT, backoff, client, status_failure, upload};
use crate::hooks::remote::s3::Presigned;

/// A server answering each request with the next of `answers` (then 200), counting requests.
async fn serve(answers: Vec<Response>) -> (String, Arc<Mutex<usize>>) {
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let count = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().fallback({
        let count = Arc::clone(&count);
        move || {
            *count.lock().unwrap() += 1;
            let next = answers.lock().unwrap().next();
            async move { next.unwrap_or_else(|| StatusCode::OK.into_response()) }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/b/k"), count)
}

fn signed(url: &str) -> Presigned {
    Presigned {
        url: reqwest::Url::parse(url).unwrap(),
        headers: Vec::new(),
    }
}

async fn put(answers: Vec<Response>) -> (Result<u64, String>, usize) {
    let (url, count) = serve(answers).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("cache.zip");
    std::fs::write(&src, b"zip").unwrap();
    let http = client(Duration::from_secs(30)).unwrap();
    let result = upload(&http, &signed(&url), &src, "bucket \"b\"", &|_| {}).await;
    let n = *count.lock().unwrap();
    (result, n)
}

#[tokio::test]
async fn too_many_requests_and_timeouts_are_tried_again() {
    let (result, n) = put(vec![
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response(),
        (
            StatusCode::BAD_REQUEST,
            "<Error><Code>RequestTimeout</Code><Message>slow body</Message></Error>",
        )
            .into_response(),
    ])
    .await;
    assert_eq!(result, Ok(3));
    assert_eq!(n, 3);
    let (result, n) = put(vec![StatusCode::REQUEST_TIMEOUT.into_response()]).await;
    assert_eq!(result, Ok(3));
    assert_eq!(n, 2);
}

#[tokio::test]
async fn other_bad_requests_are_not_tried_again() {
    let (result, n) = put(vec![
        (
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidArgument</Code></Error>",
        )
            .into_response(),
    ])
    .await;
    assert!(result.unwrap_err().contains("InvalidArgument"));
    assert_eq!(n, 1);
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_a_limit() {
    let (url, _) = serve(vec![
        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "7")]).into_response(),
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "86400")]).into_response(),
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        )
            .into_response(),
    ])
    .await;
    let http = client(Duration::from_secs(30)).unwrap();
    let mut waits = Vec::new();
    for _ in 0..3 {
        let resp = http.get(&url).send().await.unwrap();
        let failure = status_failure(resp, "u", "bucket").await;
        assert!(failure.retry);
        waits.push(failure.retry_after);
    }
    assert_eq!(
        waits,
        [Some(Duration::from_secs(7)), Some(RETRY_AFTER_LIMIT), None]
    );
}

#[test]
fn the_backoff_doubles_with_a_quarter_of_jitter() {
    for (tries, base) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0)] {
        let waits: Vec<f64> = (0..50).map(|_| backoff(tries).as_secs_f64()).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= base * 0.75 - 1e-9 && *w <= base * 1.25 + 1e-9),
            "{tries}: {waits:?}"
        );
        let first = waits[0];
        assert!(
            waits.iter().any(|w| (w - first).abs() > 1e-6),
            "no jitter: {waits:?}"
        );
    }
}
