//! Streaming a job's trace to GitLab while it runs, then the final job update (§1.9, §1.10).
//!
//! The core crate writes the (already masked) trace to a spool file and publishes, through a
//! `watch` channel, how many bytes of it are complete. [`TraceSender`] sends those bytes with
//! `PATCH /jobs/:id/trace` in order, at most 1 MiB per request, every update interval (or at once
//! when 1 MiB is waiting), resynchronises on 416, keeps the job alive with a `running` update when
//! it has been quiet, and reports `Job-Status` changes as [`JobControl`] messages.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::ApiError;
use crate::outcome::{PatchOutcome, UpdateOutcome};
use crate::wire::{JobTraceOutput, RunnerInfo, UpdateJobRequest, crc32_checksum};

/// Largest PATCH body (gitlab-runner's `DefaultTracePatchLimit`).
pub const MAX_PATCH_BYTES: u64 = 1024 * 1024;
/// Consecutive 416 answers tolerated within one send cycle before waiting for the next tick,
/// so a server that keeps moving its size cannot spin us.
const MAX_RESYNCS_PER_CYCLE: u32 = 3;
/// 202/412 answers tolerated in the final update before giving up.
const MAX_FINAL_PASSES: u32 = 200;
/// Bounds and factor of the keep-alive interval derived from GitLab's update interval with
/// `FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL` (gitlab-runner's `MinTraceForceSendInterval`,
/// `MaxTraceForceSendInterval`, `TraceForceSendUpdateIntervalMultiplier`).
pub const MIN_FORCE_SEND_INTERVAL: Duration = Duration::from_secs(30);
pub const MAX_FORCE_SEND_INTERVAL: Duration = Duration::from_secs(30 * 60);
const FORCE_SEND_UPDATE_INTERVAL_FACTOR: u32 = 4;

/// The trace spool of a running job.
#[derive(Debug)]
pub struct TraceSource {
    /// Spool file written by the core crate.
    pub path: PathBuf,
    /// Number of bytes at the start of the file that are completely written.
    pub committed: watch::Receiver<u64>,
}

/// What GitLab asked the job to do, signalled through `Job-Status` or an aborting status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobControl {
    /// `Job-Status: canceling`: stop the user script, run after_script, report canceled.
    CancelRequested,
    /// `canceled`/`failed`, 403 or 404: kill the job at once; the server no longer listens.
    Abort,
}

/// What became of the final update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalReport {
    /// GitLab took the final state and the whole trace.
    Accepted,
    /// GitLab had already stopped the job (canceled, or failed on its side) and refused updates; the final
    /// state was not recorded.
    Aborted,
}

/// Result of the job for the final update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    /// `success` or `failed`.
    pub state: String,
    /// Failure reason (already mapped to one the server supports) for `failed`.
    pub failure_reason: Option<String>,
    /// Script exit code (0 and `None` are not sent).
    pub exit_code: Option<i32>,
    /// The key of the environment the job suspended (`FF_SUSPENDABLE_ENVIRONMENTS`), sent with the final update.
    pub runtime_environment_key: Option<String>,
}

/// Timing knobs; the defaults are gitlab-runner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOptions {
    /// Interval between sends until the server sets one (3 s).
    pub update_interval: Duration,
    /// Send a `running` keep-alive update after this long without contact (30 s).
    pub force_send_interval: Duration,
    /// `FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL`: each update interval GitLab sends replaces the keep-alive
    /// interval by four times that interval, within [`MIN_FORCE_SEND_INTERVAL`, `MAX_FORCE_SEND_INTERVAL`].
    pub dynamic_force_send: bool,
    /// Tries of the final flush + update (10).
    pub final_update_tries: u32,
    /// First backoff between final-update tries (1 s); doubles with jitter.
    pub final_backoff_min: Duration,
    /// Backoff cap between final-update tries (60 min).
    pub final_backoff_max: Duration,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            update_interval: Duration::from_secs(3),
            force_send_interval: MIN_FORCE_SEND_INTERVAL,
            dynamic_force_send: false,
            final_update_tries: 10,
            final_backoff_min: Duration::from_secs(1),
            final_backoff_max: Duration::from_secs(60 * 60),
        }
    }
}

/// Background trace streamer for one job. Call [`TraceSender::finish`] exactly once at the end.
pub struct TraceSender {
    ctx: Arc<Ctx>,
    stop: CancellationToken,
    task: Option<JoinHandle<State>>,
}

impl Drop for TraceSender {
    /// A sender dropped without `finish` (a panicking job task) must not PATCH forever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for TraceSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSender")
            .field("job_id", &self.ctx.job_id)
            .field("path", &self.ctx.path)
            .finish_non_exhaustive()
    }
}

struct Ctx {
    client: Client,
    job_id: i64,
    job_token: String,
    debug_trace: bool,
    info: RunnerInfo,
    path: PathBuf,
    opts: TraceOptions,
    control: mpsc::Sender<JobControl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    No,
    /// 404 on PATCH: the server dropped the trace; patches are pointless, updates still go out.
    TraceGone,
    /// The server told us to abort; nothing more is sent.
    Aborted,
}

struct State {
    sent: u64,
    interval: Duration,
    force_send: Duration,
    last_contact: Instant,
    stopped: Stopped,
    cancel_signalled: bool,
    abort_signalled: bool,
    spool: Spool,
    crc: crc32fast::Hasher,
    crc_upto: u64,
}

impl State {
    fn new(ctx: &Ctx) -> State {
        State {
            sent: 0,
            interval: ctx.opts.update_interval,
            force_send: ctx.opts.force_send_interval,
            last_contact: Instant::now(),
            stopped: Stopped::No,
            cancel_signalled: false,
            abort_signalled: false,
            spool: Spool {
                path: ctx.path.clone(),
                file: None,
            },
            crc: crc32fast::Hasher::new(),
            crc_upto: 0,
        }
    }
}

struct Spool {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Spool {
    async fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, ApiError> {
        let io = |source| ApiError::Io {
            action: "cannot read trace spool",
            path: self.path.clone(),
            source,
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => self
                .file
                .insert(tokio::fs::File::open(&self.path).await.map_err(io)?),
        };
        let mut buf = vec![0u8; len];
        let r = async {
            file.seek(SeekFrom::Start(offset)).await?;
            file.read_exact(&mut buf).await
        }
        .await;
        r.map_err(|source| ApiError::Io {
            action: "cannot read trace spool",
            path: self.path.clone(),
            source,
        })?;
        Ok(buf)
    }
}

/// Why a send cycle stopped early.
enum CycleError {
    /// The server refused or the network failed; try again later.
    Retry(ApiError),
}

impl TraceSender {
    /// Start streaming with gitlab-runner's default timing. The receiver yields at most one
    /// [`JobControl::CancelRequested`] and one [`JobControl::Abort`].
    ///
    /// Spawns a task, so it must be called from within a tokio runtime.
    pub fn start(
        client: Client,
        job_id: i64,
        job_token: String,
        src: TraceSource,
        debug_trace: bool,
        info: RunnerInfo,
    ) -> (TraceSender, mpsc::Receiver<JobControl>) {
        Self::start_with_options(
            client,
            job_id,
            job_token,
            src,
            debug_trace,
            info,
            TraceOptions::default(),
        )
    }

    /// [`TraceSender::start`] with explicit timing.
    pub fn start_with_options(
        client: Client,
        job_id: i64,
        job_token: String,
        src: TraceSource,
        debug_trace: bool,
        info: RunnerInfo,
        opts: TraceOptions,
    ) -> (TraceSender, mpsc::Receiver<JobControl>) {
        let (tx, rx) = mpsc::channel(4);
        let ctx = Arc::new(Ctx {
            client,
            job_id,
            job_token,
            debug_trace,
            info,
            path: src.path,
            opts,
            control: tx,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_loop(ctx.clone(), src.committed, stop.clone()));
        (
            TraceSender {
                ctx,
                stop,
                task: Some(task),
            },
            rx,
        )
    }

    /// Stop the periodic sending, send every remaining byte up to `bytesize`, then report the final
    /// state with the trace checksum. Repeats on 202 (server still busy) and 412 (checksum mismatch:
    /// the whole trace is sent again), and retries failures with backoff. A job the server aborted
    /// returns `Ok(FinalReport::Aborted)`: there is nobody left to tell.
    pub async fn finish(
        mut self,
        state: FinalState,
        checksum_crc32: u32,
        bytesize: u64,
    ) -> Result<FinalReport, ApiError> {
        self.stop.cancel();
        let ctx = self.ctx.clone();
        let joined = match self.task.take() {
            Some(task) => task.await.map_err(|e| e.to_string()),
            None => Err("already finished".to_string()),
        };
        let mut st = match joined {
            Ok(st) => st,
            Err(e) => {
                // The loop cannot panic by design; if it did, resending from 0 is still correct
                // because the server answers 416 with its size.
                tracing::error!(job_id = ctx.job_id, error = %e, "trace loop ended abnormally");
                State::new(&ctx)
            }
        };
        let checksum = crc32_checksum(checksum_crc32);
        let req = UpdateJobRequest {
            info: ctx.info.clone(),
            token: ctx.job_token.clone(),
            state: state.state.clone(),
            failure_reason: state.failure_reason.clone(),
            checksum: Some(checksum.clone()),
            output: Some(JobTraceOutput { checksum, bytesize }),
            exit_code: state.exit_code,
            runtime_environment_key: state.runtime_environment_key.clone().unwrap_or_default(),
        };
        let mut failures = 0u32;
        let mut passes = 0u32;
        let mut last_err: Option<ApiError> = None;
        while failures < ctx.opts.final_update_tries && passes < MAX_FINAL_PASSES {
            passes += 1;
            if st.stopped == Stopped::Aborted {
                return Ok(FinalReport::Aborted);
            }
            let step = match send_cycle(&ctx, &mut st, bytesize).await {
                Err(CycleError::Retry(e)) => Err(e),
                Ok(()) if st.stopped == Stopped::Aborted => continue,
                Ok(()) => ctx.client.update_job(ctx.job_id, &ctx.job_token, &req).await,
            };
            match step {
                Ok(res) => {
                    apply_signals(&ctx, &mut st, res.cancel_requested, res.update_interval);
                    match res.outcome {
                        UpdateOutcome::Succeeded => return Ok(FinalReport::Accepted),
                        UpdateOutcome::Accepted => {
                            tokio::time::sleep(st.interval).await;
                            continue;
                        }
                        UpdateOutcome::TraceValidationFailed => {
                            tracing::warn!(
                                job_id = ctx.job_id,
                                "trace checksum mismatch; resending the trace"
                            );
                            st.sent = 0;
                            if st.stopped == Stopped::TraceGone {
                                st.stopped = Stopped::No;
                            }
                            continue;
                        }
                        UpdateOutcome::Abort => {
                            signal(&ctx, &mut st, JobControl::Abort);
                            st.stopped = Stopped::Aborted;
                            continue;
                        }
                        UpdateOutcome::Failed => {
                            last_err = Some(ApiError::NotAccepted {
                                url_redacted: job_url(&ctx, ""),
                                what: "final job update",
                            });
                        }
                    }
                }
                // A spool shorter than the reported size will not grow by waiting.
                Err(e @ ApiError::Io { .. }) => return Err(e),
                Err(e) => last_err = Some(e),
            }
            failures += 1;
            if failures < ctx.opts.final_update_tries {
                let wait =
                    crate::client::backoff(failures, ctx.opts.final_backoff_min, ctx.opts.final_backoff_max);
                tracing::warn!(
                    job_id = ctx.job_id,
                    try_no = failures,
                    wait_ms = wait.as_millis() as u64,
                    error = last_err.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "final job update failed, retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::Status {
            url_redacted: job_url(&ctx, ""),
            status: 202,
            message: "GitLab kept answering 202/412 to the final update".to_string(),
        }))
    }
}

async fn run_loop(ctx: Arc<Ctx>, mut committed: watch::Receiver<u64>, stop: CancellationToken) -> State {
    let mut st = State::new(&ctx);
    let mut watch_alive = true;
    let mut next = Instant::now() + st.interval;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {}
            changed = committed.changed(), if watch_alive => {
                if changed.is_err() {
                    watch_alive = false;
                    continue;
                }
                let have = *committed.borrow_and_update();
                if have.saturating_sub(st.sent) < MAX_PATCH_BYTES {
                    continue;
                }
            }
        }
        let limit = *committed.borrow();
        let cycle = send_cycle(&ctx, &mut st, limit).await;
        match cycle {
            Ok(()) => {
                if st.stopped != Stopped::Aborted && st.last_contact.elapsed() >= st.force_send {
                    keep_alive(&ctx, &mut st, limit).await;
                }
            }
            Err(CycleError::Retry(e)) => {
                tracing::warn!(job_id = ctx.job_id, error = %e, "trace update failed; retrying on the next tick");
            }
        }
        next = Instant::now() + st.interval;
    }
    st
}

/// PATCH everything in `[st.sent, limit)` in ≤ 1 MiB pieces.
async fn send_cycle(ctx: &Ctx, st: &mut State, limit: u64) -> Result<(), CycleError> {
    let mut resyncs = 0;
    while st.stopped == Stopped::No && st.sent < limit {
        let len = (limit - st.sent).min(MAX_PATCH_BYTES) as usize;
        let offset = st.sent;
        let chunk = st.spool.read_at(offset, len).await.map_err(CycleError::Retry)?;
        if offset == st.crc_upto {
            st.crc.update(&chunk);
            st.crc_upto += chunk.len() as u64;
        }
        let res = ctx
            .client
            .patch_trace(
                ctx.job_id,
                &ctx.job_token,
                offset,
                Bytes::from(chunk),
                ctx.debug_trace,
            )
            .await
            .map_err(CycleError::Retry)?;
        apply_signals(ctx, st, res.cancel_requested, res.update_interval);
        match res.outcome {
            PatchOutcome::Accepted { new_offset } => {
                st.sent = new_offset;
                st.last_contact = Instant::now();
            }
            PatchOutcome::RangeMismatch { server_size } => {
                tracing::info!(
                    job_id = ctx.job_id,
                    from = offset,
                    to = server_size,
                    "trace resync (416)"
                );
                st.sent = server_size;
                resyncs += 1;
                if resyncs > MAX_RESYNCS_PER_CYCLE {
                    return Err(CycleError::Retry(ApiError::Status {
                        url_redacted: job_url(ctx, "/trace"),
                        status: 416,
                        message: "the server's trace size keeps changing".to_string(),
                    }));
                }
            }
            PatchOutcome::NotFound => {
                tracing::warn!(
                    job_id = ctx.job_id,
                    "trace not found on the server (404); no more patches"
                );
                st.stopped = Stopped::TraceGone;
            }
            PatchOutcome::Abort => {
                signal(ctx, st, JobControl::Abort);
                st.stopped = Stopped::Aborted;
            }
            PatchOutcome::Failed => {
                return Err(CycleError::Retry(ApiError::NotAccepted {
                    url_redacted: job_url(ctx, "/trace"),
                    what: "trace patch",
                }));
            }
        }
    }
    Ok(())
}

/// `PUT state=running` with the checksum of everything committed so far, so GitLab does not
/// consider a quiet job stuck.
async fn keep_alive(ctx: &Ctx, st: &mut State, committed: u64) {
    while st.crc_upto < committed {
        let len = (committed - st.crc_upto).min(MAX_PATCH_BYTES) as usize;
        match st.spool.read_at(st.crc_upto, len).await {
            Ok(buf) => {
                st.crc.update(&buf);
                st.crc_upto += buf.len() as u64;
            }
            Err(e) => {
                tracing::warn!(job_id = ctx.job_id, error = %e, "cannot checksum trace for keep-alive");
                return;
            }
        }
    }
    let checksum = crc32_checksum(st.crc.clone().finalize());
    let req = UpdateJobRequest {
        info: ctx.info.clone(),
        token: ctx.job_token.clone(),
        state: "running".to_string(),
        output: Some(JobTraceOutput {
            checksum,
            bytesize: st.crc_upto,
        }),
        ..UpdateJobRequest::default()
    };
    match ctx.client.update_job(ctx.job_id, &ctx.job_token, &req).await {
        Ok(res) => {
            apply_signals(ctx, st, res.cancel_requested, res.update_interval);
            match res.outcome {
                UpdateOutcome::Abort => {
                    signal(ctx, st, JobControl::Abort);
                    st.stopped = Stopped::Aborted;
                }
                UpdateOutcome::Succeeded | UpdateOutcome::Accepted => st.last_contact = Instant::now(),
                UpdateOutcome::TraceValidationFailed | UpdateOutcome::Failed => {}
            }
        }
        Err(e) => tracing::warn!(job_id = ctx.job_id, error = %e, "keep-alive update failed"),
    }
}

fn job_url(ctx: &Ctx, suffix: &str) -> String {
    crate::redact::redact_url(&format!("{}jobs/{}{suffix}", ctx.client.base_url(), ctx.job_id))
}

fn apply_signals(ctx: &Ctx, st: &mut State, cancel_requested: bool, interval: Option<Duration>) {
    if let Some(i) = interval {
        st.interval = i;
        if ctx.opts.dynamic_force_send {
            st.force_send = dynamic_force_send(i);
        }
    }
    if cancel_requested {
        signal(ctx, st, JobControl::CancelRequested);
    }
}

/// The keep-alive interval gitlab-runner derives from an update interval under
/// `FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL`: a server that slows the trace down also gets fewer keep-alives.
pub fn dynamic_force_send(update_interval: Duration) -> Duration {
    update_interval
        .saturating_mul(FORCE_SEND_UPDATE_INTERVAL_FACTOR)
        .clamp(MIN_FORCE_SEND_INTERVAL, MAX_FORCE_SEND_INTERVAL)
}

/// Deliver each control message once; a full or closed channel means the job side already knows
/// or no longer cares.
fn signal(ctx: &Ctx, st: &mut State, what: JobControl) {
    let flag = match what {
        JobControl::CancelRequested => &mut st.cancel_signalled,
        JobControl::Abort => &mut st.abort_signalled,
    };
    if !*flag {
        *flag = true;
        tracing::info!(job_id = ctx.job_id, ?what, "GitLab changed the job status");
        let _ = ctx.control.try_send(what);
    }
}
