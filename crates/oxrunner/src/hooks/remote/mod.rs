//! The distributed cache (`[runners.cache] Type = "s3"`, `"azure"` or `"gcs"`): where a cache key lives in the bucket (or
//! container), and the store behind it. The local store stays the working copy: an archive is written there and
//! then uploaded, and a restore downloads over the local archive of the key (atomically) and extracts that, so
//! the local copy always is what the bucket holds.
//!
//! Object names follow gitlab-runner exactly (`cache/cache.go`), so a mixed fleet of gitlab-runner and oxrunner
//! shares one bucket: `[<Path>/][runner/<short token>/]project/<project id>/<key>`, the runner part only when
//! `Shared` is false, and with `FF_HASH_CACHE_KEYS` the key's first two characters as an extra level.

pub(crate) mod azure;
pub(crate) mod blocks;
pub(crate) mod flow;
pub(crate) mod gcs;
pub(crate) mod gcs_metadata;
pub(crate) mod multipart;
pub(crate) mod parts;
pub(crate) mod s3;
pub(crate) mod store;
pub(crate) mod transfer;

use std::fmt;
use std::sync::Arc;

use oxrunner_config::CacheConfig;

pub(crate) use azure::AzureStore;
pub(crate) use gcs::GcsStore;
pub(crate) use s3::S3Store;
pub(crate) use store::ObjectStore;

/// A remote cache as configured for one runner.
pub struct RemoteCache {
    pub(crate) store: ObjectStore,
    path: String,
    shared: bool,
    short_token: String,
    /// `MaxUploadedArchiveSize`; `None` = no limit.
    pub(crate) max_upload: Option<u64>,
    /// When archives move in parallel parts.
    pub(crate) parts: parts::PartPlan,
}

impl fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCache")
            .field("store", &self.store)
            .field("path", &self.path)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The remote cache of a runner, or why it is not used. `Err` lines go into every job log that uses a cache (and
/// the daemon's warnings), and the jobs go on with the local cache only.
#[derive(Debug, Clone, Default)]
pub enum RemoteSetup {
    #[default]
    None,
    Ready(Arc<RemoteCache>),
    Broken(String),
}

impl RemoteSetup {
    /// From `[runners.cache]`; `short_token` is the runner's 9-character token form.
    pub fn from_config(cfg: Option<&CacheConfig>, short_token: &str) -> RemoteSetup {
        let Some(cfg) = cfg else {
            return RemoteSetup::None;
        };
        let kind = cfg.cache_type.as_deref().map(str::trim).unwrap_or_default();
        let max_upload = cfg
            .max_uploaded_archive_size
            .filter(|n| *n > 0)
            .and_then(|n| u64::try_from(n).ok());
        let store = match kind {
            "" => return RemoteSetup::None,
            "s3" => S3Store::from_config(&cfg.s3.clone().unwrap_or_default())
                .map(|s| ObjectStore::S3(Box::new(s))),
            "azure" => {
                AzureStore::from_config(&cfg.azure.clone().unwrap_or_default()).map(ObjectStore::Azure)
            }
            // gitlab-runner's two GCS adapters read the same `[runners.cache.gcs]`.
            "gcs" | "gcsv2" => {
                GcsStore::from_config(&cfg.gcs.clone().unwrap_or_default(), max_upload).map(ObjectStore::Gcs)
            }
            // The daemon names these at start (`daemon/unsupported.rs`); jobs silently keep the local cache.
            _ => return RemoteSetup::None,
        };
        match store {
            Ok(store) => RemoteSetup::Ready(Arc::new(RemoteCache {
                store,
                path: cfg.path.clone().unwrap_or_default(),
                shared: cfg.is_shared(),
                short_token: short_token.to_owned(),
                max_upload,
                parts: parts::PartPlan::from_env(),
            })),
            Err(e) => RemoteSetup::Broken(format!(
                "{e}\nthe shared cache is not used; caches stay in the local cache_dir"
            )),
        }
    }
}

impl RemoteSetup {
    /// Learns what the store needs before any URL is signed (S3 on AWS without `BucketLocation`: the bucket's
    /// region), once per job that has caches. Runner-side transfers would ask on their own, but the URLs handed to
    /// job-side helpers (`hooks/inscript.rs`) are signed while a stage script is rendered, which cannot wait.
    pub async fn prepared(self, has_caches: bool) -> RemoteSetup {
        if let (RemoteSetup::Ready(remote), true) = (&self, has_caches) {
            remote.store.prepare().await;
        }
        self
    }

    /// The S3 store asks `url` for its bucket's region (as on AWS without `BucketLocation`).
    #[cfg(test)]
    pub(crate) fn with_region_probe(self, url: reqwest::Url) -> RemoteSetup {
        let RemoteSetup::Ready(remote) = self else {
            return self;
        };
        let Ok(mut cache) = Arc::try_unwrap(remote) else {
            panic!("the remote cache is shared already");
        };
        cache.store = match cache.store {
            ObjectStore::S3(s) => ObjectStore::S3(Box::new(s.with_region_probe(url))),
            other => other,
        };
        RemoteSetup::Ready(Arc::new(cache))
    }
}

/// Go's `path.Clean` on a relative object path, as segments: `a/b/../c` → `a/c`; a `..` that climbs above the
/// start stays (then the prefix check below refuses the key).
fn clean_object_path(p: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl RemoteCache {
    /// The object name of `key` for `project_id` (upstream's layout, see the module docs); `None` when the key
    /// would leave the project's prefix (upstream refuses those too).
    pub(crate) fn object_name(&self, project_id: i64, key: &str, sharded: bool) -> Option<String> {
        let mut base = clean_object_path(&self.path);
        if !self.shared {
            base.push("runner");
            base.push(&self.short_token);
        }
        base.push("project");
        let id = project_id.to_string();
        base.push(&id);
        let base = base.join("/");
        let full = if sharded {
            let shard = key.get(..2)?;
            format!("{base}/{shard}/{key}")
        } else {
            format!("{base}/{key}")
        };
        let full = clean_object_path(&full).join("/");
        full.starts_with(&format!("{base}/")).then_some(full)
    }
}

#[cfg(test)]
mod prepare_tests;
#[cfg(test)]
mod tests;
