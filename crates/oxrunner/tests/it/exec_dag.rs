//! `oxrunner exec`: which jobs run, in what order, each in its own copy of the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::exec as exec_common;

use exec_common::Repo;

const ORDER: &str = r#"
stages: [one, two, three]
a:
  stage: one
  script:
    - sleep 1
    - touch "$MARKERS/a.done"
b:
  stage: two
  needs: [a]
  script:
    - test -f "$MARKERS/a.done"
    - touch "$MARKERS/b.done"
early:
  stage: three
  needs: []
  script:
    - echo "early ran"
    - touch "$MARKERS/early.done"
c:
  stage: three
  script:
    - test -f "$MARKERS/a.done" && test -f "$MARKERS/b.done"
    - echo "c saw a and b"
"#;

#[test]
fn jobs_wait_for_needs_and_earlier_stages() {
    let repo = Repo::new(ORDER, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    for job in ["a", "b", "early", "c"] {
        assert!(run.summary(job).contains("passed"), "{}", run.dump());
    }
    let out = run.stdout();
    // Every job line carries its job name; the output of `c` comes after `b` finished.
    assert!(
        out.lines()
            .any(|l| l.starts_with("c ") && l.ends_with("| c saw a and b")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("early ") && l.ends_with("| early ran")),
        "{out}"
    );
    // `early` needs nothing, so it does not wait for stage `one` (a sleeps before writing its marker).
    let early_pos = out.find("| early ran").unwrap();
    let c_pos = out.find("| c saw a and b").unwrap();
    assert!(early_pos < c_pos, "{out}");
    let log = std::fs::read_to_string(repo.path().join(".oxrunner/logs/c.log")).unwrap();
    assert!(log.contains("c saw a and b"), "{log}");
    assert!(out.contains("Pipeline passed"), "{out}");
}

const ISOLATION: &str = r#"
left:
  stage: test
  script:
    - echo left > shared.txt
    - echo appended >> tracked.txt
    - sleep 1
    - test "$(cat shared.txt)" = left
    - test "$(cat dirty.txt)" = uncommitted
    - git status --short > "$MARKERS/left.status"
    - git log --format=%s -1 > "$MARKERS/left.log"
right:
  stage: test
  script:
    - echo right > shared.txt
    - sleep 1
    - test "$(cat shared.txt)" = right
    - test "$(cat tracked.txt)" = original
"#;

#[test]
fn jobs_get_private_copies_with_uncommitted_changes_and_git() {
    let repo = Repo::new(ISOLATION, &[("tracked.txt", "original\n")]);
    std::fs::write(repo.path().join("dirty.txt"), "uncommitted\n").unwrap();
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    // The user's tree is untouched.
    assert!(!repo.path().join("shared.txt").exists());
    assert_eq!(
        std::fs::read_to_string(repo.path().join("tracked.txt")).unwrap(),
        "original\n"
    );
    let status = std::fs::read_to_string(repo.markers().join("left.status")).unwrap();
    assert!(
        status.contains("tracked.txt") && status.contains("dirty.txt"),
        "{status}"
    );
    let log = std::fs::read_to_string(repo.markers().join("left.log")).unwrap();
    assert_eq!(log.trim(), "init");
    // git inside the job never wrote into the user's repository.
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args(["status", "--short"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "?? dirty.txt");
}

#[test]
fn committed_only_hides_uncommitted_files() {
    let ci = "job:\n  script:\n    - test ! -e dirty.txt\n    - test \"$(cat tracked.txt)\" = original\n";
    let repo = Repo::new(ci, &[("tracked.txt", "original\n")]);
    std::fs::write(repo.path().join("dirty.txt"), "x\n").unwrap();
    std::fs::write(repo.path().join("tracked.txt"), "changed\n").unwrap();
    let run = repo.exec_env(&[], &[("OXRUNNER_EXEC_COMMITTED_ONLY", "1")]);
    assert!(run.ok(), "{}", run.dump());
    let run = repo.exec(&[]);
    assert!(
        !run.ok(),
        "the working tree copy must see dirty.txt:\n{}",
        run.dump()
    );
}

#[test]
fn named_jobs_run_alone_or_with_their_needs() {
    let repo = Repo::new(ORDER, &[]);
    let run = repo.exec(&["b"]);
    // b alone: a did not run, so its marker is missing and b fails.
    assert!(!run.ok(), "{}", run.dump());
    assert!(!run.stdout().contains("\na "), "{}", run.dump());
    let run = repo.exec(&["b", "--needs"]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.summary("a").contains("passed"), "{}", run.dump());
    assert!(!run.stdout().contains("early ran"), "{}", run.dump());

    let run = repo.exec(&["nope"]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("no job named \"nope\""), "{}", run.dump());
}

#[test]
fn the_shell_executor_ignores_images_and_unknown_executors_are_refused() {
    let ci = "job:\n  image: alpine:3\n  script:\n    - echo on the host\n";
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&["--executor", "podman"]);
    assert!(!run.ok());
    assert!(
        run.stderr().contains("unknown executor \"podman\""),
        "{}",
        run.dump()
    );
    let run = repo.exec(&["--executor", "shell"]);
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.stdout().contains("image \"alpine:3\" is ignored"),
        "{}",
        run.dump()
    );
    assert!(run.stdout().contains("on the host"), "{}", run.dump());
}

#[test]
fn linked_worktrees_work_too() {
    let ci = "job:\n  script:\n    - git rev-parse --abbrev-ref HEAD > \"$MARKERS/branch\"\n    - cat feature.txt\n";
    let repo = Repo::new(ci, &[]);
    let wt = repo.path().join("wt");
    exec_common::git(
        repo.path(),
        &["worktree", "add", "-q", "-b", "feature", wt.to_str().unwrap()],
    );
    std::fs::write(wt.join("feature.txt"), "only here\n").unwrap();
    let run = repo.exec(&["--cwd", wt.to_str().unwrap()]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("job", "only here"), "{}", run.dump());
    let branch = std::fs::read_to_string(repo.markers().join("branch")).unwrap();
    assert_eq!(branch.trim(), "feature");
}

#[test]
fn a_second_run_in_the_same_repository_is_refused() {
    let repo = Repo::new("job:\n  script:\n    - echo hi\n", &[]);
    std::fs::create_dir_all(repo.path().join(".oxrunner")).unwrap();
    // This test process stands in for a running oxrunner exec.
    std::fs::write(repo.path().join(".oxrunner/lock"), std::process::id().to_string()).unwrap();
    let run = repo.exec(&[]);
    assert!(!run.ok());
    assert!(run.stderr().contains("another oxrunner exec"), "{}", run.dump());
    // A lock whose process is gone is taken over.
    std::fs::write(repo.path().join(".oxrunner/lock"), "999999999").unwrap();
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(!repo.path().join(".oxrunner/lock").exists());
}
