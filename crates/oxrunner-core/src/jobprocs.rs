//! Tracking every process a shell job starts, so that none outlives the job.
//!
//! A process group is not enough: `setsid`, `nohup ... &` into a new session or a double-forking daemon leave
//! the group, and a background process of a successful job is never signalled at all. Two mechanisms, used
//! together:
//!
//! 1. **cgroup v2** (preferred): each job gets its own cgroup, `oxrunner-<name>`, created under the runner's own
//!    cgroup, or under the slot cgroup named by `slot_cgroup_template` when `use_slot_cgroups` is on. Each stage's
//!    shell is started through a tiny `/bin/sh` step that writes its own pid to the cgroup's `cgroup.procs` and
//!    then `exec`s the shell (or `su`), so no job code runs outside the cgroup and the runner needs no `unsafe`
//!    pre-exec hook. Everything the shell starts stays in the cgroup: a job running as an
//!    unprivileged user cannot leave (that needs write access to a common ancestor's `cgroup.procs`, which is
//!    root's). Killing writes `cgroup.kill` (Linux 5.14+) or, on older kernels, freezes the cgroup, SIGKILLs every
//!    member and thaws it; then it waits until `cgroup.events` says the cgroup is empty.
//! 2. **Environment marker** (always set, the only mechanism when no cgroup can be created: no cgroup2 mounted,
//!    runner not root and its cgroup not delegated): every shell gets `OXRUNNER_JOB_MARKER=<unique value>` and the
//!    runner finds the job's processes by reading `/proc/<pid>/environ`. This also catches processes that
//!    `su`'s PAM session (pam_systemd) moved into a login scope outside the job's cgroup, since `su` without `-l`
//!    keeps the environment.
//!
//! Under systemd, give the runner's unit `Delegate=yes`: systemd then leaves the job cgroups under the service's
//! cgroup alone (without it they work, but systemd considers that part of the tree its own).
//!
//! What the marker fallback cannot catch: a process that dropped or replaced its environment (`env -i`,
//! `exec -c`, any `execve` with a new environment), and one whose environ the runner may not read (another
//! user's process when the runner is not root). A job running as root can leave any cgroup. A process that a job
//! asked some other service to start (`systemd-run --user`, `at`, a Docker container) is not the job's child and
//! is not tracked. The cgroup covers everything else.
//!
//! The kill work (reading `/proc`, waiting for the cgroup to empty) runs on a blocking thread: a job decides how
//! many processes there are.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable that marks a job's processes.
pub const MARKER_VAR: &str = "OXRUNNER_JOB_MARKER";

/// How long `kill_all` keeps killing before it gives up (a process in uninterruptible sleep cannot be hurried).
const KILL_DEADLINE: Duration = Duration::from_secs(30);
const KILL_POLL: Duration = Duration::from_millis(20);

/// Where a job's cgroup goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CgroupPlacement {
    /// Under the runner's own cgroup v2 cgroup (from `/proc/self/cgroup`).
    #[default]
    Own,
    /// Under this cgroup, a path relative to the cgroup2 root (`use_slot_cgroups` + `slot_cgroup_template`, the
    /// template's raw cgroupfs form). Created when missing.
    Under(PathBuf),
    /// No cgroup: the environment marker only.
    Off,
}

impl CgroupPlacement {
    /// gitlab-runner's `use_slot_cgroups` / `slot_cgroup_template` for slot `slot` (`${slot}` in the template).
    /// Returns an error with a hint for a template that is not a plain relative cgroup path.
    pub fn from_slot_template(template: &str, slot: usize) -> Result<Self, String> {
        let path = template.replace("${slot}", &slot.to_string());
        let rel = Path::new(path.trim_start_matches('/'));
        let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if path.trim().is_empty() || !plain || rel.as_os_str().is_empty() {
            return Err(format!(
                "slot_cgroup_template {template:?}: not a cgroup path\nhint: use a relative cgroupfs path such as \"gitlab-runner/slot-${{slot}}\" (no `..`)"
            ));
        }
        Ok(Self::Under(rel.to_path_buf()))
    }
}

/// The processes of one job. Cheap to clone; all clones share the cgroup.
#[derive(Clone)]
pub struct JobProcesses {
    inner: Arc<Inner>,
}

struct Inner {
    marker: String,
    cgroup: Option<Cgroup>,
    /// `finish` ran: nothing left for `Drop` to do.
    finished: AtomicBool,
    /// How many shells were started with the marker ([`JobProcesses::mark`]).
    started: AtomicU64,
    /// `started` as it was when a kill pass last found the job with no process left (`u64::MAX`: never). Nothing
    /// of the job can appear without a new shell, so the next pass is skipped while the two are equal: a `/proc`
    /// scan reads every process's environment, which is most of a short job's cost on a busy machine.
    clean_at: AtomicU64,
    /// Kill passes that looked for processes (for tests and debugging).
    passes: AtomicU64,
    /// When the job began, in clock ticks since boot (`None`: unknown, so no pass is ever skipped).
    began: Option<u64>,
}

impl Drop for Inner {
    /// A job future dropped half-way (its task aborted) never reaches `finish`: clean up on a plain thread, since
    /// waiting for processes to die must not block an async worker.
    fn drop(&mut self) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        let marker = std::mem::take(&mut self.marker);
        let dir = self.cgroup.take().map(|c| c.dir);
        let _ = std::thread::Builder::new()
            .name("oxrunner-job-reaper".into())
            .spawn(move || {
                kill_tracked(dir.as_deref(), &marker);
                if let Some(dir) = &dir {
                    remove_cgroup(dir);
                }
            });
    }
}

struct Cgroup {
    dir: PathBuf,
}

/// Joins the cgroup whose `cgroup.procs` is `$1`, then runs the rest of the arguments. `$$` is this shell, which
/// the `exec` turns into the job's shell.
const JOIN_SCRIPT: &str = r#"{ echo $$ > "$1"; } 2>/dev/null || { echo "ERROR: cannot move the job into its cgroup ($1)" >&2; exit 1; }; shift; exec "$@""#;

impl std::fmt::Debug for JobProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobProcesses")
            .field("marker", &self.inner.marker)
            .field("cgroup", &self.cgroup())
            .finish()
    }
}

impl JobProcesses {
    /// Tracking for a job called `name` (e.g. `job-42`); made unique with the runner's pid and a counter. Falls back
    /// to the marker alone (with a log line saying why) when the cgroup cannot be created.
    pub fn new(name: &str, placement: &CgroupPlacement) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let unique = format!("{clean}-{}-{n}", std::process::id());
        let cgroup = match placement {
            CgroupPlacement::Off => None,
            _ => match create_cgroup(&format!("oxrunner-{unique}"), placement) {
                Ok(cg) => Some(cg),
                Err(why) => {
                    // Once per process at info level: the reason is the same for every job.
                    static SAID: AtomicBool = AtomicBool::new(false);
                    if SAID.swap(true, Ordering::Relaxed) {
                        tracing::debug!(
                            "job processes tracked by environment marker only (no cgroup: {why})"
                        );
                    } else {
                        tracing::info!(
                            "job processes are tracked by environment marker only (no cgroup: {why}); a process \
                             that clears its environment can outlive its job\nhint: run oxrunner as root with \
                             cgroup v2 (or in a delegated cgroup) to give each job its own cgroup"
                        );
                    }
                    None
                }
            },
        };
        Self {
            inner: Arc::new(Inner {
                marker: format!("{unique}-{}", random_suffix()),
                cgroup,
                finished: AtomicBool::new(false),
                started: AtomicU64::new(0),
                clean_at: AtomicU64::new(u64::MAX),
                passes: AtomicU64::new(0),
                began: boot_ticks_now(),
            }),
        }
    }

    /// The marker value (`OXRUNNER_JOB_MARKER`).
    pub fn marker(&self) -> &str {
        &self.inner.marker
    }

    /// The job's cgroup directory, when there is one.
    pub fn cgroup(&self) -> Option<&Path> {
        self.inner.cgroup.as_ref().map(|c| c.dir.as_path())
    }

    /// The command line that runs `argv` inside the job's cgroup (unchanged without one). If joining fails the
    /// stage fails with a message in its log: an untracked job could outlive its end.
    pub fn wrap_argv(&self, argv: Vec<String>) -> Vec<String> {
        let Some(cg) = &self.inner.cgroup else {
            return argv;
        };
        let mut out = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            JOIN_SCRIPT.to_owned(),
            "oxrunner-join-cgroup".to_owned(),
            cg.dir.join("cgroup.procs").to_string_lossy().into_owned(),
        ];
        out.extend(argv);
        out
    }

    /// Puts the job's marker into a stage's environment.
    pub fn mark(&self, cmd: &mut tokio::process::Command) {
        self.inner.started.fetch_add(1, Ordering::SeqCst);
        cmd.env(MARKER_VAR, &self.inner.marker);
    }

    /// Sends `sig` to every live process of the job (SIGTERM before the grace period of a cancel).
    pub async fn signal_all(&self, sig: Signal) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for pid in this.cgroup().map(cgroup_pids).unwrap_or_default() {
                let _ = kill(pid, sig);
            }
            for pid in marked_pids(&this.inner.marker) {
                signal_if_marked(pid, &this.inner.marker, sig);
            }
        })
        .await;
    }

    /// Kills every process of the job and waits until none is left (bounded); returns how many were killed.
    /// The driver never starts a stage while this runs; a shell marked during the pass keeps the next one from
    /// being skipped.
    pub async fn kill_all(&self) -> usize {
        let started = self.inner.started.load(Ordering::SeqCst);
        if self.inner.began.is_some() && self.inner.clean_at.load(Ordering::SeqCst) == started {
            return 0;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.inner.passes.fetch_add(1, Ordering::SeqCst);
            let (killed, empty) =
                kill_tracked_until_empty(this.cgroup(), &this.inner.marker, this.inner.began);
            if empty && this.inner.started.load(Ordering::SeqCst) == started {
                this.inner.clean_at.store(started, Ordering::SeqCst);
            }
            killed
        })
        .await
        .unwrap_or(0)
    }

    /// Kills everything and removes the cgroup; called when the job is over.
    pub async fn finish(&self) {
        self.kill_all().await;
        if let Some(dir) = self.cgroup() {
            remove_cgroup(dir);
        }
        self.inner.finished.store(true, Ordering::SeqCst);
    }
}

/// Kills what is left of a job given its cgroup and marker (also used at start-up for the jobs of a runner that
/// was killed); blocks until nothing is left or a deadline passes. Returns how many processes were signalled.
pub fn kill_tracked(cgroup: Option<&Path>, marker: &str) -> usize {
    kill_tracked_until_empty(cgroup, marker, None).0
}

/// [`kill_tracked`], also saying whether the job was seen with no process left (false when the deadline passed).
/// `since` (clock ticks since boot): when the job began, for [`scan_marked`].
fn kill_tracked_until_empty(cgroup: Option<&Path>, marker: &str, since: Option<u64>) -> (usize, bool) {
    let start = Instant::now();
    let mut killed = 0;
    loop {
        let cg_busy = cgroup.is_some_and(|dir| populated(dir) && kill_cgroup(dir, &mut killed));
        let (marked, unsure) = if marker.is_empty() {
            (Vec::new(), false)
        } else {
            scan_marked(marker, since)
        };
        for pid in &marked {
            if signal_if_marked(*pid, marker, Signal::SIGKILL) {
                killed += 1;
            }
        }
        if !cg_busy && marked.is_empty() {
            return (killed, !unsure);
        }
        if start.elapsed() > KILL_DEADLINE {
            tracing::warn!(marker, "processes of a finished job survive SIGKILL");
            return (killed, false);
        }
        std::thread::sleep(KILL_POLL);
    }
}

/// Removes an (empty) job cgroup; a missing one is fine.
pub fn remove_cgroup(dir: &Path) {
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove the job's cgroup"),
    }
}

/// SIGKILLs the cgroup's members; returns true (still busy) so the caller polls until it is empty.
fn kill_cgroup(dir: &Path, killed: &mut usize) -> bool {
    let members = cgroup_pids(dir).len();
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        *killed += members;
        return true;
    }
    // Before 5.14: freezing stops forks between reading the member list and killing it.
    let frozen = write_file(&dir.join("cgroup.freeze"), "1").is_ok();
    for pid in cgroup_pids(dir) {
        if kill(pid, Signal::SIGKILL).is_ok() {
            *killed += 1;
        }
    }
    if frozen {
        let _ = write_file(&dir.join("cgroup.freeze"), "0");
    }
    true
}

fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// True while a live process is in the cgroup (zombies do not count; a missing cgroup is empty).
fn populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => events.lines().any(|l| l.trim() == "populated 1"),
        Err(_) => false,
    }
}

fn cgroup_pids(dir: &Path) -> Vec<Pid> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
        .collect()
}

/// Signals `pid` only if it still carries the marker when a pidfd holds it: a marked process that exited after
/// the `/proc` scan may have left its pid to an unrelated process, which must not be signalled. Kernels without
/// pidfds (before 5.3) get a plain `kill`.
fn signal_if_marked(pid: Pid, marker: &str, sig: Signal) -> bool {
    let Some(rpid) = rustix::process::Pid::from_raw(pid.as_raw()) else {
        return false;
    };
    let Some(rsig) = rustix::process::Signal::from_named_raw(sig as i32) else {
        return kill(pid, sig).is_ok();
    };
    match rustix::process::pidfd_open(rpid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => {
            has_marker(pid.as_raw(), &format!("{MARKER_VAR}={marker}"))
                && rustix::process::pidfd_send_signal(&fd, rsig).is_ok()
        }
        Err(rustix::io::Errno::NOSYS) => kill(pid, sig).is_ok(),
        Err(_) => false,
    }
}

fn has_marker(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
}

/// Live processes whose environment holds `OXRUNNER_JOB_MARKER=<marker>` (never this process).
fn marked_pids(marker: &str) -> Vec<Pid> {
    scan_marked(marker, None).0
}

/// [`marked_pids`], also saying whether a process started at or after `since` (clock ticks since boot) could not
/// be read: it may be the job's, so the scan does not prove the job has no process left.
fn scan_marked(marker: &str, since: Option<u64>) -> (Vec<Pid>, bool) {
    let needle = format!("{MARKER_VAR}={marker}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (Vec::new(), true);
    };
    let mut out = Vec::new();
    let mut unsure = false;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Zombies have an empty environ, so they never match.
        let environ = match std::fs::read(entry.path().join("environ")) {
            Ok(environ) => environ,
            Err(e) => {
                if let Some(since) = since
                    && unreadable_may_be_the_jobs(&e, process_start_time(pid), since)
                {
                    unsure = true;
                }
                continue;
            }
        };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_bytes())
            && let Ok(pid) = i32::try_from(pid)
        {
            out.push(Pid::from_raw(pid));
        }
    }
    (out, unsure)
}

/// A process whose environment could not be read (not gone: kernel threads and exited processes answer ESRCH or
/// NotFound) and that started after the job did may carry the job's marker.
fn unreadable_may_be_the_jobs(err: &std::io::Error, started: Option<u64>, since: u64) -> bool {
    let gone = err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(nix::libc::ESRCH);
    !gone && started.is_some_and(|t| t >= since)
}

/// Now, in clock ticks since boot (the unit of `/proc/<pid>/stat`'s start time), less a second of margin.
fn boot_ticks_now() -> Option<u64> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()?;
    let hz = u64::try_from(hz).ok()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ticks = (secs.max(0.0) as u64).saturating_mul(hz);
    Some(ticks.saturating_sub(hz))
}

/// The cgroup2 mount point and this process's cgroup path, when the unified hierarchy is mounted.
fn own_cgroup() -> Result<PathBuf, String> {
    let mount = cgroup2_root()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| "this process has no cgroup v2 path".to_owned())?;
    Ok(mount.join(rel.trim().trim_start_matches('/')))
}

fn cgroup2_root() -> Result<PathBuf, String> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
    mounts
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
        })
        .ok_or_else(|| "no cgroup2 file system is mounted".to_owned())
}

fn create_cgroup(name: &str, placement: &CgroupPlacement) -> Result<Cgroup, String> {
    let parent = match placement {
        CgroupPlacement::Off => return Err("disabled".to_owned()),
        CgroupPlacement::Own => own_cgroup()?,
        CgroupPlacement::Under(rel) => {
            let dir = cgroup2_root()?.join(rel);
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            dir
        }
    };
    let dir = parent.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        // Left by a dead process that had our pid: it is ours to reuse once emptied.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            kill_tracked(Some(&dir), "");
        }
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    // Checked now, so a cgroup the runner cannot fill falls back to the marker instead of failing every stage.
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
    {
        let _ = std::fs::remove_dir(&dir);
        return Err(format!("opening {}/cgroup.procs: {e}", dir.display()));
    }
    Ok(Cgroup { dir })
}

/// A few random hex digits so a marker cannot be guessed from the job id and pid alone.
fn random_suffix() -> String {
    let mut buf = [0u8; 8];
    let ok = File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if ok.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf = (nanos as u64).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) of a live process; with the pid it
/// identifies a process across pid reuse.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); start time is field 22.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kill step re-checks the marker through a pidfd: a pid that the `/proc` scan saw with the marker but that
    /// now belongs to an unmarked process (reused) is left alone; a marked one is killed.
    #[test]
    fn only_a_process_that_still_carries_the_marker_is_signalled() {
        let marker = format!("reuse-test-{}", std::process::id());
        let mut unmarked = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut marked = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER_VAR, &marker)
            .spawn()
            .unwrap();
        let pid = |c: &std::process::Child| Pid::from_raw(i32::try_from(c.id()).unwrap());
        // Between fork and exec a child still shows the parent's environment: wait until `sleep` runs with its own.
        let environ = format!("/proc/{}/environ", marked.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read(&environ).is_ok_and(|e| e.windows(marker.len()).any(|w| w == marker.as_bytes()))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the marked child never showed its marker"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let spared = !signal_if_marked(pid(&unmarked), &marker, Signal::SIGKILL);
        let alive = unmarked.try_wait().unwrap().is_none();
        let _ = unmarked.kill();
        let _ = unmarked.wait();
        assert!(spared && alive, "an unmarked process was killed");
        assert!(signal_if_marked(pid(&marked), &marker, Signal::SIGKILL));
        let status = marked.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }

    /// After a pass found nothing, a second one without a new shell in between is skipped; a new shell makes the
    /// next pass look again, and finds what that shell left behind.
    #[test]
    fn a_pass_is_skipped_only_while_no_shell_started_since_the_job_was_seen_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let procs = JobProcesses::new("skip-test", &CgroupPlacement::Off);
            let passes = || procs.inner.passes.load(Ordering::SeqCst);
            assert_eq!(procs.kill_all().await, 0);
            assert_eq!(procs.kill_all().await, 0);
            assert_eq!(passes(), 1, "the second pass should have been skipped");

            let mut cmd = tokio::process::Command::new("sh");
            cmd.args(["-c", "sleep 60 >/dev/null 2>&1 &"]);
            procs.mark(&mut cmd);
            assert!(cmd.status().await.unwrap().success());
            assert_eq!(procs.kill_all().await, 1, "the background sleep must be found");
            assert_eq!(passes(), 2);
            procs.finish().await;
            assert_eq!(passes(), 2, "finish after a clean pass should not scan again");
        });
    }

    /// A process the scan could not read keeps the next pass from being skipped only if it may be the job's: not
    /// gone, and started after the job began.
    #[test]
    fn an_unreadable_young_process_makes_the_scan_unsure() {
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        let gone = std::io::Error::from_raw_os_error(nix::libc::ESRCH);
        let missing = std::io::Error::from(ErrorKind::NotFound);
        assert!(unreadable_may_be_the_jobs(&denied, Some(500), 400));
        assert!(
            !unreadable_may_be_the_jobs(&denied, Some(300), 400),
            "older than the job"
        );
        assert!(
            !unreadable_may_be_the_jobs(&denied, None, 400),
            "exited meanwhile"
        );
        assert!(!unreadable_may_be_the_jobs(&gone, Some(500), 400));
        assert!(!unreadable_may_be_the_jobs(&missing, Some(500), 400));
        let now = boot_ticks_now().unwrap();
        let me = process_start_time(std::process::id()).unwrap();
        assert!(me <= now + 200, "start {me} after now {now}");
    }

    #[test]
    fn slot_templates() {
        assert_eq!(
            CgroupPlacement::from_slot_template("gitlab-runner/slot-${slot}", 3),
            Ok(CgroupPlacement::Under(PathBuf::from("gitlab-runner/slot-3")))
        );
        assert_eq!(
            CgroupPlacement::from_slot_template("/runner-slot-${slot}.slice", 0),
            Ok(CgroupPlacement::Under(PathBuf::from("runner-slot-0.slice")))
        );
        for bad in ["", "/", "../escape-${slot}", "a/../../b"] {
            let err = CgroupPlacement::from_slot_template(bad, 1).unwrap_err();
            assert!(err.contains("hint:"), "{err}");
        }
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id();
        let a = process_start_time(me);
        assert!(a.is_some());
        assert_eq!(a, process_start_time(me));
    }
}
