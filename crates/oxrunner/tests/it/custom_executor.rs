//! Issue #12 item 4: `executor = "custom"` end to end. The real `oxrunner run` binary against fake-gitlab, with
//! driver programs that are small bash scripts written by each test: a "chroot-less local" driver (each stage's
//! script runs in a local bash) and a driver that runs each stage in a `docker run --rm` of a local test image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;
use crate::support::docker as docker_common;
use crate::support::exec as exec_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Daemon, Sandbox, alive, fake, finished, global_toml, gone, project_files, quit_ok, wait_file_lines,
};
use fake_gitlab::{ArtifactSpec, CacheSpec, FakeGitlab, JobSpec};

const FINISH: Duration = Duration::from_secs(90);

/// config_exec: prints the JSON (builds and cache dir under the sandbox) unless the job asks for a slow or broken
/// config; its stderr goes to the job log.
const CONFIG: &str = r#"#!/usr/bin/env bash
echo "config_exec sees job $CUSTOM_ENV_CI_JOB_NAME" >&2
[ "$CUSTOM_ENV_SLOW_CONFIG" = 1 ] && exec sleep 600
if [ "$CUSTOM_ENV_BAD_JSON" = 1 ]; then echo '{"builds_dir": 5'; exit 0; fi
if [ "$CUSTOM_ENV_NO_BUILDS_DIR" = 1 ]; then echo '{"driver": {"name": "d"}}'; exit 0; fi
cat <<JSON
{"builds_dir": "$DRIVER_ROOT/custom-builds", "cache_dir": "$DRIVER_ROOT/custom-cache", "hostname": "custom-vm-7",
 "driver": {"name": "test-driver", "version": "v9.1"}, "job_env": {"DRIVER_JOB_ENV": "from-config-json"}}
JSON
"#;

/// prepare_exec: one line in the job log; slow when the job asks.
const PREPARE: &str = r#"#!/usr/bin/env bash
[ "$CUSTOM_ENV_SLOW_PREPARE" = 1 ] && exec sleep 600
echo "prepare_exec ran for $CUSTOM_ENV_CI_JOB_NAME with $DRIVER_JOB_ENV"
"#;

/// cleanup_exec: leaves a mark the test checks.
const CLEANUP: &str = r#"#!/usr/bin/env bash
echo "$CUSTOM_ENV_CI_JOB_ID" >> "$DRIVER_ROOT/cleanup.log"
"#;

/// run_exec for the local driver: records its argv and stage, then runs the script in bash. A failed script exits
/// with $BUILD_FAILURE_EXIT_CODE and leaves its real code in $BUILD_EXIT_CODE_FILE, as the documentation shows.
const RUN_LOCAL: &str = r#"#!/usr/bin/env bash
script="$1"; stage="$2"
echo "$*" >> "$DRIVER_ROOT/argv.log"
echo "$stage" >> "$DRIVER_ROOT/stages.log"
if [ "$stage" = build_script ]; then
  printf '%s\n' "$CUSTOM_ENV_MY_SECRET" > "$DRIVER_ROOT/secret-from-env"
  stat -c '%a' "$TMPDIR" "$script" > "$DRIVER_ROOT/modes"
  [ -n "$JOB_RESPONSE_FILE" ] && cp "$JOB_RESPONSE_FILE" "$DRIVER_ROOT/response.json"
  [ "$CUSTOM_ENV_SYSTEM_FAIL" = 1 ] && exit "$SYSTEM_FAILURE_EXIT_CODE"
  [ "$CUSTOM_ENV_ODD_EXIT" = 1 ] && exit 7
  if [ "$CUSTOM_ENV_IGNORE_TERM" = 1 ]; then
    echo $$ > "$DRIVER_ROOT/driver.pid"
    trap 'echo driver-got-sigterm-and-ignores-it' TERM
    while :; do sleep 0.2; done
  fi
fi
bash "$script"
rc=$?
if [ $rc -ne 0 ]; then echo "$rc" > "$BUILD_EXIT_CODE_FILE"; exit "$BUILD_FAILURE_EXIT_CODE"; fi
"#;

/// Writes the driver scripts into `<sandbox>/driver` and returns the `[runners.custom]` section.
fn driver(sb: &Sandbox, run: &str, extra: &str) -> String {
    let dir = sb.path("driver");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("config.sh", CONFIG),
        ("prepare.sh", PREPARE),
        ("run.sh", run),
        ("cleanup.sh", CLEANUP),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&path).unwrap().permissions(),
            0o755,
        );
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&path, perm).unwrap();
    }
    let p = |n: &str| dir.join(n).display().to_string();
    format!(
        "  [runners.custom]\n    config_exec = \"{}\"\n    prepare_exec = \"{}\"\n    run_exec = \"{}\"\n    \
         cleanup_exec = \"{}\"\n{extra}\n",
        p("config.sh"),
        p("prepare.sh"),
        p("run.sh"),
        p("cleanup.sh"),
    )
}

/// A custom runner (no builds_dir in config.toml: config_exec names it) and the daemon on it.
fn start(fake: &FakeGitlab, sb: &Sandbox, run: &str, custom_extra: &str) -> Daemon {
    let token = fake.create_runner_token("custom");
    let text = global_toml(1, "")
        + &format!(
            "\n[[runners]]\n  name = \"custom\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"custom\"\n  \
             environment = [\"DRIVER_ROOT_SEEN=1\"]\n",
            fake.url()
        )
        + &driver(sb, run, custom_extra);
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let root = sb.dir.path().display().to_string();
    sb.spawn_with_env(&["run", "-c", &cfg], &[("DRIVER_ROOT", &root)])
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn no_repo(spec: JobSpec) -> JobSpec {
    spec.variable("GIT_STRATEGY", "none")
}

#[tokio::test(flavor = "multi_thread")]
async fn local_driver_runs_every_stage_with_config_json_custom_env_caches_and_artifacts() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let project = fake
        .create_project("group/custom", &project_files(sb.dir.path()))
        .unwrap();
    let d = start(&fake, &sb, RUN_LOCAL, "");
    let secret = "Cust0mS3cretValue-4711";
    let spec = |name: &str, script: &[&str]| {
        JobSpec::new(name, script)
            .project(project.id)
            .masked_variable("MY_SECRET", secret)
            .variable("GREETING", "hello-custom")
            .cache(CacheSpec::new("custom-key", &["cached/"]))
            .artifact(ArtifactSpec::paths(&["out.txt"]))
            .after_script(&["echo after-script-ran"])
    };
    let first = fake.enqueue_job(spec(
        "first",
        &[
            "echo \"PROJECT_DIR=$CI_PROJECT_DIR\"",
            "echo \"JOB_ENV=$DRIVER_JOB_ENV\"",
            "cat hello.txt",
            "mkdir -p cached && echo cache-content > cached/c.txt",
            "echo artifact-content > out.txt",
        ],
    ));
    let job = finished(&fake, first, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains("Preparing the \"custom\" executor"), "{trace}");
    assert!(
        trace.contains("Using Custom executor with driver test-driver v9.1..."),
        "{trace}"
    );
    assert!(trace.contains("config_exec sees job first"), "{trace}");
    assert!(
        trace.contains("prepare_exec ran for first with from-config-json"),
        "{trace}"
    );
    assert!(trace.contains("via custom-vm-7"), "{trace}");
    let builds = sb.dir.path().join("custom-builds");
    assert!(
        trace.contains(&format!("PROJECT_DIR={}/group/custom", builds.display())),
        "builds_dir from config_exec not used:\n{trace}"
    );
    assert!(trace.contains("JOB_ENV=from-config-json"), "{trace}");
    assert!(trace.contains("hello from the repository"), "{trace}");
    assert!(trace.contains("after-script-ran"), "{trace}");
    assert!(!trace.contains(secret), "{trace}");
    // The cache went to config_exec's cache_dir, the artifact to GitLab.
    assert!(
        walk_has(&sb.dir.path().join("custom-cache"), "cache.zip"),
        "no cache archive under the config_exec cache_dir"
    );
    let archive = job.artifacts.iter().find(|a| a.artifact_type == "archive");
    assert!(archive.is_some_and(|a| a.size > 0), "{:?}", job.artifacts);
    // Every stage reached run_exec under gitlab-runner's names; scripts never in argv, secrets only in the env.
    let stages = lines(&sb.path("stages.log"));
    for want in [
        "prepare_script",
        "get_sources",
        "build_script",
        "after_script",
        "cleanup_file_variables",
    ] {
        assert!(stages.iter().any(|s| s == want), "{want} missing: {stages:?}");
    }
    assert!(!stages.iter().any(|s| s == "step_script"), "{stages:?}");
    let argv = std::fs::read_to_string(sb.path("argv.log")).unwrap();
    assert!(!argv.contains(secret), "a secret reached run_exec's argv: {argv}");
    assert_eq!(lines(&sb.path("secret-from-env")), vec![secret.to_owned()]);
    // The private temp dir and the script in it are the runner user's alone; the payload reaches the driver.
    assert_eq!(lines(&sb.path("modes")), vec!["700".to_owned(), "700".to_owned()]);
    let response: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.path("response.json")).unwrap()).unwrap();
    assert_eq!(response["id"].as_i64(), Some(first));
    // cleanup_exec ran once for the job.
    assert_eq!(lines(&sb.path("cleanup.log")), vec![first.to_string()]);

    // A second job restores the first one's cache.
    let second = fake.enqueue_job(spec("second", &["cat cached/c.txt", "echo x > out.txt"]));
    let job = finished(&fake, second, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(trace.contains("cache-content"), "cache not restored:\n{trace}");
    quit_ok(d).await;
}

fn walk_has(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p: PathBuf = e.path();
        p.file_name().is_some_and(|n| n == name) || (p.is_dir() && walk_has(&p, name))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_follow_the_build_and_system_failure_contract() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, RUN_LOCAL, "");
    let failing = fake.enqueue_job(
        no_repo(JobSpec::new("script-fails", &["echo about-to-fail", "exit 42"]))
            .after_script(&["echo after-failure-ran"]),
    );
    let job = finished(&fake, failing, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"), "{trace}");
    assert_eq!(
        job.exit_code,
        Some(42),
        "BUILD_EXIT_CODE_FILE not honoured:\n{trace}"
    );
    assert!(trace.contains("after-failure-ran"), "{trace}");

    let system = fake.enqueue_job(no_repo(JobSpec::new("system", &["echo hi"])).variable("SYSTEM_FAIL", "1"));
    let job = finished(&fake, system, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(trace.contains("exit status 2"), "{trace}");

    let odd = fake.enqueue_job(no_repo(JobSpec::new("odd", &["echo hi"])).variable("ODD_EXIT", "1"));
    let job = finished(&fake, odd, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("unknown Custom executor executable exit code 7"),
        "{trace}"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_json_and_config_prepare_timeouts_are_system_failures_with_hints() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(
        &fake,
        &sb,
        RUN_LOCAL,
        "    config_exec_timeout = 1\n    prepare_exec_timeout = 1\n    graceful_kill_timeout = 1\n    \
         force_kill_timeout = 2\n",
    );
    let bad = fake.enqueue_job(no_repo(JobSpec::new("bad-json", &["echo never"])).variable("BAD_JSON", "1"));
    let job = finished(&fake, bad, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("error while parsing JSON output of config_exec"),
        "{trace}"
    );
    assert!(trace.contains("hint: config_exec must print"), "{trace}");
    assert!(!trace.contains("never"), "{trace}");

    // config.toml has no builds_dir either: gitlab-runner refuses such a job.
    let no_dir =
        fake.enqueue_job(no_repo(JobSpec::new("no-dir", &["echo never"])).variable("NO_BUILDS_DIR", "1"));
    let job = finished(&fake, no_dir, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(trace.contains("the builds_dir is not configured"), "{trace}");
    assert!(trace.contains("hint: set builds_dir in [[runners]]"), "{trace}");
    assert!(!trace.contains("echo never"), "{trace}");

    let slow_config =
        fake.enqueue_job(no_repo(JobSpec::new("slow-config", &["echo never"])).variable("SLOW_CONFIG", "1"));
    let job = finished(&fake, slow_config, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("config_exec") && trace.contains("did not finish within 1s"),
        "{trace}"
    );

    let slow_prepare = fake
        .enqueue_job(no_repo(JobSpec::new("slow-prepare", &["echo never"])).variable("SLOW_PREPARE", "1"));
    let job = finished(&fake, slow_prepare, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("prepare_exec") && trace.contains("did not finish within 1s"),
        "{trace}"
    );
    assert!(!trace.contains("echo never"), "{trace}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_sends_sigterm_then_sigkills_a_driver_that_ignores_it() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(
        &fake,
        &sb,
        RUN_LOCAL,
        "    graceful_kill_timeout = 1\n    force_kill_timeout = 5\n",
    );
    let id = fake.enqueue_job(
        no_repo(JobSpec::new("stubborn", &["echo never"]))
            .variable("IGNORE_TERM", "1")
            .after_script(&["echo after-cancel-ran"]),
    );
    let pid_file = sb.path("driver.pid");
    let pid: i32 = wait_file_lines(&pid_file, 1, FINISH)
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    fake.cancel_job(id);
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "canceled", "{job:?}\n{trace}");
    assert!(
        trace.contains("driver-got-sigterm-and-ignores-it"),
        "no SIGTERM first:\n{trace}"
    );
    assert!(trace.contains("after-cancel-ran"), "{trace}");
    assert!(
        gone(pid, Duration::from_secs(5)).await,
        "the driver survived SIGKILL"
    );
    quit_ok(d).await;
}

/// run_exec for the Docker driver: each stage in a fresh container of a local test image, the builds and cache dirs
/// mounted at the same paths, the script mounted read-only (never on the command line). As with upstream's custom
/// executor, the cache and artifact stages call the runner's binary inside the environment, so the driver provides it
/// (with the shared libraries it links) at the runner's path, and the host network so it reaches GitLab on loopback.
const RUN_DOCKER: &str = r#"#!/usr/bin/env bash
script="$1"; stage="$2"
echo "$stage" >> "$DRIVER_ROOT/stages.log"
builds="$DRIVER_ROOT/custom-builds"
cache="$DRIVER_ROOT/custom-cache"
mkdir -p "$builds" "$cache"
mounts=(-v "$builds:$builds" -v "$cache:$cache" -v "$script:/oxrunner-stage.sh:ro" -v "$DRIVER_RUNNER_BIN:$DRIVER_RUNNER_BIN:ro")
for lib in $(ldd "$DRIVER_RUNNER_BIN" | grep -o '/[^ ]*'); do mounts+=(-v "$lib:$lib:ro"); done
docker run --rm -i --label com.oxrunner.test=1 --label "com.oxrunner.custom-test=$DRIVER_TEST_ID" \
  --network host "${mounts[@]}" \
  -e DRIVER_JOB_ENV -e CUSTOM_ENV_GREETING oxrunner-test/tools:latest bash /oxrunner-stage.sh
rc=$?
if [ $rc -ne 0 ]; then echo "$rc" > "$BUILD_EXIT_CODE_FILE"; exit "$BUILD_FAILURE_EXIT_CODE"; fi
"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn docker_driver_runs_each_stage_in_a_container_of_a_local_image() {
    if !docker_common::docker_available() {
        return;
    }
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let test_id = format!(
        "custom-{}-{}",
        std::process::id(),
        fake.create_runner_token("id").len()
    );
    let token = fake.create_runner_token("custom-docker");
    let text = global_toml(1, "")
        + &format!(
            "\n[[runners]]\n  name = \"custom-docker\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"custom\"\n",
            fake.url()
        )
        + &driver(&sb, RUN_DOCKER, "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let root = sb.dir.path().display().to_string();
    let d = sb.spawn_with_env(
        &["run", "-c", &cfg],
        &[
            ("DRIVER_ROOT", root.as_str()),
            ("DRIVER_TEST_ID", test_id.as_str()),
            ("DRIVER_RUNNER_BIN", env!("CARGO_BIN_EXE_oxrunner")),
        ],
    );
    let ok = fake.enqueue_job(
        no_repo(JobSpec::new(
            "in-docker",
            &[
                "test -f /etc/oxrunner-image && echo in-the-test-image",
                "echo \"JOB_ENV=$DRIVER_JOB_ENV GREETING=$CUSTOM_ENV_GREETING\"",
                "echo docker-artifact > out.txt",
                "mkdir -p cached && echo docker-cache > cached/c.txt",
            ],
        ))
        .variable("GREETING", "hi-docker")
        .cache(CacheSpec::new("docker-key", &["cached/"]))
        .artifact(ArtifactSpec::paths(&["out.txt"])),
    );
    let job = finished(&fake, ok, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains("in-the-test-image"), "{trace}");
    assert!(
        trace.contains("JOB_ENV=from-config-json GREETING=hi-docker"),
        "{trace}"
    );
    assert!(
        job.artifacts.iter().any(|a| a.artifact_type == "archive"),
        "{trace}"
    );

    let restore = fake.enqueue_job(
        no_repo(JobSpec::new("restores-in-docker", &["cat cached/c.txt"]))
            .cache(CacheSpec::new("docker-key", &["cached/"])),
    );
    let job = finished(&fake, restore, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(trace.contains("docker-cache"), "cache not restored:\n{trace}");

    let failing = fake.enqueue_job(no_repo(JobSpec::new("fails-in-docker", &["exit 3"])));
    let job = finished(&fake, failing, FINISH, &d).await;
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("script_failure"),
        "{}",
        job.trace_text()
    );
    assert_eq!(job.exit_code, Some(3));
    quit_ok(d).await;
    let left = docker_common::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.oxrunner.custom-test={test_id}"),
    ]);
    assert!(left.trim().is_empty(), "containers left behind: {left}");
}

const EXEC_CI: &str = r#"
build:
  script:
    - echo "MARK=$CUSTOM_MARK"
    - cat file.txt
fails:
  stage: test
  script:
    - exit 5
"#;

/// `oxrunner exec --executor custom --config FILE`: the driver of a config.toml runs local jobs.
#[test]
fn exec_runs_jobs_through_the_custom_driver_of_a_config_file() {
    let repo = exec_common::Repo::new(EXEC_CI, &[("file.txt", "content-of-the-repo\n")]);
    let sb = Sandbox::new();
    let section = driver(&sb, RUN_LOCAL, "");
    // exec keeps its prepared copy in its own builds dir, so this config_exec only names the driver and job_env.
    std::fs::write(
        sb.path("driver/config.sh"),
        "#!/usr/bin/env bash\necho '{\"driver\": {\"name\": \"exec-driver\"}, \"job_env\": {\"CUSTOM_MARK\": \"yes\"}}'\n",
    )
    .unwrap();
    let config = sb.path("exec-config.toml");
    std::fs::write(
        &config,
        format!(
            "[[runners]]\n  name = \"local\"\n  url = \"http://127.0.0.1:9\"\n  token = \"glrt-unused\"\n  \
             executor = \"custom\"\n{section}"
        ),
    )
    .unwrap();
    let root = sb.dir.path().display().to_string();
    let cfg = config.display().to_string();
    let run = repo.exec_env(
        &["--executor", "custom", "--config", &cfg],
        &[("DRIVER_ROOT", &root)],
    );
    let out = run.stdout();
    assert_eq!(run.code(), Some(1), "{}", run.dump());
    assert!(
        out.contains("Using Custom executor with driver exec-driver..."),
        "{}",
        run.dump()
    );
    assert!(run.printed("build", "MARK=yes"), "{}", run.dump());
    assert!(run.printed("build", "content-of-the-repo"), "{}", run.dump());
    assert!(run.summary("fails").contains("FAILED (exit 5)"), "{}", run.dump());
    let stages = lines(&sb.path("stages.log"));
    assert!(stages.iter().any(|s| s == "build_script"), "{stages:?}");

    let missing = repo.exec(&["--executor", "custom"]);
    assert_eq!(missing.code(), Some(1), "{}", missing.dump());
    assert!(
        missing.stderr().contains("hint: pass --config FILE"),
        "{}",
        missing.dump()
    );
}

/// `register --executor custom` writes `[runners.custom]` from the `--custom-*` flags and their variables.
#[tokio::test(flavor = "multi_thread")]
async fn register_writes_the_custom_section_from_flags_and_env() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let url = fake.url();
    let cfg = sb.config_str();
    sb.run(
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "--url",
            &url,
            "--registration-token",
            common::REG,
            "--executor",
            "custom",
            "--builds-dir",
            "/builds",
            "--custom-config-exec",
            "/d/config",
            "--custom-config-args",
            "ca1",
            "--custom-config-args",
            "ca2",
            "--custom-prepare-exec",
            "/d/prepare",
            "--custom-prepare-args",
            "pa",
            "--custom-prepare-exec-timeout",
            "30",
            "--custom-run-args",
            "ra",
            "--custom-cleanup-exec",
            "/d/cleanup",
            "--custom-cleanup-args",
            "cla",
            "--custom-cleanup-exec-timeout",
            "40",
            "--custom-graceful-kill-timeout",
            "50",
            "--custom-force-kill-timeout",
            "60",
        ],
        &[
            ("CUSTOM_RUN_EXEC", "/d/run"),
            ("CUSTOM_CONFIG_EXEC_TIMEOUT", "20"),
        ],
        None,
    )
    .await
    .assert_ok();
    let toml = sb.config_toml();
    let runner = &toml["runners"].as_array().unwrap()[0];
    assert_eq!(runner["executor"].as_str(), Some("custom"));
    let c = runner["custom"].as_table().unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    let n = |k: &str| c[k].as_integer().unwrap();
    let list = |k: &str| -> Vec<&str> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    assert_eq!(s("config_exec"), "/d/config");
    assert_eq!(list("config_args"), ["ca1", "ca2"]);
    assert_eq!(n("config_exec_timeout"), 20);
    assert_eq!(s("prepare_exec"), "/d/prepare");
    assert_eq!(list("prepare_args"), ["pa"]);
    assert_eq!(n("prepare_exec_timeout"), 30);
    assert_eq!(s("run_exec"), "/d/run");
    assert_eq!(list("run_args"), ["ra"]);
    assert_eq!(s("cleanup_exec"), "/d/cleanup");
    assert_eq!(list("cleanup_args"), ["cla"]);
    assert_eq!(n("cleanup_exec_timeout"), 40);
    assert_eq!(n("graceful_kill_timeout"), 50);
    assert_eq!(n("force_kill_timeout"), 60);
}

/// `run-single --executor custom` takes the driver from the `--custom-*` flags.
#[tokio::test(flavor = "multi_thread")]
async fn run_single_takes_the_driver_from_custom_flags() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    driver(&sb, RUN_LOCAL, "");
    let token = fake.create_runner_token("single-custom");
    let url = fake.url();
    let builds = sb.path("single-builds").display().to_string();
    let run = sb.path("driver/run.sh").display().to_string();
    let cfg = sb.config_str();
    let root = sb.dir.path().display().to_string();
    let id = fake.enqueue_job(no_repo(JobSpec::new(
        "single",
        &["echo \"from-custom-single in $PWD\""],
    )));
    let mut d = sb.spawn_with_env(
        &[
            "run-single",
            "-c",
            &cfg,
            "--url",
            &url,
            "--token",
            &token,
            "--executor",
            "custom",
            "--max-builds",
            "1",
            "--builds-dir",
            &builds,
            "--custom-run-exec",
            &run,
        ],
        &[("DRIVER_ROOT", &root)],
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains("Using Custom executor..."), "{trace}");
    assert!(
        trace.contains(&format!("from-custom-single in {builds}/")),
        "{trace}"
    );
    let status = d.wait(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", d.log());
}

/// `exec --executor custom` runs the job in exec's copy on this machine: `exec --help` says the driver must see
/// this machine's file system.
#[test]
fn exec_help_says_a_custom_driver_must_see_the_local_copy() {
    let out = std::process::Command::new(common::bin())
        .args(["exec", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.status.success(), "{help}");
    assert!(
        help.contains("the driver must see this machine's file system"),
        "{help}"
    );
}
