//! Caches and artifacts between the job's scripts: the runner side of `oxrunner_core::JobHooks`.
//!
//! - [`cache`]: one local archive per (project, key) under the runner's `cache_dir`, shared by every
//!   concurrent job (gitlab-runner's per-slot Docker volumes are why its caches seem to vanish with
//!   `concurrent > 1`);
//! - [`artifacts`]: dependency downloads and uploads through an [`ArtifactTransport`], so the daemon
//!   (GitLab API) and `oxrunner exec` (a local directory) share one implementation.

mod artifact_parts;
mod artifacts;
mod cache;
mod inscript;
mod jobdir;
mod metered;
pub(crate) mod remote;
mod transport;
mod units;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use oxrunner_archive::CacheStore;
use oxrunner_core::{HookError, JobHooks, RunnerContext, StageCtx, TraceWriter};

pub(crate) use artifacts::{BuildError, build_archive, too_large_explanation};
pub use remote::RemoteSetup;
pub use transport::{
    ArtifactTransport, BoxFuture, DownloadMode, GitlabTransport, LocalTransport, TransportError,
};
pub(crate) use units::human_bytes;

/// `JobHooks` backed by a local [`CacheStore`] and an artifact transport.
#[derive(Clone)]
pub struct RunnerHooks {
    transport: Arc<dyn ArtifactTransport>,
    cache: CacheStore,
    /// `[runners.cache] Type = "s3"`: the bucket in front of the local store.
    remote: RemoteSetup,
    /// The binary whose helper commands in-script stages call; `None`: this running binary.
    helper: Option<PathBuf>,
    /// The daemon's metrics, counting cache transfers (artifact ones through the transport).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl fmt::Debug for RunnerHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerHooks")
            .field("cache", &self.cache.root())
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl RunnerHooks {
    /// Hooks moving artifacts through `transport` and keeping caches in `cache`.
    pub fn new(transport: Arc<dyn ArtifactTransport>, cache: CacheStore) -> Self {
        Self {
            transport,
            cache,
            remote: RemoteSetup::None,
            helper: None,
            metrics: None,
        }
    }

    /// Counts this job's cache and artifact transfers in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.transport = Arc::new(metered::MeteredTransport::new(
            Arc::clone(&self.transport),
            Arc::clone(&metrics),
        ));
        self.metrics = Some(metrics);
        self
    }

    /// Caches also go to and come from this remote store (see `remote/`).
    pub fn with_remote_cache(mut self, remote: RemoteSetup) -> Self {
        self.remote = remote;
        self
    }

    /// In-script stages call the helper commands of `bin` instead of this running binary's (tests, whose running
    /// binary is the test harness). `bin` is taken as `current_exe` would report it (see [`installed_path`]).
    // Only the tests choose another binary.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn with_helper_command(mut self, bin: PathBuf) -> Self {
        self.helper = Some(bin);
        self
    }

    /// Daemon hooks for one job: GitLab transport, and the runner's cache store at `ctx.cache_dir` (made absolute
    /// against the working directory exactly as the driver does, so `cache` means `$PWD/cache` for shell).
    pub fn for_gitlab(
        client: oxrunner_api::Client,
        job_id: i64,
        job_token: &str,
        ctx: &RunnerContext,
    ) -> Self {
        Self::for_gitlab_with(client, job_id, job_token, ctx, ArtifactTimeouts::default())
    }

    /// [`for_gitlab`](Self::for_gitlab) with the `[runners.artifact]` timeouts.
    pub fn for_gitlab_with(
        client: oxrunner_api::Client,
        job_id: i64,
        job_token: &str,
        ctx: &RunnerContext,
        timeouts: ArtifactTimeouts,
    ) -> Self {
        let transport = GitlabTransport::new(client, job_id, oxrunner_core::Secret::new(job_token))
            .with_upload_timeout(timeouts.upload)
            .with_response_header_timeout(timeouts.response_header);
        Self::new(Arc::new(transport), cache_store(ctx))
    }
}

/// `[runners.artifact] upload_timeout` and `response_header_timeout` (`None`: no limit of that kind).
#[derive(Clone, Copy, Debug, Default)]
pub struct ArtifactTimeouts {
    pub upload: Option<std::time::Duration>,
    pub response_header: Option<std::time::Duration>,
}

/// The store for a runner: every job of every concurrent slot gets the same root, so they share archives.
pub fn cache_store(ctx: &RunnerContext) -> CacheStore {
    if ctx.cache_dir.is_absolute() {
        CacheStore::new(&ctx.cache_dir)
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        CacheStore::new(&cwd.join(&ctx.cache_dir))
    }
}

impl RunnerHooks {
    /// The store for this job: the runner's, unless the executor moved the cache dir for the job (the custom
    /// executor's config_exec may print a `cache_dir`), which the driver passes on in `ctx.runner`.
    pub(crate) fn store_for(&self, ctx: &StageCtx<'_>) -> std::borrow::Cow<'_, CacheStore> {
        if ctx.runner.cache_dir == self.cache.root() {
            std::borrow::Cow::Borrowed(&self.cache)
        } else {
            std::borrow::Cow::Owned(cache_store(ctx.runner))
        }
    }
}

impl JobHooks for RunnerHooks {
    fn restore_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            cache::restore(
                &self.store_for(ctx),
                &self.remote,
                ctx,
                trace,
                self.metrics.as_deref(),
            )
            .await;
            Ok(())
        })
    }

    fn download_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(artifacts::download(self.transport.as_ref(), ctx, trace))
    }

    fn archive_cache<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            cache::archive(
                &self.store_for(ctx),
                &self.remote,
                ctx,
                trace,
                on_failure,
                self.metrics.as_deref(),
            )
            .await;
            Ok(())
        })
    }

    fn upload_artifacts<'a>(
        &'a self,
        ctx: &'a StageCtx<'a>,
        trace: &'a TraceWriter,
        on_failure: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(artifacts::upload(self.transport.as_ref(), ctx, trace, on_failure))
    }

    fn stage_script(&self, ctx: &StageCtx<'_>, trace: &TraceWriter) -> Result<Option<String>, HookError> {
        // As upstream's custom executor, the stage scripts call the runner's own binary by its path.
        let bin = self
            .helper
            .clone()
            .map_or_else(std::env::current_exe, Ok)
            .map(installed_path)
            .map_err(|e| {
                HookError::with_reason(
                    oxrunner_core::FailureReason::RunnerSystemFailure,
                    format!(
                        "cannot find the path of the running oxrunner binary for the {} stage: {e}\n\
                         hint: run oxrunner from a path that exists",
                        ctx.stage
                    ),
                )
            })?;
        inscript::render(self, &bin, ctx, trace)
    }
}
/// The path a stage script calls for the running binary. Once a package upgrade replaced the file, Linux reports
/// `<path> (deleted)`; the new binary is at `<path>`, so the suffix goes (as Go's `os.Executable`, which
/// gitlab-runner uses, drops it). Without this every in-script cache and artifact stage would be skipped.
pub(crate) fn installed_path(exe: PathBuf) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    const DELETED: &[u8] = b" (deleted)";
    let bytes = exe.as_os_str().as_bytes();
    match bytes.strip_suffix(DELETED) {
        Some(kept) => PathBuf::from(std::ffi::OsStr::from_bytes(kept)),
        None => exe,
    }
}

#[cfg(test)]
mod inscript_tests;
#[cfg(test)]
mod tests;
