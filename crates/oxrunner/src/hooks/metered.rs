//! Artifact transfers counted in the daemon's metrics (bytes, duration, outcome): a transport that wraps another.

use std::path::Path;
use std::sync::Arc;

use oxrunner_api::ArtifactUpload;
use oxrunner_core::Dependency;

use super::{ArtifactTransport, BoxFuture, DownloadMode, TransportError};
use crate::metrics::{Metrics, TransferKind};

pub struct MeteredTransport {
    inner: Arc<dyn ArtifactTransport>,
    metrics: Arc<Metrics>,
}

impl MeteredTransport {
    pub fn new(inner: Arc<dyn ArtifactTransport>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

/// A file's size; 0 when it is not there (a failed download leaves nothing).
async fn size(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

fn outcome<T>(r: &Result<T, TransportError>) -> &'static str {
    if r.is_ok() { "success" } else { "failure" }
}

impl ArtifactTransport for MeteredTransport {
    fn upload<'a>(
        &'a self,
        file: &'a Path,
        opts: &'a ArtifactUpload,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let transfer = self.metrics.transfer(TransferKind::ArtifactUpload);
            let result = self.inner.upload(file, opts).await;
            let bytes = if result.is_ok() { size(file).await } else { 0 };
            transfer.finish(outcome(&result), bytes);
            result
        })
    }

    fn download<'a>(
        &'a self,
        dependency: &'a Dependency,
        dest: &'a Path,
        mode: DownloadMode,
        note: super::transport::Note<'a>,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let transfer = self.metrics.transfer(TransferKind::ArtifactDownload);
            let result = self.inner.download(dependency, dest, mode, note).await;
            let bytes = if result.is_ok() { size(dest).await } else { 0 };
            transfer.finish(outcome(&result), bytes);
            result
        })
    }

    fn upload_fields(&self, status: &str) -> String {
        self.inner.upload_fields(status)
    }

    fn download_fields(&self, dependency: &Dependency, status: &str) -> String {
        self.inner.download_fields(dependency, status)
    }

    fn helper_upload_args(&self) -> Vec<String> {
        self.inner.helper_upload_args()
    }

    fn helper_download_args(&self, dependency: &Dependency) -> Vec<String> {
        self.inner.helper_download_args(dependency)
    }
}
