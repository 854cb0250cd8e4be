//! Dialling a router (TCP, TLS with ALPN `h2` for `grpcs://`, the HTTP/2 handshake) and one unary call on the
//! connection: headers, the framed request, then the answer's headers, message and trailers.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::proto::{self, Code};
use super::{RpcStatus, Target};

/// gitlab-runner's dial timeout for the router.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the TLS, WebSocket and HTTP/2 handshakes together, so a peer that accepts and then stalls costs
/// seconds, not the call's whole deadline.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// gitlab-runner's gRPC keepalive: a PING every 55 s, with or without a call in flight; a PING unanswered for
/// 20 s closes the connection, so a peer lost behind a NAT fails the calls on it instead of holding them.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(55);
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// As the API client's connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// A GetJob answer's headers are a few hundred bytes; h2's default allows 16 MiB.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// Timing knobs of one connection (the constants above; tests shorten them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) handshake: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            handshake: HANDSHAKE_TIMEOUT,
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
        }
    }
}

fn unavailable(what: impl std::fmt::Display) -> RpcStatus {
    RpcStatus::new(Code::Unavailable, format!("connection error: {what}"))
}

pub(super) async fn connect(t: &Target, token: &str) -> Result<h2::client::SendRequest<Bytes>, RpcStatus> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((t.host.as_str(), t.port)))
        .await
        .map_err(|_| unavailable(format!("dial {}:{} timed out", t.host, t.port)))?
        .map_err(|e| unavailable(format!("dial {}:{}: {e}", t.host, t.port)))?;
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    tokio::time::timeout(t.timing.handshake, secure(t, token, tcp))
        .await
        .map_err(|_| {
            unavailable(format!(
                "no handshake with {}:{} within {}s",
                t.host,
                t.port,
                t.timing.handshake.as_secs()
            ))
        })?
}

async fn secure(
    t: &Target,
    token: &str,
    tcp: TcpStream,
) -> Result<h2::client::SendRequest<Bytes>, RpcStatus> {
    match &t.tls {
        None => over(t, token, tcp).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| unavailable(format!("invalid server name {}: {e}", t.host)))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable(format!("TLS handshake with {}: {e}", t.host)))?;
            over(t, token, tls).await
        }
    }
}

/// HTTP/2 on `io`, inside a WebSocket tunnel for `ws://`/`wss://`.
async fn over<T>(t: &Target, token: &str, io: T) -> Result<h2::client::SendRequest<Bytes>, RpcStatus>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if t.tunnel {
        handshake(t.timing, super::tunnel::open(t, token, io).await?).await
    } else {
        handshake(t.timing, io).await
    }
}

async fn handshake<T>(timing: Timing, io: T) -> Result<h2::client::SendRequest<Bytes>, RpcStatus>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .enable_push(false)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake(io)
        .await
        .map_err(|e| unavailable(format!("HTTP/2 handshake: {e}")))?;
    let ping = connection.ping_pong();
    tokio::spawn(async move {
        let keepalive = async {
            match ping {
                Some(ping) => keepalive(ping, timing).await,
                None => std::future::pending().await,
            }
        };
        // Ending this task drops the connection and its socket: every call on it fails as `Unavailable`.
        tokio::select! {
            ended = connection => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "job router connection ended");
                }
            }
            why = keepalive => tracing::debug!(error = %why, "job router connection closed"),
        }
    });
    Ok(send)
}

/// PINGs the peer every interval; returns why the connection must close.
async fn keepalive(mut ping: h2::PingPong, timing: Timing) -> String {
    loop {
        tokio::time::sleep(timing.ping_interval).await;
        match tokio::time::timeout(timing.ping_timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("keepalive ping: {e}"),
            Err(_) => {
                return format!("keepalive ping unanswered for {}s", timing.ping_timeout.as_secs());
            }
        }
    }
}

/// Sends one request message and reads the one answer message; the answer's headers carry the metadata.
pub(super) async fn unary(
    mut send: h2::client::SendRequest<Bytes>,
    request: Request<()>,
    framed: Vec<u8>,
) -> Result<(HeaderMap, Vec<u8>), RpcStatus> {
    let (response, mut stream) = send.send_request(request, false).map_err(h2_status)?;
    stream.send_data(Bytes::from(framed), true).map_err(h2_status)?;
    let response = response.await.map_err(h2_status)?;
    let (parts, mut body) = response.into_parts();
    let headers = parts.headers;
    // A status in the headers is a "trailers-only" answer: there is no message.
    if let Some(status) = grpc_status(&headers) {
        return Err(status);
    }
    if parts.status.as_u16() != 200 {
        return Err(RpcStatus::new(
            Code::from_http(parts.status.as_u16()),
            format!(
                "unexpected HTTP status code received from server: {}",
                parts.status
            ),
        ));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        return Err(RpcStatus::new(
            Code::Unknown,
            format!("unexpected content-type {content_type:?} from the router"),
        ));
    }
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_status)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if message.len() + chunk.len() > proto::MAX_MESSAGE + 5 {
            return Err(RpcStatus::new(
                Code::ResourceExhausted,
                format!("the answer is larger than {} bytes", proto::MAX_MESSAGE),
            ));
        }
        message.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(h2_status)?.unwrap_or_default();
    match grpc_status(&trailers) {
        Some(status) => Err(status),
        None if trailers.get("grpc-status").is_some() => {
            let msg = proto::unframe(&message).map_err(|e| RpcStatus::new(Code::Internal, e))?;
            Ok((headers, msg.to_vec()))
        }
        None => Err(RpcStatus::new(
            Code::Internal,
            "server closed the stream without sending trailers",
        )),
    }
}

/// The status of `grpc-status`, `None` for OK or when absent.
fn grpc_status(map: &HeaderMap) -> Option<RpcStatus> {
    let raw = map.get("grpc-status")?;
    let code = raw
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(Code::Unknown, Code::from_number);
    if code == Code::Ok {
        return None;
    }
    let message = map
        .get("grpc-message")
        .map(|m| proto::decode_grpc_message(m.as_bytes()))
        .unwrap_or_default();
    Some(RpcStatus { code, message })
}

/// An HTTP/2 failure as grpc-go reports it: a refused stream or a dead connection is `Unavailable`, a cancelled
/// stream `Canceled`, anything else `Internal`.
fn h2_status(e: h2::Error) -> RpcStatus {
    let code = match e.reason() {
        _ if e.is_io() || e.is_go_away() => Code::Unavailable,
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::CANCEL) => Code::Canceled,
        None => Code::Unavailable,
        Some(_) => Code::Internal,
    };
    RpcStatus::new(code, format!("stream error: {e}"))
}
