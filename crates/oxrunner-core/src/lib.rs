//! oxrunner-core: the executor-neutral job engine.
//!
//! # Layout
//! - [`feature_flags`]: gitlab-runner's `FF_*` table and how a job's flags resolve.
//! - [`plan`]: `JobPlan` (what to run) and `RunnerContext` (runner settings).
//! - [`variables`]: ordered variables and gitlab-runner's expansion rules.
//! - [`trace`]: the job log pipeline (masking, output limit, spool file, CRC32).
//! - [`script`]: bash stage scripts (wrapper, exports, git sources).
//! - [`executor`]: the `Executor` and `JobHooks` traits and the stage vocabulary.
//! - [`driver`]: `run_job`, which runs the stages with timeouts and cancellation.
//! - [`shell`]: the shell executor (local bash processes in their own process group).
//! - [`terminal`]: the web terminal seam (an executor's interactive shell, the session the driver waits on).
//! - [`jobprocs`]: tracks every process of a shell job (its own cgroup, or an environment marker) to kill it all.
//!
//! The daemon turns a GitLab payload into a `JobPlan`, `oxrunner exec` turns `.gitlab-ci.yml` into one; both
//! then call [`run_job`].

pub mod builddir;
pub mod driver;
pub mod error;
pub mod executor;
pub mod feature_flags;
pub mod jobprocs;
pub mod observe;
pub mod outcome;
pub mod plan;
pub mod script;
pub mod secret;
pub mod shell;
mod shell_terminal;
pub mod suspend;
pub mod terminal;
pub mod trace;
pub mod variables;

pub use builddir::{build_dir, cache_dir, git_strategy, project_slug, runner_checkout_dir, tmp_dir};
pub use driver::env::parse_go_duration;
pub use driver::{JobCancel, absolute_dirs, run_job, run_job_with_session};
pub use error::{ExecError, HookError};
pub use executor::{
    EnvironmentFacts, Executor, ExitStatus, FileAccess, JobFiles, JobHooks, JobSettings, JobStatus,
    NoopHooks, Stage, StageCommand, StageCtx,
};
pub use jobprocs::{CgroupPlacement, JobProcesses};
pub use observe::StageObserver;
pub use outcome::{FailureReason, JobOutcome};
pub use plan::{
    ArtifactSpec, ArtifactsFile, CachePolicy, CacheSpec, Dependency, GitStrategy, ImageSpec, JobPlan,
    RegistryCredential, RunnerContext, SourceOrigin, Sources, Step, SubmoduleStrategy, TraceFeatures, When,
    job_timeout_from_seconds, project_path_from_repo_url,
};
pub use secret::Secret;
pub use shell::ShellExecutor;
pub use suspend::{KeyError, RuntimeEnvironmentKey, SuspendOptions};
pub use terminal::{TermSize, Terminal, TerminalConn, TerminalControl, TerminalSession};
pub use tokio_util::sync::CancellationToken;
pub use trace::{MaskSet, TraceHandle, TraceWriter};
pub use variables::{Variable, Variables};
