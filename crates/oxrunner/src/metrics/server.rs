//! The HTTP server on `--listen-address` / `listen_address`: `/metrics` (GET and HEAD), `/health/ready` and
//! `/debug/jobs/list`, as gitlab-runner serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxrunner_core::CancellationToken;
use tokio::net::TcpListener;

use super::{Metrics, jobs};

/// The address to listen on: the flag wins over config.toml; a host without a port gets 9252, as upstream.
pub fn listen_address(flag: Option<&str>, config: &oxrunner_config::Config) -> Option<String> {
    match flag.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => oxrunner_config::Config {
            listen_address: Some(a.to_string()),
            ..oxrunner_config::Config::default()
        }
        .metrics_listen_address(),
        None => config.metrics_listen_address(),
    }
}

/// Binds `address` and serves until `stop`; returns the bound address. A bind failure is an error, as
/// gitlab-runner's is fatal: an operator who asked for metrics must not silently go without.
pub async fn start(
    address: &str,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address} for the metrics server\nhint: choose a free port with --listen-address or \
             listen_address in config.toml, or remove it to disable the metrics server"
        )
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the metrics server's address")?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/health/ready", get(ready))
        .route("/debug/jobs/list", get(jobs_list))
        .with_state(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the metrics server stopped");
        }
    });
    tracing::info!(address = %local, "Metrics server listening");
    Ok(local)
}

/// `:9252` means every interface, as Go's listener reads it: IPv6 and IPv4 where the host has IPv6.
async fn bind(address: &str) -> std::io::Result<TcpListener> {
    match address.strip_prefix(':') {
        Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        },
        None => TcpListener::bind(address).await,
    }
}

async fn scrape(State(m): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        m.encode(),
    )
        .into_response()
}

async fn ready(State(m): State<Arc<Metrics>>) -> Response {
    if m.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the configuration is not loaded yet\n",
        )
            .into_response()
    }
}

async fn jobs_list(State(m): State<Arc<Metrics>>) -> Response {
    (
        [("X-List-Version", "2"), ("Content-Type", "text/plain")],
        jobs::list(&m.jobs.snapshot()),
    )
        .into_response()
}
