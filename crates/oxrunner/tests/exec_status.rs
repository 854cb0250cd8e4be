//! `oxrunner exec`: statuses and the pipeline's exit code: failures, allow_failure, retry, manual, when.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exec_common;

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
