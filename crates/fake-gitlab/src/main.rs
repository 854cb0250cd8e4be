//! Standalone fake GitLab: prints its base URL on the first stdout line, serves until killed.
//!
//! Admin API (JSON):
//! - `POST /fake-admin/projects {"path": "group/app", "from_dir": "/abs/dir"}` → project
//! - `POST /fake-admin/runners {"description", "tags": [..], "run_untagged"}` → `{id, token}`
//! - `GET /fake-admin/runners` → registered runners
//! - `POST /fake-admin/jobs <JobSpec>` → `{id}`; e.g. `{"name": "build", "script": ["make"],
//!   "project": 1, "variables": [["KEY", "value", {"public": true}]]}`
//! - `GET /fake-admin/jobs/{id}` → job record with `trace` (lossy text) and `trace_base64`
//! - `POST /fake-admin/jobs/{id}/cancel` → `{id, status}`
//! - `POST /fake-admin/faults <FaultConfig>` (replaces the fault configuration) → 204
//! - `GET /fake-admin/requests` → request log

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_gitlab::{FakeGitlab, FakeOptions, TlsMaterial};

#[derive(Parser, Debug)]
#[command(name = "fake-gitlab", about = "A GitLab Runner API stand-in for tests")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// PEM certificate (chain) to serve HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Workhorse long-poll duration for jobs/request; 0 disables long polling.
    #[arg(long, default_value_t = 50)]
    long_poll_secs: u64,
    /// Largest accepted artifact upload, bytes.
    #[arg(long)]
    max_artifact_size: Option<u64>,
    /// Legacy registration token accepted by POST /api/v4/runners.
    #[arg(long, default_value = "GR1348941fake-registration")]
    registration_token: String,
    /// Answer POST /api/v4/runners with 410 Gone.
    #[arg(long)]
    registration_disabled: bool,
    /// Administrator personal access token accepted by POST /api/v4/runners/:id/reset_authentication_token.
    #[arg(long, default_value = "glpat-fake-admin-0123456789")]
    admin_personal_access_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {} is not a loopback address\nhint: use 127.0.0.1:<port> or [::1]:<port>",
        args.listen
    );
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsMaterial {
            cert_pem: std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        }),
        _ => None,
    };
    let opts = FakeOptions {
        tls,
        long_poll: Duration::from_secs(args.long_poll_secs),
        max_artifact_size: args.max_artifact_size,
        registration_token: args.registration_token,
        registration_disabled: args.registration_disabled,
        admin_personal_access_token: args.admin_personal_access_token,
        listen: args.listen,
        ..FakeOptions::default()
    };
    let fake = FakeGitlab::start(opts).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", fake.url())?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    drop(fake);
    Ok(())
}
