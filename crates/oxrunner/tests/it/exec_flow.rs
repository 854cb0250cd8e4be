//! `oxrunner exec`: artifacts, dotenv reports and caches flow between jobs through `.oxrunner/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::exec as exec_common;

use exec_common::Repo;

const FLOW: &str = r#"
stages: [build, test, deploy]
produce:
  stage: build
  script:
    - mkdir -p out .cache
    - echo built > out/app.txt
    - echo "VERSION=7.1" > build.env
    - echo 'FLAVOR="fast one"' >> build.env
    - test -f .cache/warm && echo "cache was warm" || echo "cache was cold"
    - touch .cache/warm
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
  cache:
    key: deps
    paths: [.cache/]
consume-needs:
  stage: test
  needs: [produce]
  script:
    - test "$(cat out/app.txt)" = built
    - test "$VERSION" = 7.1
    - test -n "$FLAVOR"
    - echo "consumer got $VERSION $FLAVOR"
consume-cache:
  stage: test
  needs: []
  cache:
    key: deps
    paths: [.cache/]
    policy: pull
  script:
    - echo "pull only"
no-artifacts:
  stage: test
  needs:
    - job: produce
      artifacts: false
  script:
    - test ! -e out/app.txt
    - test -z "$VERSION"
deploy:
  stage: deploy
  dependencies: []
  script:
    - test ! -e out/app.txt
    - test -z "$VERSION"
cli-wins:
  stage: deploy
  needs: [produce]
  script:
    - test "$FLAVOR" = from-cli
"#;

#[test]
fn artifacts_dotenv_and_cache_flow_between_jobs() {
    let repo = Repo::new(FLOW, &[]);
    let run = repo.exec(&[]);
    assert!(
        !run.ok(),
        "cli-wins must fail without --variable FLAVOR:\n{}",
        run.dump()
    );
    for job in [
        "produce",
        "consume-needs",
        "consume-cache",
        "no-artifacts",
        "deploy",
    ] {
        assert!(run.summary(job).contains("passed"), "{job}:\n{}", run.dump());
    }
    assert!(run.summary("cli-wins").contains("FAILED"), "{}", run.dump());
    assert!(
        run.stdout().contains("consumer got 7.1 fast one"),
        "{}",
        run.dump()
    );
    assert!(run.stdout().contains("cache was cold"), "{}", run.dump());
    assert!(
        repo.path()
            .join(".oxrunner/cache")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    // Artifacts stay out of the user's tree unless asked for.
    assert!(!repo.path().join("out").exists());

    // Second run: the cache persists; pipeline variables outrank dotenv; --write-back copies artifacts home.
    let run = repo.exec_env(
        &["--variable", "FLAVOR=from-cli"],
        &[("OXRUNNER_EXEC_WRITE_BACK", "1")],
    );
    assert!(run.ok(), "{}", run.dump());
    assert!(run.stdout().contains("cache was warm"), "{}", run.dump());
    assert_eq!(
        std::fs::read_to_string(repo.path().join("out/app.txt")).unwrap(),
        "built\n"
    );
}

#[test]
fn dependencies_from_an_earlier_run_are_reused() {
    let repo = Repo::new(FLOW, &[]);
    let run = repo.exec(&["produce"]);
    assert!(run.ok(), "{}", run.dump());
    let run = repo.exec(&["consume-needs"]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.stdout().contains("consumer got 7.1"), "{}", run.dump());
}

#[test]
fn large_output_streams_to_terminal_and_log() {
    // 200k lines (~12 MiB): more than the daemon's 4 MiB limit, so nothing may be truncated locally.
    let ci = "big:\n  script:\n    - awk 'BEGIN { for (i = 1; i <= 200000; i++) printf \"line %07d of the big job output here\\n\", i }'\n";
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    let out = run.stdout();
    assert!(
        run.printed("big", "line 0000001 of the big job output here"),
        "head missing"
    );
    assert!(
        run.printed("big", "line 0200000 of the big job output here"),
        "tail missing"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("big | line ")).count(),
        200_000
    );
    let log = std::fs::read_to_string(repo.path().join(".oxrunner/logs/big.log")).unwrap();
    assert!(log.contains("line 0200000 of"));
    assert!(!log.contains("Job's log exceeded limit"));
}

#[test]
fn a_skipped_job_does_not_pass_on_old_artifacts() {
    let ci = r#"
stages: [gate, build, test]
gate:
  stage: gate
  script:
    - test -z "$FAIL"
produce:
  stage: build
  script:
    - mkdir -p out && echo built > out/app.txt
  artifacts:
    paths: [out/]
report:
  stage: test
  when: always
  script:
    - if test -e out/app.txt; then echo "report saw artifacts"; else echo "report saw none"; fi
"#;
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("report", "report saw artifacts"), "{}", run.dump());
    let run = repo.exec(&["--variable", "FAIL=1"]);
    assert!(!run.ok(), "{}", run.dump());
    assert!(run.summary("produce").contains("skipped"), "{}", run.dump());
    assert!(run.printed("report", "report saw none"), "{}", run.dump());
}

/// A local job's background processes, `setsid` ones included, end with the job (issue 11, item 7): `exec` finds
/// them by the job's environment marker.
#[test]
fn background_processes_of_a_local_job_end_with_it() {
    let tag = format!("oxrt-exec-bg-{}", std::process::id());
    let ci = format!(
        "bg:\n  script:\n    - (exec -a {tag}-plain sleep 300) &\n    - setsid bash -c 'exec -a {tag}-setsid sleep 300' &\n    - sleep 0.2\n    - echo started\n"
    );
    let repo = Repo::new(&ci, &[]);
    let run = repo.exec(&[]);
    let alive = survivors(&tag);
    for pid in &alive {
        let _ = std::process::Command::new("kill").args(["-9", pid]).status();
    }
    assert!(run.ok(), "{}", run.dump());
    assert!(
        alive.is_empty(),
        "processes of the job survived it: {alive:?}\n{}",
        run.dump()
    );
}

/// Pids of live processes whose command line starts with `tag`.
fn survivors(tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.starts_with(tag.as_bytes()) {
            out.push(name);
        }
    }
    out
}
