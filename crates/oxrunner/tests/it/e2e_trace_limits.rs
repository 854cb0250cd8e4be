//! Issue #11 items 2 and 6, end to end against fake-gitlab: long masked values neither freeze the daemon nor
//! leak, and a full spool disk ends the job log with the reason and fails the job instead of a silent cut.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, Sandbox, fake, finished, global_toml, quit_ok, shell_runner_toml};
use fake_gitlab::{FakeGitlab, JobSpec};

const FINISH: Duration = Duration::from_secs(120);

/// config.toml with one shell runner, and `oxrunner run` started on it with `env` added to its environment.
fn start(fake: &FakeGitlab, sb: &Sandbox, concurrent: u32, env: &[(&str, &Path)]) -> Daemon {
    let token = fake.create_runner_token("trace-limits");
    let text = global_toml(concurrent, "")
        + &shell_runner_toml("trace-limits", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let log = sb.path("oxrunner-run.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = sb.command();
    cmd.args(["run", "-c", &sb.config_str()])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    Daemon {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// `len` bytes of hex that repeat nowhere (xorshift), so no piece of it is deduplicated away.
fn distinct_hex(len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn long_masked_values_are_masked_and_the_daemon_keeps_working() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, 2, &[]);
    // Building the old masker for this took minutes and held an async worker the whole time.
    let long = "a".repeat(64 * 1024);
    let long_job = fake.enqueue_job(
        JobSpec::new(
            "long-masked",
            &[
                "printf 'value:%s\\n' \"$LONG\"",
                "printf 'tail:%s\\n' \"${LONG:1}\"",
                "echo done-long",
            ],
        )
        .variable("GIT_STRATEGY", "none")
        .masked_variable("LONG", &long),
    );
    let plain_job =
        fake.enqueue_job(JobSpec::new("plain", &["echo done-plain"]).variable("GIT_STRATEGY", "none"));
    // More than the masker accepts: the job must fail with the reason, run nothing and show none of the value.
    let huge = distinct_hex(5 << 20);
    let huge_job = fake.enqueue_job(
        JobSpec::new("huge-masked", &["echo huge-job-ran"])
            .variable("GIT_STRATEGY", "none")
            .masked_variable("HUGE", &huge),
    );

    let job = finished(&fake, long_job, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{job:?}\n{trace}\n{}", d.log());
    assert!(trace.contains("value:[MASKED]\n"), "{trace}");
    assert!(trace.contains("tail:[MASKED]\n"), "{trace}");
    assert!(trace.contains("done-long"), "{trace}");
    assert!(
        !trace.contains("aaaaaaaa"),
        "part of the masked value leaked:\n{trace}"
    );
    assert_eq!(job.checksum_ok, Some(true));

    let job = finished(&fake, plain_job, FINISH, &d).await;
    assert_eq!(job.status, "success", "{job:?}\n{}", d.log());
    assert!(job.trace_text().contains("done-plain"));

    let job = finished(&fake, huge_job, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{job:?}\n{trace}");
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{job:?}"
    );
    assert!(trace.contains("masked variables add up to"), "{trace}");
    assert!(trace.contains("hint: "), "{trace}");
    assert!(
        !trace.contains("huge-job-ran"),
        "the job ran without a masker:\n{trace}"
    );
    assert!(!trace.contains(&huge[..16]), "part of the value leaked:\n{trace}");
    assert!(
        !d.log().contains(&huge[..16]),
        "part of the value reached the runner log"
    );
    quit_ok(d).await;
}

/// A tmpfs of `size` on a fresh directory, unmounted on drop. Needs root: under `CI=true` a missing privilege
/// fails the test, elsewhere it is skipped with a message.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: this test needs root to mount a tmpfs"
            );
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-test-spoolfs-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "oxrunner-test"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed: {status:?}");
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_spool_disk_cuts_the_log_with_the_reason_and_fails_the_job() {
    let Some(spool_fs) = Tmpfs::mount("256k") else {
        return;
    };
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    // The daemon keeps its trace spool under TMPDIR.
    let d = start(&fake, &sb, 1, &[("TMPDIR", spool_fs.dir.path())]);
    let id = fake.enqueue_job(
        JobSpec::new(
            "flood",
            &[
                "head -c 2000000 < <(yes 'a line of job output 0123456789')",
                "echo after-the-flood",
            ],
        )
        .variable("GIT_STRATEGY", "none"),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    let tail = &trace[trace.len().saturating_sub(300)..];
    assert_eq!(
        job.status,
        "failed",
        "a job whose log was cut must not succeed: {tail:?}\n{}",
        d.log()
    );
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{job:?}"
    );
    // Written out rather than taken from the crate, so that this test also builds against the code before the fix.
    let cut = "\n\x1b[31;1mERROR: The job log was cut here: No space left on device (os error 28) while writing the job \
               log spool. The rest of the job's output is lost.\x1b[0;m\n";
    assert!(
        trace.ends_with(cut),
        "the trace must end with {cut:?}; it ends with {tail:?}"
    );
    assert!(trace.contains("a line of job output 0123456789\n"), "{tail:?}");
    assert_eq!(job.checksum_ok, Some(true), "{job:?}");
    quit_ok(d).await;
    drop(spool_fs);
}
