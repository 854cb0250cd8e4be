#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use common::*;
use oxrunner_pipeline::{AllowFailure, When, render_list, render_list_json, resolve};

const BENCH: &str = include_str!("fixtures/bench.gitlab-ci.yml");
const TRIVIAL: &str = include_str!("fixtures/trivial.gitlab-ci.yml");

#[test]
fn bench_pipeline_has_the_twenty_jobs_gitlab_creates() {
    let d = repo(&[(".gitlab-ci.yml", BENCH), ("README.md", "# bench\n")]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(
        names(&p),
        [
            "build-core",
            "build-api",
            "build-ui",
            "gen-version",
            "big-log",
            "unit-core",
            "unit-api",
            "unit-ui",
            "lint-yaml",
            "lint-shell",
            "lint-docs",
            "lint-flaky",
            "integration: [auth, pg]",
            "integration: [auth, sqlite]",
            "integration: [billing, pg]",
            "integration: [billing, sqlite]",
            "cache-check",
            "package",
            "deploy-staging",
            "report",
        ]
    );
    let list = render_list(&p);
    println!("{list}");
    assert_eq!(list.lines().count(), 21);
    let core = p.job("build-core").unwrap();
    assert_eq!(core.stage, "build");
    assert_eq!(core.needs, Some(vec![]));
    assert_eq!(
        core.script()[0],
        "echo \"before_script for ${CI_JOB_NAME} (stage ${CI_JOB_STAGE})\""
    );
    assert_eq!(core.script()[2], "echo \"${GREETING}: building ${COMPONENT}\"");
    assert_eq!(
        expanded(&p, "build-core", "GREETING").unwrap(),
        "hello from bench-app"
    );
    assert_eq!(expanded(&p, "build-core", "COMPONENT").unwrap(), "core");
    assert_eq!(core.payload.cache[0].key, "deps-${COMPONENT}-non_protected");
    assert_eq!(core.payload.artifacts[0].paths[0], "${BUILD_DIR}/${COMPONENT}/");
    assert_eq!(core.payload.artifacts[0].expire_in, "1 day");
    let genv = p.job("gen-version").unwrap();
    assert_eq!(genv.payload.artifacts[0].artifact_type, "dotenv");
    assert_eq!(genv.payload.artifacts[0].artifact_format, "gzip");
    let integ = p.job("integration: [billing, sqlite]").unwrap();
    assert_eq!(integ.variable("SUITE").unwrap(), "billing");
    assert_eq!(integ.variable("CI_NODE_INDEX").unwrap(), "4");
    assert_eq!(integ.variable("CI_NODE_TOTAL").unwrap(), "4");
    let deps: Vec<&str> = integ
        .payload
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deps, ["build-core", "build-api", "gen-version"]);
    let pkg = p.job("package").unwrap();
    assert_eq!(pkg.needs.as_ref().unwrap().len(), 11);
    assert_eq!(pkg.dependencies.as_ref().unwrap().len(), 8);
    assert_eq!(p.job("lint-flaky").unwrap().allow_failure, AllowFailure::Yes);
    assert_eq!(p.job("report").unwrap().when, When::Always);
    let staging = p.job("deploy-staging").unwrap();
    assert_eq!(staging.environment.as_ref().unwrap()["name"], "staging");
    assert_eq!(staging.variable("CI_ENVIRONMENT_NAME").unwrap(), "staging");
    assert_eq!(staging.variable("CI_PROJECT_PATH").unwrap(), "group/sub/proj");
    let json: serde_json::Value = serde_json::from_str(&render_list_json(&p)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 20);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn bench_pipeline_on_another_branch_drops_deploy_staging() {
    let d = repo(&[(".gitlab-ci.yml", BENCH)]);
    git(d.path(), &["checkout", "-q", "-b", "feature"]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(p.jobs.len(), 19);
    assert!(p.job("deploy-staging").is_none());
}

#[test]
fn trivial_pipeline() {
    let p = pipeline(TRIVIAL);
    assert_eq!(names(&p), ["hi"]);
    let hi = p.job("hi").unwrap();
    assert_eq!(hi.stage, "test");
    assert_eq!(hi.needs, None);
    assert_eq!(hi.script(), ["echo hi"]);
    assert_eq!(hi.payload.steps[0].name, "script");
    assert_eq!(hi.payload.runner_info.timeout, 3600);
    assert_eq!(hi.payload.git_info.r#ref, "main");
    assert_eq!(hi.payload.git_info.ref_type, "branch");
}
