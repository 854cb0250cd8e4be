//! How many job requests of one `[[runners]]` entry may be in flight at once.
//!
//! `request_concurrency` is the ceiling. With `FF_USE_ADAPTIVE_REQUEST_CONCURRENCY` (on by default) the number in
//! use follows gitlab-runner's AIMD rule (`commands/builds_helper.go`): an adaptive limit that starts at 1, grows
//! by 10 % with every job received, shrinks by 5 % with every answer without a job and halves when GitLab asked
//! the runner to slow down (a request it had to retry: 408, 429, 5xx); it stays within 1 and `request_concurrency`,
//! and a request goes out only while fewer than its rounded-up value are in flight. So an idle runner keeps one
//! long poll open instead of `request_concurrency` of them, and a busy one climbs back up as jobs arrive. Without
//! the flag every request loop may ask at once, as before.
//!
//! The gate outlives a configuration reload (it is kept per runner in the metrics table, which also reads it for
//! the `gitlab_runner_request_concurrency*` families), as upstream keeps its counters per runner token.

use std::sync::{Arc, Mutex, MutexGuard};

/// gitlab-runner's factors: a clean job pickup grows the limit, an empty or failed answer nudges it down, a
/// request the server made us retry (back-pressure) halves it.
const INCREASE: f64 = 1.1;
const DECREASE: f64 = 0.95;
const RETRIED_DECREASE: f64 = 0.5;

/// The flag, as read from `[runners.feature_flags]` (runner-level, as upstream: a job cannot change it).
pub const FLAG: &str = "FF_USE_ADAPTIVE_REQUEST_CONCURRENCY";

/// What a request loop found out, for the adaptive limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// GitLab handed out a job.
    Job,
    /// No job (or no answer), and nothing asked us to slow down.
    Empty,
    /// GitLab answered at least once with a status the client retries: it is overloaded.
    Retried,
}

/// The values behind the request-concurrency metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GateSnapshot {
    /// Requests in flight.
    pub requests: u32,
    /// `request_concurrency` as last applied.
    pub hard_limit: u32,
    /// The adaptive limit (0 until the first answer, and while the flag is off, as upstream reports it).
    pub adaptive_limit: f64,
    /// The limit the last request was checked against.
    pub used_limit: u32,
    /// Requests not made because the limit was reached.
    pub exceeded: u64,
}

/// Request accounting for one runner entry.
#[derive(Debug, Default)]
pub struct RequestGate {
    state: Mutex<GateSnapshot>,
}

impl RequestGate {
    /// Applies a (re)loaded `request_concurrency` and flag to the reported limits before the next request does.
    pub fn configure(&self, hard_limit: u32, adaptive: bool) {
        let mut s = self.lock();
        s.hard_limit = hard_limit.max(1);
        s.used_limit = used_limit(&s, s.hard_limit, adaptive);
    }

    /// A request slot, or `None` (counted as exceeded) when as many requests as the limit in use are in flight.
    pub fn try_acquire(self: &Arc<Self>, hard_limit: u32, adaptive: bool) -> Option<RequestSlot> {
        let hard_limit = hard_limit.max(1);
        let mut s = self.lock();
        s.hard_limit = hard_limit;
        s.used_limit = used_limit(&s, hard_limit, adaptive);
        if s.requests >= s.used_limit {
            s.exceeded += 1;
            return None;
        }
        s.requests += 1;
        Some(RequestSlot {
            gate: Arc::clone(self),
            hard_limit,
            adaptive,
            done: false,
        })
    }

    pub fn snapshot(&self) -> GateSnapshot {
        *self.lock()
    }

    fn release(&self, hard_limit: u32, adaptive: bool, answer: Answer) {
        let mut s = self.lock();
        if adaptive {
            let factor = match answer {
                Answer::Retried => RETRIED_DECREASE,
                Answer::Job => INCREASE,
                Answer::Empty => DECREASE,
            };
            s.adaptive_limit = (s.adaptive_limit * factor).clamp(1.0, f64::from(hard_limit));
        }
        s.requests = s.requests.saturating_sub(1);
    }

    fn lock(&self) -> MutexGuard<'_, GateSnapshot> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The adaptive limit rounded up, between 1 and `request_concurrency`; the configured value without the flag.
fn used_limit(s: &GateSnapshot, hard_limit: u32, adaptive: bool) -> u32 {
    if !adaptive {
        return hard_limit;
    }
    // The adaptive limit is clamped to [1, hard_limit] (≤ u32::MAX), so the cast cannot truncate.
    (s.adaptive_limit.ceil() as u32).clamp(1, hard_limit)
}

/// One request in flight. [`RequestSlot::finish`] reports its answer; dropping it unfinished (the request never
/// went out, or the loop was stopped) counts as an empty answer, as upstream releases early exits.
#[derive(Debug)]
pub struct RequestSlot {
    gate: Arc<RequestGate>,
    hard_limit: u32,
    adaptive: bool,
    done: bool,
}

impl RequestSlot {
    pub fn finish(mut self, answer: Answer) {
        self.done = true;
        self.gate.release(self.hard_limit, self.adaptive, answer);
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        if !self.done {
            self.gate.release(self.hard_limit, self.adaptive, Answer::Empty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(gate: &Arc<RequestGate>, hard: u32, adaptive: bool, a: Answer) {
        gate.try_acquire(hard, adaptive).unwrap().finish(a);
    }

    #[test]
    fn adaptive_starts_at_one_request_and_refuses_the_second() {
        let gate = Arc::new(RequestGate::default());
        let first = gate.try_acquire(4, true).unwrap();
        assert!(gate.try_acquire(4, true).is_none());
        let s = gate.snapshot();
        assert_eq!((s.requests, s.used_limit, s.hard_limit, s.exceeded), (1, 1, 4, 1));
        first.finish(Answer::Empty);
        assert_eq!(gate.snapshot().adaptive_limit, 1.0);
    }

    #[test]
    fn without_the_flag_every_loop_may_ask_and_the_adaptive_value_is_untouched() {
        let gate = Arc::new(RequestGate::default());
        let slots: Vec<_> = (0..4).map(|_| gate.try_acquire(4, false).unwrap()).collect();
        assert!(gate.try_acquire(4, false).is_none());
        for s in slots {
            s.finish(Answer::Retried);
        }
        let s = gate.snapshot();
        assert_eq!((s.requests, s.used_limit, s.adaptive_limit), (0, 4, 0.0));
    }

    #[test]
    fn jobs_grow_the_limit_up_to_request_concurrency() {
        let gate = Arc::new(RequestGate::default());
        // The first pickup leaves the limit at the floor (0 * 1.1 is clamped to 1), as upstream.
        answer(&gate, 4, true, Answer::Job);
        assert_eq!(gate.snapshot().adaptive_limit, 1.0);
        answer(&gate, 4, true, Answer::Job);
        // 1.1 rounds up to 2: a second request may go out.
        let a = gate.try_acquire(4, true).unwrap();
        let b = gate.try_acquire(4, true).unwrap();
        assert!(gate.try_acquire(4, true).is_none());
        drop((a, b));
        for _ in 0..40 {
            answer(&gate, 4, true, Answer::Job);
        }
        let s = gate.snapshot();
        assert_eq!((s.adaptive_limit, s.used_limit), (4.0, 4));
    }

    #[test]
    fn empty_answers_shrink_slowly_and_retried_ones_halve() {
        let gate = Arc::new(RequestGate::default());
        for _ in 0..40 {
            answer(&gate, 20, true, Answer::Job);
        }
        assert!((gate.snapshot().adaptive_limit - 20.0).abs() < 1e-9);
        answer(&gate, 20, true, Answer::Empty);
        assert!((gate.snapshot().adaptive_limit - 19.0).abs() < 1e-9);
        answer(&gate, 20, true, Answer::Retried);
        assert!((gate.snapshot().adaptive_limit - 9.5).abs() < 1e-9);
        for _ in 0..10 {
            answer(&gate, 20, true, Answer::Retried);
        }
        assert_eq!(gate.snapshot().adaptive_limit, 1.0);
    }

    #[test]
    fn a_lowered_request_concurrency_caps_the_adaptive_limit() {
        let gate = Arc::new(RequestGate::default());
        for _ in 0..40 {
            answer(&gate, 8, true, Answer::Job);
        }
        gate.configure(2, true);
        assert_eq!(gate.snapshot().used_limit, 2);
        answer(&gate, 2, true, Answer::Job);
        assert_eq!(gate.snapshot().adaptive_limit, 2.0);
    }

    /// The metrics read the gate under upstream's names: the adaptive value, the limit in use and the refusals.
    #[test]
    fn metrics_report_the_gate() {
        use oxrunner_config::RunnerConfig;
        let metrics = crate::metrics::Metrics::new("s_000000000000");
        let runner = RunnerConfig {
            token: "glrt-gate0123456789".into(),
            request_concurrency: 4,
            ..RunnerConfig::default()
        };
        metrics.set_runners(&[&runner]);
        let gate = metrics.job_request(&runner);
        gate.try_acquire(4, true).unwrap().finish(Answer::Job);
        gate.try_acquire(4, true).unwrap().finish(Answer::Job);
        let held = gate.try_acquire(4, true).unwrap();
        let _second = gate.try_acquire(4, true).unwrap();
        assert!(gate.try_acquire(4, true).is_none());
        let text = metrics.encode();
        let sample = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .and_then(|l| l.rsplit_once(' '))
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert_eq!(sample("gitlab_runner_request_concurrency"), 2.0);
        assert_eq!(sample("gitlab_runner_request_concurrency_hard_limit"), 4.0);
        assert_eq!(sample("gitlab_runner_request_concurrency_adaptive_limit"), 1.1);
        assert_eq!(sample("gitlab_runner_request_concurrency_used_limit"), 2.0);
        assert_eq!(sample("gitlab_runner_request_concurrency_exceeded_total"), 1.0);
        drop(held);
    }
}
