//! Job inputs interpolation metrics, under upstream's names (`common/spec/inputs_metrics.go`): fields interpolated,
//! and failures by `error_type` (`parse`, `evaluation`, `sensitive_unsupported`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::{Counters, Metrics};
use crate::inputs::Report;

#[derive(Clone, Default)]
pub(super) struct InputsFamilies {
    interpolations: Counter,
    failures: Counters,
}

impl InputsFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "gitlab_runner_job_inputs_interpolations",
            "Total number of job input interpolations where expressions were actually used (output differs from input)",
            self.interpolations.clone(),
        );
        r.register(
            "gitlab_runner_job_inputs_interpolation_failures",
            "Total number of failed job input interpolations, labeled by error type",
            self.failures.clone(),
        );
    }
}

impl Metrics {
    /// One job's interpolation: each field that held an expression counts, and so does the failure that stopped it.
    pub fn job_inputs(&self, report: &Report) {
        let f = &self.families.inputs;
        if report.interpolated > 0 {
            f.interpolations.inc_by(report.interpolated);
        }
        if let Some(label) = report.failure.as_ref().and_then(|e| e.kind.metric_label()) {
            f.failures
                .get_or_create(&vec![("error_type", label.to_string())])
                .inc();
        }
    }
}
