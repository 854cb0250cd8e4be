#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `artifacts-uploader --response-header-timeout`, as gitlab-runner's helper has it: an upload to a server that
//! reads the whole archive and never answers fails with the limit named, instead of waiting ten minutes.

use crate::support as common;

use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// A server on 127.0.0.1 that reads every request to its end and never answers; returns its URL.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_applies_its_response_header_timeout() {
    let url = silent_server().await;
    let dir = tempfile::Builder::new()
        .prefix("oxrunner-helpers-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out/app.bin"), "binary\n").unwrap();
    let root = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(common::bin())
            .args([
                "artifacts-uploader",
                "--path",
                "out/",
                "--response-header-timeout",
                "300ms",
            ])
            .current_dir(&root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &root)
            .env("CI_SERVER_URL", &url)
            .env("CI_JOB_ID", "42")
            .env("CI_JOB_TOKEN", "job-tok")
            .output()
            .unwrap()
    });
    // Failure guard only: without the flag's limit the upload would wait for the default ten minutes.
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the uploader must give up waiting for the answer")
        .unwrap();
    let text = format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("sent no response headers within 0.3s"), "{text}");
}
