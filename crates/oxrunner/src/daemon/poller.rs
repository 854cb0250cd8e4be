//! The request loop of one `[[runners]]` entry: take capacity first (global `concurrent`, then the runner's
//! `limit`), then ask GitLab for a job, so a job is never accepted that cannot start at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use oxrunner_api::{ApiError, JobRequest, JobRequestOutcome, track_retries};
use oxrunner_core::{CancellationToken, feature_flags};
use oxrunner_session::JobSession;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::job::{self, JobEnv};
use super::request_gate::{self, Answer};
use super::unreadable;

/// Shared by all request loops of one runner entry.
pub struct RunnerState {
    pub env: JobEnv,
    /// `limit`; `None` = unlimited.
    pub limit: Option<Arc<Semaphore>>,
    pub check_interval: Duration,
    pub strict_check_interval: bool,
    /// Consecutive unhealthy answers; past `unhealthy_requests_limit` the runner pauses.
    pub unhealthy: AtomicU32,
    pub unhealthy_limit: u32,
    pub unhealthy_interval: Duration,
    /// Jobs received so far (for run-single's `--max-builds`).
    pub received: Arc<AtomicU64>,
    pub max_builds: u64,
}

/// One job request's answer, with what the loop needs to act on it.
struct Asked {
    answer: Result<JobRequestOutcome, ApiError>,
    /// The session offered with the request.
    session: Option<JobSession>,
    started: Instant,
    /// The queue state known before the request.
    last_update_before: String,
}

pub struct Poller {
    pub state: Arc<RunnerState>,
    pub global: Arc<Semaphore>,
    pub tracker: TaskTracker,
    /// Stop asking for jobs (SIGQUIT, SIGTERM, reload that removed the runner).
    pub stop: CancellationToken,
    /// Delay before the first request, spreading runners over the check interval as gitlab-runner does.
    pub initial_delay: Duration,
    /// Set when a job arrives (run-single's `--wait-timeout`).
    pub activity: Arc<tokio::sync::Notify>,
}

impl Poller {
    pub async fn run(self) {
        let st = &self.state;
        if !self.initial_delay.is_zero() && self.sleep(self.initial_delay).await {
            return;
        }
        loop {
            if self.stop.is_cancelled()
                || (st.max_builds > 0 && st.received.load(Ordering::SeqCst) >= st.max_builds)
            {
                return;
            }
            let Some((global, limit)) = self.capacity().await else {
                return;
            };
            if st.unhealthy.load(Ordering::SeqCst) >= st.unhealthy_limit {
                warn!(
                    runner = %st.env.runner.short_token(),
                    "runner is unhealthy; pausing requests for {}",
                    humanize(st.unhealthy_interval)
                );
                drop((global, limit));
                if self.sleep(st.unhealthy_interval).await {
                    return;
                }
                // After the pause it is tried once more, as gitlab-runner does.
                st.unhealthy
                    .store(st.unhealthy_limit.saturating_sub(1), Ordering::SeqCst);
                continue;
            }

            let Some(Asked {
                answer,
                session,
                started,
                last_update_before,
            }) = self.ask().await
            else {
                // `request_concurrency` (or its adaptive part) is in use: as gitlab-runner, try again at the
                // runner's next turn.
                debug!(runner = %st.env.runner.short_token(), "request_concurrency reached; not asking for a job");
                drop((global, limit));
                if self.sleep(st.check_interval).await {
                    return;
                }
                continue;
            };
            let wait = match answer {
                Ok(JobRequestOutcome::Job(job)) => {
                    st.unhealthy.store(0, Ordering::SeqCst);
                    st.received.fetch_add(1, Ordering::SeqCst);
                    self.activity.notify_waiters();
                    let env = st.env.clone();
                    self.tracker.spawn(async move {
                        let _permits = (global, limit);
                        job::run(env, job, session).await;
                    });
                    if st.strict_check_interval {
                        st.check_interval
                    } else {
                        Duration::ZERO
                    }
                }
                Ok(JobRequestOutcome::Unreadable(job)) => {
                    // GitLab assigned a job all the same: it is reported failed, holding the capacity it took.
                    st.unhealthy.store(0, Ordering::SeqCst);
                    st.received.fetch_add(1, Ordering::SeqCst);
                    self.activity.notify_waiters();
                    let env = st.env.clone();
                    self.tracker.spawn(async move {
                        let _permits = (global, limit);
                        unreadable::fail(env, job).await;
                    });
                    Duration::ZERO
                }
                Ok(outcome) => {
                    st.unhealthy.store(0, Ordering::SeqCst);
                    match outcome {
                        JobRequestOutcome::Conflict => debug!("job was taken by another runner"),
                        JobRequestOutcome::Unavailable => warn!("GitLab instance currently unavailable"),
                        JobRequestOutcome::Rejected { status, message } => {
                            warn!(status, message = %message, "job request rejected");
                        }
                        _ => debug!(elapsed_ms = started.elapsed().as_millis() as u64, "no job"),
                    }
                    drop((global, limit));
                    repoll_delay(
                        st.check_interval,
                        started.elapsed(),
                        last_update_before != st.env.client.last_update(),
                    )
                }
                Err(err) => {
                    st.env.metrics.request_failed(&st.env.runner);
                    let n = st.unhealthy.fetch_add(1, Ordering::SeqCst) + 1;
                    log_request_error(&err, st, n);
                    drop((global, limit));
                    st.check_interval
                }
            };
            if !wait.is_zero() && self.sleep(wait).await {
                return;
            }
        }
    }

    /// Asks GitLab for a job through the runner's request gate; `None` when the gate refused.
    async fn ask(&self) -> Option<Asked> {
        let st = &self.state;
        let runner = &st.env.runner;
        let adaptive = feature_flags::runner_is_on(&runner.feature_flags, request_gate::FLAG);
        let slot = st
            .env
            .metrics
            .job_request(runner)
            .try_acquire(runner.request_concurrency(), adaptive)?;
        // As gitlab-runner does, each request offers a fresh session; it is dropped (unregistered) unless a job
        // comes with this answer.
        let session = st.env.session_server.as_ref().map(|s| s.create_session());
        let req = JobRequest {
            info: st.env.info.clone(),
            token: runner.token.expose().to_string(),
            system_id: st.env.system_id.clone(),
            session: session.as_ref().map(|s| s.info().clone()),
            ..Default::default()
        };
        // An in-flight request is allowed to finish on a graceful stop: GitLab may already have assigned a job
        // to it, and dropping the answer would orphan that job.
        let started = Instant::now();
        let last_update_before = st.env.client.last_update();
        let request = st
            .env
            .metrics
            .job_router()
            .request_job(&st.env.client, runner, &req);
        let (answer, retried) = track_retries(request).await;
        slot.finish(match &answer {
            _ if retried => Answer::Retried,
            Ok(JobRequestOutcome::Job(_) | JobRequestOutcome::Unreadable(_)) => Answer::Job,
            _ => Answer::Empty,
        });
        Some(Asked {
            answer,
            session,
            started,
            last_update_before,
        })
    }

    /// A global `concurrent` permit, then the runner's `limit` permit if it has one; `None` once stopped.
    async fn capacity(&self) -> Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
        let global = tokio::select! {
            () = self.stop.cancelled() => return None,
            p = Arc::clone(&self.global).acquire_owned() => p.ok()?,
        };
        let limit = match &self.state.limit {
            None => None,
            Some(sem) => tokio::select! {
                () = self.stop.cancelled() => return None,
                p = Arc::clone(sem).acquire_owned() => Some(p.ok()?),
            },
        };
        Some((global, limit))
    }

    /// Sleeps; true when stopped meanwhile.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(d) => false,
        }
    }
}

/// Workhorse answers a held long poll with 204 both when it times out and when the job queue changed; in the second
/// case the job is only handed out by the next request. Asking again at once after a held request, or when the
/// server just told us a new queue state (the next request will be held), makes pickup immediate; a server that
/// answers at once with nothing new is asked again only after `check_interval`, so it is never hammered.
fn repoll_delay(check_interval: Duration, request_took: Duration, learned_new_state: bool) -> Duration {
    if request_took >= LONG_POLL_HELD || learned_new_state {
        Duration::ZERO
    } else {
        check_interval
    }
}

/// A request that took this long was held by the server's long polling.
const LONG_POLL_HELD: Duration = Duration::from_millis(500);

fn log_request_error(err: &ApiError, st: &RunnerState, n: u32) {
    let runner = st.env.runner.short_token();
    match err {
        ApiError::Forbidden { .. } => {
            warn!(runner = %runner, "Checking for jobs... forbidden: the runner token is invalid or the runner was removed ({n}/{})", st.unhealthy_limit);
        }
        other => warn!(runner = %runner, "Checking for jobs... failed: {other} ({n}/{})", st.unhealthy_limit),
    }
    if n == st.unhealthy_limit {
        info!(runner = %runner, "too many consecutive failures; the runner will pause");
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repolls_at_once_only_after_a_held_request_or_new_state() {
        let ci = Duration::from_secs(3);
        assert_eq!(repoll_delay(ci, Duration::from_secs(50), false), Duration::ZERO);
        assert_eq!(repoll_delay(ci, Duration::from_millis(2), true), Duration::ZERO);
        assert_eq!(repoll_delay(ci, Duration::from_millis(2), false), ci);
    }
}
