//! The HTTPS listener: `/session/<id>/exec` and nothing else, checked in gitlab-runner's order (unknown session
//! 404, wrong `Authorization` 401, not a WebSocket upgrade 405, no terminal yet 503, terminal in use 423).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::SessionError;
use crate::cert::{self, CertPair};
use crate::frames::{Framing, SUBPROTOCOLS};
use crate::proxy;
use crate::session::{AttachError, JobSession, Registry};

/// How long a client that came before the job environment exists waits for it (gitlab-runner: one minute).
const TERMINAL_WAIT: Duration = Duration::from_secs(60);
/// The largest WebSocket message (and frame) a client may send. Keystrokes are small but a browser sends a paste as
/// one message; Workhorse's side (gorilla) sets no limit, so this only bounds what one message may buffer.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// `[session_server]`, resolved.
#[derive(Clone, Debug)]
pub struct SessionServerSettings {
    /// `listen_address` (`host:port`; `:port` listens on every address).
    pub listen_address: String,
    /// `advertise_address` (`host:port`), the address GitLab connects to; `listen_address` when unset.
    pub advertise_address: Option<String>,
    /// `session_timeout`: how long a terminal may keep the job open after its scripts (the driver's wait).
    pub session_timeout: Duration,
    /// Where the certificate and key are kept (the directory of config.toml).
    pub cert_dir: PathBuf,
}

/// A running session server.
pub struct SessionServer {
    registry: Arc<Registry>,
    base_url: String,
    cert: CertPair,
    timeout: Duration,
    local_addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: JoinHandle<()>,
}

impl SessionServer {
    /// Binds `listen_address` and serves until dropped.
    pub async fn start(settings: SessionServerSettings) -> Result<SessionServer, SessionError> {
        let advertise = settings
            .advertise_address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        let public = advertise.unwrap_or_else(|| settings.listen_address.trim());
        let host = certificate_host(advertise, settings.listen_address.trim())?;
        let cert = cert::load_or_create(&settings.cert_dir, &host)?;
        let listener = bind(settings.listen_address.trim())?;
        let local_addr = listener.local_addr().map_err(|source| SessionError::Bind {
            addr: settings.listen_address.clone(),
            source,
        })?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert_pem.clone().into_bytes(),
            cert.key_pem.clone().into_bytes(),
        )
        .await
        .map_err(|source| SessionError::Tls {
            dir: settings.cert_dir.clone(),
            source,
        })?;
        let registry = Arc::new(Registry::default());
        let app = Router::new()
            .route("/session/{id}/exec", any(exec))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(Arc::clone(&registry));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .map_err(|source| SessionError::Bind {
                addr: settings.listen_address.clone(),
                source,
            })?
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = server.serve(app.into_make_service()).await {
                warn!(error = %err, "the session server stopped");
            }
        });
        Ok(SessionServer {
            registry,
            base_url: format!("https://{public}"),
            cert,
            timeout: settings.session_timeout,
            local_addr,
            handle,
            task,
        })
    }

    /// A new session for the next job request.
    pub fn create_session(&self) -> JobSession {
        JobSession::create(&self.registry, &self.base_url, &self.cert.cert_pem, self.timeout)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificate GitLab receives.
    pub fn certificate_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    /// Sessions currently registered.
    pub fn sessions(&self) -> usize {
        self.registry.len()
    }
}

impl Drop for SessionServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

impl std::fmt::Debug for SessionServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionServer")
            .field("base_url", &self.base_url)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// The certificate's host, as gitlab-runner picks it: `advertise_address`'s host, or, when that has no port or no
/// host (warned), `listen_address`'s. A host GitLab cannot connect to (every address) gets a warning.
fn certificate_host(advertise: Option<&str>, listen: &str) -> Result<String, SessionError> {
    let host = match advertise {
        Some(a) => match public_host("advertise_address", a) {
            Ok(h) => h,
            Err(_) if !a.starts_with("http://") && !a.starts_with("https://") => {
                warn!(
                    "[session_server] advertise_address = {a:?} is not host:port: the certificate names \
                     listen_address's host and GitLab connects to https://{a}\nhint: write advertise_address as \
                     host:port"
                );
                public_host("listen_address", listen)?
            }
            Err(err) => return Err(err),
        },
        None => public_host("listen_address", listen)?,
    };
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        let key = if advertise.is_some() {
            "advertise_address"
        } else {
            "listen_address"
        };
        warn!(
            "the session server is advertised as {host}, every address: GitLab cannot connect to it\nhint: set \
             [session_server] advertise_address = \"<host GitLab reaches>:<port>\" (now taken from {key})"
        );
    }
    Ok(host)
}

/// The host of `host:port` (gitlab-runner: the certificate's name); a URL or an address without a host is refused.
fn public_host(key: &'static str, addr: &str) -> Result<String, SessionError> {
    let bad = |reason: &str, hint: &'static str| SessionError::Address {
        key,
        value: addr.to_owned(),
        reason: reason.to_owned(),
        hint,
    };
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Err(bad(
            "must be host:port, not a URL",
            "remove the scheme: the session URL is always https",
        ));
    }
    let host = match addr.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").map(|(h, _)| h),
        None => addr.rsplit_once(':').map(|(h, _)| h),
    };
    match host {
        Some(h) if !h.is_empty() && !h.contains(['/', ' ', '@']) => Ok(h.to_owned()),
        _ => Err(bad(
            "no host name or address that GitLab could connect to",
            "set advertise_address = \"<host GitLab reaches>:<port>\"",
        )),
    }
}

/// Listens on `addr`; `:port` (Go's "every address") is `[::]:port`, or `0.0.0.0:port` without IPv6.
fn bind(addr: &str) -> Result<std::net::TcpListener, SessionError> {
    let bind_err = |source| SessionError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = match addr.strip_prefix(':') {
        Some(port) => std::net::TcpListener::bind(format!("[::]:{port}"))
            .or_else(|_| std::net::TcpListener::bind(format!("0.0.0.0:{port}")))
            .map_err(bind_err)?,
        None => std::net::TcpListener::bind(addr).map_err(bind_err)?,
    };
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

async fn exec(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(state) = registry.get(&id).filter(|s| !s.is_closed()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !state.authorized(headers.get(header::AUTHORIZATION).map(|h| h.as_bytes())) {
        debug!("web terminal request with a wrong Authorization header");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(upgrade) = upgrade else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let Some(terminal) = state.wait_terminal(TERMINAL_WAIT).await else {
        return if state.is_closed() {
            StatusCode::NOT_FOUND.into_response()
        } else {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        };
    };
    let attachment = match state.attach() {
        Ok(a) => a,
        Err(AttachError::Locked) => return StatusCode::LOCKED.into_response(),
        Err(AttachError::Closed) => return StatusCode::NOT_FOUND.into_response(),
    };
    let upgrade = upgrade
        .protocols(SUBPROTOCOLS)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE);
    let framing = Framing::for_protocol(upgrade.selected_protocol().and_then(|p| p.to_str().ok()));
    upgrade.on_upgrade(move |socket| proxy::serve(socket, framing, terminal, attachment))
}
