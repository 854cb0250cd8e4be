//! After the scripts: a job with an attached web terminal stays up until the terminal closes, as gitlab-runner's
//! `waitForTerminal` does (same trace lines), bounded by `session_timeout` and the job's own deadline. Cancel and
//! abort end the wait at once.

use std::time::Duration;

use tokio::time::Instant;

use super::Driver;
use crate::outcome::go_duration;

impl Driver<'_> {
    pub(super) async fn wait_for_terminal(&mut self) {
        let Some(session) = self.session else {
            return;
        };
        if !session.connected() || self.control.abort.is_cancelled() || self.control.graceful.is_cancelled() {
            session.close().await;
            return;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = whole_seconds(session.timeout().min(left));
        self.trace.info(&format!(
            "Terminal is connected, will time out in {}...",
            go_duration(timeout)
        ));
        tokio::select! {
            () = self.control.abort.cancelled() => {}
            () = self.control.graceful.cancelled() => {}
            () = tokio::time::sleep(timeout) => {
                self.trace.info(&format!(
                    "terminal session timed out (maximum time allowed - {})",
                    go_duration(timeout)
                ));
            }
            () = session.disconnected() => self.trace.info("Terminal disconnected"),
        }
        session.close().await;
    }
}

/// gitlab-runner prints the timeout rounded to the second.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_millis() >= 500))
}
