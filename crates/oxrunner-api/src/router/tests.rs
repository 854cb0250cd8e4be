//! The channel against peers that misbehave on an established connection: real sockets on 127.0.0.1, real
//! clock with shortened handshake bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;

use super::conn::Timing;
use super::{Channel, Code, GetJobCall, Target};

fn channel(port: u16, tunnel: bool, timing: Timing) -> Channel {
    let scheme = if tunnel { "ws" } else { "grpc" };
    Channel {
        target: Target {
            url: format!("{scheme}://127.0.0.1:{port}"),
            host: "127.0.0.1".to_string(),
            port,
            tls: None,
            tunnel,
            user_agent: "oxrunner-test".to_string(),
            timing,
        },
        conn: std::sync::Mutex::new(None),
        dialling: tokio::sync::Mutex::new(0),
        tls_stamp: Vec::new(),
    }
}

fn call(timeout: Duration) -> GetJobCall<'static> {
    GetJobCall {
        job_request: Bytes::from_static(b"{}"),
        token: "glrt-test",
        request_id: "rid",
        timeout,
    }
}

/// Accepts TCP connections and then says nothing on them.
async fn silent_peer() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            sockets.push(s);
        }
    });
    (port, held)
}

/// A `ws://` peer that accepts TCP and never answers the upgrade: the dial fails as `Unavailable` after the
/// handshake bound, not at the end of the call's deadline (10 min in the daemon).
#[tokio::test]
async fn a_peer_that_stalls_the_handshake_fails_the_dial() {
    let (port, held) = silent_peer().await;
    let timing = Timing {
        handshake: Duration::from_millis(300),
        ..Timing::default()
    };
    let err = channel(port, true, timing)
        .get_job(call(Duration::from_secs(120)))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    assert!(err.message.contains("no handshake"), "{err}");
    held.abort();
}

/// A `grpc://` peer gone silent (the HTTP/2 handshake needs no answer, so the call goes out): the unanswered
/// keepalive PING closes the connection and the call fails as `Unavailable` instead of waiting out its deadline.
#[tokio::test]
async fn an_unanswered_keepalive_ping_closes_the_connection() {
    let (port, held) = silent_peer().await;
    let timing = Timing {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..Timing::default()
    };
    let err = channel(port, false, timing)
        .get_job(call(Duration::from_secs(120)))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    held.abort();
}

/// An HTTP/2 peer that takes calls and never answers them: the call that ran out of time retires its
/// connection, so the next call dials afresh instead of queueing on a connection that may be dead.
#[tokio::test]
async fn a_timed_out_call_retires_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(s).await.unwrap();
                let mut unanswered = Vec::new();
                while let Some(Ok(stream)) = conn.accept().await {
                    unanswered.push(stream);
                }
            });
        }
    });
    let ch = channel(port, false, Timing::default());
    for _ in 0..2 {
        let err = ch.get_job(call(Duration::from_millis(300))).await.unwrap_err();
        assert_eq!(err.code, Code::DeadlineExceeded, "{err}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    server.abort();
}
