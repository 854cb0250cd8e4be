//! The daemon's Prometheus metrics, under gitlab-runner's names, types, label names and label values so that
//! dashboards, alerts and `ServiceMonitor`s written for gitlab-runner keep working.
//!
//! One [`Metrics`] per daemon: families the `prometheus-client` registry owns (counters, histograms) are recorded
//! as things happen; values that describe the present (running jobs, `concurrent`, `limit`, the process) are read
//! at scrape time by the collectors in `collect.rs`. The lower crates report through observer traits
//! (`oxrunner_api::RequestObserver`, `oxrunner_core::StageObserver`) implemented here, so only this crate depends
//! on the metrics library. `server.rs` serves `/metrics`, `/health/ready` and `/debug/jobs/list`.

mod api;
mod collect;
mod inputs;
mod jobs;
pub mod process;
mod router;
pub mod server;
mod transfer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use oxrunner_config::RunnerConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::daemon::request_gate::{self, RequestGate};

pub use self::api::ApiMetrics;
pub use self::jobs::JobMetrics;
pub use self::router::RouterMetrics;
pub use self::transfer::{Transfer, TransferKind};

/// Label pairs in gitlab-runner's order.
type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// `WARN` and `ERROR` log events since start, for `gitlab_runner_errors_total` (the log layer counts them even
/// before a daemon exists, so they live here as process-wide counters).
pub(crate) static LOGGED_WARNINGS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LOGGED_ERRORS: AtomicU64 = AtomicU64::new(0);

/// What is known about one `[[runners]]` entry, for the per-runner gauges.
#[derive(Clone)]
struct RunnerEntry {
    name: String,
    limit: i64,
    /// Requests in flight and the request-concurrency limits (kept across reloads, as upstream keeps them).
    gate: Arc<RequestGate>,
}

/// The metrics of one daemon. Cheap to share (`Arc`); every method is quick and never blocks on I/O.
pub struct Metrics {
    registry: Registry,
    system_id: String,
    concurrent: AtomicI64,
    ready: AtomicBool,
    runners: Mutex<BTreeMap<String, RunnerEntry>>,
    jobs: jobs::JobTable,
    families: Families,
    /// `FF_USE_JOB_ROUTER`'s client: one per daemon, its breaker and discovery kept across reloads.
    job_router: Arc<crate::daemon::router::JobRouter>,
}

/// Families recorded as things happen.
#[derive(Clone)]
struct Families {
    jobs_total: Counters,
    job_execution_mode: Counters,
    job_duration: Histograms,
    job_queue_duration: Histograms,
    job_queue_size: Gauges,
    job_queue_depth: Gauges,
    queuing_exceeded: Counters,
    job_stage_duration: Histograms,
    failed_jobs: Counters,
    api_statuses: Counters,
    api_duration: Histograms,
    api_retries: Counters,
    config_loaded: Counter,
    config_loading_error: Counter,
    config_saved: Counter,
    config_saving_error: Counter,
    worker_feeds: Counters,
    worker_feed_failures: Counters,
    worker_slots: Gauge,
    worker_slot_operations: Counters,
    worker_processing_failures: Counters,
    transfer_bytes: Counters,
    transfer_duration: Histograms,
    inputs: inputs::InputsFamilies,
}

/// A histogram family whose series all use the buckets `make` gives them.
fn histograms(make: fn() -> Histogram) -> Histograms {
    Family::new_with_constructor(make)
}

impl Families {
    fn new() -> Families {
        Families {
            jobs_total: Counters::default(),
            job_execution_mode: Counters::default(),
            job_duration: histograms(jobs::job_duration_histogram),
            job_queue_duration: histograms(jobs::queue_histogram),
            job_queue_size: Gauges::default(),
            job_queue_depth: Gauges::default(),
            queuing_exceeded: Counters::default(),
            job_stage_duration: histograms(jobs::queue_histogram),
            failed_jobs: Counters::default(),
            api_statuses: Counters::default(),
            api_duration: histograms(api::duration_histogram),
            api_retries: Counters::default(),
            config_loaded: Counter::default(),
            config_loading_error: Counter::default(),
            config_saved: Counter::default(),
            config_saving_error: Counter::default(),
            worker_feeds: Counters::default(),
            worker_feed_failures: Counters::default(),
            worker_slots: Gauge::default(),
            worker_slot_operations: Counters::default(),
            worker_processing_failures: Counters::default(),
            transfer_bytes: Counters::default(),
            transfer_duration: histograms(transfer::duration_histogram),
            inputs: inputs::InputsFamilies::default(),
        }
    }

    /// Registers every family; counters get their `_total` suffix from the encoder.
    fn register(&self, r: &mut Registry) {
        let f = self.clone();
        r.register("gitlab_runner_jobs", "Total number of handled jobs", f.jobs_total);
        r.register(
            "gitlab_runner_job_execution_mode",
            "Total number of jobs grouped by execution mode and executor",
            f.job_execution_mode,
        );
        r.register(
            "gitlab_runner_job_duration_seconds",
            "Histogram of job durations",
            f.job_duration,
        );
        r.register(
            "gitlab_runner_job_queue_duration_seconds",
            "A histogram representing job queue duration.",
            f.job_queue_duration,
        );
        r.register(
            "gitlab_runner_job_queue_size",
            "A gauge representing the size of the queue for the runner",
            f.job_queue_size,
        );
        r.register(
            "gitlab_runner_job_queue_depth",
            "A gauge representing the search depth in the queue for the runner",
            f.job_queue_depth,
        );
        r.register(
            "gitlab_runner_acceptable_job_queuing_duration_exceeded",
            "Counts how often jobs exceed the configured queuing time threshold",
            f.queuing_exceeded,
        );
        r.register(
            "gitlab_runner_job_stage_duration_seconds",
            "Histogram of each job stage duration",
            f.job_stage_duration,
        );
        r.register(
            "gitlab_runner_failed_jobs",
            "Total number of failed jobs",
            f.failed_jobs,
        );
        r.register(
            "gitlab_runner_api_request_statuses",
            "The total number of API requests made by GitLab Runner, partitioned by runner, system_id, endpoint, status and method.",
            f.api_statuses,
        );
        r.register(
            "gitlab_runner_api_request_duration_seconds",
            "Latency histogram of API requests made by GitLab Runner, partitioned by runner, system_id, endpoint, status_class and method.",
            f.api_duration,
        );
        r.register(
            "gitlab_runner_api_request_retries",
            "The total number of retries made by GitLab Runner in process of completing a request, partitioned by path and method.",
            f.api_retries,
        );
        r.register(
            "gitlab_runner_configuration_loaded",
            "Total number of times the configuration file was loaded by Runner process",
            f.config_loaded,
        );
        r.register(
            "gitlab_runner_configuration_loading_error",
            "Total number of times the configuration file was not loaded by Runner process due to errors",
            f.config_loading_error,
        );
        r.register(
            "gitlab_runner_configuration_saved",
            "Total number of times the configuration file was saved by Runner process",
            f.config_saved,
        );
        r.register(
            "gitlab_runner_configuration_saving_error",
            "Total number of times the configuration file was not saved by Runner process due to errors",
            f.config_saving_error,
        );
        r.register(
            "gitlab_runner_worker_feeds",
            "Total number of times that runner worker is fed to the main loop",
            f.worker_feeds,
        );
        r.register(
            "gitlab_runner_worker_feed_failures",
            "Total number of times that runner worker feeding have failed",
            f.worker_feed_failures,
        );
        r.register(
            "gitlab_runner_worker_slots_number",
            "Current number of runner worker slots",
            f.worker_slots,
        );
        r.register(
            "gitlab_runner_worker_slot_operations",
            "Total number of runner workers slot operations (starting and stopping slots)",
            f.worker_slot_operations,
        );
        r.register(
            "gitlab_runner_worker_processing_failures",
            "Total number of failures when processing runner worker",
            f.worker_processing_failures,
        );
        r.register(
            "gitlab_runner_transfer_bytes",
            "Bytes of cache and artifact archives moved by the runner, partitioned by kind, direction and outcome",
            f.transfer_bytes,
        );
        r.register(
            "gitlab_runner_transfer_duration_seconds",
            "Duration of cache and artifact transfers, partitioned by kind, direction and outcome",
            f.transfer_duration,
        );
        f.inputs.register(r);
    }
}

impl Metrics {
    pub fn new(system_id: &str) -> Arc<Metrics> {
        let families = Families::new();
        Arc::new_cyclic(|weak| {
            let mut registry = Registry::default();
            families.register(&mut registry);
            collect::register(&mut registry, weak.clone());
            let job_router = Arc::new(crate::daemon::router::JobRouter::new(RouterMetrics::register(
                &mut registry,
            )));
            for op in ["started", "stopped"] {
                families
                    .worker_slot_operations
                    .get_or_create(&vec![("operation", op.to_string())])
                    .inc_by(0);
            }
            Metrics {
                registry,
                system_id: system_id.to_string(),
                concurrent: AtomicI64::new(0),
                ready: AtomicBool::new(false),
                runners: Mutex::new(BTreeMap::new()),
                jobs: jobs::JobTable::default(),
                families,
                job_router,
            }
        })
    }

    /// The exposition in Prometheus' text format (0.0.4), as gitlab-runner serves it.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(err) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "cannot encode the metrics");
        }
        out
    }

    /// `/health/ready` answers 200 once the daemon has loaded its configuration and started its runners.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// `concurrent` changed: gitlab-runner runs one worker per slot and counts slots started and stopped.
    pub fn set_concurrent(&self, concurrent: usize) {
        let new = i64::try_from(concurrent).unwrap_or(i64::MAX);
        let old = self.concurrent.swap(new, Ordering::SeqCst);
        let f = &self.families;
        f.worker_slots.set(new);
        let (op, n) = if new >= old {
            ("started", new - old)
        } else {
            ("stopped", old - new)
        };
        f.worker_slot_operations
            .get_or_create(&vec![("operation", op.to_string())])
            .inc_by(u64::try_from(n).unwrap_or(0));
    }

    /// The runners of the (re)loaded configuration; their per-runner series start at zero, as upstream's do.
    pub fn set_runners(&self, runners: &[&RunnerConfig]) {
        let mut table = lock(&self.runners);
        let old = std::mem::take(&mut *table);
        for r in runners {
            let short = r.short_token();
            let gate = old.get(&short).map_or_else(Arc::default, |e| Arc::clone(&e.gate));
            gate.configure(
                r.request_concurrency(),
                oxrunner_core::feature_flags::runner_is_on(&r.feature_flags, request_gate::FLAG),
            );
            table.insert(
                short.clone(),
                RunnerEntry {
                    name: r.name.clone(),
                    limit: i64::from(r.limit().unwrap_or(0)),
                    gate,
                },
            );
            let labels = self.runner_labels(&short, &r.name);
            let f = &self.families;
            f.jobs_total.get_or_create(&labels).inc_by(0);
            f.queuing_exceeded.get_or_create(&labels).inc_by(0);
            f.worker_feeds.get_or_create(&labels).inc_by(0);
            f.worker_feed_failures.get_or_create(&labels).inc_by(0);
            for failure in ["other", "no_free_executor", "job_failure"] {
                let mut l = vec![("failure_type", failure.to_string())];
                l.extend(labels.iter().cloned());
                f.worker_processing_failures.get_or_create(&l).inc_by(0);
            }
        }
    }

    /// A configuration load: success or failure.
    pub fn config_loaded(&self, ok: bool) {
        if ok {
            self.families.config_loaded.inc();
        } else {
            self.families.config_loading_error.inc();
        }
    }

    /// A save of config.toml by the daemon (today only the token rotation writes it): success or failure.
    pub fn config_saved(&self, ok: bool) {
        if ok {
            self.families.config_saved.inc();
        } else {
            self.families.config_saving_error.inc();
        }
    }

    /// A request loop is about to ask GitLab for a job (upstream's worker feed); the runner's request gate
    /// decides whether it may. A runner missing from the table (removed by a reload while its loop finishes) gets
    /// a gate of its own.
    pub fn job_request(&self, runner: &RunnerConfig) -> Arc<RequestGate> {
        let short = runner.short_token();
        self.families
            .worker_feeds
            .get_or_create(&self.runner_labels(&short, &runner.name))
            .inc();
        lock(&self.runners)
            .get(&short)
            .map_or_else(Arc::default, |e| Arc::clone(&e.gate))
    }

    /// The job router client (`FF_USE_JOB_ROUTER`), shared by every runner entry.
    pub fn job_router(&self) -> &crate::daemon::router::JobRouter {
        &self.job_router
    }

    /// A request loop could not get an answer (gitlab-runner counts these as processing failures of type
    /// `other`).
    pub fn request_failed(&self, runner: &RunnerConfig) {
        let mut l = vec![("failure_type", "other".to_string())];
        l.extend(self.runner_labels(&runner.short_token(), &runner.name));
        self.families.worker_processing_failures.get_or_create(&l).inc();
    }

    fn runner_labels(&self, short: &str, name: &str) -> Labels {
        vec![
            ("runner", short.to_string()),
            ("runner_name", name.to_string()),
            ("system_id", self.system_id.clone()),
        ]
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
