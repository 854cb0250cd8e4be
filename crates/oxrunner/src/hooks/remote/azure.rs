//! `[runners.cache.azure]`: service SAS URLs for cache blobs, signed runner-side with the storage account key
//! (HMAC-SHA256), as gitlab-runner's `cache/azure` adapter signs them: read (`r`) for GET/HEAD, write (`w`) for
//! PUT (also the blocks and block list of a large upload, `blocks`), valid from an hour ago (clock skew) until the
//! request's lifetime, HTTPS only. `transfer` moves the bytes; the job (or its container) never holds the key.
//!
//! The blob service lives at `https://<AccountName>.<StorageDomain>` (default domain `blob.core.windows.net`).
//! Emulators such as Azurite serve accounts path-style on a plain host and port, which upstream cannot address;
//! here a `StorageDomain` with a scheme (`http://127.0.0.1:10000/devstoreaccount1`) is taken as the blob service
//! endpoint itself, as an Azure connection string's `BlobEndpoint`, and an `http://` endpoint signs
//! `spr=https,http` so the emulator accepts the plain request.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use oxrunner_config::CacheAzureConfig;
use sha2::Sha256;

use super::s3::Presigned;

/// gitlab-runner's default when `StorageDomain` is empty.
const DEFAULT_DOMAIN: &str = "blob.core.windows.net";
/// The SAS version signed. Every version since 2020-12-06 shares this string-to-sign layout (Microsoft's
/// "Create a service SAS"); 2022-11-02 is one every Azure region and Azurite serve.
const SAS_VERSION: &str = "2022-11-02";
/// Upstream starts the SAS an hour in the past so a runner clock slightly ahead of Azure's is harmless.
const START_SKEW: Duration = Duration::from_secs(3600);
/// Azure needs the blob type on a Put Blob.
const BLOB_TYPE_HEADER: (&str, &str) = ("x-ms-blob-type", "BlockBlob");
/// Marks this store in the messages `transfer` builds, so a refusal gets Azure's hint (see [`refused_hint`]).
pub(crate) const DESCRIBE_PREFIX: &str = "Azure container";

/// A configured container with its account key. `Debug` shows neither the key nor anything derived from it.
pub(crate) struct AzureStore {
    account: String,
    key: Vec<u8>,
    container: String,
    /// The blob service URL (`https://<account>.<domain>` or the endpoint given in `StorageDomain`).
    service: reqwest::Url,
    /// `spr`: `https`, or `https,http` for an `http://` endpoint.
    protocol: &'static str,
}

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureStore")
            .field("endpoint", &self.service.as_str())
            .field("account", &self.account)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// The fields a service SAS for one blob signs.
pub(crate) struct SasFields<'a> {
    pub permissions: &'a str,
    pub start: &'a str,
    pub expiry: &'a str,
    pub account: &'a str,
    pub container: &'a str,
    pub blob: &'a str,
    pub protocol: &'a str,
    pub version: &'a str,
}

/// The service SAS string-to-sign for a blob (`sr=b`), versions 2020-12-06 and later: permissions, start, expiry,
/// canonicalized resource, identifier, IP range, protocol, version, resource, snapshot time, encryption scope and
/// the five response-header overrides; the ones this signer never sets are empty lines.
pub(crate) fn string_to_sign(f: &SasFields<'_>) -> String {
    let resource = format!("/blob/{}/{}/{}", f.account, f.container, f.blob);
    [
        f.permissions,
        f.start,
        f.expiry,
        &resource,
        "",
        "",
        f.protocol,
        f.version,
        "b",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n")
}

/// base64(HMAC-SHA256(key, text)): the `sig` of a SAS.
pub(crate) fn signature(key: &[u8], text: &str) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `YYYY-MM-DDThh:mm:ssZ`, the SAS time format.
fn sas_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// The blob service URL from `AccountName` and `StorageDomain` (see the module docs).
fn service_url(account: &str, domain: Option<&str>) -> Result<(reqwest::Url, &'static str), String> {
    let domain = domain.unwrap_or(DEFAULT_DOMAIN);
    let text = if domain.contains("://") {
        domain.to_owned()
    } else {
        format!("https://{account}.{domain}")
    };
    let bad = |why: String| {
        format!(
            "[runners.cache.azure] StorageDomain = {domain:?} does not give a blob service URL: {why}\n\
             hint: write a domain such as \"blob.core.windows.net\", or an emulator's endpoint with its scheme, \
             e.g. \"http://127.0.0.1:10000/devstoreaccount1\""
        )
    };
    let url = reqwest::Url::parse(&text).map_err(|e| bad(e.to_string()))?;
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it may not carry a query or user info".to_owned()));
    }
    let protocol = match url.scheme() {
        "https" => "https",
        "http" => "https,http",
        other => return Err(bad(format!("the scheme {other:?} is neither https nor http"))),
    };
    Ok((url, protocol))
}

impl AzureStore {
    pub(crate) fn from_config(cfg: &CacheAzureConfig) -> Result<AzureStore, String> {
        let Some(account) = non_empty(cfg.account_name.as_deref()) else {
            return Err("[runners.cache.azure] AccountName is missing\n\
                        hint: name the storage account that holds the cache container"
                .to_owned());
        };
        let Some(container) = non_empty(cfg.container_name.as_deref()) else {
            return Err("[runners.cache.azure] ContainerName is missing\n\
                        hint: name the blob container caches go to"
                .to_owned());
        };
        let Some(key) = non_empty(cfg.account_key.as_ref().map(|s| s.expose())) else {
            return Err(
                "[runners.cache.azure] AccountKey is missing; signing with an Entra ID identity (user \
                 delegation key) is not supported by this build\n\
                 hint: set AccountKey to one of the storage account's access keys"
                    .to_owned(),
            );
        };
        // The key's value never reaches the message, only that it is not base64.
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| {
                "[runners.cache.azure] AccountKey is not valid base64\n\
                 hint: copy the access key exactly as the Azure portal shows it (it ends in \"==\")"
                    .to_owned()
            })?;
        let (service, protocol) = service_url(account, non_empty(cfg.storage_domain.as_deref()))?;
        Ok(AzureStore {
            account: account.to_owned(),
            key,
            container: container.to_owned(),
            service,
            protocol,
        })
    }

    /// `Azure container "<name>" at <endpoint>`, for messages.
    pub(crate) fn describe(&self) -> String {
        let shown = self.service.as_str().trim_end_matches('/');
        format!("{DESCRIBE_PREFIX} {:?} at {shown}", self.container)
    }

    /// The blob's URL with a SAS for `permissions`, valid from an hour before `now` until `now + expires`.
    pub(crate) fn sas_url(
        &self,
        object: &str,
        permissions: &str,
        now: time::OffsetDateTime,
        expires: Duration,
    ) -> reqwest::Url {
        let start = sas_time(now - START_SKEW);
        let expiry = sas_time(now + expires);
        let text = string_to_sign(&SasFields {
            permissions,
            start: &start,
            expiry: &expiry,
            account: &self.account,
            container: &self.container,
            blob: object,
            protocol: self.protocol,
            version: SAS_VERSION,
        });
        let sig = signature(&self.key, &text);
        let mut url = self.service.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .push(&self.container)
                .extend(object.split('/'));
        }
        url.query_pairs_mut()
            .append_pair("sv", SAS_VERSION)
            .append_pair("spr", self.protocol)
            .append_pair("st", &start)
            .append_pair("se", &expiry)
            .append_pair("sr", "b")
            .append_pair("sp", permissions)
            .append_pair("sig", &sig);
        url
    }

    fn presign(&self, object: &str, permissions: &str, expires: Duration) -> reqwest::Url {
        self.sas_url(object, permissions, time::OffsetDateTime::now_utc(), expires)
    }

    pub(crate) fn presign_get(&self, object: &str, expires: Duration) -> Presigned {
        Presigned {
            url: self.presign(object, "r", expires),
            headers: Vec::new(),
        }
    }

    pub(crate) fn presign_head(&self, object: &str, expires: Duration) -> Presigned {
        self.presign_get(object, expires)
    }

    pub(crate) fn presign_put(&self, object: &str, expires: Duration) -> Presigned {
        Presigned {
            url: self.presign(object, "w", expires),
            headers: vec![(BLOB_TYPE_HEADER.0.to_owned(), BLOB_TYPE_HEADER.1.to_owned())],
        }
    }
}

/// What to check when the store refuses a signed request (403), by the store's description.
pub(crate) fn refused_hint(store: &str) -> &'static str {
    if store.starts_with(DESCRIBE_PREFIX) {
        "\nhint: check AccountName, AccountKey and the runner's clock; the key must be one of the storage \
         account's current access keys"
    } else {
        "\nhint: check AccessKey, SecretKey (and SessionToken), BucketLocation and the runner's clock; the key \
         needs read and write access to the bucket"
    }
}

#[cfg(test)]
#[path = "azure_tests.rs"]
mod tests;
