//! The job router's circuit breaker, with gitlab-runner's rules (`helpers/circuitbreaker`): closed until
//! `threshold` consecutive failures that span at least `grace` (a burst of failures at one moment, such as every
//! request on a dropped connection, does not trip it), then open for `open_timeout`, then one trial request
//! (half-open) whose outcome closes or re-opens it. Time is tokio's, so tests can pause it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::RouterMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// gitlab-runner's gauge value.
    fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

struct Inner {
    state: State,
    /// Consecutive failures; only read while closed, and reset only by a success.
    failures: u32,
    first_failure_at: Option<Instant>,
    opened_at: Option<Instant>,
}

pub struct Breaker {
    threshold: u32,
    open_timeout: Duration,
    grace: Duration,
    inner: Mutex<Inner>,
    metrics: RouterMetrics,
}

impl Breaker {
    pub fn new(threshold: u32, open_timeout: Duration, grace: Duration, metrics: RouterMetrics) -> Breaker {
        metrics.breaker_state(State::Closed.gauge());
        Breaker {
            threshold,
            open_timeout,
            grace,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                first_failure_at: None,
                opened_at: None,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, g: &mut Inner, state: State) {
        g.state = state;
        self.metrics.breaker_state(state.gauge());
    }

    fn open(&self, g: &mut Inner) {
        self.set(g, State::Open);
        g.opened_at = Some(Instant::now());
        self.metrics.breaker_tripped();
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether the next request may go to the router. Once the open time has passed, one trial is let through
    /// (half-open); the caller must then record its outcome or [`Breaker::abort`] it.
    #[cfg(test)]
    pub fn allow(&self) -> bool {
        self.admit().is_some()
    }

    /// [`Breaker::allow`], telling whether the request is the half-open trial (`Some(true)`).
    pub fn admit(&self) -> Option<bool> {
        let mut g = self.lock();
        match g.state {
            State::Closed => Some(false),
            State::HalfOpen => None,
            State::Open => {
                if g.opened_at.is_none_or(|t| t.elapsed() >= self.open_timeout) {
                    self.set(&mut g, State::HalfOpen);
                    Some(true)
                } else {
                    None
                }
            }
        }
    }

    /// The router answered: closes the breaker; true when this closed it after a trial (recovered).
    pub fn record_success(&self) -> bool {
        let mut g = self.lock();
        let recovered = g.state == State::HalfOpen;
        g.failures = 0;
        g.first_failure_at = None;
        if g.state != State::Closed {
            self.set(&mut g, State::Closed);
        }
        recovered
    }

    /// The router could not be reached: true when this tripped the breaker open.
    pub fn record_failure(&self) -> bool {
        let mut g = self.lock();
        match g.state {
            State::HalfOpen => {
                self.open(&mut g);
                true
            }
            State::Open => false,
            State::Closed => {
                let now = Instant::now();
                let first = *g.first_failure_at.get_or_insert(now);
                g.failures += 1;
                if g.failures >= self.threshold && now.duration_since(first) >= self.grace {
                    self.open(&mut g);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A permitted request that never reached the router: a half-open trial goes back to open and waits again.
    pub fn abort(&self) {
        let mut g = self.lock();
        if g.state == State::HalfOpen {
            self.set(&mut g, State::Open);
            g.opened_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            3,
            Duration::from_secs(30),
            Duration::from_secs(5),
            RouterMetrics::detached(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_does_not_trip_a_sustained_outage_does() {
        let b = breaker();
        for _ in 0..10 {
            assert!(
                !b.record_failure(),
                "failures at one instant are within the grace"
            );
        }
        assert_eq!(b.state(), State::Closed);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.record_failure());
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn trips_at_the_threshold_then_recovers_through_one_trial() {
        let b = breaker();
        assert!(!b.record_failure());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!b.record_failure());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(b.record_failure(), "third failure, 6 s after the first");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow(), "the trial");
        assert!(!b.allow(), "only one trial at a time");
        assert!(b.record_failure(), "a failed trial re-opens");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.allow());
        b.abort();
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.allow());
        assert!(b.record_success(), "a good trial recovers");
        assert_eq!(b.state(), State::Closed);
        assert!(!b.record_success());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let b = breaker();
        b.record_failure();
        b.record_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        b.record_success();
        assert!(!b.record_failure());
        assert_eq!(b.state(), State::Closed);
    }
}
