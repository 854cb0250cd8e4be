//! Integration tests of oxrunner-core: the shell executor, jobs, scripts and the trace with real bash.
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod driver_scripted;
mod driver_suspend;
mod driver_terminal;
mod executor_configure;
mod feature_flags;
mod feature_flags_jobs;
mod inscript_stages;
mod job;
mod job_cleanup;
mod job_processes;
mod mask_candidates;
mod mask_reference;
mod mask_scale;
mod posix_escapes;
mod remote_sources;
mod runner_fetch_env;
mod script;
mod settings_jobs;
mod shell_stages;
mod shell_terminal;
mod shell_workdir;
mod suspend_shell;
mod trace;
mod trace_spool_full;
