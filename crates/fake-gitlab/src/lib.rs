//! A GitLab stand-in that speaks the Runner API like GitLab (Rails + Workhorse) does: runner
//! registration, long-polled job requests, job updates with two-phase commit, incremental
//! traces, artifacts (with an object-storage redirect), and git over smart HTTP. It also offers
//! deterministic fault injection. Used by oxrunner's integration tests and benchmarks, and as a
//! standalone binary (`fake-gitlab`) driven through `/fake-admin/...`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_gitlab::FakeError> {
//! use std::time::Duration;
//! use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};
//!
//! let fake = FakeGitlab::start(FakeOptions { long_poll: Duration::from_secs(2), ..FakeOptions::default() }).await?;
//! let project = fake.create_project("group/app", std::path::Path::new("testdata/app"))?;
//! let token = fake.create_runner_token("test runner"); // put into config.toml with url = fake.url()
//! let id = fake.enqueue_job(JobSpec::new("build", &["make"]).project(project.id));
//! // ... run the runner ...
//! let job = fake.wait_job_finished(id, Duration::from_secs(60)).await;
//! # let _ = (token, job); Ok(()) }
//! ```
//!
//! Blocking work in the test thread (e.g. `std::process::Command::new("git")` against the fake)
//! needs a multi-threaded runtime, since the server runs as tasks on the caller's runtime.

mod admin;
mod api;
mod chain;
mod error;
mod faults;
mod git;
mod http;
mod job_router;
mod job_router_tunnel;
mod mtls;
mod ops;
mod payload;
mod records;
mod spec;
mod state;
mod storage;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use tokio::sync::Notify;

pub use chain::TestChain;
pub use error::FakeError;
pub use faults::{Endpoint, FailRule, FaultConfig, FaultHandle};
pub use job_router::{RouterLog, RouterMode};
pub use records::{JobRecord, Project, RequestLog, RunnerManager, RunnerRecord, StoredArtifact};
pub use spec::{ArtifactSpec, CacheSpec, ImageSpec, JobSpec, SuspendSpec, VarFlags};
pub use tls::{TestPki, TlsMaterial};

use state::{Inner, Shared};

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Serve HTTPS with this certificate (the URL then uses `localhost`).
    pub tls: Option<TlsMaterial>,
    /// With `tls`: require a client certificate issued by this CA (PEM), as a proxy in front of GitLab can. Without
    /// `tls`, `start` fails.
    pub client_ca: Option<String>,
    /// Workhorse long-poll duration for `jobs/request` (GitLab's default is 50 s). Zero turns
    /// long polling off, like `-apiCiLongPollingDuration 0`.
    pub long_poll: Duration,
    /// Largest accepted artifact upload in bytes; larger uploads get 413.
    pub max_artifact_size: Option<u64>,
    /// Value of `X-GitLab-Trace-Update-Interval`, seconds.
    pub trace_update_interval: u64,
    /// Legacy registration token accepted by `POST /runners`.
    pub registration_token: String,
    /// Answer `POST /runners` with 410 Gone, as GitLab does when registration tokens are disabled.
    pub registration_disabled: bool,
    /// Lifetime of runner authentication tokens (`token_expires_at`); `None` = never expire,
    /// GitLab's default. Expired tokens are refused like unknown ones.
    pub runner_token_expires_in: Option<Duration>,
    /// The personal access token of an administrator: `POST /runners/:id/reset_authentication_token` accepts it
    /// in `PRIVATE-TOKEN` (any other value gets 401, as GitLab answers an unknown token).
    pub admin_personal_access_token: String,
    /// Address to listen on; port 0 picks a free port. Must be a loopback address.
    pub listen: SocketAddr,
    /// Serve object storage (the targets of `direct_download` redirects) over HTTPS with this certificate on a
    /// listener of its own, `https://127.0.0.1:PORT`, another host than GitLab's `localhost` as in production.
    /// Without it the store is served by GitLab's listener.
    pub object_storage_tls: Option<TlsMaterial>,
    /// Run a job router (KAS) stand-in on its own 127.0.0.1 port and name it at `GET /runners/router/discovery`
    /// (which otherwise answers 501, as on an instance without one): `grpc://`, or `grpcs://localhost` with
    /// GitLab's certificate when `tls` is set.
    pub job_router: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            tls: None,
            client_ca: None,
            long_poll: Duration::from_secs(50),
            max_artifact_size: None,
            trace_update_interval: 3,
            registration_token: "GR1348941fake-registration".to_string(),
            registration_disabled: false,
            runner_token_expires_in: None,
            admin_personal_access_token: "glpat-fake-admin-0123456789".to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            object_storage_tls: None,
            job_router: false,
        }
    }
}

/// A running fake GitLab. Dropping it stops the server.
pub struct FakeGitlab {
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
    _storage: Option<storage::Running>,
    router_task: Option<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>,
}

impl std::fmt::Debug for FakeGitlab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitlab")
            .field("url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(
            "/api/v4/runners",
            post(api::runners::register).delete(api::runners::unregister),
        )
        .route("/api/v4/runners/verify", post(api::runners::verify))
        .route(
            "/api/v4/runners/managers",
            delete(api::runners::unregister_manager),
        )
        .route(
            "/api/v4/runners/reset_authentication_token",
            post(api::runners::reset_token),
        )
        .route(
            "/api/v4/runners/{id}/reset_authentication_token",
            post(api::runners::reset_token_by_id),
        )
        .route(
            "/api/v4/runners/router/discovery",
            get(api::runners::router_discovery),
        )
        .route("/api/v4/jobs/request", post(api::jobs::request))
        .route("/api/v4/jobs/{id}", put(api::jobs::update))
        .route("/api/v4/jobs/{id}/trace", patch(api::jobs::trace))
        .route(
            "/api/v4/jobs/{id}/artifacts",
            post(api::artifacts::upload).get(api::artifacts::download),
        )
        .route(
            "/object-storage/artifacts/{id}/{filename}",
            get(api::artifacts::object_storage),
        )
        .merge(admin::router())
        .fallback(git::fallback);
    api.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        faults::fault_layer,
    ))
    .layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        http::log_layer,
    ))
    // Artifacts, traces and git packs are unbounded; the artifact limit is checked explicitly.
    .layer(DefaultBodyLimit::disable())
    .with_state(shared)
}

impl FakeGitlab {
    /// Binds (by default on 127.0.0.1 with a random port) and serves in a background task.
    pub async fn start(opts: FakeOptions) -> Result<FakeGitlab, FakeError> {
        if !opts.listen.ip().is_loopback() {
            return Err(FakeError::NotLoopback {
                addr: opts.listen.to_string(),
            });
        }
        // A test asking for mutual TLS over plain HTTP would otherwise pass without what it meant to check.
        if opts.client_ca.is_some() && opts.tls.is_none() {
            return Err(FakeError::ClientCaWithoutTls);
        }
        let listener = std::net::TcpListener::bind(opts.listen).map_err(|source| FakeError::Bind {
            addr: opts.listen.to_string(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| FakeError::Bind {
            addr: opts.listen.to_string(),
            source,
        })?;
        let base_url = match &opts.tls {
            Some(_) if addr.ip().is_loopback() => format!("https://localhost:{}", addr.port()),
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        };
        let storage = opts.object_storage_tls.as_ref().map(storage::bind).transpose()?;
        let object_storage_url = storage
            .as_ref()
            .map_or_else(|| base_url.clone(), |s| s.url.clone());
        let repos = tempfile::Builder::new()
            .prefix("fake-gitlab-repos-")
            .tempdir()
            .map_err(|e| FakeError::io(std::env::temp_dir(), e))?;
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            base_url,
            object_storage_url,
            inner: Mutex::new(Inner::new()),
            queue_changed: Notify::new(),
            job_changed: Notify::new(),
            faults: Mutex::new(faults::FaultState::new()),
            repos,
            job_requests_in_flight: AtomicUsize::new(0),
            job_requests_max_in_flight: AtomicUsize::new(0),
            router_url: std::sync::OnceLock::new(),
            router_tunnel_url: std::sync::OnceLock::new(),
            router: Mutex::new(job_router::RouterState::default()),
        });
        let router_task = if opts.job_router {
            let (url, task) = job_router::start(shared.clone(), opts.tls.as_ref()).await?;
            let _ = shared.router_url.set(url);
            let (tunnel_url, tunnel_task) =
                job_router_tunnel::start(shared.clone(), opts.tls.as_ref()).await?;
            let _ = shared.router_tunnel_url.set(tunnel_url);
            Some((task, tunnel_task))
        } else {
            None
        };
        let app = router(shared.clone());
        let handle = axum_server::Handle::new();
        let bind_err = |source| FakeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let task = match &opts.tls {
            Some(tls) => {
                let config = match &opts.client_ca {
                    Some(ca) => {
                        axum_server::tls_rustls::RustlsConfig::from_config(mtls::server_config(tls, ca)?)
                    }
                    None => axum_server::tls_rustls::RustlsConfig::from_pem(
                        tls.cert_pem.clone().into_bytes(),
                        tls.key_pem.clone().into_bytes(),
                    )
                    .await
                    .map_err(|source| FakeError::Tls { source })?,
                };
                let server = axum_server::from_tcp_rustls(listener, config)
                    .map_err(bind_err)?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server
                        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                        .await
                    {
                        tracing::error!(error = %e, "fake GitLab server stopped");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_err)?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server
                        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                        .await
                    {
                        tracing::error!(error = %e, "fake GitLab server stopped");
                    }
                })
            }
        };
        let storage = match storage {
            Some(bound) => Some(storage::serve(bound, shared.clone()).await?),
            None => None,
        };
        Ok(FakeGitlab {
            shared,
            handle,
            task,
            _storage: storage,
            router_task,
        })
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Where `direct_download` redirects point: [`FakeGitlab::url`], or the store's own listener with
    /// [`FakeOptions::object_storage_tls`].
    pub fn object_storage_url(&self) -> String {
        self.shared.object_storage_url.clone()
    }

    /// Like creating a runner in the UI: returns a `glrt-` token usable for verify and jobs.
    pub fn create_runner_token(&self, description: &str) -> String {
        ops::create_runner(&self.shared, description, Vec::new(), true).token
    }

    /// Same, with tags and the "run untagged jobs" setting.
    pub fn create_runner_token_with_tags(
        &self,
        description: &str,
        tags: &[&str],
        run_untagged: bool,
    ) -> String {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        ops::create_runner(&self.shared, description, tags, run_untagged).token
    }

    /// Pause or resume a runner (a paused runner gets no jobs); false if the token is unknown.
    pub fn set_runner_paused(&self, token: &str, paused: bool) -> bool {
        let mut inner = state::lock(&self.shared.inner);
        let Some(runner) = inner.runner_by_token_mut(token) else {
            return false;
        };
        runner.paused = paused;
        if !paused {
            // Resuming makes queued jobs available: wake the runner's long poll.
            inner
                .queue_values
                .insert(token.to_string(), state::random_hex(32));
            drop(inner);
            self.shared.queue_changed.notify_waiters();
        }
        true
    }

    pub fn runners(&self) -> Vec<RunnerRecord> {
        ops::runners(&self.shared)
    }

    /// Makes a bare repository from the files of `from_dir` (committed on `main`), served at
    /// `<url>/<path>.git` to clients authenticated as `gitlab-ci-token:<running job token>`.
    pub fn create_project(&self, path: &str, from_dir: &Path) -> Result<Project, FakeError> {
        ops::create_project(&self.shared, path, from_dir)
    }

    /// Commits the current content of `from_dir` on `main` (like a push); returns the new sha.
    /// Jobs enqueued afterwards use it.
    pub fn push_commit(&self, project_id: i64, from_dir: &Path, message: &str) -> Result<String, FakeError> {
        ops::push_commit(&self.shared, project_id, from_dir, message)
    }

    pub fn enqueue_job(&self, spec: JobSpec) -> i64 {
        ops::enqueue_job(&self.shared, spec)
    }

    pub fn job(&self, id: i64) -> Option<JobRecord> {
        ops::job(&self.shared, id)
    }

    /// Waits until the job is `success`, `failed` or `canceled`; `None` on timeout or unknown id.
    pub async fn wait_job_finished(&self, id: i64, timeout: Duration) -> Option<JobRecord> {
        ops::wait_job_finished(&self.shared, id, timeout).await
    }

    /// Like pressing "Cancel": a pending job is canceled at once; a running job goes to
    /// `canceling` if its runner advertised `cancel_gracefully`, else straight to `canceled`.
    pub fn cancel_job(&self, id: i64) {
        ops::cancel_job(&self.shared, id)
    }

    pub fn faults(&self) -> FaultHandle {
        FaultHandle {
            shared: self.shared.clone(),
        }
    }

    /// The highest number of jobs that were running at the same time.
    pub fn max_concurrent_running(&self) -> usize {
        state::lock(&self.shared.inner).max_running
    }

    /// `POST /jobs/request` calls in flight right now (held by long polling or being answered).
    pub fn job_requests_in_flight(&self) -> usize {
        self.shared.job_requests_in_flight.load(Ordering::SeqCst)
    }

    /// The most `POST /jobs/request` calls that were in flight at the same time (a runner's request concurrency).
    pub fn max_job_requests_in_flight(&self) -> usize {
        self.shared.job_requests_max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request seen so far (admin requests excluded).
    pub fn requests(&self) -> Vec<RequestLog> {
        ops::requests(&self.shared)
    }

    /// How many TCP connections the requests so far came over (distinct client addresses).
    pub fn connections(&self) -> usize {
        let peers: std::collections::HashSet<_> = self.requests().iter().filter_map(|r| r.peer).collect();
        peers.len()
    }

    /// The job router stand-in's address (`grpc://127.0.0.1:PORT`), with [`FakeOptions::job_router`].
    pub fn router_url(&self) -> Option<String> {
        self.shared.router_url.get().cloned()
    }

    /// The job router's WebSocket entrance (`ws://127.0.0.1:PORT`, `wss://localhost:PORT` with `tls`): gRPC in a
    /// `ws-tunnel` WebSocket, KAS's usual external URL. Discovery names it after `set_router_discovery`.
    pub fn router_tunnel_url(&self) -> Option<String> {
        self.shared.router_tunnel_url.get().cloned()
    }

    /// How the job router answers from now on.
    pub fn set_router_mode(&self, mode: RouterMode) {
        state::lock(&self.shared.router).mode = mode;
    }

    /// What discovery names instead of the stand-in (`None`: the stand-in again), e.g. a port nobody listens on.
    pub fn set_router_discovery(&self, server_url: Option<String>) {
        state::lock(&self.shared.router).discovery_override = server_url;
    }

    /// What the job router saw.
    pub fn router_log(&self) -> RouterLog {
        state::lock(&self.shared.router).log.clone()
    }

    /// `GET /runners/router/discovery` calls so far.
    pub fn router_discoveries(&self) -> usize {
        state::lock(&self.shared.router).discoveries
    }
}

impl Drop for FakeGitlab {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
        if let Some((grpc, tunnel)) = &self.router_task {
            grpc.abort();
            tunnel.abort();
        }
    }
}
