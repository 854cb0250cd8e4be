//! The job router's client side (`FF_USE_JOB_ROUTER`): one unary gRPC call, `JobRouter/GetJob`, over HTTP/2 with
//! the `h2` crate (plain for `grpc://`, rustls for `grpcs://`, with the runner's CA and client certificate
//! settings; for `ws://`/`wss://` inside a WebSocket tunnel, `tunnel.rs`). The request and answer are the JSON bytes of `POST /jobs/request`, wrapped in a one-field protobuf
//! message ([`proto`]). One connection per router address is kept and multiplexed, as gitlab-runner keeps one
//! `grpc.ClientConn`. It is kept alive with TCP keepalive and HTTP/2 PINGs (an unanswered PING closes it); a
//! call that fails as unreachable (`Unavailable`, `DeadlineExceeded`, `Canceled`) retires the connection it used,
//! and the next call dials afresh.
//!
//! What to do with an answer (the circuit breaker, falling back to `POST /jobs/request`) is the daemon's.

mod conn;
pub mod proto;
#[cfg(test)]
mod tests;
mod tunnel;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};

pub use proto::Code;

use crate::client::Client;
use crate::redact::redact_url;

/// The RPC's path: package `gitlab.agent.job_router.rpc`, service `JobRouter`, method `GetJob`.
pub const GET_JOB_PATH: &str = "/gitlab.agent.job_router.rpc.JobRouter/GetJob";
/// Metadata keys gitlab-runner sends and reads.
pub const REQUEST_ID_KEY: &str = "x-request-id";
pub const LAST_UPDATE_KEY: &str = "x-gitlab-last-update";
const AGENT_TYPE_KEY: &str = "gitlab-agent-type";

/// A fresh `x-request-id` (the correlation id of a `GetJob`), in the form the API client uses.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A failed call, as a gRPC status.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcStatus {
    pub code: Code,
    pub message: String,
}

impl RpcStatus {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> RpcStatus {
        RpcStatus {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Debug for RpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for RpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // grpc-go's wording, which is what gitlab-runner's logs show.
        write!(f, "rpc error: code = {} desc = {}", self.code, self.message)
    }
}

/// Why a router address cannot be used at all (gitlab-runner's dial failures).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot use the job router at {url_redacted}: {detail}")]
pub struct DialError {
    pub url_redacted: String,
    pub detail: String,
}

/// A successful `GetJob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetJobReply {
    /// The JSON GitLab answered to `POST /jobs/request`; empty when there is no job.
    pub job_response: Bytes,
    /// Response metadata `x-request-id`, when the router sent a usable one.
    pub request_id: Option<String>,
    /// Response metadata `x-gitlab-last-update`.
    pub last_update: Option<String>,
}

/// One `GetJob` call's inputs.
pub struct GetJobCall<'a> {
    pub job_request: Bytes,
    /// The runner token, sent as `authorization: Bearer` (never logged).
    pub token: &'a str,
    pub request_id: &'a str,
    /// How long to wait for the answer; past it the call ends with `DeadlineExceeded`.
    pub timeout: Duration,
}

/// Where and how to reach one router.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// `ws://`/`wss://`: HTTP/2 through a WebSocket tunnel.
    pub(crate) tunnel: bool,
    pub(crate) user_agent: String,
    pub(crate) timing: conn::Timing,
}

/// A router address with its connection.
pub struct Channel {
    target: Target,
    /// The connection and its number. Never held across an await: calls read it while another dials.
    conn: std::sync::Mutex<Option<(u64, h2::client::SendRequest<Bytes>)>>,
    /// One dial at a time (single-flight); the calls that wait for it then use its connection.
    dialling: tokio::sync::Mutex<u64>,
    /// The TLS files the channel was made with ([`Client::router_tls_stamp`]); empty without TLS.
    tls_stamp: Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("url", &redact_url(&self.target.url))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A channel to the router GitLab named: `grpc://`, `grpcs://`, or `ws://`/`wss://` (gRPC through a WebSocket
    /// tunnel). A bad URL, another scheme or an unusable TLS file is a [`DialError`]. Nothing is connected yet.
    pub fn router_channel(&self, server_url: &str) -> Result<Channel, DialError> {
        let fail = |detail: String| DialError {
            url_redacted: redact_url(server_url),
            detail,
        };
        let url = url::Url::parse(server_url).map_err(|e| fail(format!("invalid kas address: {e}")))?;
        let (secure, tunnel) = match url.scheme() {
            "grpc" => (false, false),
            "grpcs" => (true, false),
            "ws" => (false, true),
            "wss" => (true, true),
            other => return Err(fail(format!("unsupported scheme in kas address: {other:?}"))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("the address has no host".to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if secure { 443 } else { 80 });
        let tls_stamp = if secure {
            self.router_tls_stamp(&host)
        } else {
            Vec::new()
        };
        let tls = if secure {
            let mut config = self.router_tls(&host).map_err(|e| fail(e.to_string()))?;
            if tunnel {
                // The WebSocket handshake is HTTP/1.1; HTTP/2 starts inside the tunnel.
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Channel {
            target: Target {
                url: server_url.to_string(),
                host,
                port,
                tls,
                tunnel,
                user_agent: self.user_agent().to_string(),
                timing: conn::Timing::default(),
            },
            conn: std::sync::Mutex::new(None),
            dialling: tokio::sync::Mutex::new(0),
            tls_stamp,
        })
    }
}

impl Client {
    /// Whether `channel` still matches this client's settings: same user agent and, for TLS, the same files
    /// with the same modification times. A channel that does not is rebuilt (new connection, files re-read).
    pub fn router_channel_is_current(&self, channel: &Channel) -> bool {
        channel.target.user_agent == self.user_agent()
            && (channel.target.tls.is_none()
                || channel.tls_stamp == self.router_tls_stamp(&channel.target.host))
    }
}

impl Channel {
    /// The address as GitLab gave it.
    pub fn server_url(&self) -> &str {
        &self.target.url
    }

    /// `GetJob`. Transport failures are `Unavailable`, a timeout `DeadlineExceeded`, as grpc-go reports them.
    pub async fn get_job(&self, call: GetJobCall<'_>) -> Result<GetJobReply, RpcStatus> {
        let timeout = call.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let late = || {
            RpcStatus::new(
                Code::DeadlineExceeded,
                format!("no answer within {}s", timeout.as_secs()),
            )
        };
        let (generation, send) = tokio::time::timeout_at(deadline, self.ready(call.token))
            .await
            .map_err(|_| late())??;
        let request = self.request(&call)?;
        let framed = proto::encode_message(&call.job_request);
        let outcome = tokio::time::timeout_at(deadline, conn::unary(send, request, framed))
            .await
            .unwrap_or_else(|_| Err(late()));
        if let Err(status) = &outcome
            && matches!(
                status.code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Canceled
            )
        {
            // The connection may be what failed (a peer gone silent answers nothing, not even an error): the
            // next call dials afresh. Calls still in flight on it keep it until they end.
            self.retire(generation);
        }
        let (headers, message) = outcome?;
        let payload = proto::decode_field1(&message)
            .map_err(|e| RpcStatus::new(Code::Internal, format!("cannot parse the GetJob response: {e}")))?;
        Ok(GetJobReply {
            job_response: Bytes::copy_from_slice(payload),
            request_id: metadata(&headers, REQUEST_ID_KEY)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())),
            last_update: metadata(&headers, LAST_UPDATE_KEY),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, h2::client::SendRequest<Bytes>)>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<(u64, h2::client::SendRequest<Bytes>)> {
        self.slot().clone()
    }

    /// Drops connection `generation` from the slot, unless a newer one already replaced it.
    fn retire(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            slot.take();
        }
    }

    /// The connection and its number, dialled if there is none or it broke.
    async fn ready(&self, token: &str) -> Result<(u64, h2::client::SendRequest<Bytes>), RpcStatus> {
        if let Some((generation, send)) = self.current() {
            match send.ready().await {
                Ok(send) => return Ok((generation, send)),
                Err(_) => self.retire(generation),
            }
        }
        let mut dialled = self.dialling.lock().await;
        // Another call may have dialled while this one waited.
        if let Some((generation, send)) = self.current()
            && let Ok(send) = send.ready().await
        {
            return Ok((generation, send));
        }
        let send = conn::connect(&self.target, token).await?;
        *dialled += 1;
        let generation = *dialled;
        *self.slot() = Some((generation, send.clone()));
        let ready = send
            .ready()
            .await
            .map_err(|e| RpcStatus::new(Code::Unavailable, format!("connection error: {e}")))?;
        Ok((generation, ready))
    }

    fn request(&self, call: &GetJobCall<'_>) -> Result<Request<()>, RpcStatus> {
        let t = &self.target;
        // Through a tunnel gRPC does not know the transport is secure, as with gitlab-runner's `wss://`.
        let scheme = if t.tls.is_some() && !t.tunnel {
            "https"
        } else {
            "http"
        };
        let authority = if t.host.contains(':') {
            format!("[{}]:{}", t.host, t.port)
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let bad = |what: &str| RpcStatus::new(Code::Internal, format!("cannot build the request: {what}"));
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", call.token)).map_err(|_| bad("token"))?;
        auth.set_sensitive(true);
        Request::builder()
            .method("POST")
            .uri(format!("{scheme}://{authority}{GET_JOB_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", &t.user_agent)
            .header("authorization", auth)
            .header(AGENT_TYPE_KEY, "runner")
            .header(REQUEST_ID_KEY, call.request_id)
            .body(())
            .map_err(|e| bad(&e.to_string()))
    }
}

fn metadata(headers: &HeaderMap, key: &str) -> Option<String> {
    headers.get(key).and_then(|v| v.to_str().ok()).map(str::to_string)
}
