//! The DAG scheduler: a job starts as soon as what it waits for is done, within `--concurrency` slots and one
//! job at a time per `resource_group`. Statuses follow GitLab: `when`, `allow_failure` (with `exit_codes`),
//! `retry` (`max`, `when`, `exit_codes`), manual and delayed jobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxrunner_core::{FailureReason, JobOutcome};
use oxrunner_pipeline::{AllowFailure, Retry, When};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use super::job::{Env, JobSpec, reset_outputs, run_attempt};

/// Where a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed {
        allowed: bool,
        exit_code: Option<i32>,
        reason: String,
    },
    /// Not run: a failure before it, a skipped need, or a job kind that cannot run locally.
    Skipped(String),
    /// `when: manual` and not named with `--manual`.
    Manual,
    /// A manual job that may not fail, not played: the pipeline is blocked until it is.
    ManualBlocking,
    /// Not started: it waits (directly or through others) for the blocking manual job named here.
    Blocked(String),
}

impl Status {
    pub fn blocks(&self) -> bool {
        matches!(self, Status::Failed { allowed: false, .. })
    }
}

/// The scheduler's view of one job.
pub struct Node {
    pub spec: Arc<JobSpec>,
    pub preds: Vec<usize>,
    pub uses_needs: bool,
    /// Named with `--manual` (or on the command line): runs like `on_success`.
    pub manual_run: bool,
}

pub struct Record {
    pub status: Status,
    pub duration: Duration,
    pub attempts: u32,
}

#[derive(Clone, Copy)]
pub struct Settings {
    pub concurrency: usize,
    pub skip_delays: bool,
}

enum Decision {
    Run,
    Done(Status),
}

/// The blocking manual job `node` waits for, if one of its predecessors is or waits for one (GitLab leaves such
/// jobs `created`, whatever their `when`).
fn blocked_by(node: &Node, done: &[Option<Record>], nodes: &[Node]) -> Option<String> {
    node.preds
        .iter()
        .find_map(|&p| match done[p].as_ref().map(|r| &r.status) {
            Some(Status::ManualBlocking) => Some(nodes[p].spec.job.name.clone()),
            Some(Status::Blocked(by)) => Some(by.clone()),
            _ => None,
        })
}

fn decide(node: &Node, done: &[Option<Record>], nodes: &[Node]) -> Decision {
    let job = &node.spec.job;
    if let Some(by) = blocked_by(node, done, nodes) {
        return Decision::Done(Status::Blocked(by));
    }
    if let Some(t) = &job.trigger
        && t.pipeline.is_none()
        && t.dynamic.is_none()
    {
        return Decision::Done(Status::Skipped(
            "multi-project and remote triggers need GitLab; not run locally".into(),
        ));
    }
    let statuses: Vec<&Status> = node
        .preds
        .iter()
        .filter_map(|&p| done[p].as_ref().map(|r| &r.status))
        .collect();
    let failed = statuses.iter().any(|s| s.blocks());
    // With `needs`, a job whose needed job did not run cannot run either (GitLab skips it).
    let need_missing = node.uses_needs
        && statuses
            .iter()
            .any(|s| matches!(s, Status::Skipped(_) | Status::Manual));
    let when = match &job.when {
        When::Manual if node.manual_run => &When::OnSuccess,
        w => w,
    };
    match when {
        When::Manual if job.blocks_pipeline() => Decision::Done(Status::ManualBlocking),
        When::Manual => Decision::Done(Status::Manual),
        When::Never => Decision::Done(Status::Skipped("when: never".into())),
        When::Always => Decision::Run,
        When::OnFailure if failed => Decision::Run,
        When::OnFailure => Decision::Done(Status::Skipped("when: on_failure and nothing failed".into())),
        When::OnSuccess | When::Delayed { .. } if failed => {
            Decision::Done(Status::Skipped("an earlier job failed".into()))
        }
        When::OnSuccess | When::Delayed { .. } if need_missing => {
            Decision::Done(Status::Skipped("a needed job did not run".into()))
        }
        When::OnSuccess | When::Delayed { .. } => Decision::Run,
    }
}

/// GitLab's `retry:when` names; a timeout also matches `stuck_or_timeout_failure`.
pub fn should_retry(retry: &Retry, reason: &FailureReason, exit_code: Option<i32>, attempts: u32) -> bool {
    if attempts > retry.max {
        return false;
    }
    let name = reason.as_str();
    let when_ok = retry.when.is_empty()
        || retry.when.iter().any(|w| {
            w == "always"
                || w == name
                || (w == "stuck_or_timeout_failure" && *reason == FailureReason::JobExecutionTimeout)
        });
    let code_ok = retry.exit_codes.is_empty() || exit_code.is_some_and(|c| retry.exit_codes.contains(&c));
    when_ok && code_ok
}

pub fn allowed(af: &AllowFailure, exit_code: Option<i32>) -> bool {
    match af {
        AllowFailure::No => false,
        AllowFailure::Yes => true,
        AllowFailure::ExitCodes(codes) => exit_code.is_some_and(|c| codes.contains(&c)),
    }
}

/// Runs the nodes to completion; returns one record per node.
pub async fn run(env: Arc<Env>, nodes: Vec<Node>, settings: Settings) -> Vec<Record> {
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut groups: HashMap<String, Arc<Mutex<()>>> = HashMap::new();
    for n in &nodes {
        if let Some(g) = &n.spec.job.resource_group {
            groups.entry(g.clone()).or_default();
        }
    }
    // Before anything starts: a job of this run that ends up skipped must not pass on an older run's outputs.
    for n in &nodes {
        reset_outputs(&env, &n.spec);
        env.console.register(&n.spec.display, &n.spec.job.stage);
    }
    let mut done: Vec<Option<Record>> = nodes.iter().map(|_| None).collect();
    let mut started = vec![false; nodes.len()];
    let mut tasks = JoinSet::new();
    loop {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for (i, node) in nodes.iter().enumerate() {
                if started[i] || !node.preds.iter().all(|&p| done[p].is_some()) {
                    continue;
                }
                started[i] = true;
                progressed = true;
                let decision = if env.abort.is_cancelled() {
                    Decision::Done(Status::Skipped("interrupted".into()))
                } else {
                    decide(node, &done, &nodes)
                };
                match decision {
                    Decision::Done(status) => {
                        env.console
                            .job_finished(&node.spec.display, &status, Duration::ZERO);
                        if let Status::Skipped(why) = &status {
                            env.console
                                .note(&format!("{} | skipped: {why}", node.spec.display));
                        }
                        if let Status::Blocked(by) = &status {
                            env.console
                                .note(&format!("{} | waiting for manual job {by}", node.spec.display));
                        }
                        done[i] = Some(Record {
                            status,
                            duration: Duration::ZERO,
                            attempts: 0,
                        });
                    }
                    Decision::Run => {
                        let env = env.clone();
                        let spec = node.spec.clone();
                        let slots = slots.clone();
                        let group = spec
                            .job
                            .resource_group
                            .as_ref()
                            .and_then(|g| groups.get(g))
                            .cloned();
                        let delay = match &spec.job.when {
                            When::Delayed { start_in } if !settings.skip_delays => Some(*start_in),
                            _ => None,
                        };
                        tasks.spawn(async move {
                            let record = if spec.job.trigger.is_some() {
                                super::child::run(env, spec, settings).await
                            } else {
                                run_job(env, spec, slots, group, delay).await
                            };
                            (i, record)
                        });
                    }
                }
            }
        }
        match tasks.join_next().await {
            Some(Ok((i, record))) => {
                env.console
                    .job_finished(&nodes[i].spec.display, &record.status, record.duration);
                done[i] = Some(record);
            }
            Some(Err(e)) => {
                // A panicking job task must not hang the pipeline: find which node it was and fail it.
                env.console
                    .note(&format!("ERROR: a job task stopped unexpectedly: {e}"));
                if let Some(i) = (0..nodes.len()).find(|&i| started[i] && done[i].is_none()) {
                    done[i] = Some(Record {
                        status: Status::Failed {
                            allowed: false,
                            exit_code: None,
                            reason: "runner_system_failure".into(),
                        },
                        duration: Duration::ZERO,
                        attempts: 1,
                    });
                }
            }
            None => break,
        }
    }
    done.into_iter()
        .map(|r| {
            r.unwrap_or(Record {
                status: Status::Skipped("never became ready".into()),
                duration: Duration::ZERO,
                attempts: 0,
            })
        })
        .collect()
}

async fn run_job(
    env: Arc<Env>,
    spec: Arc<JobSpec>,
    slots: Arc<Semaphore>,
    group: Option<Arc<Mutex<()>>>,
    delay: Option<Duration>,
) -> Record {
    let name = spec.display.clone();
    if let Some(d) = delay {
        env.console.note(&format!(
            "{name} | delayed: starting in {}s (set OXRUNNER_EXEC_NO_DELAY=1 to skip the wait)",
            d.as_secs()
        ));
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = env.abort.cancelled() => {}
        }
    }
    // The group lock is taken before a slot, so a job waiting for its group does not hold a slot.
    let _group = match &group {
        Some(g) => Some(g.lock().await),
        None => None,
    };
    let Ok(_slot) = slots.acquire().await else {
        return Record {
            status: Status::Skipped("the scheduler stopped".into()),
            duration: Duration::ZERO,
            attempts: 0,
        };
    };
    env.console.job_started(&name);
    let start = Instant::now();
    let mut attempts = 0;
    let status = loop {
        attempts += 1;
        if env.abort.is_cancelled() {
            break Status::Skipped("interrupted".into());
        }
        let attempt = run_attempt(env.clone(), spec.clone(), attempts > 1).await;
        match attempt.outcome {
            JobOutcome::Success => break Status::Passed,
            JobOutcome::Failed {
                reason, exit_code, ..
            } => {
                if !env.abort.is_cancelled() && should_retry(&spec.job.retry, &reason, exit_code, attempts) {
                    env.console.note(&format!(
                        "{name} | failed ({}); retrying (attempt {} of {})",
                        reason.as_str(),
                        attempts + 1,
                        spec.job.retry.max + 1
                    ));
                    continue;
                }
                break Status::Failed {
                    allowed: allowed(&spec.job.allow_failure, exit_code),
                    exit_code,
                    reason: reason.as_str().to_string(),
                };
            }
        }
    };
    Record {
        status,
        duration: start.elapsed(),
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules() {
        let r = Retry {
            max: 2,
            when: vec![],
            exit_codes: vec![],
        };
        assert!(should_retry(&r, &FailureReason::ScriptFailure, Some(1), 1));
        assert!(should_retry(&r, &FailureReason::ScriptFailure, Some(1), 2));
        assert!(!should_retry(&r, &FailureReason::ScriptFailure, Some(1), 3));
        let r = Retry {
            max: 1,
            when: vec!["stuck_or_timeout_failure".into()],
            exit_codes: vec![],
        };
        assert!(!should_retry(&r, &FailureReason::ScriptFailure, Some(1), 1));
        assert!(should_retry(&r, &FailureReason::JobExecutionTimeout, None, 1));
        let r = Retry {
            max: 1,
            when: vec![],
            exit_codes: vec![137],
        };
        assert!(!should_retry(&r, &FailureReason::ScriptFailure, Some(1), 1));
        assert!(should_retry(&r, &FailureReason::ScriptFailure, Some(137), 1));
    }

    #[test]
    fn allow_failure_exit_codes() {
        assert!(allowed(&AllowFailure::Yes, Some(1)));
        assert!(!allowed(&AllowFailure::No, Some(1)));
        assert!(allowed(&AllowFailure::ExitCodes(vec![3]), Some(3)));
        assert!(!allowed(&AllowFailure::ExitCodes(vec![3]), Some(4)));
    }
}
