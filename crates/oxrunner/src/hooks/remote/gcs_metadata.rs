//! GCS signing without a key file, as upstream's `gcs` does on a GCE instance (and `gcsv2` through Google's
//! default credentials, GKE Workload Identity included): the metadata server names the instance's service
//! account and hands out an access token, and IAM Credentials' `signBlob` signs the V4 string-to-sign with the
//! account's Google-held key. The account needs `iam.serviceAccounts.signBlob` on itself
//! (`roles/iam.serviceAccountTokenCreator`).
//!
//! The metadata host is `GCE_METADATA_HOST` when set (as Google's client libraries honour it), else
//! `169.254.169.254`. The e-mail is asked once; the token is kept until five minutes before it expires.

use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

/// How long one metadata or `signBlob` request may take: a job waits for it.
const TIMEOUT: Duration = Duration::from_secs(15);
/// A token is renewed this long before the metadata server says it expires, so no URL is signed with a token
/// that runs out during the `signBlob` call.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Answers here are a few hundred bytes; a larger one is not the metadata server's.
const BODY_LIMIT: usize = 64 * 1024;
const ACCOUNT: &str = "computeMetadata/v1/instance/service-accounts/default";

const HINT: &str = "hint: set CredentialsFile to the service account's JSON key file, or run the runner on a GCE/GKE \
     instance whose service account may sign for itself (roles/iam.serviceAccountTokenCreator)";

struct Token {
    value: String,
    renew_at: Instant,
}

/// Signs through the metadata server's service account. `Debug` shows the hosts only; the token never.
pub(crate) struct MetadataSigner {
    /// `http://<GCE_METADATA_HOST or 169.254.169.254>/`.
    metadata: reqwest::Url,
    /// `https://iamcredentials.<universe>/`; a test points it at a stand-in.
    iam: reqwest::Url,
    email: OnceLock<String>,
    token: Mutex<Option<Token>>,
}

impl fmt::Debug for MetadataSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataSigner")
            .field("metadata", &self.metadata.as_str())
            .field("iam", &self.iam.as_str())
            .field("email", &self.email.get())
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, cause: &str) -> String {
    format!(
        "[runners.cache.gcs] no credentials are set, and signing through the GCE metadata server failed: {what}: \
         {cause}\n{HINT}"
    )
}

/// The innermost cause of a request error; the URLs here carry no secret, but the cause says more.
fn cause(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

async fn body(resp: reqwest::Response, what: &str) -> Result<Vec<u8>, String> {
    let status = resp.status();
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed(what, &cause(&e)))? {
        out.extend_from_slice(&chunk);
        if out.len() > BODY_LIMIT {
            return Err(failed(what, "the answer is too large"));
        }
    }
    if !status.is_success() {
        // Google's error bodies are JSON messages without secrets; one line of it is enough.
        let text = String::from_utf8_lossy(&out);
        let line = text
            .lines()
            .find(|l| l.contains("\"message\""))
            .unwrap_or_default();
        return Err(failed(what, &format!("HTTP {status} {}", line.trim())));
    }
    Ok(out)
}

impl MetadataSigner {
    /// `metadata_host` is `GCE_METADATA_HOST` (a host or `host:port`); `universe` the bucket's universe domain.
    pub(crate) fn new(metadata_host: Option<&str>, universe: &str) -> Result<MetadataSigner, String> {
        let host = metadata_host
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("169.254.169.254");
        let metadata = reqwest::Url::parse(&format!("http://{host}/"))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none())
            .ok_or_else(|| {
                format!(
                    "[runners.cache.gcs] GCE_METADATA_HOST = {host:?} is not a host name\n\
                     hint: unset it, or write host[:port] of the metadata server"
                )
            })?;
        let iam = reqwest::Url::parse(&format!("https://iamcredentials.{universe}/"))
            .map_err(|e| format!("[runners.cache.gcs] UniverseDomain {universe:?}: {e}"))?;
        Ok(MetadataSigner {
            metadata,
            iam,
            email: OnceLock::new(),
            token: Mutex::new(None),
        })
    }

    /// Test-only knob: IAM Credentials at a stand-in (`http://127.0.0.1:port/`) instead of Google's.
    #[cfg(test)]
    pub(crate) fn with_iam_base(mut self, base: reqwest::Url) -> MetadataSigner {
        self.iam = base;
        self
    }

    /// `direct` for the metadata server: it is link-local, and a proxy would see the token it hands out.
    fn client(direct: bool) -> Result<reqwest::Client, String> {
        let builder = reqwest::Client::builder()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT);
        if direct { builder.no_proxy() } else { builder }
            .build()
            .map_err(|e| failed("cannot set up an HTTP client", &e.to_string()))
    }

    async fn metadata_get(&self, http: &reqwest::Client, path: &str) -> Result<Vec<u8>, String> {
        let url = self
            .metadata
            .join(path)
            .map_err(|e| failed("metadata URL", &e.to_string()))?;
        let what = format!("asking {}", url.as_str());
        let resp = http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| failed(&what, &cause(&e)))?;
        body(resp, &what).await
    }

    /// The service account's e-mail (the `X-Goog-Credential` of every URL).
    pub(crate) async fn email(&self) -> Result<String, String> {
        if let Some(e) = self.email.get() {
            return Ok(e.clone());
        }
        let raw = self
            .metadata_get(&Self::client(true)?, &format!("{ACCOUNT}/email"))
            .await?;
        let email = String::from_utf8_lossy(&raw).trim().to_owned();
        if email.is_empty() || email.contains(['/', '?', '#', ' ']) {
            return Err(failed("the service account's e-mail", "not an e-mail address"));
        }
        Ok(self.email.get_or_init(|| email).clone())
    }

    async fn token(&self) -> Result<String, String> {
        if let Ok(guard) = self.token.lock()
            && let Some(t) = guard.as_ref().filter(|t| Instant::now() < t.renew_at)
        {
            return Ok(t.value.clone());
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let raw = self
            .metadata_get(&Self::client(true)?, &format!("{ACCOUNT}/token"))
            .await?;
        let answer: Answer = serde_json::from_slice(&raw)
            .map_err(|_| failed("the access token", "the answer is not a token response"))?;
        let life = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_MARGIN);
        if let Ok(mut guard) = self.token.lock() {
            *guard = Some(Token {
                value: answer.access_token.clone(),
                renew_at: Instant::now() + life,
            });
        }
        Ok(answer.access_token)
    }

    /// The RSA-SHA256 signature of `to_sign` by `email`'s Google-held key.
    pub(crate) async fn sign_blob(&self, email: &str, to_sign: &[u8]) -> Result<Vec<u8>, String> {
        let token = self.token().await?;
        let http = Self::client(false)?;
        let url = self
            .iam
            .join(&format!("v1/projects/-/serviceAccounts/{email}:signBlob"))
            .map_err(|e| failed("signBlob URL", &e.to_string()))?;
        let what = format!("signBlob at {}", url.origin().ascii_serialization());
        let b64 = base64::engine::general_purpose::STANDARD;
        let resp = http
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({ "payload": b64.encode(to_sign) }))
            .send()
            .await
            .map_err(|e| failed(&what, &cause(&e)))?;
        let raw = body(resp, &what).await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            signed_blob: String,
        }
        let answer: Answer =
            serde_json::from_slice(&raw).map_err(|_| failed(&what, "the answer has no signedBlob"))?;
        b64.decode(answer.signed_blob.trim())
            .map_err(|_| failed(&what, "signedBlob is not base64"))
    }
}

/// Runs `fut` to completion from synchronous code (a stage script being rendered): on a thread of its own with
/// its own runtime, so it never waits on the caller's runtime, and under `block_in_place` on a multi-threaded one
/// so the caller's other tasks move to other workers meanwhile.
pub(crate) fn block_on<T: Send>(
    fut: impl std::future::Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    let run = || {
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime to sign a GCS URL: {e}"))?
                    .block_on(fut)
            })
            .join()
            .unwrap_or_else(|_| Err("signing a GCS URL panicked".to_owned()))
        })
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}
