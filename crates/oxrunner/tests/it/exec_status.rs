//! `oxrunner exec`: statuses and the pipeline's exit code: failures, allow_failure, retry, manual, when.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::exec as exec_common;

use exec_common::Repo;

const STATUS: &str = r#"
stages: [build, test, cleanup]
flaky:
  stage: build
  retry: 2
  script:
    - n=$(cat "$MARKERS/tries" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$MARKERS/tries"
    - test "$n" -ge 2
allowed:
  stage: build
  allow_failure:
    exit_codes: [3]
  script:
    - exit 3
ship:
  stage: build
  when: manual
  script:
    - touch "$MARKERS/shipped"
after:
  stage: test
  script:
    - echo "after ran"
on-fail:
  stage: cleanup
  when: on_failure
  script:
    - touch "$MARKERS/on-fail"
always:
  stage: cleanup
  when: always
  script:
    - touch "$MARKERS/always"
"#;

#[test]
fn retries_allowed_failures_and_manual_jobs() {
    let repo = Repo::new(STATUS, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.summary("flaky").contains("passed, 2 attempts"),
        "{}",
        run.dump()
    );
    assert!(
        run.summary("allowed").contains("failed (allowed, exit 3)"),
        "{}",
        run.dump()
    );
    assert!(run.summary("ship").contains("manual"), "{}", run.dump());
    assert!(!repo.markers().join("shipped").exists());
    assert!(run.summary("on-fail").contains("skipped"), "{}", run.dump());
    assert!(repo.markers().join("always").exists());
    assert!(run.printed("after", "after ran"), "{}", run.dump());

    let run = repo.exec(&["--manual", "ship"]);
    assert!(run.ok(), "{}", run.dump());
    assert!(repo.markers().join("shipped").exists());
}

const FAILING: &str = r#"
stages: [build, test, cleanup]
broken:
  stage: build
  allow_failure:
    exit_codes: [3]
  script:
    - echo "about to fail"
    - exit 4
dependent:
  stage: test
  script:
    - touch "$MARKERS/dependent"
on-fail:
  stage: cleanup
  when: on_failure
  script:
    - touch "$MARKERS/on-fail"
"#;

#[test]
fn a_failing_job_fails_the_pipeline() {
    let repo = Repo::new(FAILING, &[]);
    let run = repo.exec(&[]);
    assert_eq!(run.code(), Some(1), "{}", run.dump());
    assert!(
        run.summary("broken").contains("FAILED (exit 4)"),
        "{}",
        run.dump()
    );
    assert!(run.summary("dependent").contains("skipped"), "{}", run.dump());
    assert!(!repo.markers().join("dependent").exists());
    assert!(repo.markers().join("on-fail").exists());
    assert!(run.printed("broken", "about to fail"), "{}", run.dump());
    assert!(run.stdout().contains("Pipeline FAILED"), "{}", run.dump());
}

#[test]
fn resource_groups_and_delays() {
    let ci = r#"
one:
  resource_group: prod
  script:
    - mkdir "$MARKERS/lock"
    - sleep 1
    - rmdir "$MARKERS/lock"
two:
  resource_group: prod
  script:
    - mkdir "$MARKERS/lock"
    - sleep 1
    - rmdir "$MARKERS/lock"
later:
  when: delayed
  start_in: 1 hour
  script:
    - echo "no wait"
"#;
    let repo = Repo::new(ci, &[]);
    // `mkdir` fails if both jobs of the group hold the lock directory at once.
    let run = repo.exec_env(&[], &[("OXRUNNER_EXEC_NO_DELAY", "1")]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("later", "no wait"), "{}", run.dump());
}

#[test]
fn timeouts_and_retry_when() {
    let ci = r#"
slow:
  timeout: 8s
  retry:
    max: 1
    when: [script_failure]
  script:
    - echo started >> "$MARKERS/slow"
    - sleep 30
picky:
  retry:
    max: 2
    when: [stuck_or_timeout_failure]
  script:
    - echo tried >> "$MARKERS/picky"
    - exit 1
"#;
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert_eq!(run.code(), Some(1), "{}", run.dump());
    assert!(
        run.summary("slow").contains("FAILED (job_execution_timeout)"),
        "{}",
        run.dump()
    );
    // Neither failure matches its job's retry:when, so each ran once.
    let slow = std::fs::read_to_string(repo.markers().join("slow")).unwrap();
    assert_eq!(slow.lines().count(), 1);
    let picky = std::fs::read_to_string(repo.markers().join("picky")).unwrap();
    assert_eq!(picky.lines().count(), 1);
}

#[test]
fn local_child_pipelines_run_and_decide_the_trigger_job() {
    let ci = r#"
stages: [build, trigger]
build:
  stage: build
  script:
    - echo "parent build"
kid:
  stage: trigger
  trigger:
    include: child.yml
    strategy: depend
"#;
    let child = "build:\n  script:\n    - echo \"child build\"\n    - test -z \"$CHILD_FAIL\"\n";
    let repo = Repo::new(ci, &[("child.yml", child)]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("kid > build", "child build"), "{}", run.dump());
    assert!(run.printed("build", "parent build"), "{}", run.dump());
    assert!(run.summary("kid").contains("passed"), "{}", run.dump());
    let run = repo.exec(&["--variable", "CHILD_FAIL=1"]);
    assert_eq!(run.code(), Some(1), "{}", run.dump());
    assert!(
        run.summary("kid")
            .contains("FAILED (downstream_pipeline_failure)"),
        "{}",
        run.dump()
    );
}

#[test]
fn ctrl_c_stops_running_jobs_and_skips_the_rest() {
    let ci =
        "a:\n  script:\n    - echo started\n    - sleep 60\nb:\n  stage: deploy\n  script:\n    - echo b\n";
    let repo = Repo::new(ci, &[]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_oxrunner"))
        .arg("exec")
        .current_dir(repo.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = repo.path().join(".oxrunner/logs/a.log");
    // Wait (bounded) until the job's script runs, so the interrupt hits a running job.
    for _ in 0..600 {
        if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\nstarted")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED (job_canceled)"), "{text}");
    assert!(text.contains("skipped: interrupted"), "{text}");
    assert!(!repo.path().join(".oxrunner/lock").exists());
}
