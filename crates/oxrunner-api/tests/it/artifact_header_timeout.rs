//! `[runners.artifact] response_header_timeout`: an upload whose request was written in full but that gets no
//! response headers fails with a clear error once the wait is over, instead of hanging on a silent server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oxrunner_api::{ApiError, ArtifactUpload, Client, ClientConfig};
use tokio::io::AsyncReadExt;

/// Failure guard only: without the limit the upload would wait for the client's one-hour transfer timeout.
const GUARD: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1 that reads every request to its end and never answers; returns its URL and the bytes
/// it has read.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let read = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&read);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (url, read)
}

#[tokio::test]
async fn an_upload_without_response_headers_fails_once_the_wait_is_over() {
    let (url, read) = silent_server().await;
    let client = Client::new(ClientConfig {
        url,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("artifacts.zip");
    let size = 2 * 1024 * 1024;
    std::fs::write(&file, vec![7u8; size]).unwrap();
    let opts = ArtifactUpload {
        response_header_timeout: Some(Duration::from_millis(300)),
        ..ArtifactUpload::default()
    };
    let err = tokio::time::timeout(GUARD, client.upload_artifacts(42, "job-tok", &file, &opts))
        .await
        .expect("the upload must give up waiting for the answer")
        .unwrap_err();
    assert!(matches!(err, ApiError::NoResponseHeaders { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("sent no response headers within 0.3s"), "{text}");
    assert!(
        text.contains("hint: raise [runners.artifact] response_header_timeout"),
        "{text}"
    );
    // The wait starts once the request is written: the whole archive reached the server first.
    assert!(
        read.load(Ordering::SeqCst) >= size,
        "{} bytes read",
        read.load(Ordering::SeqCst)
    );
}
