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

fn unavailable(what: impl std::fmt::Display) -> RpcStatus {
    RpcStatus::new(Code::Unavailable, format!("connection error: {what}"))
}

pub(super) async fn connect(t: &Target, token: &str) -> Result<h2::client::SendRequest<Bytes>, RpcStatus> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((t.host.as_str(), t.port)))
        .await
        .map_err(|_| unavailable(format!("dial {}:{} timed out", t.host, t.port)))?
        .map_err(|e| unavailable(format!("dial {}:{}: {e}", t.host, t.port)))?;
    let _ = tcp.set_nodelay(true);
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
        handshake(super::tunnel::open(t, token, io).await?).await
    } else {
        handshake(io).await
    }
}

async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>, RpcStatus>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::handshake(io)
        .await
        .map_err(|e| unavailable(format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "job router connection ended");
        }
    });
    Ok(send)
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
