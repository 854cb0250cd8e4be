//! Whether GitLab asked for a retry while a request was being made: the runner's adaptive request concurrency
//! halves on such back-pressure, as gitlab-runner's retry tracker signals it (`network/retry_tracker.go`).
//!
//! A task-local flag rather than a field of every outcome: only the job request loop asks, and the retry loop in
//! `transport.rs` stays the one place that knows about retryable answers.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static RETRIED: Cell<bool>;
}

/// Runs `fut` and tells whether any request it made got an answer the client retries (408, 429, 5xx), even when
/// the last attempt succeeded or no attempt was left.
pub async fn track_retries<F: Future>(fut: F) -> (F::Output, bool) {
    RETRIED
        .scope(Cell::new(false), async {
            let out = fut.await;
            (out, RETRIED.with(Cell::get))
        })
        .await
}

/// Called by the retry loop for each retryable answer; a no-op outside [`track_retries`].
pub(crate) fn note_retryable() {
    let _ = RETRIED.try_with(|r| r.set(true));
}
