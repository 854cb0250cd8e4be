//! The Vault HTTP API as the secret resolvers speak it (HashiCorp Vault and OpenBao share it): `GET`/`POST
//! /v1/<path>`, `X-Vault-Token`, `X-Vault-Namespace`, OpenBao's inline-auth headers, and errors as
//! `{"errors": [...]}` with the status code kept for classification.
//!
//! TLS is verified with the system roots, or only with the CAs of the runner's environment as OpenBao's client
//! reads them (`BAO_CACERT_BYTES`, `BAO_CACERT`, `BAO_CAPATH`, each also as `VAULT_*`); `BAO_CLIENT_CERT` and
//! `BAO_CLIENT_KEY` give a client certificate. `*_TLS_SERVER_NAME` and `*_SKIP_VERIFY` are not honoured (a
//! job-log warning names them). Redirects are followed to the same origin only, where upstream's client follows
//! them anywhere: the token header must not reach another host. Every request is bounded in time and every
//! answer in size: a secrets server is reached with job-supplied URLs.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// Connecting to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request, answer included (gitlab-runner's client sets no limit; a job-chosen server must not hold a
/// job slot for ever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A login or secret answer is a small JSON document; anything larger is refused unread.
const MAX_BODY: usize = 1 << 20;
/// Redirects followed (same origin only: the token header must not travel to another host).
const MAX_REDIRECTS: usize = 5;

/// Why a request failed. `Api` keeps the status so the resolver can tell the job's configuration (4xx) from
/// the server's trouble (5xx).
#[derive(Debug, thiserror::Error)]
pub enum BaoError {
    #[error("api error: status code {status}: {errors}")]
    Api { status: u16, errors: String },
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Setup(String),
}

/// How requests authenticate: a token from a login, or OpenBao's inline authentication on every request.
pub enum Auth {
    None,
    Token(String),
    Inline {
        path: String,
        params: Vec<(String, String)>,
    },
}

/// A client for one server (URL and namespace).
pub struct BaoClient {
    http: reqwest::Client,
    base: Url,
    namespace: String,
    auth: Auth,
}

impl BaoClient {
    /// A client for `url` (the server's address, `https://vault.example.com[:port][/prefix]`).
    pub async fn new(url: &str, namespace: &str) -> Result<BaoClient, BaoError> {
        let mut base = Url::parse(url.trim())
            .map_err(|e| BaoError::Setup(format!("invalid server URL {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(BaoError::Setup(format!(
                "invalid server URL {url:?}: expected http(s)://host[:port]"
            )));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(BaoClient {
            http: http_client(&base).await?,
            base,
            namespace: namespace.trim().to_owned(),
            auth: Auth::None,
        })
    }

    /// Authenticates every later request with `auth`.
    pub fn set_auth(&mut self, auth: Auth) {
        self.auth = auth;
    }

    /// `GET /v1/<path>`: the answer's JSON, or `None` where Vault answers 404 (nothing at that path) or 204.
    pub async fn read(&self, path: &str) -> Result<Option<Value>, BaoError> {
        let req = self.http.get(self.url(path)?);
        let (status, body) = self.send(req).await?;
        if status == StatusCode::NOT_FOUND || status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        parse(&body).map(Some)
    }

    /// `POST /v1/<path>` with a JSON body: the answer's JSON.
    pub async fn write(&self, path: &str, body: &Value) -> Result<Value, BaoError> {
        let req = self.http.post(self.url(path)?).json(body);
        let (status, text) = self.send(req).await?;
        if !status.is_success() {
            return Err(api_error(status, &text));
        }
        parse(&text)
    }

    /// The server address as shown in messages (no userinfo, query or fragment).
    pub fn shown(&self) -> String {
        let mut u = self.base.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    }

    fn url(&self, path: &str) -> Result<Url, BaoError> {
        let mut url = self.base.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| BaoError::Setup("the server URL cannot take a path".into()))?;
            segs.pop_if_empty().push("v1");
            for s in clean_path(path) {
                segs.push(&s);
            }
        }
        Ok(url)
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), BaoError> {
        if !self.namespace.is_empty() {
            req = req.header("X-Vault-Namespace", &self.namespace);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Token(t) => req = req.header("X-Vault-Token", t),
            Auth::Inline { path, params } => {
                req = req.header("X-Vault-Inline-Auth-Path", path);
                for (key, value) in params {
                    let json = serde_json::json!({"key": key, "value": value}).to_string();
                    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
                    req = req.header(format!("X-Vault-Inline-Auth-Parameter-{key}"), encoded);
                }
            }
        }
        let mut resp = req.send().await.map_err(|e| {
            BaoError::Transport(format!(
                "request to {} failed: {}",
                self.shown(),
                crate_error_text(&e.without_url())
            ))
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(BaoError::Transport(format!(
                            "{} answered {status} with more than {MAX_BODY} bytes",
                            self.shown()
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(BaoError::Transport(format!(
                        "reading the answer of {} failed: {}",
                        self.shown(),
                        crate_error_text(&e.without_url())
                    )));
                }
            }
        }
        Ok((status, body))
    }
}

/// The error and its sources on one line (reqwest's top-level text alone hides the cause, e.g. a refused
/// certificate).
fn crate_error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The path's segments with `.`, empty and `..` segments resolved as Go's `path.Join` does, so a path never
/// climbs above `/v1/`.
pub fn clean_path(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    out
}

fn parse(body: &[u8]) -> Result<Value, BaoError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| BaoError::Transport(format!("the answer is not JSON: {e}")))
}

/// Vault's `{"errors": [...]}`, joined. A body that is not that shape is described, never quoted: a server
/// that echoes the request would put part of the JWT in the message, and a cut value escapes masking.
fn api_error(status: StatusCode, body: &[u8]) -> BaoError {
    let errors = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors").and_then(Value::as_array).map(|a| {
                a.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        })
        .unwrap_or_else(|| format!("the answer is not a Vault error document ({} bytes)", body.len()));
    BaoError::Api {
        status: status.as_u16(),
        errors,
    }
}

async fn http_client(base: &Url) -> Result<reqwest::Client, BaoError> {
    let origin = base.origin();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if attempt.url().origin() != origin {
                attempt.error("redirect to another server refused (it would receive the Vault token)")
            } else {
                attempt.follow()
            }
        }));
    let env = |name: &str| std::env::var(name).ok();
    if let Some(certs) = trusted_cas(&env).await? {
        builder = builder.tls_certs_only(certs);
    }
    if let Some(identity) = client_identity(&env).await? {
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| BaoError::Setup(format!("cannot set up the HTTP client: {e}")))
}

/// The runner environment's value of an OpenBao client setting: `BAO_<name>`, else Vault's `VAULT_<name>`;
/// the variable's name comes along for messages.
fn setting(env: &(dyn Fn(&str) -> Option<String> + Sync), name: &str) -> Option<(String, String)> {
    [format!("BAO_{name}"), format!("VAULT_{name}")]
        .into_iter()
        .find_map(|var| env(&var).filter(|v| !v.is_empty()).map(|v| (var, v)))
}

/// The CAs to trust instead of the system roots, as OpenBao's client picks them: PEM in `*_CACERT_BYTES`,
/// else the file `*_CACERT`, else every file in the directory `*_CAPATH`.
async fn trusted_cas(
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Option<Vec<reqwest::Certificate>>, BaoError> {
    let parse = |pem: &[u8], what: &str| {
        reqwest::Certificate::from_pem_bundle(pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| BaoError::Setup(format!("{what} holds no usable PEM certificate")))
    };
    if let Some((var, pem)) = setting(env, "CACERT_BYTES") {
        return parse(pem.as_bytes(), &var).map(Some);
    }
    if let Some((var, file)) = setting(env, "CACERT") {
        let pem = tokio::fs::read(&file)
            .await
            .map_err(|e| BaoError::Setup(format!("reading {var}={file}: {e}")))?;
        return parse(&pem, &format!("{var}={file}")).map(Some);
    }
    let Some((var, dir)) = setting(env, "CAPATH") else {
        return Ok(None);
    };
    let read_err = |e: std::io::Error| BaoError::Setup(format!("reading {var}={dir}: {e}"));
    let mut entries = tokio::fs::read_dir(&dir).await.map_err(read_err)?;
    let mut certs = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(read_err)? {
        if entry.file_type().await.map_err(read_err)?.is_file() {
            let path = entry.path();
            let pem = tokio::fs::read(&path).await.map_err(read_err)?;
            certs.extend(parse(&pem, &format!("{var}: {}", path.display()))?);
        }
    }
    if certs.is_empty() {
        return Err(BaoError::Setup(format!("{var}={dir} holds no certificate file")));
    }
    Ok(Some(certs))
}

/// The client certificate and key for mutual TLS (`*_CLIENT_CERT`, `*_CLIENT_KEY`: PEM files), when both are set.
async fn client_identity(
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Option<reqwest::Identity>, BaoError> {
    let (Some((cert_var, cert)), Some((key_var, key))) =
        (setting(env, "CLIENT_CERT"), setting(env, "CLIENT_KEY"))
    else {
        return Ok(None);
    };
    let mut pem = tokio::fs::read(&cert)
        .await
        .map_err(|e| BaoError::Setup(format!("reading {cert_var}={cert}: {e}")))?;
    pem.push(b'\n');
    pem.extend(
        tokio::fs::read(&key)
            .await
            .map_err(|e| BaoError::Setup(format!("reading {key_var}={key}: {e}")))?,
    );
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|e| {
        BaoError::Setup(format!(
            "{cert_var}={cert} and {key_var}={key} are not a usable PEM certificate and key: {e}"
        ))
    })
}

/// Job-log warnings for the OpenBao client settings of the runner's environment that this client does not
/// honour (gitlab-runner's does): each is named, and what happens instead is said.
pub fn ignored_tls_settings(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((var, _)) = setting(env, "TLS_SERVER_NAME") {
        out.push(format!(
            "{var} is set and ignored: oxrunner checks the server's certificate against the host of its URL"
        ));
    }
    if let Some((var, _)) = setting(env, "SKIP_VERIFY") {
        out.push(format!(
            "{var} is set and ignored: oxrunner always verifies the secrets server's certificate"
        ));
    }
    let one_sided = match (setting(env, "CLIENT_CERT"), setting(env, "CLIENT_KEY")) {
        (Some((var, _)), None) | (None, Some((var, _))) => Some(var),
        _ => None,
    };
    if let Some(var) = one_sided {
        out.push(format!(
            "{var} is set without its pair (CLIENT_CERT and CLIENT_KEY go together) and ignored"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhonoured_tls_settings_are_named() {
        let env = |name: &str| {
            matches!(
                name,
                "BAO_SKIP_VERIFY" | "VAULT_TLS_SERVER_NAME" | "VAULT_CLIENT_KEY"
            )
            .then(|| "x".to_owned())
        };
        let warnings = ignored_tls_settings(&env);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        for var in ["BAO_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_KEY"] {
            assert!(warnings.iter().any(|w| w.starts_with(var)), "{var}: {warnings:?}");
        }
        assert!(ignored_tls_settings(&|_: &str| None).is_empty());
    }

    #[test]
    fn paths_never_climb_above_v1() {
        assert_eq!(clean_path("kv/data/../../x//y/./z"), vec!["x", "y", "z"]);
        assert_eq!(clean_path("../../sys/raw"), vec!["sys", "raw"]);
    }

    #[test]
    fn api_errors_keep_vault_messages() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"errors":["role \"x\" could not be found"]}"#,
        );
        assert_eq!(
            e.to_string(),
            "api error: status code 400: role \"x\" could not be found"
        );
        assert!(matches!(e, BaoError::Api { status: 400, .. }));
        let e = api_error(StatusCode::BAD_GATEWAY, b"jwt=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJw");
        assert_eq!(
            e.to_string(),
            "api error: status code 502: the answer is not a Vault error document (37 bytes)"
        );
    }
}
