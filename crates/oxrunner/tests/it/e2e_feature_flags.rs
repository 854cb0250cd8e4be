//! Feature flags end to end: `oxrunner run` against fake-gitlab resolves every flag (config over job variable
//! over `environment` over the default), exports each one to the job, stamps the log by default as
//! gitlab-runner does, and names configured flags that change nothing in a start-up warning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Daemon, Sandbox, fake, finished, global_toml, quit_ok, shell_runner_toml};
use fake_gitlab::{FakeGitlab, ImageSpec, JobSpec};

const FINISH: Duration = Duration::from_secs(60);

fn start(fake: &FakeGitlab, sb: &Sandbox, runner_extra: &str) -> Daemon {
    let token = fake.create_runner_token("ff");
    let text =
        global_toml(1, "") + &shell_runner_toml("ff", &fake.url(), &token, sb.dir.path(), runner_extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

/// gitlab-runner's timestamp prefix: `YYYY-MM-DDTHH:MM:SS.uuuuuuZ <2 hex><O|E><' '|'+'>`.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 32
        && b[..27].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && b[27] == b' '
        && b[28].is_ascii_hexdigit()
        && b[29].is_ascii_hexdigit()
        && b[30] == b'O'
        && matches!(b[31], b' ' | b'+')
}

const FLAG_COUNT: usize = 52;

#[tokio::test(flavor = "multi_thread")]
async fn config_beats_the_job_and_every_flag_reaches_the_job() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(
        &fake,
        &sb,
        "  environment = [\"FF_HASH_CACHE_KEYS=true\", \"FF_SCRIPT_TO_STEP_MIGRATION=false\"]\n  \
         [runners.feature_flags]\n    FF_TIMESTAMPS = false\n    FF_USE_GIT_BUNDLE_URIS = false\n    \
         FF_SECRET_RESOLVING_FAILS_IF_MISSING = false\n    FF_USE_LEGACY_GCS_CACHE_ADAPTER = true\n",
    );
    let id = fake.enqueue_job(
        JobSpec::new(
            "flags",
            &[
                "env | grep '^FF_' | sort",
                "echo \"count=$(env | grep -c '^FF_')\"",
            ],
        )
        .variable("GIT_STRATEGY", "none")
        .variable("FF_TIMESTAMPS", "true")
        .variable("FF_ENABLE_BASH_EXIT_CODE_CHECK", "true"),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    for line in [
        "FF_TIMESTAMPS=false",
        "FF_ENABLE_BASH_EXIT_CODE_CHECK=true",
        "FF_HASH_CACHE_KEYS=true",
        "FF_USE_DIRECT_DOWNLOAD=true",
        "FF_USE_GIT_BUNDLE_URIS=false",
        "FF_NETWORK_PER_BUILD=false",
    ] {
        assert!(trace.contains(&format!("\n{line}\n")), "{line} missing:\n{trace}");
    }
    assert!(trace.contains(&format!("\ncount={FLAG_COUNT}\n")), "{trace}");
    assert!(
        trace.contains(
            "  feature flags: FF_ENABLE_BASH_EXIT_CODE_CHECK:true, FF_SECRET_RESOLVING_FAILS_IF_MISSING:false, \
             FF_USE_GIT_BUNDLE_URIS:false, FF_TIMESTAMPS:false, FF_USE_LEGACY_GCS_CACHE_ADAPTER:true, \
             FF_HASH_CACHE_KEYS:true"
        ),
        "{trace}"
    );
    // The config turned timestamps off although the job asked for them.
    assert_eq!(job.raw_trace_text(), trace);
    let log = d.log();
    assert!(
        log.contains("[runners.feature_flags] without effect in this build")
            && log.contains("FF_USE_LEGACY_GCS_CACHE_ADAPTER = true: this build has one GCS signer"),
        "{log}"
    );
    // Honoured flags are not named.
    assert!(!log.contains("FF_USE_GIT_BUNDLE_URIS = false"), "{log}");
    assert!(
        !log.contains("FF_SECRET_RESOLVING_FAILS_IF_MISSING = false"),
        "{log}"
    );
    assert!(!log.contains("FF_TIMESTAMPS = false"), "{log}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_timestamped_by_default() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, "");
    let id = fake.enqueue_job(
        JobSpec::new("stamped", &["echo job-output"])
            .variable("GIT_STRATEGY", "none")
            .variable("FF_LOG_IMAGES_CONFIGURED_FOR_JOB", "true")
            .image(ImageSpec::new("oxrunner-test/not-pulled:1"))
            .service(ImageSpec::new("oxrunner-test/service-not-pulled:2")),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let raw = job.raw_trace_text();
    assert_eq!(job.status, "success", "{raw}");
    assert!(raw.lines().all(stamped), "{raw:?}");
    // The runner's own lines are stream 00, the job's output stream 01.
    assert!(
        raw.lines()
            .any(|l| &l[28..31] == "00O" && l[32..].starts_with("\x1b[0KRunning with oxrunner")),
        "{raw:?}"
    );
    assert!(
        raw.lines()
            .any(|l| &l[28..31] == "01O" && l.ends_with("job-output")),
        "{raw:?}"
    );
    assert!(job.trace_text().contains("\njob-output\n"));
    assert_eq!(job.checksum_ok, Some(true));
    // FF_LOG_IMAGES_CONFIGURED_FOR_JOB names them in the runner's own log.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("Image configured for job") && l.contains("oxrunner-test/not-pulled:1")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("Service image configured for job")
            && l.contains("oxrunner-test/service-not-pulled:2")),
        "{log}"
    );
    quit_ok(d).await;
}

/// The artifact GETs fake-gitlab saw for job `id`, with their query.
fn artifact_gets(fake: &FakeGitlab, id: i64) -> Vec<String> {
    let prefix = format!("/api/v4/jobs/{id}/artifacts");
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(&prefix))
        .map(|r| r.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_download_follows_the_flag() {
    use crate::support::hooks::{Env, fake_options};
    use fake_gitlab::ArtifactSpec;

    let env = Env::start(fake_options(), 1).await;
    let producer = JobSpec::new("build", &["echo alpha > a.txt"])
        .variable("GIT_STRATEGY", "empty")
        .artifact(ArtifactSpec {
            paths: vec!["a.txt".into()],
            ..ArtifactSpec::default()
        });
    let a = env.fake.enqueue_job(producer);
    env.succeeded(a).await;
    let consumer = |direct: &str| {
        JobSpec::new("test", &["test \"$(cat a.txt)\" = alpha"])
            .variable("GIT_STRATEGY", "empty")
            .variable("FF_USE_DIRECT_DOWNLOAD", direct)
            .dependency(a)
    };

    let b = env.fake.enqueue_job(consumer("false"));
    env.succeeded(b).await;
    let gets = artifact_gets(&env.fake, a);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(!gets[0].contains("direct_download"), "{gets:?}");

    let c = env.fake.enqueue_job(consumer("true"));
    env.succeeded(c).await;
    let gets = artifact_gets(&env.fake, a);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].contains("direct_download=true"), "{gets:?}");
}

/// `oxrunner exec` resolves the flags as the daemon does (every `FF_*` reaches the job), but its log is for a
/// terminal: never stamped, even when the job asks for timestamps.
#[test]
fn exec_exports_every_flag_and_prints_a_plain_log() {
    let ci = "flags:\n  variables:\n    FF_TIMESTAMPS: \"true\"\n    FF_SCRIPT_SECTIONS: \"true\"\n  script:\n    \
              - echo \"count=$(env | grep -c '^FF_') sections=$FF_SCRIPT_SECTIONS\"\n";
    let repo = crate::support::exec::Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.printed("flags", &format!("count={FLAG_COUNT} sections=true")),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout()
            .lines()
            .all(|l| !l.contains("Z 01O") && !l.contains("Z 00O")),
        "{}",
        run.dump()
    );
}
