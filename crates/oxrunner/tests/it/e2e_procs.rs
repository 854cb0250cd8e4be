//! Issue 11 item 7 through the real daemon: a job's processes do not outlive it, and after a SIGKILL of
//! `oxrunner run` the next start kills what the job left and reports it failed (`runner_system_failure`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Sandbox, fake, finished, global_toml, shell_runner_toml, wait_file_lines, wait_status};
use fake_gitlab::{FakeGitlab, JobSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const FINISH: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

/// Kills every still-running marker listed in the pid file at drop, so a failing test leaves nothing behind.
struct Markers(PathBuf);

impl Drop for Markers {
    fn drop(&mut self) {
        for pid in pids(&self.0) {
            if marker_alive(pid, &self.0) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The name (`exec -a`) of the markers whose pids go to `pid_file`: unique per test, because the tests of this file
/// run at once, pids are reused quickly, and a marker check by a shared name could take another test's marker for
/// one of its own dead ones (and its guard would then kill it).
fn marker_name(pid_file: &Path) -> String {
    let tag = pid_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("oxrt-marker-{}-{tag}", std::process::id())
}

/// Alive, not a zombie, and still this test's marker (not a reused pid).
fn marker_alive(pid: i32, pid_file: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // Before its `exec -a` the marker's command line still names it (`bash -c "... exec -a oxrt-marker-..."`).
    let name = marker_name(pid_file);
    let named = cmdline.windows(name.len()).any(|w| w == name.as_bytes());
    matches!(state, Some(s) if s != "Z" && s != "X") && named
}

async fn left_alive(file: &Path) -> Vec<i32> {
    for _ in 0..200 {
        if pids(file).iter().all(|p| !marker_alive(*p, file)) {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids(file)
        .into_iter()
        .filter(|p| marker_alive(*p, file))
        .collect()
}

/// A `setsid` marker (its own session) and a plain background one, both writing their pid to `pid_file`.
fn markers(pid_file: &Path) -> Vec<String> {
    let name = marker_name(pid_file);
    let inner = format!(
        "echo \\$\\$ >> '{}'; exec -a {name} sleep 300",
        pid_file.display()
    );
    vec![
        format!("setsid bash -c \"{inner}\" </dev/null >/dev/null 2>&1 &"),
        format!("bash -c \"{inner}\" </dev/null >/dev/null 2>&1 &"),
    ]
}

fn config(fake: &FakeGitlab, sb: &Sandbox) {
    let token = fake.create_runner_token("procs");
    let text = global_toml(1, "") + &shell_runner_toml("procs", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
}

fn start(sb: &Sandbox) -> Daemon {
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

#[tokio::test(flavor = "multi_thread")]
async fn background_and_setsid_processes_of_a_successful_job_are_killed() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let pid_file = sb.path("success.pids");
    let _guard = Markers(pid_file.clone());
    config(&fake, &sb);
    let mut d = start(&sb);
    let mut script = markers(&pid_file);
    script.push(format!(
        "for i in $(seq 600); do [ $(wc -l < '{}') -ge 2 ] && break; sleep 0.05; done",
        pid_file.display()
    ));
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let id = fake.enqueue_job(JobSpec::new("bg", &script).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    assert_eq!(pids(&pid_file).len(), 2, "{}", job.trace_text());
    let left = left_alive(&pid_file).await;
    assert!(
        left.is_empty(),
        "processes of the successful job survived: {left:?}"
    );
    let status = d.quit(EXIT).await;
    assert!(status.success(), "{}", d.log());
}

/// Starts the runner, lets a job with markers run, SIGKILLs the runner; returns the job id.
async fn run_then_sigkill(fake: &FakeGitlab, sb: &Sandbox, pid_file: &Path) -> i64 {
    config(fake, sb);
    let mut d = start(sb);
    let mut script = markers(pid_file);
    // Where the file variable (a secret on disk until cleanup_file_variables runs) lives.
    script.push(format!(
        "echo \"$OXRT_FILE_SECRET\" > '{}'",
        secret_path_file(pid_file).display()
    ));
    script.push("sleep 300".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let spec = JobSpec::new("victim", &script)
        .variable("GIT_STRATEGY", "none")
        .file_variable("OXRT_FILE_SECRET", "file-variable-secret-content");
    let id = fake.enqueue_job(spec);
    wait_file_lines(pid_file, 2, FINISH).await;
    wait_file_lines(&secret_path_file(pid_file), 1, FINISH).await;
    wait_status(fake, id, "running", FINISH).await;

    d.signal(Signal::SIGKILL);
    assert!(d.wait(EXIT).await.is_some(), "the runner survived SIGKILL");
    for pid in pids(pid_file) {
        assert!(
            marker_alive(pid, pid_file),
            "marker {pid} died with the runner: the test proves nothing"
        );
    }
    assert_eq!(fake.job(id).unwrap().status, "running");
    id
}

fn secret_path_file(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("secret-path")
}

/// The file variable's path as the killed job saw it.
fn secret_file(pid_file: &Path) -> PathBuf {
    PathBuf::from(
        std::fs::read_to_string(secret_path_file(pid_file))
            .unwrap()
            .trim(),
    )
}

async fn records_gone(sb: &Sandbox) -> usize {
    let records = || {
        std::fs::read_dir(sb.path("etc/oxrunner-jobs"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    for _ in 0..200 {
        if records() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    records()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_of_the_runner_the_next_start_kills_the_job_and_fails_it() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let pid_file = sb.path("killed.pids");
    let _guard = Markers(pid_file.clone());
    let id = run_then_sigkill(&fake, &sb, &pid_file).await;
    let secret = secret_file(&pid_file);
    assert!(secret.is_file(), "no file variable at {}", secret.display());
    // The record holds the job token: private directory, private file.
    let dir = sb.path("etc/oxrunner-jobs");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);

    let mut again = start(&sb);
    let job = finished(&fake, id, FINISH, &again).await;
    assert_eq!(job.status, "failed", "{}\n{}", job.trace_text(), again.log());
    assert_eq!(job.failure_reason.as_deref(), Some("runner_system_failure"));
    assert!(
        job.trace_text().contains("the runner process was killed"),
        "{}",
        job.trace_text()
    );
    let left = left_alive(&pid_file).await;
    assert!(
        left.is_empty(),
        "processes of the killed runner's job survived its restart: {left:?}"
    );
    // The record goes right after the report that the test just saw.
    assert_eq!(records_gone(&sb).await, 0, "the job record was not dropped");
    assert!(
        !secret.parent().unwrap().exists(),
        "the killed job's temporary files (file variables) are still at {}",
        secret.parent().unwrap().display()
    );
    let token = fake.job(id).unwrap().token;
    assert!(!again.log().contains(&token), "the job token reached the log");
    let status = again.quit(EXIT).await;
    assert!(status.success(), "{}", again.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runners_job_that_gitlab_already_ended_is_cleaned_up_and_left_as_it_is() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let pid_file = sb.path("ended.pids");
    let _guard = Markers(pid_file.clone());
    let id = run_then_sigkill(&fake, &sb, &pid_file).await;
    // Canceled in GitLab while no runner was there: the job token is no longer accepted.
    fake.cancel_job(id);
    fake.cancel_job(id);
    assert_eq!(fake.job(id).unwrap().status, "canceled");
    let updates = fake.job(id).unwrap().updates.len();

    let mut again = start(&sb);
    assert_eq!(
        records_gone(&sb).await,
        0,
        "the job record was not dropped\n{}",
        again.log()
    );
    let left = left_alive(&pid_file).await;
    assert!(
        left.is_empty(),
        "processes of the killed runner's job survived its restart: {left:?}"
    );
    let job = fake.job(id).unwrap();
    assert_eq!(job.status, "canceled");
    assert_eq!(job.updates.len(), updates, "an ended job was updated");
    let status = again.quit(EXIT).await;
    assert!(status.success(), "{}", again.log());
}

/// The cgroup2 mount, when this test may create cgroups (root). Under `CI=true` it must be able to.
fn cgroup2_mount_as_root() -> Option<PathBuf> {
    let root = nix::unistd::geteuid().is_root();
    let mount = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        });
    match (root, mount) {
        (true, Some(m)) => Some(m),
        (root, mount) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but this test cannot create cgroups (root: {root}, cgroup2: {mount:?})"
            );
            eprintln!("SKIPPED: slot cgroups need root and cgroup2 (root: {root}, cgroup2: {mount:?})");
            None
        }
    }
}

/// Removes the test's slot cgroup tree (`oxrunner-test-<pid>/slot-N`) at drop.
struct SlotTree(PathBuf);

impl Drop for SlotTree {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn use_slot_cgroups_puts_the_job_under_the_slot_cgroup() {
    let Some(mount) = cgroup2_mount_as_root() else {
        return;
    };
    let base = format!("oxrunner-test-{}", std::process::id());
    let _tree = SlotTree(mount.join(&base));
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let token = fake.create_runner_token("slots");
    let extra = format!("  use_slot_cgroups = true\n  slot_cgroup_template = \"{base}/slot-${{slot}}\"\n");
    let text = global_toml(1, "") + &shell_runner_toml("slots", &fake.url(), &token, sb.dir.path(), &extra);
    std::fs::write(sb.config(), text).unwrap();
    let mut d = start(&sb);
    let seen = sb.path("cgroup.txt");
    let script = format!("cat /proc/self/cgroup > '{}'", seen.display());
    let id = fake.enqueue_job(JobSpec::new("slot", &[script.as_str()]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}\n{}", job.trace_text(), d.log());
    let cgroup = std::fs::read_to_string(&seen).unwrap();
    let line = cgroup.lines().find(|l| l.starts_with("0::")).unwrap_or_default();
    assert!(
        line.contains(&format!("/{base}/slot-0/oxrunner-job-{id}-")),
        "the job ran in {line:?}, not under {base}/slot-0"
    );
    // The job's own cgroup is gone; the slot cgroup stays, as an administrator's pre-created one would.
    let slot = mount.join(&base).join("slot-0");
    let left: Vec<_> = std::fs::read_dir(&slot)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(
        left.is_empty(),
        "job cgroups left under {}: {left:?}",
        slot.display()
    );
    let status = d.quit(EXIT).await;
    assert!(status.success(), "{}", d.log());
}

/// A throwaway account for `--user` (name under `oxrt-`), removed at drop.
struct TestUser(String);

impl TestUser {
    fn create(tag: &str) -> TestUser {
        let name = format!("oxrt-{tag}{}", std::process::id());
        let out = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/bash", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestUser(name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").arg(&self.0).output();
    }
}

/// `su` opens a PAM session, and on most hosts `pam_systemd` then moves the session into a login scope: the job's
/// shell leaves the job's cgroup, and a `setsid env -i` child (invisible to the environment marker) outlives the
/// job. This host has no logind, so a `su` placed first on the daemon's PATH does that move itself before running
/// the real `su`. `--user` jobs must not depend on `su` (the runner drops privileges with `setpriv`).
#[tokio::test(flavor = "multi_thread")]
async fn a_user_job_stays_in_its_cgroup_whatever_a_pam_session_would_do() {
    let Some(mount) = cgroup2_mount_as_root() else {
        return;
    };
    let user = TestUser::create("s");
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let shared = sb.path("shared");
    let builds = sb.path("builds");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&builds).unwrap();
    for dir in [sb.dir.path(), shared.as_path(), builds.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let bin = sb.path("pam-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let su = bin.join("su");
    std::fs::write(
        &su,
        format!(
            "#!/bin/sh\necho $$ > '{}/cgroup.procs'\nexec /bin/su \"$@\"\n",
            mount.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pid_file = shared.join("pam.pids");
    let _guard = Markers(pid_file.clone());
    config(&fake, &sb);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let cfg = sb.config_str();
    let mut d = sb.spawn_with_env(&["run", "-c", &cfg, "--user", &user.0], &[("PATH", &path)]);
    let name = marker_name(&pid_file);
    let marker = format!(
        "setsid env -i /bin/bash -c \"echo \\$\\$ >> '{}'; exec -a {name} sleep 300\" </dev/null >/dev/null 2>&1 &",
        pid_file.display()
    );
    let wait = format!(
        "for i in $(seq 600); do [ -s '{}' ] && break; sleep 0.05; done",
        pid_file.display()
    );
    let id = fake.enqueue_job(JobSpec::new("pam", &[&marker, &wait]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}\n{}", job.trace_text(), d.log());
    assert_eq!(pids(&pid_file).len(), 1, "{}", job.trace_text());
    let left = left_alive(&pid_file).await;
    assert!(
        left.is_empty(),
        "a process of the --user job outlived it: {left:?}"
    );
    let status = d.quit(EXIT).await;
    assert!(status.success(), "{}", d.log());
}
