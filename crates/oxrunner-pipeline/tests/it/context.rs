#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 4: the pipeline context from git and simulated pipeline sources.

use crate::support as common;

use common::*;
use oxrunner_pipeline::{MergeRequest, PipelineContext, PipelineSource, resolve};

const CI: &str = r#"
branch-only:
  script: echo
  rules:
    - if: $CI_COMMIT_BRANCH
tag-only:
  script: echo
  only: [tags]
mr-only:
  script: echo
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
scheduled:
  script: echo
  only: [schedules]
default-job:
  script: echo
"#;

#[test]
fn push_pipeline_from_git() {
    let d = repo(&[(".gitlab-ci.yml", CI)]);
    let c = ctx(d.path());
    let sha = c.sha.clone().unwrap();
    assert_eq!(sha.len(), 40);
    let p = resolve(&c).unwrap();
    assert_eq!(names(&p), ["branch-only", "default-job"]);
    let j = p.job("default-job").unwrap();
    for (k, v) in [
        ("CI", "true"),
        ("CI_PIPELINE_SOURCE", "push"),
        ("CI_COMMIT_SHA", sha.as_str()),
        ("CI_COMMIT_SHORT_SHA", &sha[..8]),
        ("CI_COMMIT_BRANCH", "main"),
        ("CI_COMMIT_REF_NAME", "main"),
        ("CI_COMMIT_REF_SLUG", "main"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("CI_COMMIT_TITLE", "first commit"),
        ("CI_COMMIT_DESCRIPTION", "body line"),
        ("CI_COMMIT_AUTHOR", "Dev Eloper <dev@example.com>"),
        ("CI_PROJECT_PATH", "group/sub/proj"),
        ("CI_PROJECT_NAME", "proj"),
        ("CI_PROJECT_NAMESPACE", "group/sub"),
        ("CI_PROJECT_ROOT_NAMESPACE", "group"),
        ("CI_PROJECT_PATH_SLUG", "group-sub-proj"),
        ("CI_SERVER_HOST", "gitlab.example.com"),
        ("CI_SERVER_URL", "https://gitlab.example.com"),
        ("CI_PROJECT_URL", "https://gitlab.example.com/group/sub/proj"),
        ("CI_PIPELINE_IID", "1"),
        ("CI_JOB_NAME", "default-job"),
        ("CI_JOB_STAGE", "test"),
    ] {
        assert_eq!(j.variable(k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(j.variable("CI_COMMIT_TAG"), None);
    assert_eq!(
        j.variable("CI_PROJECT_DIR"),
        None,
        "runner-side variables are left to the runner"
    );
    assert_eq!(j.payload.git_info.sha, sha.as_str());
}

#[test]
fn overrides_and_other_branches() {
    let d = repo(&[(".gitlab-ci.yml", CI)]);
    git(d.path(), &["checkout", "-q", "-b", "Feature/X_1"]);
    let mut c = ctx(d.path());
    c.pipeline_iid = 77;
    c.default_branch = Some("develop".into());
    let p = resolve(&c).unwrap();
    let j = p.job("default-job").unwrap();
    assert_eq!(j.variable("CI_COMMIT_REF_SLUG").unwrap(), "feature-x-1");
    assert_eq!(j.variable("CI_PIPELINE_IID").unwrap(), "77");
    assert_eq!(j.variable("CI_DEFAULT_BRANCH").unwrap(), "develop");
}

#[test]
fn tag_pipeline() {
    let d = repo(&[(".gitlab-ci.yml", CI)]);
    let mut c = ctx(d.path());
    c.source = PipelineSource::Tag;
    c.ref_name = Some("v1.2.0".into());
    let p = resolve(&c).unwrap();
    assert_eq!(names(&p), ["tag-only", "default-job"]);
    let j = p.job("tag-only").unwrap();
    assert_eq!(j.variable("CI_COMMIT_TAG").unwrap(), "v1.2.0");
    assert_eq!(j.variable("CI_COMMIT_BRANCH"), None);
    assert_eq!(j.payload.git_info.ref_type, "tag");
}

#[test]
fn merge_request_pipeline() {
    let d = repo(&[(".gitlab-ci.yml", CI)]);
    let mut c = ctx(d.path());
    c.source = PipelineSource::MergeRequest;
    c.merge_request = Some(MergeRequest {
        iid: 5,
        source_branch: "feat".into(),
        target_branch: "main".into(),
        title: "Add feat".into(),
        ..MergeRequest::default()
    });
    let p = resolve(&c).unwrap();
    // Jobs without rules default to `only: [branches, tags]`, so they are not in MR pipelines.
    assert_eq!(names(&p), ["mr-only"]);
    let j = p.job("mr-only").unwrap();
    assert_eq!(j.variable("CI_PIPELINE_SOURCE").unwrap(), "merge_request_event");
    assert_eq!(j.variable("CI_MERGE_REQUEST_IID").unwrap(), "5");
    assert_eq!(j.variable("CI_MERGE_REQUEST_TARGET_BRANCH_NAME").unwrap(), "main");
    assert_eq!(j.variable("CI_COMMIT_REF_NAME").unwrap(), "feat");
}

#[test]
fn schedule_pipeline() {
    let d = repo(&[(".gitlab-ci.yml", CI)]);
    let mut c = ctx(d.path());
    c.source = PipelineSource::Schedule;
    let p = resolve(&c).unwrap();
    assert_eq!(names(&p), ["branch-only", "scheduled", "default-job"]);
}

#[test]
fn not_a_repository() {
    let d = tempfile::tempdir().unwrap();
    let e = PipelineContext::from_git(d.path()).unwrap_err();
    assert!(e.to_string().starts_with("git rev-parse HEAD: "), "{e}");
    assert!(
        e.to_string()
            .contains("\nhint: run oxrunner in a git working copy"),
        "{e}"
    );
}

#[test]
fn debug_output_hides_cli_values() {
    let d = repo(&[(".gitlab-ci.yml", "job:\n  script: echo\n")]);
    let mut c = ctx(d.path());
    c.variables = vec![("DEPLOY_TOKEN".into(), "s3cr3t-value".into())];
    assert!(!format!("{c:?}").contains("s3cr3t-value"));
    let p = resolve(&c).unwrap();
    let j = p.job("job").unwrap();
    assert_eq!(j.variable("DEPLOY_TOKEN").unwrap(), "s3cr3t-value");
    assert!(!format!("{j:?}").contains("s3cr3t-value"));
    assert!(!format!("{:?}", j.variables()).contains("s3cr3t-value"));
    assert_eq!(j.variable("CI_JOB_ID").unwrap(), "1");
    assert_eq!(
        j.variable("CI_JOB_URL").unwrap(),
        "https://gitlab.example.com/group/sub/proj/-/jobs/1"
    );
}
