//! gitlab-runner's `[runners.artifact] response_header_timeout`: how long an artifact upload waits for the server's
//! response headers once the request, body included, has been written (Go's `ResponseHeaderTimeout`). reqwest has
//! no such setting and its `send()` covers the body too, so the body stream reports when it has ended, and the
//! wait for the answer is bounded from that moment on.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ApiError;

/// Shared by the attempts of one upload: each attempt's body says when it started and when it ended.
pub(crate) struct HeaderWait {
    limit: Option<Duration>,
    tx: watch::Sender<Option<Instant>>,
}

impl HeaderWait {
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        Self {
            limit: limit.filter(|l| !l.is_zero()),
            tx: watch::channel(None).0,
        }
    }

    /// A new attempt starts writing its body: the wait is off until that body has ended.
    pub(crate) fn attempt(&self) -> BodyEnd {
        self.tx.send_replace(None);
        BodyEnd { tx: self.tx.clone() }
    }

    /// Runs `send` (the request until its response headers), failing it when no headers came within the limit
    /// after the last body ended.
    pub(crate) async fn bound<F>(&self, shown: &str, send: F) -> Result<reqwest::Response, ApiError>
    where
        F: Future<Output = Result<reqwest::Response, ApiError>>,
    {
        let Some(limit) = self.limit else {
            return send.await;
        };
        // The previous attempt's body end is no deadline for this one: a retry after a backoff longer than the limit
        // would otherwise fail before it has sent anything.
        self.tx.send_replace(None);
        tokio::select! {
            biased;
            sent = send => sent,
            () = expired(self.tx.subscribe(), limit) => Err(ApiError::NoResponseHeaders {
                url_redacted: shown.to_owned(),
                limit_s: limit.as_secs_f64(),
            }),
        }
    }
}

/// Reports the end of one attempt's body.
pub(crate) struct BodyEnd {
    tx: watch::Sender<Option<Instant>>,
}

impl BodyEnd {
    /// `body`, followed by the report that it has ended.
    pub(crate) fn wrap<S, T, E>(self, body: S) -> impl Stream<Item = Result<T, E>> + Send + 'static
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let tx = self.tx;
        let tail = futures::stream::once(async move {
            tx.send_replace(Some(Instant::now()));
        })
        .filter_map(|()| async { None });
        body.chain(tail)
    }
}

/// Resolves once `limit` has passed since a body ended with no newer body started since.
async fn expired(mut rx: watch::Receiver<Option<Instant>>, limit: Duration) {
    loop {
        let ended = *rx.borrow_and_update();
        match ended {
            None => {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at + limit) => return,
                    changed = rx.changed() => if changed.is_err() {
                        return std::future::pending().await;
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_marker() -> ApiError {
        ApiError::ClientSetup {
            detail: "the attempt got its answer".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_retry_is_not_bounded_by_the_previous_attempts_body_end() {
        let wait = HeaderWait::new(Some(Duration::from_millis(1)));
        // The first attempt wrote its whole body; its answer never came (that attempt failed).
        let body = wait
            .attempt()
            .wrap(futures::stream::empty::<Result<Vec<u8>, ApiError>>());
        assert_eq!(body.collect::<Vec<_>>().await.len(), 0);
        // The retry's request takes longer than the limit before it has written its body: no deadline runs yet.
        // Ordering only: a timer already due fires before one 200 ms ahead.
        let retry = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(sent_marker())
        };
        match wait.bound("http://127.0.0.1/x", retry).await {
            Err(ApiError::ClientSetup { detail }) => assert_eq!(detail, "the attempt got its answer"),
            other => panic!("the retry failed on the stale deadline: {other:?}"),
        }
    }
}
