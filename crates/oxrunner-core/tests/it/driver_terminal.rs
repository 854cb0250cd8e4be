//! The driver's side of the web terminal, under a paused clock: the executor's terminal is offered to the session
//! once the environment exists; after the scripts a job with an attached client waits (gitlab-runner's trace
//! lines) until the client leaves, `session_timeout` or the job's deadline passes, or the job is cancelled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    CancellationToken, ExecError, Executor, ExitStatus, JobCancel, JobOutcome, JobPlan, NoopHooks,
    RunnerContext, StageCommand, Step, TermSize, Terminal, TerminalConn, TerminalSession, TraceWriter,
    Variable, When, run_job_with_session,
};
use tokio::sync::watch;
use tokio::time::Instant;

struct NoShell;

impl Terminal for NoShell {
    fn open(&self, _size: TermSize) -> BoxFuture<'_, Result<TerminalConn, ExecError>> {
        Box::pin(async { Err(ExecError::Other("not in this test".into())) })
    }
}

/// Every stage succeeds at once; `cleanup` records when it came.
struct Instant0 {
    start: Instant,
    cleanup_at: Arc<Mutex<Option<Duration>>>,
}

impl Executor for Instant0 {
    fn prepare<'a>(&'a mut self, _: &'a JobPlan, _: &'a TraceWriter) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async { Ok(()) })
    }

    fn run<'a>(
        &'a mut self,
        _: StageCommand,
        _: &'a TraceWriter,
        _: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(async { Ok(ExitStatus::Code(0)) })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        *self.cleanup_at.lock().unwrap() = Some(self.start.elapsed());
        Box::pin(async {})
    }

    fn terminal(&self) -> Option<Arc<dyn Terminal>> {
        Some(Arc::new(NoShell))
    }
}

struct FakeSession {
    offered: AtomicBool,
    closed: AtomicBool,
    connected: watch::Sender<bool>,
    timeout: Duration,
}

impl FakeSession {
    fn new(connected: bool, timeout: Duration) -> Arc<FakeSession> {
        Arc::new(FakeSession {
            offered: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            connected: watch::channel(connected).0,
            timeout,
        })
    }
}

impl TerminalSession for FakeSession {
    fn offer(&self, _terminal: Arc<dyn Terminal>) {
        self.offered.store(true, Ordering::SeqCst);
    }

    fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    fn disconnected(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.connected.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|c| !c).await;
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.closed.store(true, Ordering::SeqCst);
        Box::pin(async {})
    }
}

fn plan(timeout: Duration) -> JobPlan {
    JobPlan {
        job_id: 7,
        job_name: "terminal".into(),
        project_id: 1,
        project_path: "group/project".into(),
        variables: vec![Variable::new("GIT_STRATEGY", "none")].into(),
        steps: vec![Step {
            name: "script".into(),
            script: vec!["true".into()],
            when: When::OnSuccess,
            ..Step::default()
        }],
        timeout,
        job_token: "job-token".into(),
        ..JobPlan::default()
    }
}

/// Runs the job with `session`; the outcome, the trace and when `cleanup` came.
async fn run(session: &FakeSession, plan: &JobPlan, control: JobCancel) -> (JobOutcome, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunnerContext {
        runner_name: "t".into(),
        executor: "scripted".into(),
        builds_dir: dir.path().join("builds"),
        cache_dir: dir.path().join("cache"),
        ..RunnerContext::default()
    };
    let cleanup_at = Arc::new(Mutex::new(None));
    let mut exec = Instant0 {
        start: Instant::now(),
        cleanup_at: Arc::clone(&cleanup_at),
    };
    let (trace, handle) = TraceWriter::new(dir.path(), plan.mask_set(), 0).unwrap();
    let outcome =
        run_job_with_session(plan, &ctx, &mut exec, &NoopHooks, &trace, control, Some(session)).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    let at = cleanup_at.lock().unwrap().expect("cleanup ran");
    (outcome, log, at)
}

#[tokio::test(start_paused = true)]
async fn an_attached_terminal_keeps_the_job_until_it_disconnects() {
    let session = FakeSession::new(true, Duration::from_secs(1800));
    let s = Arc::clone(&session);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        s.connected.send_replace(false);
    });
    let (outcome, log, cleanup_at) = run(&session, &plan(Duration::from_secs(3600)), JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        session.offered.load(Ordering::SeqCst),
        "the executor's terminal was not offered"
    );
    assert!(
        log.contains("Terminal is connected, will time out in 30m0s..."),
        "{log}"
    );
    assert!(log.contains("Terminal disconnected"), "{log}");
    assert!(!log.contains("timed out"), "{log}");
    assert!(
        cleanup_at >= Duration::from_secs(30),
        "cleanup came before the terminal left: {cleanup_at:?}"
    );
    assert!(session.closed.load(Ordering::SeqCst));
    // gitlab-runner's order: the wait comes after the scripts, the result line after the wait.
    let wait = log.find("Terminal is connected").unwrap();
    assert!(log.find("Job succeeded").unwrap() > wait, "{log}");
}

#[tokio::test(start_paused = true)]
async fn session_timeout_ends_the_wait() {
    let session = FakeSession::new(true, Duration::from_secs(2));
    let (outcome, log, cleanup_at) = run(&session, &plan(Duration::from_secs(3600)), JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("Terminal is connected, will time out in 2s..."),
        "{log}"
    );
    assert!(
        log.contains("terminal session timed out (maximum time allowed - 2s)"),
        "{log}"
    );
    assert!(
        cleanup_at >= Duration::from_secs(2) && cleanup_at < Duration::from_secs(60),
        "{cleanup_at:?}"
    );
    assert!(session.closed.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn the_job_deadline_bounds_the_wait() {
    let session = FakeSession::new(true, Duration::from_secs(1800));
    let (_, log, cleanup_at) = run(&session, &plan(Duration::from_secs(60)), JobCancel::new()).await;
    assert!(
        log.contains("Terminal is connected, will time out in 1m0s..."),
        "{log}"
    );
    assert!(cleanup_at <= Duration::from_secs(61), "{cleanup_at:?}");
}

#[tokio::test(start_paused = true)]
async fn cancel_and_abort_win_over_the_wait() {
    for graceful in [true, false] {
        let session = FakeSession::new(true, Duration::from_secs(1800));
        let control = JobCancel::new();
        let token = if graceful {
            control.graceful.clone()
        } else {
            control.abort.clone()
        };
        // The cancel comes while the job waits for the terminal.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            token.cancel();
        });
        let (_, log, cleanup_at) = run(&session, &plan(Duration::from_secs(3600)), control).await;
        assert!(log.contains("Terminal is connected"), "{log}");
        assert!(
            cleanup_at < Duration::from_secs(60),
            "graceful={graceful}: waited {cleanup_at:?}\n{log}"
        );
        assert!(!log.contains("timed out"), "{log}");
        assert!(session.closed.load(Ordering::SeqCst));
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_client_the_job_does_not_wait() {
    let session = FakeSession::new(false, Duration::from_secs(1800));
    let (outcome, log, cleanup_at) = run(&session, &plan(Duration::from_secs(3600)), JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!log.contains("Terminal"), "{log}");
    assert!(cleanup_at < Duration::from_secs(1), "{cleanup_at:?}");
    assert!(
        session.closed.load(Ordering::SeqCst),
        "the session refuses clients once the job ends"
    );
}
