//! A first part that broke off after some bytes, retried against an object that is now smaller: the download
//! file must end at the new size, not keep the broken attempt's tail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{PartPlan, download};
use crate::hooks::remote::s3::Presigned;
use crate::hooks::remote::transfer::{Fetched, client};

#[tokio::test]
async fn a_retried_first_part_of_a_smaller_object_leaves_no_old_tail() {
    let old: Vec<u8> = vec![b'o'; 600];
    let new: Vec<u8> = vec![b'n'; 300];
    let calls = Arc::new(AtomicUsize::new(0));
    let (o, n, c) = (old.clone(), new.clone(), calls.clone());
    // First answer: part one of a 10 000-byte object, cut short after 600 bytes (retried as a short part).
    // Second: the object was replaced by one of 300 bytes.
    let app = axum::Router::new().fallback(move || {
        let (o, n, c) = (o.clone(), n.clone(), c.clone());
        async move {
            let (range, body) = match c.fetch_add(1, Ordering::SeqCst) {
                0 => ("bytes 0-999/10000", o),
                _ => ("bytes 0-299/300", n),
            };
            (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, range)],
                body,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let signed = Presigned {
        url: format!("http://{addr}/bucket/key?X-Amz-Signature=abc")
            .parse()
            .unwrap(),
        headers: Vec::new(),
    };
    let plan = PartPlan {
        threshold: 3_000,
        part_size: 1_000,
        in_flight: 3,
    };
    let http = client(std::time::Duration::from_secs(30)).unwrap();
    let dest = tempfile::NamedTempFile::new().unwrap();
    let warn = |_: &str| {};
    let got = download(&http, &signed, dest.as_file(), plan, "S3 bucket", &warn, None).await;
    task.abort();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry");
    assert!(matches!(got, Ok(Fetched::Found { bytes: 300 })), "{got:?}");
    let bytes = std::fs::read(dest.path()).unwrap();
    assert_eq!(bytes.len(), new.len(), "the file's length");
    assert!(bytes == new, "the new object's bytes");
}
