//! The retry policy against a small in-test server: which answers are tried again, how long a store's
//! `Retry-After` may hold a job, and the backoff's spread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{RETRY_AFTER_LIMIT, backoff, client, last_modified, status_failure, upload};
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

/// The `Last-Modified` question reads one chunk of a `206` at most: a store (or proxy) that answers the one-byte
/// range with an endless body is cut off, not read to the end or the request timeout.
#[tokio::test]
async fn the_date_question_does_not_read_an_endless_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(0usize));
    let server = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await.unwrap();
            let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
            let answer = format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-0/1\r\nlast-modified: {date}\r\n\
                 transfer-encoding: chunked\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            // Up to 256 MiB, far more than one byte; stops once the client has gone.
            for _ in 0..4096 {
                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
                *sent.lock().unwrap() += chunk.len();
            }
        }
    });
    let http = client(Duration::from_secs(600)).unwrap();
    let date = last_modified(&http, &signed(&format!("http://{addr}/b/k"))).await;
    assert_eq!(
        date,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    server.await.unwrap();
    let sent = *sent.lock().unwrap();
    assert!(sent < 64 << 20, "the answer was read on: {sent} bytes");
}
