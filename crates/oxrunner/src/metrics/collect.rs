//! Families read at scrape time: running jobs, `concurrent`, `limit`, request concurrency, the build, logged
//! errors and the process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Weak;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{LOGGED_ERRORS, LOGGED_WARNINGS, Labels, Metrics, lock};
use crate::daemon::request_gate::GateSnapshot;
use crate::version;

pub(super) fn register(registry: &mut Registry, metrics: Weak<Metrics>) {
    registry.register_collector(Box::new(Present { metrics }));
}

struct Present {
    metrics: Weak<Metrics>,
}

impl fmt::Debug for Present {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Present")
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, f64)]) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, f64)]) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        family
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
    }
    Ok(())
}

impl Collector for Present {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(m) = self.metrics.upgrade() else {
            return Ok(());
        };
        self.jobs(&m, &mut enc)?;
        self.runners(&m, &mut enc)?;
        gauge(
            &mut enc,
            "gitlab_runner_concurrent",
            "The current value of concurrent setting",
            &[(Vec::new(), m.concurrent.load(Ordering::SeqCst) as f64)],
        )?;
        let build = vec![
            ("name", "oxrunner".to_string()),
            ("version", version::VERSION.to_string()),
            ("revision", version::REVISION.to_string()),
            ("branch", version::BRANCH.to_string()),
            // Upstream's label name, kept for dashboards; the value is the compiler that built this binary.
            ("go_version", version::RUSTC.to_string()),
            ("built_at", version::BUILT.to_string()),
            ("os", oxrunner_api::go_os().to_string()),
            ("architecture", oxrunner_api::go_arch().to_string()),
        ];
        gauge(
            &mut enc,
            "gitlab_runner_version_info",
            "A metric with a constant '1' value labeled by different build stats fields.",
            &[(build, 1.0)],
        )?;
        let level = |l: &str| vec![("level", l.to_string())];
        counter(
            &mut enc,
            "gitlab_runner_errors",
            "The number of caught errors.",
            &[
                (level("panic"), 0.0),
                (level("fatal"), 0.0),
                (level("error"), LOGGED_ERRORS.load(Ordering::Relaxed) as f64),
                (level("warning"), LOGGED_WARNINGS.load(Ordering::Relaxed) as f64),
            ],
        )?;
        process(&mut enc)
    }
}

impl Present {
    fn jobs(&self, m: &Metrics, enc: &mut DescriptorEncoder) -> fmt::Result {
        // Every runner has an `idle` series at 0, so the family is present while nothing runs.
        let mut counts: BTreeMap<Labels, u64> = BTreeMap::new();
        for (short, r) in lock(&m.runners).iter() {
            counts.insert(job_labels(m, short, &r.name, "idle", "idle", "idle"), 0);
        }
        for job in m.jobs.snapshot() {
            let labels = job_labels(
                m,
                &job.runner,
                &job.runner_name,
                job.state,
                &job.stage,
                job.executor_stage,
            );
            *counts.entry(labels).or_default() += 1;
        }
        let rows: Vec<(Labels, f64)> = counts.into_iter().map(|(l, n)| (l, n as f64)).collect();
        gauge(
            enc,
            "gitlab_runner_jobs",
            "The current number of running builds.",
            &rows,
        )
    }

    fn runners(&self, m: &Metrics, enc: &mut DescriptorEncoder) -> fmt::Result {
        let runners = lock(&m.runners).clone();
        let full = |short: &str, name: &str| {
            vec![
                ("runner", short.to_string()),
                ("runner_name", name.to_string()),
                ("system_id", m.system_id.clone()),
            ]
        };
        let short_only =
            |short: &str| vec![("runner", short.to_string()), ("system_id", m.system_id.clone())];
        let rows = |f: &dyn Fn(&str, &super::RunnerEntry) -> (Labels, f64)| -> Vec<(Labels, f64)> {
            runners.iter().map(|(s, r)| f(s, r)).collect()
        };
        gauge(
            enc,
            "gitlab_runner_limit",
            "The current value of concurrent setting",
            &rows(&|s, r| (full(s, &r.name), r.limit as f64)),
        )?;
        let gates: Vec<(Labels, GateSnapshot)> = runners
            .iter()
            .map(|(s, r)| (short_only(s), r.gate.snapshot()))
            .collect();
        let of = |f: fn(&GateSnapshot) -> f64| -> Vec<(Labels, f64)> {
            gates.iter().map(|(l, g)| (l.clone(), f(g))).collect()
        };
        gauge(
            enc,
            "gitlab_runner_request_concurrency",
            "The current number of concurrent requests for a new job",
            &of(|g| f64::from(g.requests)),
        )?;
        counter(
            enc,
            "gitlab_runner_request_concurrency_exceeded",
            "Count of excess requests above the configured request_concurrency limit",
            &of(|g| g.exceeded as f64),
        )?;
        gauge(
            enc,
            "gitlab_runner_request_concurrency_hard_limit",
            "Configured request_concurrency limit",
            &of(|g| f64::from(g.hard_limit)),
        )?;
        gauge(
            enc,
            "gitlab_runner_request_concurrency_adaptive_limit",
            "Computed adaptive request concurrency limit",
            &of(|g| g.adaptive_limit),
        )?;
        gauge(
            enc,
            "gitlab_runner_request_concurrency_used_limit",
            "Used request concurrency limit",
            &of(|g| f64::from(g.used_limit)),
        )
    }
}

fn job_labels(
    m: &Metrics,
    short: &str,
    name: &str,
    state: &str,
    stage: &str,
    executor_stage: &str,
) -> Labels {
    vec![
        ("runner", short.to_string()),
        ("runner_name", name.to_string()),
        ("system_id", m.system_id.clone()),
        ("state", state.to_string()),
        ("stage", stage.to_string()),
        ("executor_stage", executor_stage.to_string()),
    ]
}

fn process(enc: &mut DescriptorEncoder) -> fmt::Result {
    let Some(p) = super::process::read() else {
        return Ok(());
    };
    let one = |v: f64| [(Vec::new(), v)];
    counter(
        enc,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        &one(p.cpu_seconds),
    )?;
    gauge(
        enc,
        "process_open_fds",
        "Number of open file descriptors.",
        &one(p.open_fds as f64),
    )?;
    if let Some(max) = p.max_fds {
        gauge(
            enc,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &one(max as f64),
        )?;
    }
    gauge(
        enc,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        &one(p.virtual_bytes as f64),
    )?;
    gauge(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &one(p.resident_bytes as f64),
    )?;
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &one(p.start_time_seconds),
    )
}
