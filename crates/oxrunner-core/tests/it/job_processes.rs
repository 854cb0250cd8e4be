#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 11 item 7: no process a shell job starts outlives the job: `setsid` children on cancel and timeout,
//! background processes of a successful job (dead before artifacts are collected), with the job's cgroup and with
//! the environment-marker fallback. Real bash, real processes; every marker process is killed at the end whatever
//! happens.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{
    ArtifactSpec, CgroupPlacement, FailureReason, HookError, JobCancel, JobHooks, JobOutcome, JobPlan,
    JobProcesses, NoopHooks, RunnerContext, ShellExecutor, StageCtx, Step, TraceWriter, Variable, When,
    run_job,
};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// Kills every still-running marker process listed in the pid files at drop, so a failing test leaves nothing.
struct Markers(Vec<PathBuf>);

impl Drop for Markers {
    fn drop(&mut self) {
        for file in &self.0 {
            for pid in pids(file) {
                if marker_alive(pid, file) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                }
            }
        }
    }
}

fn env() -> Env {
    let dir = tempfile::Builder::new().prefix("oxrt-procs-").tempdir().unwrap();
    let root = dir.path().to_path_buf();
    Env { _dir: dir, root }
}

fn ctx(env: &Env) -> RunnerContext {
    RunnerContext {
        runner_name: "procs".into(),
        short_token: "abcd1234".into(),
        system_id: "s_0123456789ab".into(),
        executor: "shell".into(),
        builds_dir: env.root.join("builds"),
        cache_dir: env.root.join("cache"),
        shared_builds_dir: true,
        version: "0.1.0".into(),
        revision: "deadbeef".into(),
        ..RunnerContext::default()
    }
}

fn plan(script: &[String]) -> JobPlan {
    JobPlan {
        job_id: 77,
        job_name: "procs".into(),
        stage: "test".into(),
        project_id: 7,
        project_path: "group/procs".into(),
        variables: vec![Variable::new("GIT_STRATEGY", "none")].into(),
        steps: vec![Step {
            name: "script".into(),
            script: script.to_vec(),
            when: When::OnSuccess,
            ..Step::default()
        }],
        timeout: Duration::from_secs(120),
        ..JobPlan::default()
    }
}

/// A process with a unique argv (`oxrt-marker-...`) that writes its pid to `pid_file` and sleeps; `setsid`
/// puts it in a new session, out of the stage's process group.
fn marker(pid_file: &Path, setsid: bool) -> String {
    let name = marker_name(pid_file);
    let inner = format!(
        "echo \\$\\$ >> '{}'; exec -a {name} sleep 300",
        pid_file.display()
    );
    if setsid {
        format!("setsid bash -c \"{inner}\" </dev/null >/dev/null 2>&1 &")
    } else {
        format!("bash -c \"{inner}\" </dev/null >/dev/null 2>&1 &")
    }
}

fn pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The name (`exec -a`) of the markers whose pids go to `pid_file`, unique per pid file: the tests of this file run
/// at once and pids are reused quickly, so a check by a shared name could take another test's marker for one of its
/// own dead ones (and a guard would then kill it).
fn marker_name(pid_file: &Path) -> String {
    let hash = pid_file
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("oxrt-marker-{}-{hash:016x}", std::process::id())
}

/// Alive, not a zombie, and still this pid file's marker (not a reused pid).
fn marker_alive(pid: i32, pid_file: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // Before its `exec -a` the marker's command line still names it (`bash -c "... exec -a oxrt-marker-..."`).
    let name = marker_name(pid_file);
    let named = cmdline.windows(name.len()).any(|w| w == name.as_bytes());
    matches!(state, Some(s) if s != "Z" && s != "X") && named
}

async fn wait_lines(file: &Path, n: usize) {
    for _ in 0..1200 {
        if pids(file).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never got {n} pids", file.display());
}

/// Markers killed by the runner may take a moment to be reaped by their new parent.
async fn all_gone(file: &Path) -> Vec<i32> {
    for _ in 0..200 {
        let left: Vec<i32> = pids(file)
            .into_iter()
            .filter(|p| marker_alive(*p, file))
            .collect();
        if left.is_empty() {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids(file)
        .into_iter()
        .filter(|p| marker_alive(*p, file))
        .collect()
}

async fn run(
    env: &Env,
    plan: &JobPlan,
    exec: ShellExecutor,
    hooks: &dyn JobHooks,
    control: JobCancel,
) -> (JobOutcome, String) {
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let mut exec = exec
        .with_login_shell(false)
        .with_kill_grace(Duration::from_secs(2));
    let outcome = run_job(plan, &ctx(env), &mut exec, hooks, &trace, control).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    (outcome, log)
}

#[tokio::test]
async fn setsid_child_of_a_canceled_job_is_killed() {
    let env = env();
    let pid_file = env.root.join("markers.pids");
    let _guard = Markers(vec![pid_file.clone()]);
    let plan = plan(&[
        marker(&pid_file, true),
        marker(&pid_file, false),
        "sleep 300".into(),
    ]);
    let control = JobCancel::new();
    let cancel = control.clone();
    let canceler = async {
        wait_lines(&pid_file, 2).await;
        cancel.graceful.cancel();
    };
    let ((outcome, log), ()) = tokio::join!(
        run(&env, &plan, ShellExecutor::new(), &NoopHooks, control),
        canceler
    );
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                reason: FailureReason::JobCanceled,
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    let left = all_gone(&pid_file).await;
    assert!(
        left.is_empty(),
        "processes of the canceled job survived: {left:?}\n{log}"
    );
}

#[tokio::test]
async fn setsid_child_of_a_timed_out_job_is_killed() {
    let env = env();
    let pid_file = env.root.join("markers.pids");
    let _guard = Markers(vec![pid_file.clone()]);
    let mut plan = plan(&[marker(&pid_file, true), "sleep 300".into()]);
    plan.timeout = Duration::from_secs(3);
    let (outcome, log) = run(&env, &plan, ShellExecutor::new(), &NoopHooks, JobCancel::new()).await;
    assert!(
        matches!(
            &outcome,
            JobOutcome::Failed {
                reason: FailureReason::JobExecutionTimeout,
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert_eq!(pids(&pid_file).len(), 1, "the marker never started:\n{log}");
    let left = all_gone(&pid_file).await;
    assert!(
        left.is_empty(),
        "processes of the timed-out job survived: {left:?}\n{log}"
    );
}

/// Records, when artifacts are collected, which job processes are still alive.
struct ArtifactProbe {
    pid_file: PathBuf,
    alive_at_upload: Mutex<Option<Vec<i32>>>,
}

impl JobHooks for ArtifactProbe {
    fn restore_cache<'a>(
        &'a self,
        c: &'a StageCtx<'a>,
        t: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        NoopHooks.restore_cache(c, t)
    }
    fn download_artifacts<'a>(
        &'a self,
        c: &'a StageCtx<'a>,
        t: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        NoopHooks.download_artifacts(c, t)
    }
    fn archive_cache<'a>(
        &'a self,
        c: &'a StageCtx<'a>,
        t: &'a TraceWriter,
        f: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        NoopHooks.archive_cache(c, t, f)
    }
    fn upload_artifacts<'a>(
        &'a self,
        _c: &'a StageCtx<'a>,
        _t: &'a TraceWriter,
        _f: bool,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            let alive = pids(&self.pid_file)
                .into_iter()
                .filter(|p| marker_alive(*p, &self.pid_file))
                .collect();
            *self.alive_at_upload.lock().unwrap() = Some(alive);
            Ok(())
        })
    }
}

#[tokio::test]
async fn background_processes_of_a_successful_job_are_dead_before_artifacts_are_collected() {
    let env = env();
    let pid_file = env.root.join("markers.pids");
    let _guard = Markers(vec![pid_file.clone()]);
    let wait = format!(
        "for i in $(seq 600); do [ $(wc -l < '{}') -ge 2 ] && break; sleep 0.05; done",
        pid_file.display()
    );
    let mut plan = plan(&[
        marker(&pid_file, false),
        marker(&pid_file, true),
        wait,
        "echo script-done".into(),
    ]);
    plan.artifacts = vec![ArtifactSpec {
        name: "a".into(),
        paths: vec!["out".into()],
        ..ArtifactSpec::default()
    }];
    let probe = ArtifactProbe {
        pid_file: pid_file.clone(),
        alive_at_upload: Mutex::new(None),
    };
    let (outcome, log) = run(&env, &plan, ShellExecutor::new(), &probe, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(pids(&pid_file).len(), 2, "the markers never started:\n{log}");
    let at_upload = probe.alive_at_upload.lock().unwrap().clone();
    assert_eq!(
        at_upload,
        Some(vec![]),
        "job processes alive while artifacts were collected\n{log}"
    );
    let left = all_gone(&pid_file).await;
    assert!(
        left.is_empty(),
        "background processes of the successful job survived: {left:?}\n{log}"
    );
}

/// Root-only: under `CI=true` it must run (CI runs as root), elsewhere it says why it skips.
fn cgroup_available() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let v2 = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"));
    if root && v2 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but this test cannot create a cgroup (root: {root}, cgroup2 mounted: {v2})"
    );
    eprintln!("SKIPPED: creating a job cgroup needs root and a cgroup2 mount (root: {root}, cgroup2: {v2})");
    false
}

#[tokio::test]
async fn job_runs_in_its_own_cgroup_which_is_removed_at_the_end() {
    if !cgroup_available() {
        return;
    }
    let env = env();
    let pid_file = env.root.join("markers.pids");
    let _guard = Markers(vec![pid_file.clone()]);
    let seen = env.root.join("cgroup.txt");
    let procs = JobProcesses::new("cgtest", &CgroupPlacement::Own);
    let dir = procs
        .cgroup()
        .expect("root with cgroup2 must get a job cgroup")
        .to_path_buf();
    let plan = plan(&[
        marker(&pid_file, true),
        format!("cat /proc/self/cgroup > '{}'", seen.display()),
        format!(
            "for i in $(seq 600); do [ -s '{}' ] && break; sleep 0.05; done",
            pid_file.display()
        ),
    ]);
    let exec = ShellExecutor::new().with_processes(procs);
    let (outcome, log) = run(&env, &plan, exec, &NoopHooks, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let cgroup = std::fs::read_to_string(&seen).unwrap();
    assert!(
        cgroup
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{name}"))),
        "the script ran in {cgroup:?}, not in {name}"
    );
    assert!(all_gone(&pid_file).await.is_empty(), "the setsid child survived");
    assert!(!dir.exists(), "the job cgroup {} was not removed", dir.display());
}

#[tokio::test]
async fn without_a_cgroup_the_marker_still_finds_setsid_children() {
    let env = env();
    let pid_file = env.root.join("markers.pids");
    let _guard = Markers(vec![pid_file.clone()]);
    let procs = JobProcesses::new("markeronly", &CgroupPlacement::Off);
    assert!(procs.cgroup().is_none());
    let wait = format!(
        "for i in $(seq 600); do [ -s '{}' ] && break; sleep 0.05; done",
        pid_file.display()
    );
    let plan = plan(&[marker(&pid_file, true), wait]);
    let exec = ShellExecutor::new().with_processes(procs);
    let (outcome, log) = run(&env, &plan, exec, &NoopHooks, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(pids(&pid_file).len(), 1, "the marker never started:\n{log}");
    let left = all_gone(&pid_file).await;
    assert!(
        left.is_empty(),
        "the setsid child survived the marker fallback: {left:?}"
    );
}

/// A throw-away system user `oxrt-p<pid>` for the job, removed at drop.
struct TestUser(String);

impl TestUser {
    fn create() -> TestUser {
        let name = format!("oxrt-p{}", std::process::id());
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

/// A marker that drops its environment (so the marker fallback cannot see it) and, running as a user, tries to
/// move itself out of the job's cgroup into the root cgroup; records whether that worked.
fn escaping_marker(pid_file: &Path, escaped: &Path, cgroup_root: &Path) -> String {
    let name = marker_name(pid_file);
    let inner = format!(
        "echo \\$\\$ > '{root}/cgroup.procs' 2>/dev/null && echo escaped >> '{esc}'; echo \\$\\$ >> '{pids}'; exec -a {name} sleep 300",
        root = cgroup_root.display(),
        esc = escaped.display(),
        pids = pid_file.display(),
    );
    format!("setsid env -i bash -c \"{inner}\" </dev/null >/dev/null 2>&1 &")
}

fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .unwrap()
}

#[tokio::test]
async fn a_user_job_cannot_leave_its_cgroup_and_a_cleared_environment_does_not_hide_it() {
    if !cgroup_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let user = TestUser::create();
    let env = env();
    let shared = env.root.join("shared");
    std::fs::create_dir_all(env.root.join("builds")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    for dir in [&env.root, &env.root.join("builds"), &shared] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let pid_file = shared.join("markers.pids");
    let escaped = shared.join("escaped");
    let _guard = Markers(vec![pid_file.clone()]);
    let wait = format!(
        "for i in $(seq 600); do [ -s '{}' ] && break; sleep 0.05; done",
        pid_file.display()
    );
    let plan = plan(&[escaping_marker(&pid_file, &escaped, &cgroup2_root()), wait]);
    let exec = ShellExecutor::new()
        .with_user(Some(user.0.clone()))
        .with_processes(JobProcesses::new("usertest", &CgroupPlacement::Own));
    let (outcome, log) = run(&env, &plan, exec, &NoopHooks, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert_eq!(pids(&pid_file).len(), 1, "the marker never started:\n{log}");
    assert!(
        !escaped.exists(),
        "a job running as {} moved itself out of its cgroup",
        user.0
    );
    let left = all_gone(&pid_file).await;
    assert!(
        left.is_empty(),
        "a setsid + env -i process of a user job survived: {left:?}"
    );
}
