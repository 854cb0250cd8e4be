//! `[runners.cache.gcs]`: V4 signed URLs (`GOOG4-RSA-SHA256`) for cache objects, made runner-side with the
//! service account's RSA key, so the job never holds it. `transfer` moves the bytes, as for S3.
//!
//! gitlab-runner's adapter leaves the Go client's signing scheme at its default (V2, `GoogleAccessId`/`Signature`
//! query); GCS accepts both, the object names are the same, so a mixed fleet shares one bucket either way. V4 is
//! what Google documents today and what its published conformance vectors cover (`tests/data/gcs-v4/`).
//!
//! Credentials, for `gcs` and `gcsv2` alike: `CredentialsFile` (a service-account JSON) first, else `AccessID` +
//! `PrivateKey`, else the file `GOOGLE_APPLICATION_CREDENTIALS` names, else the GCE metadata server's account,
//! signing through IAM Credentials' `signBlob` (`gcs_metadata.rs`). Two differences from upstream: its `gcs` never
//! reads `GOOGLE_APPLICATION_CREDENTIALS` (with no key it goes straight to the metadata server), and its `gcsv2`
//! with both `CredentialsFile` and `PrivateKey` set signs with `PrivateKey` (the file only authenticates its
//! client), where this takes `CredentialsFile` first for both.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use oxrunner_config::CacheGcsConfig;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::gcs_metadata::{MetadataSigner, block_on};
use super::s3::Presigned;

/// Google's public universe; `UniverseDomain` replaces it.
const DEFAULT_UNIVERSE: &str = "googleapis.com";
/// V4 signed URLs are refused when valid for longer than a week.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A service-account JSON is a few KiB; anything far larger is not one (and is not read whole).
const CREDENTIALS_FILE_LIMIT: u64 = 1024 * 1024;
/// The content type upstream signs for uploads (its helper sends it with the archive).
const UPLOAD_CONTENT_TYPE: &str = "application/octet-stream";
const ALGORITHM: &str = "GOOG4-RSA-SHA256";
/// How [`GcsStore::describe`] starts: `transfer` and doctor pick GCS advice by it.
pub(crate) const DESCRIBE_PREFIX: &str = "GCS bucket";
/// What a 403 from GCS usually means, for `transfer`'s error (whose store name starts with `GCS `).
pub(crate) const FORBIDDEN_HINT: &str = "\nhint: check the service account's key (CredentialsFile, or AccessID and \
     PrivateKey), that the account may read and write objects in the bucket, and the runner's clock";

/// A service account able to sign: its e-mail and RSA key. `Debug` shows the e-mail only.
pub(crate) struct Signer {
    client_email: String,
    key: RsaKeyPair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// One request to sign. `host` is the URL's authority (`host[:port]`); `path` is already encoded (see
/// [`encode_path`]) and starts with `/`.
pub(crate) struct V4Request<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub query: &'a [(String, String)],
    pub timestamp: OffsetDateTime,
    pub expires_secs: u64,
}

/// RFC 3986 encoding as V4 wants it: everything but the unreserved characters (and `/` in paths) as `%XX`.
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object's path in path style: `/<bucket>/<object>`, slashes kept.
pub(crate) fn encode_path(segments: &[&str]) -> String {
    segments.iter().fold(String::new(), |mut acc, s| {
        acc.push('/');
        acc.push_str(&encode(s, true));
        acc
    })
}

fn hex_digest(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// The signed host header: the host without a port, as Google's client libraries sign it (conformance vectors
/// "Simple GET with non-default hostname", "Simple GET with endpoint on client").
fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

impl Signer {
    /// From a PEM key (`PRIVATE KEY` or `RSA PRIVATE KEY`); `origin` names where it came from in errors.
    pub(crate) fn new(client_email: &str, pem: &str, origin: &str) -> Result<Signer, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            format!(
                "[runners.cache.gcs] the private key from {origin} is not a PEM private key\n\
                 hint: use the service account's key as Google gives it (-----BEGIN PRIVATE KEY----- ...)"
            )
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(format!(
                    "[runners.cache.gcs] the private key from {origin} is not an RSA key\n\
                     hint: GCS signs with the service account's RSA key; create a JSON key for it in IAM"
                ));
            }
        }
        .map_err(|e| {
            format!(
                "[runners.cache.gcs] the private key from {origin} is not a usable RSA key: {e}\n\
                 hint: create a new JSON key for the service account in IAM"
            )
        })?;
        Ok(Signer {
            client_email: client_email.to_owned(),
            key,
        })
    }

    /// The signed URL of `req`, byte for byte as Google's client libraries build it.
    pub(crate) fn sign_url(&self, req: &V4Request<'_>) -> Result<String, String> {
        let unsigned = Unsigned::new(&self.client_email, req)?;
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                unsigned.to_sign.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "the RSA signature of a GCS URL failed".to_owned())?;
        Ok(unsigned.finish(&signature))
    }
}

/// A V4 request ready to be signed by whoever holds the key: the string to sign, and the URL it completes.
pub(crate) struct Unsigned {
    to_sign: String,
    /// `<scheme>://<host><path>?<canonical query>`, to which the signature is appended.
    url: String,
}

impl Unsigned {
    pub(crate) fn new(client_email: &str, req: &V4Request<'_>) -> Result<Unsigned, String> {
        let date_time = req
            .timestamp
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| format!("cannot format the signing time: {e}"))?;
        let date = date_time.get(..8).unwrap_or_default();
        let scope = format!("{date}/auto/storage/goog4_request");

        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| {
                let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (k.trim().to_ascii_lowercase(), value)
            })
            .filter(|(k, _)| k != "host")
            .collect();
        headers.push(("host".to_owned(), host_without_port(req.host).to_owned()));
        headers.sort();
        let signed_headers = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let payload = headers
            .iter()
            .find(|(k, _)| k == "x-goog-content-sha256")
            .map_or("UNSIGNED-PAYLOAD", |(_, v)| v.as_str());

        let mut query: Vec<(String, String)> = [
            ("X-Goog-Algorithm", ALGORITHM.to_owned()),
            ("X-Goog-Credential", format!("{client_email}/{scope}")),
            ("X-Goog-Date", date_time.clone()),
            ("X-Goog-Expires", req.expires_secs.to_string()),
            ("X-Goog-SignedHeaders", signed_headers.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(req.query.iter().cloned())
        .map(|(k, v)| (encode(&k, false), encode(&v, false)))
        .collect();
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!(
            "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}",
            req.method, req.path
        );
        let to_sign = format!(
            "{ALGORITHM}\n{date_time}\n{scope}\n{}",
            hex_digest(canonical.as_bytes())
        );
        Ok(Unsigned {
            to_sign,
            url: format!("{}://{}{}?{canonical_query}", req.scheme, req.host, req.path),
        })
    }

    pub(crate) fn finish(self, signature: &[u8]) -> String {
        format!("{}&X-Goog-Signature={}", self.url, hex::encode(signature))
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// A configured GCS bucket with the account that signs for it.
pub(crate) struct GcsStore {
    bucket: String,
    scheme: String,
    /// `storage.<universe>`, or the test server's address.
    host: String,
    /// `<scheme>://<host>/`, checked to parse.
    base: reqwest::Url,
    signer: Credentials,
    /// Signed into every upload and sent with it.
    upload_headers: Vec<(String, String)>,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.bucket)
            .field("host", &self.host)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// The fields of a service-account JSON this store reads (no `Debug`: it holds the key).
#[derive(serde::Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
}

/// Credential types Google's libraries know, named in errors; any other `type` value is not echoed (a damaged file
/// could hold anything there, the key included).
const KNOWN_TYPES: &[&str] = &[
    "authorized_user",
    "external_account",
    "external_account_authorized_user",
    "impersonated_service_account",
    "gdch_service_account",
];

/// The file's bytes, or why not. Only a regular file no larger than [`CREDENTIALS_FILE_LIMIT`] is read: a FIFO
/// or device would block (or never end) on the thread that asks, and a truncated read would be reported as
/// broken JSON.
fn read_bounded(path: &str, place: &str) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| {
        format!(
            "[runners.cache.gcs] cannot read {place}: {e}\n\
             hint: point it at the service account's JSON key file, readable by the runner"
        )
    };
    let not_regular = || {
        format!(
            "[runners.cache.gcs] {place} is not a regular file\n\
             hint: point it at the service account's JSON key file itself, not a pipe or device"
        )
    };
    let too_large = || {
        format!(
            "[runners.cache.gcs] {place} is larger than {} KiB, the most a service-account JSON key is read up to\n\
             hint: point it at the service account's JSON key file (a few KiB)",
            CREDENTIALS_FILE_LIMIT / 1024
        )
    };
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(not_regular());
    }
    // Non-blocking open: should the path turn into a FIFO after the check, opening it still returns at once.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > CREDENTIALS_FILE_LIMIT {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(CREDENTIALS_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > CREDENTIALS_FILE_LIMIT {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "[runners.cache.gcs] {place} is not UTF-8 text, so not a service-account JSON file\n\
             hint: download a JSON key for the service account in IAM"
        )
    })
}

/// What is wrong with the JSON, by category and position only: serde_json's own message quotes values it did not
/// expect (`invalid type: string "..."`), which would put the file's content, the key perhaps, into logs.
fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "it cannot be read",
        serde_json::error::Category::Syntax => "it is not valid JSON",
        serde_json::error::Category::Data => "a field has the wrong type or the top level is not an object",
        serde_json::error::Category::Eof => "it ends early",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

fn read_credentials_file(path: &str, origin: &str) -> Result<Signer, String> {
    let place = format!("{origin} {path:?}");
    let text = read_bounded(path, &place)?;
    let file: CredentialsFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "[runners.cache.gcs] {place} is not a service-account JSON file: {}\n\
             hint: download a JSON key for the service account in IAM",
            json_problem(&e)
        )
    })?;
    if file.kind != "service_account" {
        let kind = if KNOWN_TYPES.contains(&file.kind.as_str()) {
            format!("credentials of type \"{}\"", file.kind)
        } else if file.kind.is_empty() {
            "credentials without a \"type\"".to_owned()
        } else {
            "credentials of an unknown type".to_owned()
        };
        return Err(format!(
            "[runners.cache.gcs] {place} holds {kind}, not \"service_account\"\n\
             hint: URLs are signed with a service account's key; user and external-account credentials cannot sign"
        ));
    }
    if file.client_email.trim().is_empty() || file.private_key.trim().is_empty() {
        return Err(format!(
            "[runners.cache.gcs] {place} has no client_email or no private_key\n\
             hint: download a complete JSON key for the service account in IAM"
        ));
    }
    Signer::new(file.client_email.trim(), &file.private_key, &place)
}

/// Who signs the URLs: a key the runner holds, or the metadata server's account through `signBlob`.
#[derive(Debug)]
pub(crate) enum Credentials {
    Key(Signer),
    /// Boxed: URLs, caches and locks, much larger than a key.
    Metadata(Box<MetadataSigner>),
}

/// What the process environment says about credentials: `GOOGLE_APPLICATION_CREDENTIALS` and
/// `GCE_METADATA_HOST`, passed in so tests never depend on (or change) the real environment.
#[derive(Default)]
pub(crate) struct GoogleEnv {
    pub adc: Option<String>,
    pub metadata_host: Option<String>,
}

impl GoogleEnv {
    fn from_process() -> GoogleEnv {
        GoogleEnv {
            adc: std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok(),
            metadata_host: std::env::var("GCE_METADATA_HOST").ok(),
        }
    }
}

/// `CredentialsFile`, then `AccessID` + `PrivateKey`, then the file `GOOGLE_APPLICATION_CREDENTIALS` names, else
/// the metadata server; where this differs from upstream is in the module docs.
fn signer(cfg: &CacheGcsConfig, env: &GoogleEnv, universe: &str) -> Result<Credentials, String> {
    if let Some(path) = non_empty(cfg.credentials_file.as_deref()) {
        return read_credentials_file(path, "CredentialsFile").map(Credentials::Key);
    }
    let access_id = non_empty(cfg.access_id.as_deref());
    let private_key = cfg
        .private_key
        .as_ref()
        .map(|s| s.expose())
        .filter(|k| !k.trim().is_empty());
    match (access_id, private_key) {
        (Some(id), Some(key)) => Signer::new(id, key, "PrivateKey").map(Credentials::Key),
        (Some(_), None) | (None, Some(_)) => Err(
            "[runners.cache.gcs] AccessID and PrivateKey must be set together\n\
             hint: set both (the service account's e-mail and its PEM key), or CredentialsFile instead"
                .to_owned(),
        ),
        (None, None) => match non_empty(env.adc.as_deref()) {
            Some(path) => read_credentials_file(path, "GOOGLE_APPLICATION_CREDENTIALS").map(Credentials::Key),
            None => MetadataSigner::new(env.metadata_host.as_deref(), universe)
                .map(|m| Credentials::Metadata(Box::new(m))),
        },
    }
}

impl GcsStore {
    /// `max_upload` is `MaxUploadedArchiveSize`: GCS itself refuses a larger upload, as upstream asks it to.
    pub(crate) fn from_config(cfg: &CacheGcsConfig, max_upload: Option<u64>) -> Result<GcsStore, String> {
        GcsStore::with_env(cfg, max_upload, &GoogleEnv::from_process())
    }

    pub(crate) fn with_env(
        cfg: &CacheGcsConfig,
        max_upload: Option<u64>,
        env: &GoogleEnv,
    ) -> Result<GcsStore, String> {
        let Some(bucket) = non_empty(cfg.bucket_name.as_deref()) else {
            return Err(
                "[runners.cache.gcs] BucketName is missing\nhint: name the bucket caches go to".to_owned(),
            );
        };
        let universe = non_empty(cfg.universe_domain.as_deref()).unwrap_or(DEFAULT_UNIVERSE);
        let host = format!("storage.{universe}");
        let base = reqwest::Url::parse(&format!("https://{host}/"))
            .ok()
            .filter(|_| !host.contains(['/', '@', '?', '#', ':']));
        let Some((base, host)) = base.and_then(|b| b.host_str().map(str::to_owned).map(|h| (b, h))) else {
            return Err(format!(
                "[runners.cache.gcs] UniverseDomain = {universe:?} is not a domain name\n\
                 hint: leave it unset for Google Cloud, or write the universe's domain, e.g. \"googleapis.com\""
            ));
        };
        // The host as the URL carries it (lowercased, IDNA-encoded) is what the HTTP client sends and GCS
        // checks the signature against; signing the configured spelling gets a 403 for "Example.COM".
        let mut upload_headers = vec![("Content-Type".to_owned(), UPLOAD_CONTENT_TYPE.to_owned())];
        if let Some(limit) = max_upload {
            upload_headers.push(("X-Goog-Content-Length-Range".to_owned(), format!("0,{limit}")));
        }
        Ok(GcsStore {
            bucket: bucket.to_owned(),
            scheme: "https".to_owned(),
            host,
            base,
            signer: signer(cfg, env, universe)?,
            upload_headers,
        })
    }

    /// Points the store at a local test server (`http://127.0.0.1:port`): GCS has no endpoint setting upstream.
    #[cfg(test)]
    pub(crate) fn with_endpoint(mut self, addr: std::net::SocketAddr) -> GcsStore {
        self.scheme = "http".to_owned();
        self.host = addr.to_string();
        if let Ok(base) = reqwest::Url::parse(&format!("http://{addr}/")) {
            self.base = base;
        }
        self
    }

    /// Test-only: a store signing through the metadata server asks IAM Credentials at `base`.
    #[cfg(test)]
    pub(crate) fn with_iam_base(mut self, base: reqwest::Url) -> GcsStore {
        if let Credentials::Metadata(m) = self.signer {
            self.signer = Credentials::Metadata(Box::new(m.with_iam_base(base)));
        }
        self
    }

    /// `GCS bucket "<name>" at https://storage.googleapis.com`, for messages; `transfer` picks its 403 hint by the
    /// `GCS ` prefix.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{DESCRIBE_PREFIX} {:?} at {}://{}",
            self.bucket, self.scheme, self.host
        )
    }

    fn request<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        expires: Duration,
        headers: &'a [(String, String)],
    ) -> V4Request<'a> {
        V4Request {
            method,
            scheme: &self.scheme,
            host: &self.host,
            path,
            headers,
            query: &[],
            timestamp: OffsetDateTime::now_utc(),
            expires_secs: expires.min(MAX_EXPIRY).as_secs().max(1),
        }
    }

    /// The signed URL, signing through the metadata server where there is no key: for runner-side transfers.
    async fn sign(
        &self,
        method: &str,
        object: &str,
        expires: Duration,
        headers: &[(String, String)],
    ) -> Result<Presigned, String> {
        let path = encode_path(&[&self.bucket, object]);
        let req = self.request(method, &path, expires, headers);
        let url = match &self.signer {
            Credentials::Key(k) => k.sign_url(&req),
            Credentials::Metadata(m) => sign_through_metadata(m, &req).await,
        }?;
        parsed(url, headers)
    }

    /// [`Self::sign`] from synchronous code (URLs put into a stage script while it is rendered). A failure is
    /// logged and gives the unsigned URL: GCS refuses it, and the job-side helper's error names the bucket.
    fn presign(
        &self,
        method: &str,
        object: &str,
        expires: Duration,
        headers: &[(String, String)],
    ) -> Presigned {
        let path = encode_path(&[&self.bucket, object]);
        let req = self.request(method, &path, expires, headers);
        let signed = match &self.signer {
            Credentials::Key(k) => k.sign_url(&req),
            Credentials::Metadata(m) => block_on(sign_through_metadata(m, &req)),
        };
        signed.and_then(|url| parsed(url, headers)).unwrap_or_else(|e| {
            tracing::error!("GCS cache: {e}");
            let mut unsigned = self.base.clone();
            unsigned.set_path(&path);
            Presigned {
                url: unsigned,
                headers: headers.to_vec(),
            }
        })
    }

    pub(crate) fn presign_get(&self, object: &str, expires: Duration) -> Presigned {
        self.presign("GET", object, expires, &[])
    }

    pub(crate) fn presign_head(&self, object: &str, expires: Duration) -> Presigned {
        self.presign("HEAD", object, expires, &[])
    }

    pub(crate) fn presign_put(&self, object: &str, expires: Duration) -> Presigned {
        self.presign("PUT", object, expires, &self.upload_headers)
    }

    pub(crate) async fn signed_get(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        self.sign("GET", object, expires, &[]).await
    }

    pub(crate) async fn signed_head(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        self.sign("HEAD", object, expires, &[]).await
    }

    pub(crate) async fn signed_put(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        self.sign("PUT", object, expires, &self.upload_headers).await
    }
}

fn parsed(url: String, headers: &[(String, String)]) -> Result<Presigned, String> {
    let url = reqwest::Url::parse(&url).map_err(|e| format!("the signed URL does not parse: {e}"))?;
    Ok(Presigned {
        url,
        headers: headers.to_vec(),
    })
}

/// V4 through `signBlob`: the account's e-mail is part of what is signed, so it is learnt first.
async fn sign_through_metadata(m: &MetadataSigner, req: &V4Request<'_>) -> Result<String, String> {
    let email = m.email().await?;
    let unsigned = Unsigned::new(&email, req)?;
    let signature = m.sign_blob(&email, unsigned.to_sign.as_bytes()).await?;
    Ok(unsigned.finish(&signature))
}

#[cfg(test)]
#[path = "gcs_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "gcs_server_tests.rs"]
mod server_tests;

#[cfg(test)]
#[path = "gcs_metadata_tests.rs"]
mod metadata_tests;
