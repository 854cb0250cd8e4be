//! Jobs of a runner process that was killed (SIGKILL, OOM killer, power loss of the process only): found and
//! finished at the next start.
//!
//! While a job runs, a small record of it sits in `<config dir>/oxrunner-jobs/` (mode 0700, files 0600, written
//! atomically): job id and token, the runner it belongs to, the runner process (pid and start time, so a reused
//! pid is not mistaken for it), and the job's process tracking (cgroup and environment marker, see
//! `oxrunner_core::jobprocs`), and the job's `<project dir>.tmp`. A clean end of the job removes it. At start-up
//! each runner looks at its records: one whose runner process is gone belongs to a job nobody runs any more; its
//! processes are killed, its cgroup and its temporary files (file variables, git credentials) removed, and the job
//! is reported failed (`runner_system_failure`, with a line in its log saying why) if GitLab
//! still accepts the job token. The record holds the job token, which is why the directory is private to the
//! runner's user; the token is never logged.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use oxrunner_api::{Client, PatchOutcome, RunnerInfo, UpdateJobRequest, UpdateOutcome};
use oxrunner_config::RunnerConfig;
use oxrunner_core::jobprocs::{self, CgroupPlacement, JobProcesses};
use oxrunner_core::{JobPlan, RunnerContext};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Directory name under the config directory.
const DIR_NAME: &str = "oxrunner-jobs";
/// A record is a few hundred bytes; anything much larger is not one of ours.
const MAX_RECORD: u64 = 64 * 1024;
const TRACE_LINE: &str = "\n\x1b[31;1mERROR: Job failed (system failure): the runner process was killed while this \
                          job ran; its processes were stopped when the runner started again\x1b[0;m\n";

#[derive(Serialize, Deserialize)]
struct Record {
    job_id: i64,
    /// The job token, to report the job. Deliberately no `Debug` on this type.
    token: String,
    url: String,
    runner: String,
    pid: u32,
    pid_start: u64,
    cgroup: Option<PathBuf>,
    marker: String,
    /// `<project dir>.tmp` of a shell job: file variables, git credentials, the CA file. `cleanup_file_variables`
    /// never ran for a killed job, so recovery removes it.
    #[serde(default)]
    tmp_dir: Option<PathBuf>,
    /// The `--user` the job ran as; its files are removed with that user's rights.
    #[serde(default)]
    user: Option<String>,
}

/// What a shell job leaves that recovery must clean up.
#[derive(Default)]
pub struct Leftovers<'a> {
    pub procs: Option<&'a JobProcesses>,
    pub tmp_dir: Option<PathBuf>,
    pub user: Option<String>,
}

/// The on-disk record of a running job; `remove` it once the job's final state is reported.
pub struct JobRecord {
    path: Option<PathBuf>,
}

/// The process tracking for a shell job of `runner` in concurrency slot `slot`: a cgroup under the slot cgroup
/// when `use_slot_cgroups` is on, else under the runner's own cgroup.
pub fn job_processes(runner: &RunnerConfig, slot: usize, job_id: i64) -> JobProcesses {
    let placement = match (runner.use_slot_cgroups, runner.slot_cgroup_template.as_deref()) {
        (Some(true), template) => {
            // gitlab-runner's default template.
            let template = template
                .filter(|t| !t.trim().is_empty())
                .unwrap_or("gitlab-runner-slot-${slot}");
            CgroupPlacement::from_slot_template(template, slot).unwrap_or_else(|err| {
                warn!(runner = %runner.short_token(), "{err}");
                CgroupPlacement::Own
            })
        }
        _ => CgroupPlacement::Own,
    };
    JobProcesses::new(&format!("job-{job_id}"), &placement)
}

impl JobRecord {
    /// Writes the record. Failing to write is logged, not fatal: the job runs, only recovery after a crash of the
    /// runner is lost.
    pub fn write(
        state_dir: &Path,
        runner: &RunnerConfig,
        job_id: i64,
        token: &str,
        leftovers: Leftovers<'_>,
    ) -> JobRecord {
        let procs = leftovers.procs;
        let pid = std::process::id();
        let record = Record {
            job_id,
            token: token.to_owned(),
            url: runner.url.clone(),
            runner: runner.short_token(),
            pid,
            pid_start: jobprocs::process_start_time(pid).unwrap_or(0),
            cgroup: procs.and_then(|p| p.cgroup().map(Path::to_path_buf)),
            marker: procs.map(|p| p.marker().to_owned()).unwrap_or_default(),
            tmp_dir: leftovers.tmp_dir,
            user: leftovers.user,
        };
        let path = match write_record(state_dir, &record) {
            Ok(path) => Some(path),
            Err(err) => {
                warn!(
                    job = job_id,
                    "cannot record the running job (it could not be recovered if the runner were killed): {err}"
                );
                None
            }
        };
        JobRecord { path }
    }

    pub fn remove(self) {
        if let Some(path) = self.path
            && let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            warn!(record = %path.display(), error = %err, "cannot remove the record of a finished job");
        }
    }
}

fn file_name(record: &Record) -> String {
    let runner: String = record
        .runner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{runner}-{}.json", record.job_id)
}

/// The private records directory, created if missing. Refuses a symlink or a directory of another user, and
/// tightens a too-open mode of our own.
fn private_dir(state_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = state_dir.join(DIR_NAME);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(with_path(e, &dir)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| with_path(e, &dir))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != euid {
        return Err(std::io::Error::other(format!(
            "{} is not a directory owned by uid {euid}\nhint: remove it; oxrunner recreates it with mode 0700",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| with_path(e, &dir))?;
    }
    Ok(dir)
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn write_record(state_dir: &Path, record: &Record) -> std::io::Result<PathBuf> {
    let dir = private_dir(state_dir)?;
    let path = dir.join(file_name(record));
    let tmp = dir.join(format!(".{}.{}.tmp", file_name(record), std::process::id()));
    let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        // `create_new` already refuses an existing symlink; O_NOFOLLOW says so explicitly.
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| with_path(e, &tmp))?;
    let written = file.write_all(&json).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(with_path(e, &tmp));
    }
    std::fs::rename(&tmp, &path).map_err(|e| with_path(e, &path))?;
    Ok(path)
}

/// Finishes the jobs that a killed earlier run of `runner` left behind. Runs before the runner asks for jobs.
pub async fn recover(state_dir: &Path, client: &Client, runner: &RunnerConfig, info: &RunnerInfo) {
    let dir = state_dir.join(DIR_NAME);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let short = runner.short_token();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(record) = read_record(&path) else {
            continue;
        };
        if record.runner != short || record.url != runner.url || runner_alive(&record) {
            continue;
        }
        let job = record.job_id;
        let cgroup = record.cgroup.clone();
        let marker = record.marker.clone();
        let killed = tokio::task::spawn_blocking(move || {
            let n = jobprocs::kill_tracked(cgroup.as_deref(), &marker);
            if let Some(dir) = &cgroup {
                jobprocs::remove_cgroup(dir);
            }
            n
        })
        .await
        .unwrap_or(0);
        if let Some(tmp) = &record.tmp_dir {
            remove_tmp_dir(tmp, record.user.as_deref()).await;
        }
        info!(job, runner = %short, processes = killed, "found a job of a killed runner process; stopped what was left of it");
        match report(client, &record, info).await {
            Reported::Failed => {
                info!(job, runner = %short, "reported the job of the killed runner process as failed");
                let _ = std::fs::remove_file(&path);
            }
            Reported::Gone => {
                info!(job, runner = %short, "GitLab no longer accepts the job of the killed runner process");
                let _ = std::fs::remove_file(&path);
            }
            // The record stays for the next start.
            Reported::NotYet => {}
        }
    }
}

enum Reported {
    Failed,
    /// GitLab no longer accepts the job token: the job already ended (or was erased).
    Gone,
    /// GitLab could not be reached or refused the update for another reason.
    NotYet,
}

async fn report(client: &Client, record: &Record, info: &RunnerInfo) -> Reported {
    let (job, token) = (record.job_id, record.token.as_str());
    // The killed runner's last trace offset is unknown: GitLab's 416 answer says where the log ends.
    let mut offset = 0;
    for _ in 0..3 {
        match client
            .patch_trace(job, token, offset, TRACE_LINE.into(), false)
            .await
        {
            Ok(r) => match r.outcome {
                PatchOutcome::RangeMismatch { server_size } if server_size != offset => offset = server_size,
                PatchOutcome::Abort => return Reported::Gone,
                _ => break,
            },
            Err(err) => {
                warn!(job, error = %err, "cannot add to the log of the killed runner's job");
                break;
            }
        }
    }
    let req = UpdateJobRequest {
        info: info.clone(),
        token: token.to_owned(),
        state: "failed".into(),
        failure_reason: Some("runner_system_failure".into()),
        ..Default::default()
    };
    match client.update_job(job, token, &req).await {
        Ok(r) if matches!(r.outcome, UpdateOutcome::Succeeded | UpdateOutcome::Accepted) => Reported::Failed,
        Ok(r) if r.outcome == UpdateOutcome::Abort => Reported::Gone,
        Ok(_) => {
            warn!(
                job,
                "GitLab refused the failure of the killed runner's job; trying again at the next start"
            );
            Reported::NotYet
        }
        Err(err) => {
            warn!(job, error = %err, "cannot report the killed runner's job; trying again at the next start");
            Reported::NotYet
        }
    }
}

/// The absolute `<project dir>.tmp` of a shell job, from the context the job runs with (`run_job` resolves a
/// relative builds_dir first: `GIT_CLONE_PATH=$CI_BUILDS_DIR/...` expands to, and is checked against, that path).
pub fn tmp_dir(plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    let project = oxrunner_core::build_dir(plan, &oxrunner_core::absolute_dirs(ctx.clone()));
    let project = if project.is_relative() {
        std::env::current_dir().unwrap_or_default().join(project)
    } else {
        project
    };
    oxrunner_core::tmp_dir(&project)
}

/// How long removing a killed job's temporary files may take before recovery goes on without it.
const TMP_REMOVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Removes a killed job's `<project dir>.tmp` with `rm -rf`, as the job's user when it had one: the job could
/// have replaced directories on that path, so it is resolved with no more rights than the job had.
async fn remove_tmp_dir(dir: &Path, user: Option<&str>) {
    if !dir.is_absolute() || dir.extension().is_none_or(|e| e != "tmp") {
        warn!(dir = %dir.display(), "not removing an unexpected temporary directory of a killed job");
        return;
    }
    let mut cmd = tokio::process::Command::new("rm");
    cmd.arg("-rf")
        .arg("--")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = user.filter(|_| nix::unistd::geteuid().is_root()) {
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => {
                cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
            }
            _ => {
                warn!(user, dir = %dir.display(), "the killed job's user is gone; its temporary files stay\nhint: remove the directory by hand");
                return;
            }
        }
    }
    match tokio::time::timeout(TMP_REMOVAL_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => warn!(
            dir = %dir.display(),
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "cannot remove the temporary files of a killed job"
        ),
        Ok(Err(err)) => {
            warn!(dir = %dir.display(), error = %err, "cannot run rm for the temporary files of a killed job")
        }
        Err(_) => {
            warn!(dir = %dir.display(), "removing the temporary files of a killed job takes too long; going on")
        }
    }
}

fn read_record(path: &Path) -> Option<Record> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD {
        return None;
    }
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(r) => Some(r),
        Err(err) => {
            warn!(record = %path.display(), error = %err, "ignoring an unreadable job record\nhint: remove the file");
            None
        }
    }
}

/// The runner process that wrote the record still runs (this one, or another oxrunner on the same config).
fn runner_alive(record: &Record) -> bool {
    jobprocs::process_start_time(record.pid).is_some_and(|start| start == record.pid_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> RunnerConfig {
        RunnerConfig {
            url: "http://127.0.0.1:1".into(),
            token: "glrt-stale-test-token".into(),
            ..RunnerConfig::default()
        }
    }

    /// The shell default `builds_dir = "builds"` is relative: a job's `GIT_CLONE_PATH=$CI_BUILDS_DIR/...` expands
    /// against the absolute path the job runs with, and recovery must name the same `.tmp` (it holds the job's file
    /// variables); it used to name the default project directory's.
    #[test]
    fn a_killed_jobs_tmp_dir_follows_its_clone_path_under_a_relative_builds_dir() {
        let mut plan = JobPlan::default();
        plan.sources.origin = oxrunner_core::SourceOrigin::Git;
        plan.variables.push(oxrunner_core::variables::Variable::new(
            "GIT_CLONE_PATH",
            "$CI_BUILDS_DIR/custom/x",
        ));
        let ctx = RunnerContext {
            builds_dir: PathBuf::from("builds"),
            custom_build_dir: true,
            ..RunnerContext::default()
        };
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(tmp_dir(&plan, &ctx), cwd.join("builds/custom/x.tmp"));
    }

    #[test]
    fn record_is_private_complete_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rec = JobRecord::write(dir.path(), &runner(), 7, "job-token-secret", Leftovers::default());
        let path = rec.path.clone().expect("record written");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(DIR_NAME)), 0o700);
        assert_eq!(mode(&path), 0o600);
        let back = read_record(&path).expect("readable");
        assert_eq!((back.job_id, back.token.as_str()), (7, "job-token-secret"));
        assert_eq!(back.pid, std::process::id());
        // Written by this live process: never taken for a killed runner's job.
        assert!(runner_alive(&back));
        // No temporary file is left next to it.
        assert_eq!(std::fs::read_dir(dir.path().join(DIR_NAME)).unwrap().count(), 1);
        rec.remove();
        assert!(!path.exists());
    }

    #[test]
    fn a_symlinked_or_open_records_directory_is_not_trusted_blindly() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(DIR_NAME)).unwrap();
        let rec = JobRecord::write(dir.path(), &runner(), 8, "tok", Leftovers::default());
        assert!(rec.path.is_none());
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "wrote through a symlink"
        );

        let other = tempfile::tempdir().unwrap();
        let records = other.path().join(DIR_NAME);
        std::fs::create_dir(&records).unwrap();
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777)).unwrap();
        let rec = JobRecord::write(other.path(), &runner(), 9, "tok", Leftovers::default());
        assert!(rec.path.is_some());
        let mode = std::fs::metadata(&records).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "a too-open records directory was not tightened");
    }

    #[test]
    fn a_dead_runner_process_is_recognised_also_behind_a_reused_pid() {
        let mut rec = Record {
            job_id: 1,
            token: String::new(),
            url: String::new(),
            runner: String::new(),
            pid: std::process::id(),
            pid_start: 0,
            cgroup: None,
            marker: String::new(),
            tmp_dir: None,
            user: None,
        };
        // Same pid, other start time: the pid was reused, the runner that wrote the record is dead.
        assert!(!runner_alive(&rec));
        rec.pid = u32::MAX - 1;
        assert!(!runner_alive(&rec));
    }
}
