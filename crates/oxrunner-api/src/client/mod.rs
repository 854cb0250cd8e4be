//! The HTTP client: construction (base URL, TLS, timeouts) lives here; the endpoints are in the
//! sibling modules, the retry layer in `transport`.

mod artifacts;
mod ca_chain;
mod header_wait;
mod jobs;
mod pool;
pub mod probe;
pub mod retry_signal;
mod router;
mod runners;
mod tls;
mod transport;
mod unreadable;

pub use artifacts::DirectDownload;
pub use router::RouterDiscovery;
pub(crate) use tls::{Presented, Rejected};
pub(crate) use transport::backoff;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::ApiError;
use crate::redact::redact_url;

/// Where and how to reach GitLab. Mirrors the `url` and `tls-*` keys of a `[[runners]]` entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// GitLab URL as in config.toml (`https://gitlab.example.com/`, a legacy `/ci` suffix is accepted).
    pub url: String,
    /// Extra CA bundle (PEM), appended to the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// `<config dir>/certs`: when the files above are unset, `<host>.crt`, `<host>.auth.crt` and
    /// `<host>.auth.key` are picked up from here, as gitlab-runner does.
    pub certs_dir: Option<PathBuf>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &redact_url(&self.url))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("certs_dir", &self.certs_dir)
            .finish()
    }
}

/// PEM client certificate and key in use, for `CI_SERVER_TLS_CERT_FILE`/`CI_SERVER_TLS_KEY_FILE`.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsClientPem {
    /// Certificate (chain) PEM.
    pub cert: String,
    /// Private key PEM (a secret: never log it).
    pub key: String,
}

impl fmt::Debug for TlsClientPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientPem")
            .field("cert", &self.cert)
            .field("key", &crate::redact::MASK)
            .finish()
    }
}

/// Runner API client. Cloning is cheap and clones share the connection pool and the
/// `X-GitLab-Last-Update` value.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// API calls: long-poll friendly read timeout.
    http: pool::AgedClient,
    /// Artifact transfers: same TLS setup, no read timeout.
    transfer: pool::AgedClient,
    /// `connection_max_age`; `None` keeps connections as long as they are reused (until set by the daemon).
    max_age: Mutex<Option<Duration>>,
    /// `<gitlab>/api/v4/`, always with a trailing slash so `join` appends.
    base: url::Url,
    base_str: String,
    ca_chain_pem: Option<String>,
    /// What the verifier accepted last, for the job's chain when no CA file is in use.
    chain_record: Arc<ca_chain::ChainRecord>,
    client_pem: Option<TlsClientPem>,
    user_agent: String,
    last_update: Mutex<String>,
    /// As given, for the job router's TLS settings (`router.rs`).
    config: ClientConfig,
    /// Installed once by the daemon (metrics); requests are not observed without it.
    observer: OnceLock<Arc<dyn crate::RequestObserver>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &redact_url(&self.inner.base_str))
            .field("has_ca_chain", &self.inner.ca_chain_pem.is_some())
            .finish()
    }
}

/// gitlab-runner's transport timeouts (§1.1).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// reqwest has no response-header timeout; a per-read timeout of the same length is the closest
/// match and still lets Workhorse hold a long poll for its 50 s.
const READ_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

impl Client {
    /// Build a client for `cfg.url`. Fails on a non-http(s) URL or unreadable TLS files.
    pub fn new(cfg: ClientConfig) -> Result<Client, ApiError> {
        let base = api_base(&cfg.url)?;
        let host = base
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let files = TlsFiles::resolve(&cfg, &host);

        // No revision here: this crate is built without one, and the runner's revision reaches GitLab in
        // `info.revision`.
        let user_agent = format!(
            "oxrunner {} (rust; {}/{})",
            env!("CARGO_PKG_VERSION"),
            crate::wire::go_os(),
            crate::wire::go_arch()
        );
        let mut trust = None;
        let mut identity = None;
        let mut ca_chain_pem = None;
        let mut client_pem = None;
        if let Some(ca) = &files.ca_file {
            let pem = read_file(ca)?;
            trust = Some(tls::TrustFile::from_pem(ca, &pem)?);
            ca_chain_pem = Some(String::from_utf8_lossy(&pem).into_owned());
        }
        if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
            let cert_pem = read_file(cert)?;
            let key_pem = read_file(key)?;
            identity = Some((
                cert.as_path(),
                tls::Identity::from_pem(cert, &cert_pem, key, &key_pem)?,
            ));
            client_pem = Some(TlsClientPem {
                cert: String::from_utf8_lossy(&cert_pem).into_owned(),
                key: String::from_utf8_lossy(&key_pem).into_owned(),
            });
        }
        // One rustls configuration for both clients, so every request to GitLab (API calls,
        // artifact transfers) verifies the server the same way.
        let (tls_config, chain_record) = tls::client_config_recording(trust.as_ref(), identity, &host)?;
        let agent = user_agent.clone();
        let build = move |read_timeout: Option<Duration>| -> Result<reqwest::Client, ApiError> {
            let mut builder = reqwest::Client::builder()
                .user_agent(agent.clone())
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(TOTAL_TIMEOUT)
                .tcp_keepalive(Duration::from_secs(30))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(100)
                .tls_backend_preconfigured(tls_config.clone())
                // Redirects are handled per endpoint: artifact uploads re-base on 307, downloads
                // must not forward JOB-TOKEN to object storage.
                .redirect(reqwest::redirect::Policy::none());
            if let Some(t) = read_timeout {
                builder = builder.read_timeout(t);
            }
            builder.build().map_err(|e| ApiError::ClientSetup {
                detail: crate::error::chain_text(&e),
            })
        };
        let build = Arc::new(build);
        let make = |read_timeout: Option<Duration>| {
            let build = Arc::clone(&build);
            pool::AgedClient::new(Arc::new(move || build(read_timeout)))
        };
        let http = make(Some(READ_TIMEOUT))?;
        // reqwest's read timeout also runs while the request body is being written, so a long
        // artifact upload would hit it; transfers rely on the overall timeout instead.
        let transfer = make(None)?;
        let base_str = base.to_string();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                transfer,
                max_age: Mutex::new(None),
                base,
                base_str,
                ca_chain_pem,
                chain_record,
                client_pem,
                user_agent,
                last_update: Mutex::new(String::new()),
                config: cfg,
                observer: OnceLock::new(),
            }),
        })
    }

    /// `<gitlab>/api/v4/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_str
    }

    /// Content of the CA file in use (configured or auto-picked), for `CI_SERVER_TLS_CA_FILE`.
    pub fn ca_chain_pem(&self) -> Option<String> {
        self.inner.ca_chain_pem.clone()
    }

    /// The CA chain a job gets as `CI_SERVER_TLS_CA_FILE`, as gitlab-runner builds it: the CA file in use, else
    /// the chain that verified GitLab's certificate on the last handshake (leaf to trusted root), resolved past
    /// a root that is not self-signed when `resolve_full` (`FF_RESOLVE_FULL_TLS_CHAIN` of the runner's
    /// `[runners.feature_flags]`). `None` over plain HTTP, before any handshake, or when resolving failed.
    pub async fn job_ca_chain(&self, resolve_full: bool) -> Option<String> {
        if let Some(pem) = &self.inner.ca_chain_pem {
            return Some(pem.clone());
        }
        if self.inner.base.scheme() != "https" {
            return None;
        }
        self.inner.chain_record.job_chain(resolve_full).await
    }

    /// Client certificate and key in use (configured or auto-picked), if any.
    pub fn tls_client_pem(&self) -> Option<TlsClientPem> {
        self.inner.client_pem.clone()
    }

    /// The `User-Agent` sent with every request.
    pub fn user_agent(&self) -> &str {
        &self.inner.user_agent
    }

    /// gitlab-runner's `connection_max_age` for this client and its clones: a request made once this age has
    /// passed since the connections were opened goes over new ones. `None` (or zero, as upstream) never renews them.
    pub fn set_connection_max_age(&self, age: Option<Duration>) {
        let mut g = self
            .inner
            .max_age
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = age.filter(|a| !a.is_zero());
    }

    fn max_age(&self) -> Option<Duration> {
        *self
            .inner
            .max_age
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The API client for the next request.
    pub(crate) fn http(&self) -> reqwest::Client {
        self.inner.http.get(self.max_age())
    }

    /// The transfer client for the next request.
    pub(crate) fn transfer(&self) -> reqwest::Client {
        self.inner.transfer.get(self.max_age())
    }

    /// The HTTP client artifact transfers use (GitLab's TLS settings, no read timeout, redirects not followed),
    /// for an object-storage URL GitLab handed out ([`DirectDownload::Redirect`]). It sends no credentials of
    /// its own.
    pub fn transfer_http(&self) -> reqwest::Client {
        self.transfer()
    }

    /// Reports every request of this client and its clones to `observer`; the first one installed stays.
    pub fn observe(&self, observer: Arc<dyn crate::RequestObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Last `X-GitLab-Last-Update` seen on any response (empty before the first one).
    pub fn last_update(&self) -> String {
        match self.inner.last_update.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_last_update(&self, value: &str) {
        let mut g = match self.inner.last_update.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        value.clone_into(&mut g);
    }

    fn endpoint(&self, path: &str) -> Result<url::Url, ApiError> {
        self.inner.base.join(path).map_err(|e| ApiError::InvalidUrl {
            url_redacted: redact_url(&format!("{}{path}", self.inner.base_str)),
            reason: e.to_string(),
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|source| ApiError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

/// Strip a trailing `/` and a legacy `/ci`, append `/api/v4/` (gitlab-runner's `fixCIURL`).
fn api_base(raw: &str) -> Result<url::Url, ApiError> {
    let invalid = |reason: String| ApiError::InvalidUrl {
        url_redacted: redact_url(raw),
        reason,
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("the URL is empty".to_string()));
    }
    let mut url = url::Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("only http or https scheme supported".to_string()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".to_string()));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_string();
    if let Some(stripped) = path.strip_suffix("/ci") {
        path = stripped.to_string();
    }
    url.set_path(&format!("{path}/api/v4/"));
    Ok(url)
}

/// TLS files actually used, after the `certs_dir` auto-pick.
struct TlsFiles {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

impl TlsFiles {
    fn resolve(cfg: &ClientConfig, host: &str) -> TlsFiles {
        let pick = |suffix: &str| -> Option<PathBuf> {
            let dir = cfg.certs_dir.as_ref()?;
            let p = dir.join(format!("{host}{suffix}"));
            p.is_file().then_some(p)
        };
        let ca_file = cfg.tls_ca_file.clone().or_else(|| pick(".crt"));
        let (cert_file, key_file) = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
            (None, None) => match (pick(".auth.crt"), pick(".auth.key")) {
                (Some(c), Some(k)) => (Some(c), Some(k)),
                _ => (None, None),
            },
            // One without the other cannot form an identity; gitlab-runner ignores it too.
            _ => (None, None),
        };
        TlsFiles {
            ca_file,
            cert_file,
            key_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalisation() {
        for (input, want) in [
            ("https://gitlab.example.com", "https://gitlab.example.com/api/v4/"),
            (
                "https://gitlab.example.com/",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "https://gitlab.example.com/ci",
                "https://gitlab.example.com/api/v4/",
            ),
            (
                "https://gitlab.example.com/ci/",
                "https://gitlab.example.com/api/v4/",
            ),
            ("http://h:8080/gitlab/", "http://h:8080/gitlab/api/v4/"),
            ("http://h/gitlab/ci", "http://h/gitlab/api/v4/"),
        ] {
            assert_eq!(
                api_base(input).map(|u| u.to_string()).ok().as_deref(),
                Some(want),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        for bad in ["ftp://h/", "unix:///var/run/x", "", "not a url", "https://"] {
            let err = api_base(bad).err();
            assert!(matches!(err, Some(ApiError::InvalidUrl { .. })), "{bad}: {err:?}");
        }
        let err = api_base("ftp://u:secret@h/")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only http or https"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
}
