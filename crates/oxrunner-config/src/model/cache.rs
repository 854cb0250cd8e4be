//! `[runners.cache]` and its `s3`/`gcs`/`azure` sub-tables. gitlab-runner spells these keys in
//! PascalCase, unlike the rest of the file.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `[runners.cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// `s3`, `gcs` or `azure`; `None` = local cache only.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<String>,
    /// Object prefix.
    #[serde(rename = "Path", skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Share the cache between runners (otherwise objects live under `runner/<short-token>/`).
    #[serde(rename = "Shared", skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// Largest archive uploaded, in bytes; 0 = no limit.
    #[serde(rename = "MaxUploadedArchiveSize", skip_serializing_if = "Option::is_none")]
    pub max_uploaded_archive_size: Option<i64>,
    /// `[runners.cache.s3]`.
    #[serde(rename = "s3", skip_serializing_if = "Option::is_none")]
    pub s3: Option<CacheS3Config>,
    /// `[runners.cache.gcs]`.
    #[serde(rename = "gcs", skip_serializing_if = "Option::is_none")]
    pub gcs: Option<CacheGcsConfig>,
    /// `[runners.cache.azure]`.
    #[serde(rename = "azure", skip_serializing_if = "Option::is_none")]
    pub azure: Option<CacheAzureConfig>,
}

impl CacheConfig {
    /// True when caches are shared between runners.
    pub fn is_shared(&self) -> bool {
        self.shared.unwrap_or(false)
    }
}

/// `[runners.cache.s3]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheS3Config {
    /// `host[:port]` of the S3 endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// Access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    /// Secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// STS session token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// Bucket name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// Bucket region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_location: Option<String>,
    /// Use plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// `iam` or `access-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<String>,
    /// `S3`/`AES256`, `KMS` or `DSSE-KMS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<String>,
    /// KMS key id.
    #[serde(rename = "ServerSideEncryptionKeyID", skip_serializing_if = "Option::is_none")]
    pub server_side_encryption_key_id: Option<String>,
    /// Use dual-stack endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dual_stack: Option<bool>,
    /// Path-style bucket addressing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// S3 transfer acceleration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerate: Option<bool>,
    /// Role assumed for access.
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Role assumed for uploads.
    #[serde(rename = "UploadRoleARN", skip_serializing_if = "Option::is_none")]
    pub upload_role_arn: Option<String>,
    /// Parallel assume-role calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_max_concurrency: Option<i64>,
    /// Disable caching of assumed-role credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_assume_role_credentials_caching: Option<bool>,
}

/// `[runners.cache.gcs]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheGcsConfig {
    /// Service account e-mail.
    #[serde(rename = "AccessID", skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
    /// Service account private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    /// Path of a JSON credentials file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    /// Bucket name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// Universe domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub universe_domain: Option<String>,
}

/// `[runners.cache.azure]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CacheAzureConfig {
    /// Storage account name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// Storage account key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_key: Option<Secret>,
    /// Blob container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Storage domain (default `blob.core.windows.net`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_domain: Option<String>,
}
