//! The job router's families (`FF_USE_JOB_ROUTER`), under gitlab-runner's names (`router/metrics.go` and its
//! circuit breaker's `WithMetrics("gitlab_runner", "job_router_circuit_breaker")`). Families without labels:
//! gitlab-runner has one router client per process, and so does oxrunner.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// gitlab-runner's buckets for `GetJob`, those of its direct API requests extended past the long poll.
const GET_JOB_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

type Labelled = Family<Vec<(&'static str, String)>, Counter>;

/// The job router's metrics; cheap to clone (the registry keeps the same series).
#[derive(Clone)]
pub struct RouterMetrics {
    discovery_cache_events: Labelled,
    fallbacks: Labelled,
    get_job_duration: Histogram,
    breaker_state: Gauge,
    breaker_trips: Counter,
}

impl RouterMetrics {
    pub(super) fn register(r: &mut Registry) -> RouterMetrics {
        let m = RouterMetrics {
            discovery_cache_events: Labelled::default(),
            fallbacks: Labelled::default(),
            get_job_duration: Histogram::new(GET_JOB_BUCKETS),
            breaker_state: Gauge::default(),
            breaker_trips: Counter::default(),
        };
        r.register(
            "gitlab_runner_job_router_discovery_cache_events",
            "Total number of job router discovery cache lookups, partitioned by result (hit or miss).",
            m.discovery_cache_events.clone(),
        );
        r.register(
            "gitlab_runner_job_router_fallbacks",
            "Total number of job requests that fell back from the job router to direct GitLab polling, partitioned by reason.",
            m.fallbacks.clone(),
        );
        r.register(
            "gitlab_runner_job_router_get_job_duration_seconds",
            "Latency histogram of runner-side job router GetJob requests, regardless of outcome.",
            m.get_job_duration.clone(),
        );
        r.register(
            "gitlab_runner_job_router_circuit_breaker_state",
            "Circuit breaker state (0 = closed, 1 = open, 2 = half-open).",
            m.breaker_state.clone(),
        );
        r.register(
            "gitlab_runner_job_router_circuit_breaker_trips",
            "Total number of times the circuit breaker has tripped open.",
            m.breaker_trips.clone(),
        );
        m
    }

    /// A discovery lookup: `hit` (cached) or `miss`.
    pub fn discovery_lookup(&self, result: &'static str) {
        self.discovery_cache_events
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// A request served directly by GitLab instead of the router, with gitlab-runner's reason label.
    pub fn fallback(&self, reason: &'static str) {
        self.fallbacks
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn get_job_took(&self, seconds: f64) {
        self.get_job_duration.observe(seconds);
    }

    pub fn breaker_state(&self, state: i64) {
        self.breaker_state.set(state);
    }

    pub fn breaker_tripped(&self) {
        self.breaker_trips.inc();
    }
}

#[cfg(test)]
impl RouterMetrics {
    /// Unregistered families, for unit tests of the router's logic.
    pub fn detached() -> RouterMetrics {
        RouterMetrics::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_upstreams_names_and_labels() {
        let mut registry = Registry::default();
        let m = RouterMetrics::register(&mut registry);
        m.discovery_lookup("miss");
        m.fallback("breaker_open");
        m.get_job_took(0.2);
        m.breaker_state(1);
        m.breaker_tripped();
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap_or_default();
        for line in [
            "gitlab_runner_job_router_discovery_cache_events_total{result=\"miss\"} 1",
            "gitlab_runner_job_router_fallbacks_total{reason=\"breaker_open\"} 1",
            "gitlab_runner_job_router_get_job_duration_seconds_bucket{le=\"0.25\"} 1",
            "gitlab_runner_job_router_circuit_breaker_state 1",
            "gitlab_runner_job_router_circuit_breaker_trips_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
