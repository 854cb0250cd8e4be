#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `oxrunner exec` with Docker: `image:` jobs run in their image (the local busybox test image from
//! `scripts/docker-images`), with artifacts, caches and dotenv flowing as they do for shell jobs.

use crate::support::exec as exec_common;

use exec_common::Repo;
use std::process::Command;

/// The leftover check counts every exec container of this machine, so the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True when a Docker engine answers. With CI=true a missing engine fails the test instead of skipping it.
fn engine() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", "oxrunner-test/busybox:latest"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the Docker engine or the oxrunner-test/busybox:latest image is missing (scripts/test runs scripts/ensure-docker and scripts/docker-images)"
        );
        eprintln!(
            "skipped: no Docker engine with oxrunner-test/busybox:latest (run scripts/ensure-docker && scripts/docker-images)"
        );
    }
    ok
}

fn leftovers() -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=com.oxrunner.runner=local"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn image_jobs_run_in_their_image_and_pass_artifacts_caches_and_dotenv() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci = r#"
stages: [build, test]
build:
  stage: build
  image: oxrunner-test/busybox:latest
  cache:
    key: shared
    paths: [cache-dir/]
  script:
    - cat /etc/oxrunner-image
    - echo "project dir is $CI_PROJECT_DIR"
    - cat input.txt
    - mkdir -p out cache-dir && echo built-in-container > out/result.txt
    - echo cached > cache-dir/c.txt
    - echo "FROM_DOTENV=carried" > build.env
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
check-on-host:
  stage: test
  script:
    - cat out/result.txt
    - echo "dotenv says $FROM_DOTENV"
    - test ! -e /etc/oxrunner-image
check-in-container:
  stage: test
  image: oxrunner-test/busybox:latest
  cache:
    key: shared
    paths: [cache-dir/]
    policy: pull
  script:
    - cat out/result.txt
    - cat cache-dir/c.txt
    - echo "dotenv in container $FROM_DOTENV"
"#;
    let repo = Repo::new(ci, &[("input.txt", "from the working tree\n")]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    let out = run.stdout();
    assert!(out.contains("oxrunner busybox test image"), "{}", run.dump());
    assert!(out.contains("project dir is /builds/"), "{}", run.dump());
    assert!(out.contains("from the working tree"), "{}", run.dump());
    assert!(
        out.contains("check-on-host") && out.contains("built-in-container"),
        "{}",
        run.dump()
    );
    assert!(out.contains("dotenv says carried"), "{}", run.dump());
    assert!(out.contains("dotenv in container carried"), "{}", run.dump());
    assert!(out.contains("cached"), "{}", run.dump());
    assert!(
        !repo.path().join("out").exists(),
        "a job wrote into the user's tree"
    );
    assert_eq!(leftovers(), "", "containers left behind");
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn a_failing_container_job_fails_the_pipeline_with_its_exit_code() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci =
        "job:\n  image: oxrunner-test/busybox:latest\n  script:\n    - echo about to fail\n    - exit 7\n";
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert_eq!(run.code(), Some(1), "{}", run.dump());
    assert!(run.stdout().contains("FAILED (exit 7)"), "{}", run.dump());
    assert_eq!(leftovers(), "", "containers left behind");
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn forcing_docker_without_an_image_explains_what_is_missing() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci = "job:\n  script:\n    - echo hi\n";
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&["--executor", "docker"]);
    assert!(!run.ok(), "{}", run.dump());
    assert!(run.stdout().to_lowercase().contains("image"), "{}", run.dump());
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn a_service_is_reachable_by_its_alias() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci = r#"
job:
  image: oxrunner-test/busybox:latest
  services:
    - name: oxrunner-test/busybox:latest
      alias: web
      command: ["sh", "-c", "mkdir -p /www && echo hello-from-service > /www/index.html && httpd -f -p 8080 -h /www"]
  variables:
    HEALTHCHECK_TCP_PORT: "8080"
  script:
    - wget -qO- http://web:8080/index.html
"#;
    let repo = Repo::new(ci, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.stdout().contains("job | hello-from-service"),
        "{}",
        run.dump()
    );
    assert_eq!(leftovers(), "", "containers left behind");
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn a_child_pipelines_image_jobs_run_in_docker_even_when_the_parent_has_none() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci = "kid:\n  trigger:\n    include: child.yml\n    strategy: depend\n";
    let child = "build:\n  image: oxrunner-test/busybox:latest\n  script:\n    - cat /etc/oxrunner-image\n";
    let repo = Repo::new(ci, &[("child.yml", child)]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.printed("kid > build", "oxrunner busybox test image"),
        "{}",
        run.dump()
    );
    assert_eq!(leftovers(), "", "containers left behind");
}

#[test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
fn git_works_inside_the_container_on_the_copied_repository() {
    let _turn = serial();
    if !engine() {
        return;
    }
    let ci = "job:\n  image: oxrunner-test/tools:latest\n  script:\n    - git log -1 --format='subject=%s'\n    - git status --short\n";
    let repo = Repo::new(ci, &[("tracked.txt", "v1\n")]);
    std::fs::write(repo.path().join("tracked.txt"), "v2, not committed\n").unwrap();
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    assert!(run.printed("job", "subject=init"), "{}", run.dump());
    assert!(run.printed("job", " M tracked.txt"), "{}", run.dump());
    assert_eq!(leftovers(), "", "containers left behind");
}
