//! Cache and artifact transfers: bytes and duration by kind, direction and outcome. gitlab-runner has no such
//! families (its helper binary moves the archives); these follow its naming style.

use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use super::{Families, Metrics};

const DURATION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 3.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

pub(super) fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    CacheArchive,
    CacheExtract,
    ArtifactUpload,
    ArtifactDownload,
}

impl TransferKind {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Self::CacheArchive => ("cache", "upload"),
            Self::CacheExtract => ("cache", "download"),
            Self::ArtifactUpload => ("artifact", "upload"),
            Self::ArtifactDownload => ("artifact", "download"),
        }
    }
}

/// One transfer being timed; [`Transfer::finish`] records it.
pub struct Transfer {
    families: Families,
    kind: TransferKind,
    started: Instant,
}

impl Metrics {
    pub fn transfer(&self, kind: TransferKind) -> Transfer {
        Transfer {
            families: self.families.clone(),
            kind,
            started: Instant::now(),
        }
    }
}

impl Transfer {
    /// `outcome` is `success`, `failure`, `skipped` (nothing to move, or not found), `miss` (no cache under any
    /// key) or `up_to_date` (a remote cache whose local copy was current: extracted without a download).
    pub fn finish(self, outcome: &str, bytes: u64) {
        let (kind, direction) = self.kind.labels();
        let labels = vec![
            ("kind", kind.to_string()),
            ("direction", direction.to_string()),
            ("outcome", outcome.to_string()),
        ];
        self.families.transfer_bytes.get_or_create(&labels).inc_by(bytes);
        self.families
            .transfer_duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}
