//! Jobs: the table behind `gitlab_runner_jobs` and `/debug/jobs/list`, and the per-job handle the daemon keeps
//! while a job runs (it hears the job's stages from the driver).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxrunner_api::JobResponse;
use oxrunner_config::{ExecutorKind, RunnerConfig};
use oxrunner_core::{FailureReason, JobOutcome};
use prometheus_client::metrics::histogram::Histogram;

use super::{Families, Labels, Metrics, lock};

const JOB_DURATION_BUCKETS: [f64; 10] = [
    30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 18000.0, 36000.0,
];
/// Upstream's buckets for queue and stage durations.
const QUEUE_BUCKETS: [f64; 10] = [1.0, 3.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0];

/// Every job is dispatched as a classic script job here (gitlab-runner's "traditional" mode, not "steps").
const MODE: &str = "traditional";

pub(super) fn job_duration_histogram() -> Histogram {
    Histogram::new(JOB_DURATION_BUCKETS)
}

pub(super) fn queue_histogram() -> Histogram {
    Histogram::new(QUEUE_BUCKETS)
}

/// One job as `gitlab_runner_jobs` and `/debug/jobs/list` show it.
#[derive(Clone)]
pub(super) struct JobEntry {
    pub runner: String,
    pub runner_name: String,
    pub url: String,
    pub state: &'static str,
    pub stage: String,
    pub executor_stage: &'static str,
    pub started: Instant,
}

#[derive(Default)]
pub(super) struct JobTable {
    next: AtomicU64,
    entries: Arc<Mutex<BTreeMap<u64, JobEntry>>>,
}

impl JobTable {
    pub(super) fn snapshot(&self) -> Vec<JobEntry> {
        lock(&self.entries).values().cloned().collect()
    }
}

/// The daemon's handle on one job's metrics; dropping it (after the executor's last clean-up) removes the job
/// from `gitlab_runner_jobs` and records its duration.
pub struct JobMetrics {
    id: u64,
    entries: Arc<Mutex<BTreeMap<u64, JobEntry>>>,
    families: Families,
    labels: Labels,
    docker: bool,
    /// `FF_EXPORT_HIGH_CARDINALITY_METRICS`: gitlab-runner records stage durations only with it.
    stage_timing: bool,
    stage_started: Mutex<HashMap<String, Instant>>,
    started: Instant,
}

impl Metrics {
    /// A job was received: counts it and lists it as pending until its first stage.
    pub fn job_started(&self, runner: &RunnerConfig, job: &JobResponse) -> Arc<JobMetrics> {
        let short = runner.short_token();
        let labels = self.runner_labels(&short, &runner.name);
        let f = &self.families;
        f.jobs_total.get_or_create(&labels).inc();
        let info = &job.job_info;
        let mut queue_labels = labels.clone();
        queue_labels.push((
            "project_jobs_running",
            info.project_jobs_running_on_instance_runners_count.clone(),
        ));
        f.job_queue_duration
            .get_or_create(&queue_labels)
            .observe(info.time_in_queue_seconds);
        f.job_queue_size.get_or_create(&labels).set(info.queue_size);
        f.job_queue_depth.get_or_create(&labels).set(info.queue_depth);
        f.queuing_exceeded.get_or_create(&labels).inc_by(0);
        let kind = runner.executor_kind();
        f.job_execution_mode
            .get_or_create(&vec![("mode", MODE.to_string()), ("executor", kind.to_string())])
            .inc();

        let now = Instant::now();
        let id = self.jobs.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.jobs.entries).insert(
            id,
            JobEntry {
                runner: short,
                runner_name: runner.name.clone(),
                url: job_url(job),
                state: "pending",
                stage: String::new(),
                executor_stage: "",
                started: now,
            },
        );
        let stage_timing = job
            .variables
            .iter()
            .rev()
            .find(|v| v.key == "FF_EXPORT_HIGH_CARDINALITY_METRICS")
            .is_some_and(|v| matches!(v.value.trim(), "true" | "1" | "TRUE" | "True" | "t" | "T"));
        Arc::new(JobMetrics {
            id,
            entries: Arc::clone(&self.jobs.entries),
            families: self.families.clone(),
            labels,
            docker: kind == ExecutorKind::Docker,
            stage_timing,
            stage_started: Mutex::new(HashMap::new()),
            started: now,
        })
    }
}

impl JobMetrics {
    fn update(&self, f: impl FnOnce(&mut JobEntry)) {
        if let Some(e) = lock(&self.entries).get_mut(&self.id) {
            f(e);
        }
    }

    /// The executor exists; the job has not started a stage yet.
    pub fn executor_created(&self) {
        self.update(|e| e.executor_stage = "created");
    }

    /// The driver returned: the job's state is its outcome, and a failure is counted by reason.
    pub fn finished(&self, outcome: &JobOutcome) {
        let state = match outcome {
            JobOutcome::Success => "success",
            JobOutcome::Failed { reason, .. } => {
                let mut labels = vec![
                    ("runner", self.labels[0].1.clone()),
                    ("runner_name", self.labels[1].1.clone()),
                    ("failure_reason", reason.as_str().to_string()),
                    ("mode", MODE.to_string()),
                ];
                self.families.failed_jobs.get_or_create(&labels).inc();
                labels.truncate(0);
                labels.push(("failure_type", "job_failure".to_string()));
                labels.extend(self.labels.iter().cloned());
                self.families
                    .worker_processing_failures
                    .get_or_create(&labels)
                    .inc();
                match reason {
                    FailureReason::JobCanceled => "canceled",
                    FailureReason::JobExecutionTimeout => "timedout",
                    FailureReason::RunnerInterrupted => "terminated",
                    _ => "failed",
                }
            }
        };
        self.update(|e| {
            e.state = state;
            e.executor_stage = "finish";
        });
    }

    /// The executor removes what the job left (containers, processes).
    pub fn cleaning_up(&self) {
        let stage = if self.docker { "docker_cleanup" } else { "cleanup" };
        self.update(|e| e.executor_stage = stage);
    }
}

impl oxrunner_core::StageObserver for JobMetrics {
    fn stage_started(&self, stage: &str) {
        let executor_stage = match (stage, self.docker) {
            ("prepare_executor", true) => "docker_prepare",
            ("prepare_executor", false) => "prepare",
            (_, true) => "docker_run",
            // A shell or custom job runs its scripts while the executor is still in its prepared state.
            (_, false) => "prepare",
        };
        self.update(|e| {
            e.state = "running";
            stage.clone_into(&mut e.stage);
            e.executor_stage = executor_stage;
        });
        if self.stage_timing {
            lock(&self.stage_started).insert(stage.to_string(), Instant::now());
        }
    }

    fn stage_ended(&self, stage: &str) {
        if !self.stage_timing {
            return;
        }
        let Some(started) = lock(&self.stage_started).remove(stage) else {
            return;
        };
        let mut labels = self.labels.clone();
        labels.push(("stage", stage.to_string()));
        self.families
            .job_stage_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

impl Drop for JobMetrics {
    fn drop(&mut self) {
        lock(&self.entries).remove(&self.id);
        let mut labels = self.labels.clone();
        labels.push(("mode", MODE.to_string()));
        self.families
            .job_duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The job's page, as gitlab-runner lists it: `CI_JOB_URL` when GitLab sent it, else derived from the project's
/// clone URL (without its credentials).
fn job_url(job: &JobResponse) -> String {
    if let Some(v) = job
        .variables
        .iter()
        .find(|v| v.key == "CI_JOB_URL" && !v.value.is_empty())
    {
        return v.value.clone();
    }
    let project = match reqwest::Url::parse(&job.git_info.repo_url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => String::new(),
    };
    format!(
        "{}/-/jobs/{}",
        project.trim_end_matches('/').trim_end_matches(".git"),
        job.id
    )
}

/// `/debug/jobs/list` (its version 2 layout).
pub(super) fn list(entries: &[JobEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(
            out,
            "url={} state={} stage={} executor_stage={} duration={}",
            e.url,
            e.state,
            e.stage,
            e.executor_stage,
            go_duration(e.started.elapsed())
        );
    }
    out
}

/// A duration as Go's `time.Duration.String` prints it (`1m2.5s`, `350ms`), which tools parsing the list expect.
pub(super) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            return format!("{nanos}ns");
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{}{unit}", trim_float(value));
    }
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    let s = (total_secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{}s", trim_float(s));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(62)), "1m2s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(2)), "2µs");
    }
}
