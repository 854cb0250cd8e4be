//! The job router stand-in's WebSocket entrance (`ws://`, or `wss://localhost` with GitLab's certificate), as
//! KAS serves agents and runners behind its external URL: a WebSocket handshake with the `ws-tunnel` subprotocol
//! and `Authorization: Bearer <runner token>`, then HTTP/2 in binary messages, answered by the same gRPC server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Bytes;
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::state::SharedRef;

/// Binds the tunnel's listener; returns its URL and the accept loop.
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
        .map(|t| crate::mtls::http1_server_config(t).map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    let url = match acceptor {
        Some(_) => format!("wss://localhost:{port}"),
        None => format!("ws://127.0.0.1:{port}"),
    };
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let shared = Arc::clone(&shared);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => tunnel(shared, tcp).await,
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            tunnel(shared, tls).await;
                        }
                    }
                }
            });
        }
    });
    Ok((url, task))
}

// The handshake callback's error type is tungstenite's own `Response`.
#[allow(clippy::result_large_err)]
async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(shared: SharedRef, io: S) {
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.split(',').any(|p| p.trim() == "ws-tunnel"));
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
        if !offered || !bearer {
            let mut refused =
                ErrorResponse::new(Some("ws-tunnel subprotocol and a bearer token required".into()));
            *refused.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            return Err(refused);
        }
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            axum::http::HeaderValue::from_static("ws-tunnel"),
        );
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(io, check).await else {
        return;
    };
    crate::state::lock(&shared.router).log.tunnels += 1;
    crate::job_router::serve_connection(
        shared,
        WsIo {
            ws,
            pending: Bytes::new(),
        },
    )
    .await;
}

/// A WebSocket as a byte stream: one binary message per write, reads concatenate them.
struct WsIo<S> {
    ws: WebSocketStream<S>,
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
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => return Poll::Ready(Err(io_err("text message in the tunnel"))),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}
