//! Shared server state. A std mutex is enough: no lock is held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::sync::Notify;

use crate::FakeOptions;
use crate::faults::FaultState;
use crate::records::{JobRecord, Project, RequestLog, RunnerRecord};
use crate::spec::JobSpec;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later request into a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub(crate) fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Server-side job state beyond the public record.
pub(crate) struct JobState {
    pub record: JobRecord,
    pub spec: JobSpec,
    /// Features the picking runner advertised (decides graceful cancel).
    pub runner_features: Option<serde_json::Value>,
    /// GitLab keeps live trace chunks in Redis until a final update asks for them to be
    /// persisted; a final PUT arriving while chunks are live is answered 202.
    pub live_chunks: bool,
    /// When the first final update with a checksum arrived (`Ci::BuildPendingState`).
    pub pending_state_at: Option<Instant>,
    /// Secret of the pre-signed object-storage URL for this job's archive.
    pub download_secret: String,
}

pub(crate) struct Inner {
    pub next_runner_id: i64,
    pub runners: Vec<RunnerRecord>,
    pub next_job_id: i64,
    pub jobs: BTreeMap<i64, JobState>,
    pub next_project_id: i64,
    pub projects: Vec<Project>,
    pub next_pipeline_id: i64,
    /// Redis `runner:build_queue:<token>` values.
    pub queue_values: HashMap<String, String>,
    pub running_now: usize,
    pub max_running: usize,
    pub requests: Vec<RequestLog>,
}

pub(crate) struct Shared {
    pub opts: FakeOptions,
    pub base_url: String,
    /// Base of the pre-signed object-storage URLs (GitLab's own URL unless the store has its own listener).
    pub object_storage_url: String,
    pub inner: Mutex<Inner>,
    /// Woken whenever a runner queue value changes (Workhorse watches these keys).
    pub queue_changed: Notify,
    /// Woken whenever a job changes status.
    pub job_changed: Notify,
    pub faults: Mutex<FaultState>,
    pub repos: tempfile::TempDir,
    /// `POST /jobs/request` calls being answered (or held by long polling) right now, and the most seen at once.
    pub job_requests_in_flight: AtomicUsize,
    pub job_requests_max_in_flight: AtomicUsize,
    /// The job router stand-in (`FakeOptions::job_router`): its address, mode and log.
    pub router_url: std::sync::OnceLock<String>,
    pub router_tunnel_url: std::sync::OnceLock<String>,
    pub router: Mutex<crate::job_router::RouterState>,
}

/// Counts one `POST /jobs/request` in [`Shared::job_requests_in_flight`] while it lives (also when the client
/// goes away and the handler is dropped mid-poll).
pub(crate) struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    pub fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.job_requests_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.job_requests_max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.job_requests_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) type SharedRef = Arc<Shared>;

pub(crate) fn is_processing(status: &str) -> bool {
    status == "running" || status == "canceling"
}

impl Inner {
    pub fn new() -> Inner {
        Inner {
            next_runner_id: 1,
            runners: Vec::new(),
            next_job_id: 1,
            jobs: BTreeMap::new(),
            next_project_id: 1,
            projects: Vec::new(),
            next_pipeline_id: 1,
            queue_values: HashMap::new(),
            running_now: 0,
            max_running: 0,
            requests: Vec::new(),
        }
    }

    pub fn runner_by_token(&self, token: &str) -> Option<&RunnerRecord> {
        if token.is_empty() {
            return None;
        }
        self.runners.iter().find(|r| r.token == token && !r.is_expired())
    }

    pub fn runner_by_token_mut(&mut self, token: &str) -> Option<&mut RunnerRecord> {
        if token.is_empty() {
            return None;
        }
        self.runners
            .iter_mut()
            .find(|r| r.token == token && !r.is_expired())
    }

    pub fn add_runner(&mut self, mut record: RunnerRecord) -> RunnerRecord {
        record.id = self.next_runner_id;
        self.next_runner_id += 1;
        self.runners.push(record.clone());
        record
    }

    pub fn ensure_queue_value(&mut self, token: &str) -> String {
        self.queue_values
            .entry(token.to_string())
            .or_insert_with(|| random_hex(32))
            .clone()
    }

    /// GitLab ticks the queue of every runner that could pick a newly pending build.
    pub fn tick_runners_for(&mut self, tags: &[String]) {
        let tokens: Vec<String> = self
            .runners
            .iter()
            .filter(|r| runner_can_pick(r, tags))
            .map(|r| r.token.clone())
            .collect();
        for token in tokens {
            self.queue_values.insert(token, random_hex(32));
        }
    }

    pub fn job_by_token(&self, token: &str) -> Option<&JobState> {
        if token.is_empty() {
            return None;
        }
        self.jobs.values().find(|j| j.record.token == token)
    }

    /// Moves a job to `status`, keeping the running-jobs gauge right.
    pub fn set_status(&mut self, id: i64, status: &str) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let was = is_processing(&job.record.status);
        let now = is_processing(status);
        job.record.status = status.to_string();
        if !was && now {
            self.running_now += 1;
            self.max_running = self.max_running.max(self.running_now);
        } else if was && !now {
            self.running_now = self.running_now.saturating_sub(1);
        }
    }

    pub fn next_pending_for(&self, runner: &RunnerRecord) -> Option<i64> {
        self.jobs
            .values()
            .find(|j| j.record.status == "pending" && runner_can_pick(runner, &j.record.tags))
            .map(|j| j.record.id)
    }
}

/// Tag matching of `Ci::Runner#matches_build?`: every job tag must be a runner tag, and an
/// untagged job needs `run_untagged`.
pub(crate) fn runner_can_pick(runner: &RunnerRecord, job_tags: &[String]) -> bool {
    if runner.paused {
        return false;
    }
    if job_tags.is_empty() {
        return runner.run_untagged;
    }
    job_tags.iter().all(|t| runner.tags.contains(t))
}
