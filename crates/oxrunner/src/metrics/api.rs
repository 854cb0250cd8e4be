//! `gitlab_runner_api_request_*`: what the API client reports through `oxrunner_api::RequestObserver`.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

use super::{Families, Metrics};

/// Upstream's buckets for API request latency.
const DURATION_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

pub(super) fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The observer installed on one runner's API client.
pub struct ApiMetrics {
    families: Families,
    runner: String,
    system_id: String,
}

impl Metrics {
    /// An observer for the API client of the runner with this short token.
    pub fn api_observer(&self, short_token: &str) -> ApiMetrics {
        ApiMetrics {
            families: self.families.clone(),
            runner: short_token.to_string(),
            system_id: self.system_id.clone(),
        }
    }
}

impl oxrunner_api::RequestObserver for ApiMetrics {
    fn request(&self, endpoint: Option<&'static str>, method: &str, status: u16, elapsed: Duration) {
        // gitlab-runner measures only the job-loop endpoints (and reset_token); artifact transfers are not.
        let Some(endpoint) = endpoint else {
            return;
        };
        let common = |last: (&'static str, String)| {
            vec![
                ("runner", self.runner.clone()),
                ("system_id", self.system_id.clone()),
                ("endpoint", endpoint.to_string()),
                last,
                ("method", method.to_string()),
            ]
        };
        self.families
            .api_statuses
            .get_or_create(&common(("status", status.to_string())))
            .inc();
        self.families
            .api_duration
            .get_or_create(&common(("status_class", status_class(status).to_string())))
            .observe(elapsed.as_secs_f64());
    }

    fn attempts(&self, path: &str, method: &str, attempts: u32) {
        // Upstream's counter, despite its name, adds every attempt including the first.
        self.families
            .api_retries
            .get_or_create(&vec![("path", path.to_string()), ("method", method.to_string())])
            .inc_by(u64::from(attempts));
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "unknown",
    }
}
