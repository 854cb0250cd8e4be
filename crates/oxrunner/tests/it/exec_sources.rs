//! `oxrunner exec --source/--ref/--tag/--target-branch/--mr-*`: `--list` shows the jobs GitLab would create for
//! that event. The pipeline is made of the `rules` examples of GitLab's documentation (`rules`, workflow rules
//! switching between branch and merge request pipelines, `changes` with and without `compare_to`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::exec::{Repo, Run, git};

const CI: &str = r#"
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS
      when: never
    - if: $CI_COMMIT_BRANCH
    - if: $CI_COMMIT_TAG
    - if: $CI_PIPELINE_SOURCE == "schedule" || $CI_PIPELINE_SOURCE == "web" || $CI_PIPELINE_SOURCE == "trigger"

job:
  script: echo "Hello, Rules!"
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      when: manual
      allow_failure: true
    - if: $CI_PIPELINE_SOURCE == "schedule"

docker build:
  script: echo "docker build -t my-image:$CI_COMMIT_REF_SLUG ."
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      changes:
        - Dockerfile
      when: manual
      allow_failure: true

docs:
  script: echo docs
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      changes:
        - docs/**/*

compare:
  script: echo compared
  rules:
    - changes:
        paths:
          - Dockerfile
        compare_to: 'refs/heads/main'

feature-into-release:
  script: echo review
  rules:
    - if: $CI_MERGE_REQUEST_SOURCE_BRANCH_NAME =~ /^feature/ && $CI_MERGE_REQUEST_TARGET_BRANCH_NAME != $CI_DEFAULT_BRANCH

bug-label:
  script: echo bug
  rules:
    - if: $CI_MERGE_REQUEST_LABELS =~ /(^|,)bug(,|$)/

branch-only:
  script: echo branch
  rules:
    - if: $CI_COMMIT_BRANCH

tag-only:
  script: echo tag
  rules:
    - if: $CI_COMMIT_TAG

merge-requests-only:
  script: echo only
  only: [merge_requests]

triggered:
  script: echo triggered
  rules:
    - if: $CI_PIPELINE_SOURCE == "trigger" && $CI_PIPELINE_TRIGGERED == "true"

show-vars:
  stage: .post
  script:
    - echo "ref=$CI_COMMIT_REF_NAME branch=${CI_COMMIT_BRANCH-unset} tag=${CI_COMMIT_TAG-unset}"
    - echo "mr=$CI_MERGE_REQUEST_IID src=$CI_MERGE_REQUEST_SOURCE_BRANCH_NAME dst=$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
    - echo "labels=$CI_MERGE_REQUEST_LABELS base=$CI_MERGE_REQUEST_DIFF_BASE_SHA open=$CI_OPEN_MERGE_REQUESTS"
  rules:
    - when: always
"#;

/// `main` with the pipeline, a `release` branch, and `feature/login` off main that changes the Dockerfile only.
fn repo() -> Repo {
    let repo = Repo::new(
        CI,
        &[("Dockerfile", "FROM scratch\n"), ("docs/index.md", "# docs\n")],
    );
    let p = repo.path();
    git(p, &["branch", "release"]);
    git(p, &["checkout", "-q", "-b", "feature/login"]);
    std::fs::write(p.join("Dockerfile"), "FROM scratch\nCOPY app /\n").unwrap();
    git(p, &["commit", "-q", "-am", "login: ship the app"]);
    repo
}

/// The job names of `--list`, in pipeline order.
fn listed(run: &Run) -> Vec<String> {
    assert!(run.ok(), "{}", run.dump());
    run.stdout()
        .lines()
        .skip(1)
        .map(|l| l.split("  ").next().unwrap_or("").trim().to_string())
        .collect()
}

fn list(repo: &Repo, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--list"];
    all.extend_from_slice(args);
    listed(&repo.exec(&all))
}

#[test]
fn merge_request_pipeline_lists_what_gitlab_creates() {
    let repo = repo();
    let mr = list(&repo, &["--source", "merge_request_event"]);
    // `docs` is out: the MR (merge base with main → HEAD) does not touch docs/. `branch-only` is out:
    // CI_COMMIT_BRANCH is not set in MR pipelines. `feature-into-release`: the target is the default branch.
    assert_eq!(
        mr,
        [
            "job",
            "docker build",
            "compare",
            "merge-requests-only",
            "show-vars"
        ],
        "merge request into main"
    );
    let out = repo
        .exec(&["--list", "--source", "merge_request_event", "--json"])
        .stdout();
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs[0]["when"], "manual", "{out}");
    assert_eq!(jobs[0]["allow_failure"], true, "{out}");

    let release = list(
        &repo,
        &[
            "--source",
            "merge_request_event",
            "--target-branch",
            "release",
            "--mr-labels",
            "ui,bug",
        ],
    );
    assert_eq!(
        release,
        [
            "job",
            "docker build",
            "compare",
            "feature-into-release",
            "bug-label",
            "merge-requests-only",
            "show-vars"
        ]
    );
}

#[test]
fn workflow_rules_switch_between_branch_and_merge_request_pipelines() {
    let repo = repo();
    // A plain branch pipeline.
    assert_eq!(
        list(&repo, &[]),
        ["compare", "branch-only", "show-vars"],
        "branch pipeline"
    );
    // The same branch with an open merge request: GitLab creates the MR pipeline only.
    let run = repo.exec(&["--list", "--target-branch", "main"]);
    assert_eq!(listed(&run), Vec::<String>::new());
    assert!(
        run.stderr().contains("filtered out by workflow rules"),
        "{}",
        run.dump()
    );
}

#[test]
fn tag_schedule_and_trigger_pipelines() {
    let repo = repo();
    // `changes` is always true for tags, schedules and triggers (nothing to compare with).
    assert_eq!(
        list(&repo, &["--tag", "v1.0.0"]),
        ["compare", "tag-only", "show-vars"]
    );
    assert_eq!(
        list(&repo, &["--source", "schedule"]),
        ["job", "compare", "branch-only", "show-vars"]
    );
    assert_eq!(
        list(&repo, &["--source", "trigger", "--ref", "main"]),
        ["compare", "branch-only", "triggered", "show-vars"]
    );
    let run = repo.exec(&["--list", "--source", "push", "--mr-labels", "bug"]);
    assert!(!run.ok());
    assert!(
        run.stderr().contains("hint: add --source merge_request_event"),
        "{}",
        run.dump()
    );
}

#[test]
fn jobs_see_the_predefined_variables_of_the_event() {
    let repo = repo();
    let run = repo.exec(&[
        "--source",
        "merge_request_event",
        "--mr-iid",
        "42",
        "--mr-labels",
        "ui,bug",
        "show-vars",
    ]);
    assert!(run.ok(), "{}", run.dump());
    let base = String::from_utf8(
        std::process::Command::new("git")
            .args(["-C"])
            .arg(repo.path())
            .args(["rev-parse", "main"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        run.printed("show-vars", "ref=feature/login branch=unset tag=unset"),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("show-vars", "mr=42 src=feature/login dst=main"),
        "{}",
        run.dump()
    );
    let open = format!("labels=ui,bug base={} open=local/", base.trim());
    assert!(
        run.stdout()
            .lines()
            .any(|l| l.contains(&open) && l.ends_with("!42")),
        "{}",
        run.dump()
    );

    let tag = repo.exec(&["--tag", "v2.0.0", "show-vars"]);
    assert!(
        tag.printed("show-vars", "ref=v2.0.0 branch=unset tag=v2.0.0"),
        "{}",
        tag.dump()
    );
}
