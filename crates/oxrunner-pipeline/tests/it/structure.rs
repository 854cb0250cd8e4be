#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 6: stages, needs, dependencies, parallel, trigger and the job keywords that end up in the payload.

use crate::support as common;

use std::time::Duration;

use common::*;
use oxrunner_pipeline::{Need, When, resolve};

#[test]
fn stages_with_pre_and_post() {
    let p = pipeline(
        "stages: [build, test]\nlast:\n  stage: .post\n  script: x\nb:\n  stage: build\n  script: x\nfirst:\n  stage: .pre\n  script: x\nt:\n  script: x\n",
    );
    assert_eq!(p.stages, [".pre", "build", "test", ".post"]);
    assert_eq!(names(&p), ["first", "b", "t", "last"]);
    assert_eq!(p.job("t").unwrap().stage_index, 2);
    let e = pipeline_err("stages: [build]\njob:\n  stage: deploy\n  script: x\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:3:10: job job: chosen stage deploy does not exist; available stages are .pre, build, .post\nhint: add the stage to the top-level `stages:` list"
    );
}

#[test]
fn needs_forms_and_errors() {
    let p = pipeline(
        r#"
a:
  stage: build
  script: x
b:
  stage: build
  script: x
c:
  stage: test
  needs:
    - a
    - job: b
      artifacts: false
    - job: maybe
      optional: true
  script: x
maybe:
  stage: build
  script: x
  rules:
    - if: $NOPE
d:
  stage: test
  needs: []
  script: x
e:
  stage: test
  script: x
"#,
    );
    let c = p.job("c").unwrap();
    assert_eq!(
        c.needs,
        Some(vec![
            Need {
                job: "a".into(),
                artifacts: true,
                optional: false
            },
            Need {
                job: "b".into(),
                artifacts: false,
                optional: false
            }
        ])
    );
    let deps: Vec<&str> = c.payload.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["a"]);
    assert_eq!(p.job("d").unwrap().needs, Some(vec![]));
    assert_eq!(p.job("e").unwrap().needs, None);
    assert_eq!(
        p.job("e").unwrap().payload.dependencies.len(),
        2,
        "stage order: every earlier job"
    );

    let e = pipeline_err("a:\n  script: x\n  needs: [y]\n");
    assert_eq!(e.to_string(), ".gitlab-ci.yml:3:11: a job: undefined need: y");
    let e = pipeline_err("a:\n  script: x\n  needs: [y]\ny:\n  script: x\n  rules:\n    - if: $NOPE\n");
    assert!(
        e.to_string().starts_with(
            ".gitlab-ci.yml:3:11: 'a' job needs 'y' job, but 'y' does not exist in the pipeline."
        ),
        "{e}"
    );
    let e = pipeline_err("a:\n  stage: build\n  script: x\n  needs: [b]\nb:\n  stage: test\n  script: x\n");
    assert!(
        e.to_string()
            .contains("a job: need b is not defined in current or prior stages"),
        "{e}"
    );
    let e = pipeline_err(
        "a:\n  script: x\n  needs: [b]\nb:\n  script: x\n  needs: [c]\nc:\n  script: x\n  needs: [a]\n",
    );
    assert!(
        e.to_string().contains("The pipeline has circular dependencies: "),
        "{e}"
    );
    assert!(
        e.to_string().contains("a -> b -> c -> a")
            || e.to_string().contains("b -> c -> a -> b")
            || e.to_string().contains("c -> a -> b -> c"),
        "{e}"
    );
}

#[test]
fn dependencies_rules() {
    let p = pipeline(
        "a:\n  stage: build\n  script: x\nb:\n  stage: build\n  script: x\nc:\n  stage: test\n  dependencies: [b]\n  script: x\nd:\n  stage: test\n  dependencies: []\n  script: x\n",
    );
    assert_eq!(p.job("c").unwrap().dependencies, Some(vec!["b".to_string()]));
    assert_eq!(p.job("c").unwrap().payload.dependencies[0].name, "b");
    assert_eq!(p.job("d").unwrap().payload.dependencies.len(), 0);
    let e = pipeline_err(
        "a:\n  stage: build\n  script: x\nc:\n  stage: test\n  needs: []\n  dependencies: [a]\n  script: x\n",
    );
    assert!(
        e.to_string()
            .contains("jobs:c dependencies the a should be part of needs"),
        "{e}"
    );
    let e = pipeline_err("c:\n  dependencies: [zzz]\n  script: x\n");
    assert!(e.to_string().contains("c job: undefined dependency: zzz"), "{e}");
}

#[test]
fn parallel_and_matrix_names_and_selectors() {
    let p = pipeline(
        r#"
build:
  stage: build
  parallel: 3
  script: echo $CI_NODE_INDEX
test:
  stage: test
  parallel:
    matrix:
      - OS: [linux, mac]
        ARCH: amd64
      - OS: windows
        ARCH: [amd64, arm64]
  needs: [build]
  script: echo
deploy:
  stage: test
  needs:
    - job: test
      parallel:
        matrix:
          - OS: linux
            ARCH: amd64
  script: echo
"#,
    );
    assert_eq!(
        names(&p),
        [
            "build 1/3",
            "build 2/3",
            "build 3/3",
            "test: [linux, amd64]",
            "test: [mac, amd64]",
            "test: [windows, amd64]",
            "test: [windows, arm64]",
            "deploy",
        ]
    );
    let b2 = p.job("build 2/3").unwrap();
    assert_eq!(b2.variable("CI_NODE_INDEX").unwrap(), "2");
    assert_eq!(b2.variable("CI_NODE_TOTAL").unwrap(), "3");
    assert_eq!(b2.variable("CI_JOB_NAME").unwrap(), "build 2/3");
    let t = p.job("test: [windows, arm64]").unwrap();
    assert_eq!(t.variable("OS").unwrap(), "windows");
    assert_eq!(t.variable("ARCH").unwrap(), "arm64");
    assert_eq!(
        t.needs.as_ref().unwrap().len(),
        3,
        "needing a parallel job needs every instance"
    );
    assert_eq!(
        p.job("deploy").unwrap().needs.as_ref().unwrap()[0].job,
        "test: [linux, amd64]"
    );
}

#[test]
fn job_keywords_in_the_payload() {
    let p = pipeline(
        r#"
job:
  image:
    name: registry.example.com/img:1
    entrypoint: [""]
    docker: { platform: linux/arm64 }
  services:
    - postgres:16
    - name: redis:7
      alias: cache
  before_script: [echo before]
  script:
    - echo one
    - [echo nested]
  after_script: echo after
  retry:
    max: 2
    when: [script_failure]
    exit_codes: 137
  timeout: 1h 30m
  interruptible: true
  coverage: '/Total: (\d+)%/'
  tags: [docker]
  artifacts:
    name: out
    paths: [dist/]
    exclude: [dist/**/*.map]
    untracked: false
    when: always
    expire_in: 1 week
    reports:
      junit: report.xml
      coverage_report:
        coverage_format: cobertura
        path: cov.xml
  cache:
    - key:
        files: [Cargo.lock]
        prefix: rust
      paths: [target/]
      policy: pull
      fallback_keys: [main-cache]
    - paths: [.npm/]
      untracked: true
      when: always
"#,
    );
    let j = p.job("job").unwrap();
    assert_eq!(j.script(), ["echo before", "echo one", "echo nested"]);
    assert_eq!(j.after_script(), ["echo after"]);
    assert_eq!(j.retry.max, 2);
    assert_eq!(j.retry.when, ["script_failure"]);
    assert_eq!(j.retry.exit_codes, [137]);
    assert_eq!(j.timeout, Some(Duration::from_secs(5400)));
    assert!(j.interruptible);
    assert_eq!(j.coverage.as_deref(), Some("/Total: (\\d+)%/"));
    let pl = &j.payload;
    assert_eq!(pl.runner_info.timeout, 5400);
    assert_eq!(pl.steps[0].timeout, 5400);
    assert_eq!(pl.steps[1].when, "always");
    assert_eq!(pl.image.entrypoint, [""]);
    assert_eq!(pl.image.executor_opts.docker.platform, "linux/arm64");
    assert_eq!(pl.services[0].name, "postgres:16");
    assert_eq!(pl.services[1].alias, "cache");
    assert_eq!(pl.artifacts[0].artifact_type, "archive");
    assert_eq!(pl.artifacts[0].when, "always");
    assert_eq!(pl.artifacts[0].exclude[0], "dist/**/*.map");
    assert_eq!(pl.artifacts[1].artifact_type, "junit");
    assert_eq!(pl.artifacts[1].artifact_format, "gzip");
    assert_eq!(pl.artifacts[1].paths[0], "report.xml");
    assert_eq!(pl.artifacts[1].expire_in, "1 week");
    assert_eq!(pl.artifacts[2].artifact_type, "cobertura");
    // Cargo.lock has no commit: GitLab falls back to `default`.
    assert_eq!(pl.cache[0].key, "rust-default-non_protected");
    assert_eq!(pl.cache[0].policy, "pull");
    assert_eq!(pl.cache[0].fallback_keys[0], "main-cache-non_protected");
    assert_eq!(pl.cache[1].key, "default-non_protected");
    assert!(pl.cache[1].untracked);
    assert_eq!(pl.cache[1].when, "always");
}

#[test]
fn cache_key_files_change_only_with_the_files() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "job:\n  script: x\n  cache:\n    key:\n      files: [Cargo.lock]\n    paths: [t/]\n",
        ),
        ("Cargo.lock", "v1\n"),
    ]);
    let p = resolve(&ctx(d.path())).unwrap();
    let key = p.job("job").unwrap().payload.cache[0].key.clone();
    assert_eq!(key.len(), "0_Cargo-".len() + 40 + "-non_protected".len(), "{key}");
    assert!(key.starts_with("0_Cargo-"), "{key}");
    write(d.path(), &[("other.txt", "x")]);
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "unrelated"]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(
        p.job("job").unwrap().payload.cache[0].key,
        key.as_str(),
        "unchanged file, same key"
    );
    write(d.path(), &[("Cargo.lock", "v2\n")]);
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "bump"]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_ne!(p.job("job").unwrap().payload.cache[0].key, key.as_str());
}

#[test]
fn delayed_and_when() {
    let p = pipeline(
        "a:\n  script: x\n  when: delayed\n  start_in: 10 seconds\nb:\n  script: x\n  when: on_failure\nc:\n  script: x\n  when: never\n",
    );
    assert_eq!(
        p.job("a").unwrap().when,
        When::Delayed {
            start_in: Duration::from_secs(10)
        }
    );
    assert_eq!(p.job("b").unwrap().when, When::OnFailure);
    assert!(p.job("c").is_none());
}

#[test]
fn child_pipelines_from_local_includes() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "variables:\n  FROM_PARENT: yes-please\ntrigger-child:\n  variables:\n    JOB_VAR: forwarded\n  trigger:\n    include: child.yml\n    strategy: depend\nmulti:\n  trigger: group/other\n",
        ),
        (
            "child.yml",
            "child-job:\n  script: echo $JOB_VAR\n  rules:\n    - if: $CI_PIPELINE_SOURCE == \"parent_pipeline\"\n",
        ),
    ]);
    let p = resolve(&ctx(d.path())).unwrap();
    let t = p.job("trigger-child").unwrap();
    let child = t.trigger.as_ref().unwrap();
    assert!(child.strategy_depend);
    let cp = child.pipeline.as_ref().unwrap();
    assert_eq!(names(cp), ["child-job"]);
    let cj = cp.job("child-job").unwrap();
    assert_eq!(cj.variable("JOB_VAR").unwrap(), "forwarded");
    assert_eq!(cj.variable("FROM_PARENT").unwrap(), "yes-please");
    assert!(
        t.payload.steps.is_empty(),
        "trigger jobs are never sent to a runner"
    );
    let m = p.job("multi").unwrap().trigger.as_ref().unwrap();
    assert_eq!(m.project.as_deref(), Some("group/other"));
    assert!(p.warnings.iter().any(|w| {
        w.message
            .contains("multi-project pipeline `group/other` cannot be created locally")
    }));
}

#[test]
fn warnings_for_unknown_keywords_and_secrets() {
    let p = pipeline(
        "job:\n  script: x\n  scirpt: y\n  secrets:\n    DB:\n      vault: db/pass@ops\n  id_tokens:\n    TOKEN:\n      aud: https://example\n",
    );
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.contains(&".gitlab-ci.yml:2:3: warning: jobs:job config contains unknown keys: scirpt".to_string()),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("jobs:job:secrets are not available locally")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("jobs:job:id_tokens are not available locally")),
        "{w:?}"
    );
    let tok = p
        .job("job")
        .unwrap()
        .variables()
        .into_iter()
        .find(|v| v.key == "TOKEN")
        .unwrap();
    assert!(tok.masked && tok.value.is_empty());
    let e = pipeline_err("job:\n  script: x\nstagse: [a]\n");
    assert!(
        e.to_string().starts_with(
            ".gitlab-ci.yml:3:9: jobs:stagse config should implement the script:, run:, or trigger: keyword"
        ),
        "{e}"
    );
}

#[test]
fn retry_and_parallel_limits() {
    let e = pipeline_err("job:\n  script: x\n  retry: 3\n");
    assert!(
        e.to_string()
            .contains("jobs:job:retry config must be less than or equal to 2"),
        "{e}"
    );
    let e = pipeline_err("job:\n  script: x\n  parallel: 201\n");
    assert!(
        e.to_string()
            .contains("parallel config must be greater than or equal to 2 and less than or equal to 200"),
        "{e}"
    );
}
