//! The one error type of the crate.
//!
//! Every variant names what failed and where (a redacted URL or a path). Variants a user can fix
//! end with a `hint:` line, because these messages end up verbatim in `oxrunner register`/`run` output.

use std::error::Error as StdError;
use std::path::PathBuf;

/// Errors returned by [`crate::Client`] and [`crate::trace::TraceSender`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The server's certificate could not be verified (or the TLS handshake failed otherwise).
    #[error("TLS error talking to {url_redacted}: {detail}\nhint: {hint}")]
    Tls {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// What the TLS layer reported, e.g. "certificate signed by unknown authority".
        detail: String,
        /// What to do about it, from what the server presented and which CA file is in use.
        hint: String,
    },
    /// A CA, client certificate or key file could not be used.
    #[error(
        "cannot use TLS file {}: {detail}\nhint: the file must contain PEM data (-----BEGIN CERTIFICATE----- / PRIVATE KEY)", path.display()
    )]
    TlsFile {
        /// The offending file.
        path: PathBuf,
        /// Why it was rejected.
        detail: String,
    },
    /// TCP connection (or DNS resolution) failed.
    #[error(
        "cannot connect to {url_redacted}: {detail}\nhint: check the runner's url and that GitLab is reachable from this host"
    )]
    Connect {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// Underlying error text.
        detail: String,
    },
    /// The request did not complete in time.
    #[error("request to {url_redacted} timed out")]
    Timeout {
        /// Request URL with credentials removed.
        url_redacted: String,
    },
    /// An artifact upload was written in full, but the server sent no response headers in time.
    #[error(
        "{url_redacted} sent no response headers within {limit_s}s after the upload was written\nhint: raise [runners.artifact] response_header_timeout in config.toml if GitLab (or a proxy in front of it) takes this long to store large artifacts"
    )]
    NoResponseHeaders {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// The configured wait, in seconds.
        limit_s: f64,
    },
    /// Any other transport failure (connection reset, malformed response, ...).
    #[error("request to {url_redacted} failed: {detail}")]
    Transport {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// Underlying error text.
        detail: String,
    },
    /// The server answered with a status the endpoint does not expect.
    #[error("{url_redacted} answered {status}: {message}")]
    Status {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// HTTP status code.
        status: u16,
        /// Message extracted from the response body (GitLab's `{"message": ...}`), or the status text.
        message: String,
    },
    /// The server answered, but not with a status meaning success (details are logged where seen).
    #[error("GitLab did not accept the {what} at {url_redacted}")]
    NotAccepted {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// Which request ("final job update", "trace patch").
        what: &'static str,
    },
    /// 401/403: the token was rejected.
    #[error(
        "{url_redacted} answered 403 Forbidden: {message}\nhint: the token is invalid or the runner was removed; check the token in config.toml"
    )]
    Forbidden {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// Server message, if any.
        message: String,
    },
    /// 410 on register: registration tokens are disabled on this GitLab.
    #[error(
        "{url_redacted} answered 410 Gone: {message}\nhint: registration tokens are disabled; create a runner in the GitLab UI (Settings > CI/CD > Runners) and register with --token glrt-..."
    )]
    Gone {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// Server message, if any.
        message: String,
    },
    /// 413 on artifact upload.
    #[error(
        "artifact upload rejected: {size} bytes is larger than the server allows (413)\nhint: raise 'Maximum artifacts size' in GitLab's CI/CD settings or upload fewer files"
    )]
    TooLarge {
        /// Size of the archive that was rejected.
        size: u64,
    },
    /// 404 where a resource must exist (artifact download).
    #[error("not found (404): the job or its artifacts do not exist or have expired")]
    NotFound,
    /// A response body could not be decoded as the expected JSON.
    #[error("cannot decode the response of {url_redacted}: {detail}")]
    Decode {
        /// Request URL with credentials removed.
        url_redacted: String,
        /// serde or content-type detail.
        detail: String,
    },
    /// The configured GitLab URL is unusable.
    #[error(
        "invalid GitLab URL {url_redacted}: {reason}\nhint: use the address of your GitLab instance, e.g. https://gitlab.example.com/"
    )]
    InvalidUrl {
        /// The URL as given, credentials removed.
        url_redacted: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Local file I/O (artifact archive, trace spool, download target).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {detail}")]
    ClientSetup {
        /// Underlying error text.
        detail: String,
    },
}

impl ApiError {
    /// Classify a reqwest error: TLS verification problems are singled out because they have a fix.
    pub(crate) fn from_reqwest(err: &reqwest::Error, url_redacted: String) -> ApiError {
        if let Some((detail, hint)) = tls_detail(err, &url_redacted) {
            return ApiError::Tls {
                url_redacted,
                detail,
                hint,
            };
        }
        if err.is_timeout() {
            return ApiError::Timeout { url_redacted };
        }
        // reqwest's own message only repeats the URL (signed query strings included), which the
        // variant already shows redacted; its sources say what actually went wrong.
        let mut detail = match err.source() {
            Some(src) => chain_text(src),
            None => chain_text(err),
        };
        if let Some(u) = err.url() {
            detail = detail.replace(u.as_str(), &crate::redact::redact_url(u.as_str()));
        }
        if err.is_connect() {
            return ApiError::Connect { url_redacted, detail };
        }
        if err.is_decode() {
            return ApiError::Decode { url_redacted, detail };
        }
        ApiError::Transport { url_redacted, detail }
    }

    /// True for failures worth another try later (network trouble, 5xx); false for rejections.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Connect { .. } | ApiError::Timeout { .. } | ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

/// Join the messages of an error and all its sources, skipping repeats (hyper nests the same text).
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Find a rustls error anywhere in the source chain and describe it like Go's x509 errors do,
/// so users searching for gitlab-runner's message find the same fixes; also say what to do.
fn tls_detail(err: &(dyn StdError + 'static), url: &str) -> Option<(String, String)> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = find_rustls(e) {
            return Some(crate::tls_hint::describe(r, url));
        }
        cur = e.source();
    }
    None
}

/// `io::Error::source()` skips its payload, and hyper/tokio-rustls nest io errors two deep, so
/// payloads are unwrapped by hand.
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = e;
    loop {
        if let Some(r) = cur.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = cur.downcast_ref::<std::io::Error>()?.get_ref()?;
        cur = inner;
    }
}
