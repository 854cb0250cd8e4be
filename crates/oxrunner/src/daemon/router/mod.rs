//! `FF_USE_JOB_ROUTER`: job requests through GitLab's job router (KAS) instead of `POST /jobs/request`, with
//! gitlab-runner's rules (`router/client.go`):
//!
//! - the flag is read from the runner's `[runners.feature_flags]` only (a job cannot set it: there is no job yet);
//! - GitLab names the router at `GET /runners/router/discovery`; the answer, a router or none, is kept for an
//!   hour, per runner entry (gitlab-runner keeps one for the process, which mixes entries of different GitLabs);
//! - the request body is the one `POST /jobs/request` would send, the answer the one it would get (an empty
//!   answer is "no job"), and `x-gitlab-last-update` in the answer's metadata becomes the next `last_update`;
//! - every way around the router ends in the direct request, counted in `fallbacks_total` by reason: no router,
//!   breaker open, an address that cannot be used, the breaker tripping, or the router answering `Unimplemented`
//!   (it was turned off: the cached discovery is dropped);
//! - `Unavailable`, `DeadlineExceeded` and `Canceled` are the router being unreachable: they count towards the
//!   breaker and, below its threshold, the runner stays healthy without a job; any other error is the router
//!   answering, so the breaker is satisfied but the runner is unhealthy for this request.

mod breaker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxrunner_api::redact::redact_url;
use oxrunner_api::router::{Channel, Code, GetJobCall, RpcStatus};
use oxrunner_api::{ApiError, Client, JobRequest, JobRequestOutcome};
use oxrunner_config::RunnerConfig;
use oxrunner_core::feature_flags;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::metrics::RouterMetrics;
use breaker::Breaker;

pub const FLAG: &str = "FF_USE_JOB_ROUTER";

/// gitlab-runner's constants.
const DISCOVERY_TTL: Duration = Duration::from_secs(60 * 60);
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_OPEN: Duration = Duration::from_secs(30);
const BREAKER_GRACE: Duration = Duration::from_secs(5);
/// gitlab-runner sets no deadline on `GetJob`; this bound is the API client's read timeout, so a router that
/// never answers cannot hold a request loop forever.
const GET_JOB_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Why a request went to GitLab directly (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    NoDiscovery,
    BreakerOpen,
    DialFailed,
    BreakerTripped,
    RouterDisabled,
}

impl Fallback {
    fn label(self) -> &'static str {
        match self {
            Fallback::NoDiscovery => "no_discovery",
            Fallback::BreakerOpen => "breaker_open",
            Fallback::DialFailed => "dial_failed",
            Fallback::BreakerTripped => "breaker_tripped",
            Fallback::RouterDisabled => "router_disabled",
        }
    }
}

/// One runner entry's discovery: the router's address (`None`: GitLab has none) until `expires`, and the channel
/// to it once one was opened.
struct Discovered {
    server_url: Option<String>,
    expires: Instant,
    channel: Option<Arc<Channel>>,
}

/// One runner's entry: its lock is held across the discovery request (one discovery per runner at a time, as
/// gitlab-runner holds its lock), so other runners never wait for it.
type Entry = Arc<tokio::sync::Mutex<Discovered>>;

/// The daemon's job router client (one per daemon, kept across reloads like gitlab-runner's).
pub struct JobRouter {
    breaker: Breaker,
    /// Per runner token; this lock only for lookup and insert.
    discovered: std::sync::Mutex<HashMap<String, Entry>>,
    metrics: RouterMetrics,
}

/// A half-open trial in flight: released ([`Breaker::abort`]) if the request is dropped before its outcome is
/// recorded, so the breaker cannot stay half-open with no trial running.
struct Trial<'a> {
    breaker: &'a Breaker,
    pending: bool,
}

impl Trial<'_> {
    fn settled(&mut self) {
        self.pending = false;
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.breaker.abort();
        }
    }
}

impl JobRouter {
    pub fn new(metrics: RouterMetrics) -> JobRouter {
        JobRouter {
            breaker: Breaker::new(BREAKER_THRESHOLD, BREAKER_OPEN, BREAKER_GRACE, metrics.clone()),
            discovered: std::sync::Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Asks for a job: through the router when the runner's `FF_USE_JOB_ROUTER` is on and it can, else (and as
    /// every fallback) with `POST /jobs/request`.
    pub async fn request_job(
        &self,
        client: &Client,
        runner: &RunnerConfig,
        req: &JobRequest,
    ) -> Result<JobRequestOutcome, ApiError> {
        if !feature_flags::runner_is_on(&runner.feature_flags, FLAG) {
            return client.request_job(req).await;
        }
        let short = runner.short_token();
        let token = runner.token.expose();
        // Discovery comes before the breaker, so that "no router" never holds a half-open trial.
        let Some(server_url) = self.discover(client, token, &short).await else {
            return self.fallback(client, req, Fallback::NoDiscovery).await;
        };
        let Some(is_trial) = self.breaker.admit() else {
            return self.fallback(client, req, Fallback::BreakerOpen).await;
        };
        let mut trial = Trial {
            breaker: &self.breaker,
            pending: is_trial,
        };
        let body = match client.job_request_body(req) {
            Ok(b) => b,
            Err(e) => {
                // The router was not contacted: nothing to record, but a trial must be released.
                trial.settled();
                self.breaker.abort();
                error!(runner = %short, error = %e, "json.Marshal()");
                return Err(e);
            }
        };
        let shown_url = redact_url(&server_url);
        let channel = match self.channel(client, token, &server_url).await {
            Ok(c) => c,
            Err(e) => {
                trial.settled();
                if self.breaker.record_failure() {
                    warn!(runner = %short, job_router_url = %shown_url, error = %e, "Job router circuit breaker tripped on dial failure, falling back to direct job requests");
                } else {
                    warn!(runner = %short, job_router_url = %shown_url, error = %e, "Job router dial failed, falling back to direct job requests");
                }
                return self.fallback(client, req, Fallback::DialFailed).await;
            }
        };
        let request_id = oxrunner_api::router::new_request_id();
        let started = Instant::now();
        let answer = channel
            .get_job(GetJobCall {
                job_request: body,
                token,
                request_id: &request_id,
                timeout: GET_JOB_TIMEOUT,
            })
            .await;
        self.metrics.get_job_took(started.elapsed().as_secs_f64());
        // From here on every path records the outcome.
        trial.settled();
        let reply = match answer {
            Ok(reply) => reply,
            Err(status) => {
                return self
                    .router_error(client, req, token, &short, &server_url, status)
                    .await;
            }
        };
        if self.breaker.record_success() {
            info!(runner = %short, job_router_url = %shown_url, "Job router recovered, resuming routing");
        }
        if let Some(lu) = &reply.last_update {
            client.remember_last_update(lu);
        }
        Ok(client.job_from_router(&reply.job_response, reply.request_id.unwrap_or(request_id)))
    }

    async fn router_error(
        &self,
        client: &Client,
        req: &JobRequest,
        token: &str,
        short: &str,
        server_url: &str,
        status: RpcStatus,
    ) -> Result<JobRequestOutcome, ApiError> {
        let shown_url = redact_url(server_url);
        match status.code {
            Code::Unimplemented => {
                // Turned off on purpose; the router answered, so it is healthy. Discover again next time.
                self.breaker.record_success();
                // Turned off: the cached discovery expires now.
                if let Some(entry) = self.entry_if_known(token) {
                    entry.lock().await.expires = Instant::now();
                }
                info!(runner = %short, "Job router is disabled, falling back to direct job requests");
                self.fallback(client, req, Fallback::RouterDisabled).await
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Canceled => {
                if self.breaker.record_failure() {
                    warn!(runner = %short, job_router_url = %shown_url, error = %status, "Job router circuit breaker tripped, falling back to direct job requests");
                    return self.fallback(client, req, Fallback::BreakerTripped).await;
                }
                error!(runner = %short, error = %status, "Error requesting a job");
                Ok(JobRequestOutcome::NoJob)
            }
            _ => {
                self.breaker.record_success();
                error!(runner = %short, error = %status, "Error requesting a job");
                Err(ApiError::Transport {
                    url_redacted: redact_url(server_url),
                    detail: status.to_string(),
                })
            }
        }
    }

    async fn fallback(
        &self,
        client: &Client,
        req: &JobRequest,
        reason: Fallback,
    ) -> Result<JobRequestOutcome, ApiError> {
        self.metrics.fallback(reason.label());
        client.request_job(req).await
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry_if_known(&self, token: &str) -> Option<Entry> {
        self.lock_map().get(token).cloned()
    }

    /// The runner's entry, created (expired, no router) on first use.
    fn entry(&self, token: &str) -> Entry {
        Arc::clone(self.lock_map().entry(token.to_string()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Discovered {
                server_url: None,
                expires: Instant::now(),
                channel: None,
            }))
        }))
    }

    /// The router's address for this runner, from the cache or from GitLab.
    async fn discover(&self, client: &Client, token: &str, short: &str) -> Option<String> {
        let entry = self.entry(token);
        let mut d = entry.lock().await;
        if d.expires > Instant::now() {
            self.metrics.discovery_lookup("hit");
            return d.server_url.clone();
        }
        self.metrics.discovery_lookup("miss");
        let server_url = match client.router_discovery(token).await {
            Ok(found) => {
                info!(runner = %short, "Using job router at {}", redact_url(&found.server_url));
                Some(found.server_url)
            }
            Err(e) => {
                log_discovery_error(short, &e);
                None
            }
        };
        if d.channel.as_ref().map(|c| c.server_url()) != server_url.as_deref() {
            d.channel = None;
        }
        d.server_url = server_url.clone();
        d.expires = Instant::now() + DISCOVERY_TTL;
        server_url
    }

    /// The channel to `server_url`, kept with the runner's discovery so its connection is reused.
    async fn channel(
        &self,
        client: &Client,
        token: &str,
        server_url: &str,
    ) -> Result<Arc<Channel>, oxrunner_api::router::DialError> {
        let entry = self.entry(token);
        let mut d = entry.lock().await;
        // A reload may have changed the TLS files or a certificate renewed: then a new channel re-reads them.
        if let Some(c) = d.channel.as_ref()
            && c.server_url() == server_url
            && client.router_channel_is_current(c)
        {
            return Ok(Arc::clone(c));
        }
        let channel = Arc::new(client.router_channel(server_url)?);
        d.channel = Some(Arc::clone(&channel));
        Ok(channel)
    }
}

/// gitlab-runner's lines for a discovery that found no router.
fn log_discovery_error(short: &str, e: &ApiError) {
    let what = match e {
        ApiError::Forbidden { .. } => "failed (check used token)",
        ApiError::Status { status: 501, .. } => "not configured/enabled",
        ApiError::Status { status, .. } if (400..500).contains(status) => "client error",
        _ => "failed",
    };
    error!(runner = %short, error = %e, "Discovering Job Router... {what}");
}
