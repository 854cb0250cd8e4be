//! Connecting to the Docker engine: `[runners.docker] host`, `DOCKER_HOST`, TLS, version negotiation.

use std::path::PathBuf;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};
use oxrunner_config::DockerConfig;

use crate::error::DockerError;

/// The engine address used when neither the config nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Request timeout of the client. Attach streams of long jobs ride on it, so it is generous; the reachability
/// check has its own short bound.
const CLIENT_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to reach the engine, resolved from the config and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address (`unix:///path`, `tcp://host:port`).
    pub host: String,
    /// Verify the daemon with TLS client certificates.
    pub tls_verify: bool,
    /// Directory with `ca.pem`, `cert.pem`, `key.pem`.
    pub cert_path: Option<PathBuf>,
}

impl Endpoint {
    /// Resolves the endpoint: config keys first, then `DOCKER_HOST` / `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH`.
    pub fn resolve(cfg: &DockerConfig) -> Self {
        Self::resolve_with(cfg, |k| std::env::var(k).ok())
    }

    /// Like [`Endpoint::resolve`] with an explicit environment lookup (tests).
    pub fn resolve_with(cfg: &DockerConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let host = non_empty(cfg.host.clone())
            .or_else(|| non_empty(env("DOCKER_HOST")))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let tls_verify = cfg
            .tls_verify
            .unwrap_or_else(|| non_empty(env("DOCKER_TLS_VERIFY")).is_some_and(|v| v != "0"));
        let cert_path = non_empty(cfg.tls_cert_path.clone())
            .or_else(|| non_empty(env("DOCKER_CERT_PATH")))
            .map(PathBuf::from);
        Self {
            host,
            tls_verify,
            cert_path,
        }
    }

    fn client(&self) -> Result<Docker, DockerError> {
        let host = self.host.as_str();
        let client_err = |source| DockerError::Client {
            host: host.to_owned(),
            source,
        };
        if let Some(path) = host
            .strip_prefix("unix://")
            .or_else(|| host.starts_with('/').then_some(host))
        {
            if !std::path::Path::new(path).exists() {
                return Err(DockerError::Unreachable {
                    host: host.to_owned(),
                    detail: format!("socket {path} does not exist"),
                });
            }
            return Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
                .map_err(client_err);
        }
        let addr = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .or_else(|| host.strip_prefix("https://"))
            .ok_or_else(|| DockerError::Config {
                key: "host",
                value: host.to_owned(),
                detail: "unsupported scheme".to_owned(),
                hint: "use unix:///path/to/docker.sock or tcp://host:port",
            })?;
        if self.tls_verify || host.starts_with("https://") {
            let dir = self.cert_path.clone().ok_or_else(|| DockerError::Config {
                key: "tls_cert_path",
                value: String::new(),
                detail: "TLS is enabled but no certificate directory is set".to_owned(),
                hint: "set [runners.docker] tls_cert_path (or DOCKER_CERT_PATH) to a directory with ca.pem, cert.pem and key.pem",
            })?;
            for file in ["ca.pem", "cert.pem", "key.pem"] {
                if !dir.join(file).is_file() {
                    return Err(DockerError::Config {
                        key: "tls_cert_path",
                        value: dir.display().to_string(),
                        detail: format!("{file} is missing"),
                        hint: "the directory must contain ca.pem, cert.pem and key.pem",
                    });
                }
            }
            // bollard builds its TLS config from the process-wide provider; make sure one is set (an error only
            // means another part of the process installed one first).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let url = format!("https://{addr}");
            return Docker::connect_with_ssl(
                &url,
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                CLIENT_TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            )
            .map_err(client_err);
        }
        Docker::connect_with_http(
            &format!("http://{addr}"),
            CLIENT_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
        .map_err(client_err)
    }

    /// Connects, negotiates the API version and checks the engine answers.
    pub async fn connect(&self) -> Result<Docker, DockerError> {
        let unreachable = |detail: String| DockerError::Unreachable {
            host: self.host.clone(),
            detail,
        };
        let docker = self.client()?;
        // bollard 0.21 sends unversioned paths unless the version is negotiated (see crates.md §4).
        let docker = tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(PING_TIMEOUT, docker.ping())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(docker)
    }
}

/// Connects to the engine the config names (see [`Endpoint::resolve`]).
pub async fn connect(cfg: &DockerConfig) -> Result<Docker, DockerError> {
    Endpoint::resolve(cfg).connect().await
}
