//! The object stores a distributed cache can live in. Each one only signs: it hands out pre-signed GET/HEAD/PUT
//! requests that `transfer` carries out, as gitlab-runner's cache adapters do, so credentials never leave the
//! runner. A new store kind is one more variant here and one module beside `s3` (`azure` is one).

use std::fmt;
use std::time::Duration;

use super::azure::AzureStore;
use super::gcs::GcsStore;
use super::s3::{Presigned, S3Store};

/// One configured store of `[runners.cache]`. S3's signer state is large beside the others: boxed.
pub(crate) enum ObjectStore {
    S3(Box<S3Store>),
    Azure(AzureStore),
    Gcs(GcsStore),
}

impl fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectStore::S3(s) => s.fmt(f),
            ObjectStore::Gcs(s) => s.fmt(f),
            ObjectStore::Azure(a) => a.fmt(f),
        }
    }
}

impl ObjectStore {
    /// Anything the store must learn once before its URLs are right (S3 on AWS: the bucket's region).
    pub(crate) async fn prepare(&self) {
        match self {
            ObjectStore::S3(s) => s.detect_region().await,
            ObjectStore::Azure(_) | ObjectStore::Gcs(_) => {}
        }
    }

    /// `bucket "<name>" at <endpoint>` (or the store's own words), for messages; never a secret.
    pub(crate) fn describe(&self) -> String {
        match self {
            ObjectStore::S3(s) => s.describe(),
            ObjectStore::Gcs(s) => s.describe(),
            ObjectStore::Azure(a) => a.describe(),
        }
    }

    /// The S3 signer when the store takes multipart uploads (large archives go up in parallel parts).
    pub(crate) fn multipart(&self) -> Option<&S3Store> {
        match self {
            ObjectStore::S3(s) => Some(s),
            ObjectStore::Azure(_) | ObjectStore::Gcs(_) => None,
        }
    }

    /// The Azure signer: large archives go up as blocks committed by a block list.
    pub(crate) fn blocks(&self) -> Option<&AzureStore> {
        match self {
            ObjectStore::Azure(a) => Some(a),
            ObjectStore::S3(_) | ObjectStore::Gcs(_) => None,
        }
    }

    pub(crate) fn presign_get(&self, object: &str, expires: Duration) -> Presigned {
        match self {
            ObjectStore::S3(s) => s.presign_get(object, expires),
            ObjectStore::Gcs(s) => s.presign_get(object, expires),
            ObjectStore::Azure(a) => a.presign_get(object, expires),
        }
    }

    pub(crate) fn presign_head(&self, object: &str, expires: Duration) -> Presigned {
        match self {
            ObjectStore::S3(s) => s.presign_head(object, expires),
            ObjectStore::Gcs(s) => s.presign_head(object, expires),
            ObjectStore::Azure(a) => a.presign_head(object, expires),
        }
    }

    /// The signed request for a runner-side download: [`Self::presign_get`], except that a GCS store without a
    /// key signs through the metadata server here, which takes requests and may fail.
    pub(crate) async fn signed_get(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        match self {
            ObjectStore::Gcs(s) => s.signed_get(object, expires).await,
            other => Ok(other.presign_get(object, expires)),
        }
    }

    /// [`Self::signed_get`] for HEAD.
    pub(crate) async fn signed_head(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        match self {
            ObjectStore::Gcs(s) => s.signed_head(object, expires).await,
            other => Ok(other.presign_head(object, expires)),
        }
    }

    /// [`Self::signed_get`] for an upload.
    pub(crate) async fn signed_put(&self, object: &str, expires: Duration) -> Result<Presigned, String> {
        match self {
            ObjectStore::Gcs(s) => s.signed_put(object, expires).await,
            other => Ok(other.presign_put(object, expires)),
        }
    }

    pub(crate) fn presign_put(&self, object: &str, expires: Duration) -> Presigned {
        match self {
            ObjectStore::S3(s) => s.presign_put(object, expires),
            ObjectStore::Gcs(s) => s.presign_put(object, expires),
            ObjectStore::Azure(a) => a.presign_put(object, expires),
        }
    }
}
