//! gRPC through a WebSocket tunnel, for `ws://` and `wss://` router addresses (KAS's usual external URL):
//! gitlab-runner's `router/internal/wstunnel`. The WebSocket handshake carries `Authorization: Bearer <runner
//! token>`, the User-Agent and the `ws-tunnel` subprotocol; afterwards every write is one binary message and reads
//! concatenate binary messages, so HTTP/2 runs over the tunnel as over a TCP stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::proto::Code;
use super::{RpcStatus, Target};

/// KAS's limit for one tunnel message.
const MAX_MESSAGE: usize = 10 * 1024 * 1024;
const SUBPROTOCOL: &str = "ws-tunnel";
/// gitlab-runner's WebSocket dialer `HandshakeTimeout`.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The WebSocket handshake on `io` (TCP, or TLS for `wss://`).
pub(super) async fn open<S>(t: &Target, token: &str, io: S) -> Result<WsIo<S>, RpcStatus>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fail = |what: String| RpcStatus::new(Code::Unavailable, format!("connection error: {what}"));
    let mut request = t
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| fail(format!("WebSocket request: {e}")))?;
    let headers = request.headers_mut();
    let mut auth = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| fail("the token cannot be sent in a header".to_string()))?;
    auth.set_sensitive(true);
    headers.insert("authorization", auth);
    if let Ok(ua) = http::HeaderValue::from_str(&t.user_agent) {
        headers.insert("user-agent", ua);
    }
    headers.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let handshake = tokio_tungstenite::client_async_with_config(request, io, Some(config));
    let (ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| fail(format!("no WebSocket handshake with {} within 10s", t.host)))?
        .map_err(|e| fail(format!("WebSocket handshake with {}: {e}", t.host)))?;
    Ok(WsIo {
        ws,
        pending: Bytes::new(),
    })
}

/// A WebSocket as a byte stream.
pub(super) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // The tunnel ended: end of stream.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io_err("unexpected text message in the gRPC tunnel")));
                }
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        let n = buf.len().min(MAX_MESSAGE);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_err)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}
