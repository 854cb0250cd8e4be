//! One attached client: bytes between the WebSocket and the terminal, in both directions at once (a shell blocked
//! on output must not stop input, and the other way round), until either side ends or the job ends. No timer of its
//! own: `session_timeout` bounds only the driver's wait after the scripts (as upstream's), which then closes the
//! session. The terminal's shell is ended whatever ended the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use oxrunner_core::{TermSize, Terminal, TerminalConn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::frames::{Framing, Input};
use crate::session::Attachment;

/// Shell output is sent in messages of at most this many bytes.
const OUTPUT_CHUNK: usize = 16 * 1024;
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn serve(
    socket: WebSocket,
    framing: Framing,
    terminal: Arc<dyn Terminal>,
    attachment: Attachment,
) {
    let (mut sink, mut stream) = socket.split();
    let conn = match terminal.open(TermSize::default()).await {
        Ok(conn) => conn,
        Err(err) => {
            warn!(error = %err, "cannot open the web terminal");
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let TerminalConn {
        mut output,
        mut input,
        control,
    } = conn;
    {
        let to_shell = async {
            while let Some(msg) = stream.next().await {
                let data = match msg {
                    Ok(Message::Binary(b)) => b,
                    Ok(Message::Text(t)) => t.into(),
                    Ok(Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(err) => {
                        debug!(error = %err, "web terminal connection failed");
                        break;
                    }
                };
                match framing.decode(&data) {
                    Ok(Input::Stdin(bytes)) => {
                        if input.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Ok(Input::Resize(size)) => {
                        if let Err(err) = control.resize(size).await {
                            debug!(error = %err, "web terminal resize failed");
                        }
                    }
                    Ok(Input::Ignore) => {}
                    Err(err) => debug!(error = %err, "web terminal message dropped"),
                }
            }
        };
        let from_shell = async {
            let mut buf = vec![0u8; OUTPUT_CHUNK];
            loop {
                let n = match output.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (text, payload) = framing.encode(&buf[..n]);
                let msg = if text {
                    // Base64 is ASCII, hence UTF-8.
                    Message::Text(String::from_utf8_lossy(&payload).into_owned().into())
                } else {
                    Message::Binary(payload.into())
                };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = to_shell => debug!("web terminal client left"),
            () = from_shell => debug!("web terminal shell ended"),
            () = attachment.stop.cancelled() => debug!("web terminal closed: the job is ending"),
        }
    }
    control.close().await;
    // Detached once the shell is gone, before the close frame: the job's end waits for this, not for the client.
    drop(attachment);
    // A client that stopped reading must not hold the session: the close frame gets a bounded chance.
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(None))).await;
}
