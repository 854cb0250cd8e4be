//! `[runners.cache.s3]`: SigV4 pre-signed GET/PUT URLs for cache objects, made runner-side with `rusty-s3`
//! (sans-IO: it only signs, `transfer` moves the bytes). gitlab-runner moves its caches through such URLs too, so
//! the job (or its container) never holds the store's credentials.

use std::fmt;
use std::time::Duration;

use oxrunner_config::CacheS3Config;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

mod multipart;

/// gitlab-runner's default endpoint when `ServerAddress` is empty.
const AWS_SERVER: &str = "s3.amazonaws.com";
/// How long a job may wait for the bucket's region (it runs before the job's log starts, and cannot be
/// cancelled); without an answer the default region is signed.
const REGION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Regions found by probes in this process, by the probed bucket URL.
static REGIONS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::OnceLock::new();

fn known_region(probe: &str) -> Option<String> {
    let map = REGIONS.get()?.lock().ok()?;
    map.get(probe).cloned()
}

fn remember_region(probe: &str, region: &str) {
    let map = REGIONS.get_or_init(Default::default);
    if let Ok(mut map) = map.lock() {
        map.insert(probe.to_owned(), region.to_owned());
    }
}

/// The region SigV4 signs with when `BucketLocation` is empty (what S3-compatible stores accept by default).
const DEFAULT_REGION: &str = "us-east-1";
/// S3 refuses pre-signed URLs valid for longer than a week.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A signed request: the URL (its query is the signature: a secret in logs) and the headers that were signed
/// with it and must be sent unchanged.
pub(crate) struct Presigned {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for Presigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presigned")
            .field("url", &super::transfer::clean_url(self.url.as_str()))
            .field("headers", &self.headers)
            .finish()
    }
}

/// A configured S3 bucket with its credentials. `Debug` shows neither the secret key nor the session token.
pub(crate) struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    /// `x-amz-server-side-encryption*` headers every upload signs and sends.
    sse_headers: Vec<(String, String)>,
    /// `scheme://host[:port]`, for messages.
    endpoint: String,
    /// With no `BucketLocation` on AWS: the bucket's URL, asked (unsigned) for the region it lives in.
    region_probe: Option<reqwest::Url>,
    /// `ServerAddress` as a URL and the style derived from it, to sign for another region.
    base: reqwest::Url,
    style: UrlStyle,
    /// The bucket signed for the region the probe found, once per runner.
    regional: std::sync::OnceLock<Bucket>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .field("region", &self.bucket.region())
            .field("access_key", &self.credentials.key())
            .finish_non_exhaustive()
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// Where the credentials come from: upstream picks IAM when `AuthenticationType` is empty and no keys are set.
fn credentials(cfg: &CacheS3Config) -> Result<Credentials, String> {
    let access = non_empty(cfg.access_key.as_ref().map(|s| s.expose()));
    let secret = non_empty(cfg.secret_key.as_ref().map(|s| s.expose()));
    let token = non_empty(cfg.session_token.as_ref().map(|s| s.expose()));
    let kind = non_empty(cfg.authentication_type.as_deref()).map(str::to_ascii_lowercase);
    let iam = match kind.as_deref() {
        Some("iam") => true,
        Some("access-key") => false,
        None => access.is_none() && secret.is_none(),
        Some(other) => {
            return Err(format!(
                "[runners.cache.s3] AuthenticationType = {other:?} is not known\n\
                 hint: use \"access-key\" (with AccessKey and SecretKey) or \"iam\""
            ));
        }
    };
    if iam {
        return iam_credentials();
    }
    match (access, secret) {
        (Some(a), Some(s)) => Ok(match token {
            Some(t) => Credentials::new_with_token(a, s, t),
            None => Credentials::new(a, s),
        }),
        _ => Err(
            "[runners.cache.s3] AuthenticationType = \"access-key\" needs both AccessKey and SecretKey\n\
                  hint: set both, or AuthenticationType = \"iam\" to take credentials from the environment"
                .to_owned(),
        ),
    }
}

/// IAM credentials as far as this build reaches: the standard environment variables. The instance metadata
/// service and web-identity token exchange are not implemented, so their absence is a clear error, not a hang.
fn iam_credentials() -> Result<Credentials, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(a), Some(s)) => Ok(match var("AWS_SESSION_TOKEN") {
            Some(t) => Credentials::new_with_token(a, s, t),
            None => Credentials::new(a, s),
        }),
        _ => {
            let web = if var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
                " (AWS_WEB_IDENTITY_TOKEN_FILE is set, but web-identity exchange is not supported by this build)"
            } else {
                ""
            };
            Err(format!(
                "[runners.cache.s3] AuthenticationType = \"iam\": no credentials found in the runner's environment{web}; \
                 instance metadata (IMDS) is not queried by this build\n\
                 hint: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) for the runner, \
                 or set AuthenticationType = \"access-key\" with AccessKey and SecretKey"
            ))
        }
    }
}

/// `ServerSideEncryption` (+ `ServerSideEncryptionKeyID`) as the headers S3 expects on the upload.
fn sse_headers(cfg: &CacheS3Config) -> Result<Vec<(String, String)>, String> {
    let Some(kind) = non_empty(cfg.server_side_encryption.as_deref()) else {
        return Ok(Vec::new());
    };
    let key_id = non_empty(cfg.server_side_encryption_key_id.as_deref());
    let algorithm = match kind.to_ascii_uppercase().as_str() {
        "S3" | "AES256" => return Ok(vec![sse("AES256")]),
        "KMS" => "aws:kms",
        "DSSE-KMS" => "aws:kms:dsse",
        _ => {
            return Err(format!(
                "[runners.cache.s3] ServerSideEncryption = {kind:?} is not known\n\
                 hint: use \"S3\", \"KMS\" or \"DSSE-KMS\""
            ));
        }
    };
    let mut headers = vec![sse(algorithm)];
    if let Some(id) = key_id {
        headers.push((
            "x-amz-server-side-encryption-aws-kms-key-id".to_owned(),
            id.to_owned(),
        ));
    }
    Ok(headers)
}

fn sse(value: &str) -> (String, String) {
    ("x-amz-server-side-encryption".to_owned(), value.to_owned())
}

/// The endpoint URL from `ServerAddress` (`host[:port]`, as upstream; a scheme given anyway is honoured) and
/// `Insecure`.
fn endpoint(cfg: &CacheS3Config) -> Result<reqwest::Url, String> {
    let address = non_empty(cfg.server_address.as_deref()).unwrap_or(AWS_SERVER);
    let scheme = if cfg.insecure.unwrap_or(false) {
        "http"
    } else {
        "https"
    };
    let text = if address.contains("://") {
        address.to_owned()
    } else {
        format!("{scheme}://{address}")
    };
    reqwest::Url::parse(&text).map_err(|e| {
        let address = without_user_info(address);
        format!(
            "[runners.cache.s3] ServerAddress = {address:?} is not a valid address: {e}\n\
             hint: write host[:port], e.g. \"s3.amazonaws.com\" or \"minio.internal:9000\""
        )
    })
}

/// `address` with any `user:password@` before the host replaced: a secret written into `ServerAddress` must not
/// reach a job log through an error message.
fn without_user_info(address: &str) -> String {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), address),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}<redacted>{}", &rest[at..]),
        None => address.to_owned(),
    }
}

/// minio-go's automatic lookup, which upstream relies on unless `PathStyle` is set: virtual-host style on AWS,
/// path style everywhere else (S3-compatible stores, IP addresses).
fn url_style(cfg: &CacheS3Config, endpoint: &reqwest::Url) -> UrlStyle {
    let on_aws = endpoint.host_str().is_some_and(|h| h.ends_with(".amazonaws.com"));
    if cfg.path_style.unwrap_or(false) || !on_aws {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    }
}

impl S3Store {
    pub(crate) fn from_config(cfg: &CacheS3Config) -> Result<S3Store, String> {
        let Some(bucket_name) = non_empty(cfg.bucket_name.as_deref()) else {
            return Err(
                "[runners.cache.s3] BucketName is missing\nhint: name the bucket caches go to".to_owned(),
            );
        };
        let endpoint = endpoint(cfg)?;
        let region = non_empty(cfg.bucket_location.as_deref()).unwrap_or(DEFAULT_REGION);
        let shown = endpoint.origin().ascii_serialization();
        let bucket = Bucket::new(
            endpoint.clone(),
            url_style(cfg, &endpoint),
            bucket_name.to_owned(),
            region.to_owned(),
        )
        .map_err(|e| {
            format!(
                "[runners.cache.s3] bucket {bucket_name:?} at {shown}: {e}\n\
                 hint: check ServerAddress and BucketName (PathStyle = true for stores without virtual-host buckets)"
            )
        })?;
        let on_aws = endpoint.host_str().is_some_and(|h| h.ends_with(".amazonaws.com"));
        let region_probe =
            (on_aws && non_empty(cfg.bucket_location.as_deref()).is_none()).then(|| bucket.object_url(""));
        Ok(S3Store {
            bucket,
            credentials: credentials(cfg)?,
            sse_headers: sse_headers(cfg)?,
            endpoint: shown,
            region_probe,
            style: url_style(cfg, &endpoint),
            base: endpoint,
            regional: std::sync::OnceLock::new(),
        })
    }

    /// As upstream (minio-go's bucket location lookup): with no `BucketLocation`, an AWS bucket is signed for the
    /// region its unsigned `HEAD` names in `x-amz-bucket-region` (S3 answers it even when it refuses the request).
    /// Asked until it answers, then kept; without an answer us-east-1 is signed, and a wrong-region answer to the
    /// signed request carries a hint naming `BucketLocation`.
    ///
    /// A job's store is built afresh from the runner's config, so what a probe found is also kept per process,
    /// by bucket URL: only a runner's first job waits for it (a few seconds at most, before the job's log starts).
    pub(crate) async fn detect_region(&self) {
        let Some(probe) = &self.region_probe else {
            return;
        };
        if self.regional.get().is_some() {
            return;
        }
        if let Some(region) = known_region(probe.as_str()) {
            self.sign_for(&region);
            return;
        }
        let Ok(http) = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(REGION_PROBE_TIMEOUT)
            .timeout(REGION_PROBE_TIMEOUT)
            .build()
        else {
            return;
        };
        let Ok(resp) = http.head(probe.clone()).send().await else {
            return;
        };
        let Some(region) = resp
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|r| !r.is_empty() && r.len() < 64)
        else {
            return;
        };
        if self.sign_for(region) {
            remember_region(probe.as_str(), region);
        }
    }

    /// Signs from now on for `region`; false when no bucket can be made for it.
    fn sign_for(&self, region: &str) -> bool {
        match Bucket::new(
            self.base.clone(),
            self.style,
            self.bucket.name().to_owned(),
            region.to_owned(),
        ) {
            Ok(b) => {
                let _ = self.regional.set(b);
                true
            }
            Err(_) => false,
        }
    }

    fn signer(&self) -> &Bucket {
        self.regional.get().unwrap_or(&self.bucket)
    }

    #[cfg(test)]
    pub(crate) fn with_region_probe(mut self, url: reqwest::Url) -> S3Store {
        self.region_probe = Some(url);
        self
    }

    /// `bucket "<name>" at <endpoint>`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("bucket {:?} at {}", self.bucket.name(), self.endpoint)
    }

    pub(crate) fn presign_get(&self, object: &str, expires: Duration) -> Presigned {
        let action = self.signer().get_object(Some(&self.credentials), object);
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: Vec::new(),
        }
    }

    pub(crate) fn presign_head(&self, object: &str, expires: Duration) -> Presigned {
        let action = self.signer().head_object(Some(&self.credentials), object);
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: Vec::new(),
        }
    }

    pub(crate) fn presign_put(&self, object: &str, expires: Duration) -> Presigned {
        let mut action = self.signer().put_object(Some(&self.credentials), object);
        for (k, v) in &self.sse_headers {
            action.headers_mut().insert(k.clone(), v.clone());
        }
        Presigned {
            url: action.sign(expires.min(MAX_EXPIRY)),
            headers: self.sse_headers.clone(),
        }
    }
}
