//! A stand-in for GitLab's job router (the `job_router` module of KAS): an HTTP/2 gRPC server on 127.0.0.1 with
//! the one RPC `gitlab.agent.job_router.rpc.JobRouter/GetJob`. Like KAS it authenticates the runner by
//! `authorization: Bearer <runner token>` (with `gitlab-agent-type: runner`), hands the request's JSON bytes to
//! the job request endpoint (Workhorse's long poll and Rails' queue: the same jobs as `POST /jobs/request`) and
//! relays the answer: a job's JSON, or an empty `job_response` when there is none, with the queue state in the
//! `x-gitlab-last-update` metadata and its own `x-request-id`.
//!
//! Written from gitlab-runner's `router/rpc/rpc.proto` and gRPC's HTTP/2 protocol description, not from
//! oxrunner's client. Tests switch it to answer `Unavailable` (an outage) or `Unimplemented` (turned off, as KAS
//! answers when the instance's job router feature is disabled).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::net::TcpListener;

use crate::state::SharedRef;

const GET_JOB: &str = "/gitlab.agent.job_router.rpc.JobRouter/GetJob";

/// How the router answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterMode {
    /// Serves jobs.
    #[default]
    Serving,
    /// Every call ends with `UNAVAILABLE` (14), as when KAS is down behind its load balancer.
    Unavailable,
    /// Every call ends with `UNIMPLEMENTED` (12), KAS's answer when the job router is turned off.
    Disabled,
}

/// What the router saw, for tests.
#[derive(Debug, Clone, Default)]
pub struct RouterLog {
    /// `GetJob` calls received (in any mode).
    pub calls: usize,
    /// Jobs handed out through the router, in order.
    pub jobs: Vec<i64>,
    /// The `job_request` JSON of each call served in [`RouterMode::Serving`].
    pub requests: Vec<serde_json::Value>,
    /// Metadata of the last call: `x-request-id`, `gitlab-agent-type`, and whether `authorization` was right.
    pub last_request_id: Option<String>,
    pub last_agent_type: Option<String>,
    pub last_authorized: bool,
    /// WebSocket tunnels opened (`ws://`/`wss://` entrance, [`crate::FakeGitlab::router_tunnel_url`]).
    pub tunnels: usize,
}

#[derive(Default)]
pub(crate) struct RouterState {
    pub mode: RouterMode,
    pub log: RouterLog,
    /// `GET /runners/router/discovery` calls.
    pub discoveries: usize,
    /// What discovery hands out instead of this router's address (a test's dead port or other scheme).
    pub discovery_override: Option<String>,
}

/// Binds the router's listener; the accept loop runs until the fake is dropped (the task is aborted then). With
/// `tls` (GitLab's own certificate, as KAS behind the same domain) it speaks `grpcs://` on `localhost`.
pub(crate) async fn start(
    shared: SharedRef,
    tls: Option<&crate::TlsMaterial>,
) -> Result<(String, tokio::task::JoinHandle<()>), crate::FakeError> {
    let bind_err = |source| crate::FakeError::Bind {
        addr: "127.0.0.1:0".to_string(),
        source,
    };
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(bind_err)?;
    let port = listener.local_addr().map_err(bind_err)?.port();
    let acceptor = tls
        .map(|t| crate::mtls::h2_server_config(t).map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    let url = match acceptor {
        Some(_) => format!("grpcs://localhost:{port}"),
        None => format!("grpc://127.0.0.1:{port}"),
    };
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let shared = Arc::clone(&shared);
            match acceptor.clone() {
                None => {
                    tokio::spawn(serve_connection(shared, tcp));
                }
                Some(acceptor) => {
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve_connection(shared, tls).await;
                        }
                    });
                }
            }
        }
    });
    Ok((url, task))
}

pub(crate) async fn serve_connection<T>(shared: SharedRef, io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((req, respond))) = conn.accept().await {
        tokio::spawn(serve_call(Arc::clone(&shared), req, respond));
    }
}

async fn serve_call(
    shared: SharedRef,
    req: axum::http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (parts, mut body) = req.into_parts();
    let mut raw = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        raw.extend_from_slice(&chunk);
    }
    let answer = answer(&shared, &parts.uri, &parts.headers, &raw).await;
    let (metadata, result) = answer;
    let mut head = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc");
    for (k, v) in &metadata {
        head = head.header(*k, v.as_str());
    }
    let Ok(head) = head.body(()) else {
        return;
    };
    match result {
        Err((code, message)) => {
            // A trailers-only answer: the status travels in the headers.
            let mut resp = head;
            insert(resp.headers_mut(), "grpc-status", &code.to_string());
            insert(resp.headers_mut(), "grpc-message", &percent_encode(&message));
            let _ = respond.send_response(resp, true);
        }
        Ok(job_response) => {
            let Ok(mut stream) = respond.send_response(head, false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from(frame(&job_response)), false);
            let mut trailers = HeaderMap::new();
            insert(&mut trailers, "grpc-status", "0");
            let _ = stream.send_trailers(trailers);
        }
    }
}

type Answer = (Vec<(&'static str, String)>, Result<Vec<u8>, (u32, String)>);

async fn answer(shared: &SharedRef, uri: &axum::http::Uri, headers: &HeaderMap, raw: &[u8]) -> Answer {
    let request_id = crate::state::random_hex(16);
    let mut metadata = vec![("x-request-id", request_id)];
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mode = {
        let mut r = crate::state::lock(&shared.router);
        r.log.calls += 1;
        r.log.last_request_id = header("x-request-id");
        r.log.last_agent_type = header("gitlab-agent-type");
        r.log.last_authorized = false;
        r.mode
    };
    if uri.path() != GET_JOB {
        return (metadata, Err((12, format!("unknown method {}", uri.path()))));
    }
    match mode {
        RouterMode::Serving => {}
        RouterMode::Unavailable => return (metadata, Err((14, "no healthy upstream".to_string()))),
        RouterMode::Disabled => {
            return (
                metadata,
                Err((
                    12,
                    "Job Router is not available. Please contact your administrator.".to_string(),
                )),
            );
        }
    }
    let Some(job_request) = unframe(raw).and_then(field1) else {
        return (metadata, Err((13, "cannot parse the GetJob request".to_string())));
    };
    let body: serde_json::Value = serde_json::from_slice(&job_request).unwrap_or(serde_json::Value::Null);
    let token = body
        .get("token")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
    if token.is_empty()
        || bearer.as_deref() != Some(token.as_str())
        || header("gitlab-agent-type").as_deref() != Some("runner")
    {
        return (metadata, Err((16, "unauthenticated".to_string())));
    }
    {
        let mut r = crate::state::lock(&shared.router);
        r.log.last_authorized = true;
        r.log.requests.push(body);
    }
    let mut rails_headers = HeaderMap::new();
    insert(&mut rails_headers, "content-type", "application/json");
    let resp =
        crate::api::jobs::request(State(Arc::clone(shared)), rails_headers, Bytes::from(job_request)).await;
    if let Some(lu) = resp
        .headers()
        .get("x-gitlab-last-update")
        .and_then(|v| v.to_str().ok())
    {
        metadata.push(("x-gitlab-last-update", lu.to_string()));
    }
    let status = resp.status();
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), usize::MAX).await else {
        return (metadata, Err((14, "upstream body lost".to_string())));
    };
    match status.as_u16() {
        201 => {
            let job: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if let Some(id) = job.get("id").and_then(serde_json::Value::as_i64) {
                crate::state::lock(&shared.router).log.jobs.push(id);
            }
            (metadata, Ok(bytes.to_vec()))
        }
        204 | 409 => (metadata, Ok(Vec::new())),
        401 | 403 => (metadata, Err((16, "the runner token was refused".to_string()))),
        other => (metadata, Err((14, format!("GitLab answered {other}")))),
    }
}

fn insert(map: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        map.insert(name, v);
    }
}

/// gRPC's length prefix around a protobuf message whose field 1 holds `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    if !payload.is_empty() {
        msg.push(0x0a);
        let mut n = payload.len();
        while n >= 0x80 {
            msg.push((n as u8) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(payload);
    }
    let mut out = vec![0];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

fn unframe(raw: &[u8]) -> Option<&[u8]> {
    let (head, rest) = raw.split_at_checked(5)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    (head[0] == 0 && rest.len() == len).then_some(rest)
}

/// Field 1 of the request message; the runner sends nothing else.
fn field1(mut msg: &[u8]) -> Option<Vec<u8>> {
    let mut found = Vec::new();
    while let Some((&key, rest)) = msg.split_first() {
        msg = rest;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = msg.split_first()?;
            msg = rest;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if key != 0x0a {
            return None;
        }
        let (value, rest) = msg.split_at_checked(len)?;
        found = value.to_vec();
        msg = rest;
    }
    Some(found)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Counted by discovery.
pub(crate) fn count_discovery(shared: &SharedRef) -> usize {
    let mut r = crate::state::lock(&shared.router);
    r.discoveries += 1;
    r.discoveries
}
