#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 3: variable definitions, precedence and expansion.

use crate::support as common;

use common::*;
use oxrunner_pipeline::{JobVariable, resolve, runner_expand};

#[test]
fn definition_forms() {
    let p = pipeline(
        r#"
variables:
  PLAIN: plain
  NUMBER: 42
  FULL:
    value: full
    description: shown in the run-pipeline form
  CHOICE:
    value: blue
    options: [red, blue]
    description: pick one
  LITERAL:
    value: "$PLAIN stays"
    expand: false
  EMPTY:
job:
  script: echo
"#,
    );
    let vars = p.job("job").unwrap().variables();
    let get = |k: &str| vars.iter().rev().find(|v| v.key == k).unwrap().clone();
    assert_eq!(get("PLAIN").value, "plain");
    assert_eq!(get("NUMBER").value, "42");
    assert_eq!(get("FULL").value, "full");
    assert_eq!(get("CHOICE").value, "blue");
    assert_eq!(get("EMPTY").value, "");
    let lit = get("LITERAL");
    assert!(lit.raw && lit.public && !lit.masked && !lit.file);
    assert_eq!(expanded(&p, "job", "LITERAL").unwrap(), "$PLAIN stays");

    let e = pipeline_err("variables:\n  C:\n    value: green\n    options: [red]\njob:\n  script: x\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:3:5: variables:C config value must be present in options"
    );
}

#[test]
fn precedence_global_workflow_job_rules_cli() {
    let yaml = r#"
variables:
  V1: global
  V2: global
  V3: global
  V4: global
  V5: global
  CI_COMMIT_REF_NAME: overridden-by-yaml
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      variables:
        V2: workflow
        V3: workflow
        V4: workflow
        V5: workflow
job:
  variables:
    V3: job
    V4: job
    V5: job
  rules:
    - if: $V4 == "job"
      variables:
        V4: rules
        V5: rules
  script: echo
"#;
    let d = repo(&[(".gitlab-ci.yml", yaml)]);
    let mut c = ctx(d.path());
    c.variables = vec![("V5".into(), "cli".into())];
    let p = resolve(&c).unwrap();
    let j = p.job("job").unwrap();
    for (k, want) in [
        ("V1", "global"),
        ("V2", "workflow"),
        ("V3", "job"),
        ("V4", "rules"),
        ("V5", "cli"),
    ] {
        assert_eq!(j.variable(k).unwrap(), want, "{k}");
    }
    assert_eq!(j.variable("CI_COMMIT_REF_NAME").unwrap(), "overridden-by-yaml");
    let cli: Vec<JobVariable> = j.variables().into_iter().filter(|v| v.key == "V5").collect();
    assert!(
        !cli.last().unwrap().public,
        "pipeline (CLI) variables are not public"
    );
}

#[test]
fn runner_expansion_is_one_pass_and_honours_dollar_escape() {
    let p = pipeline(
        r#"
variables:
  A: a
  B: $A-b
  C: ${B}-c
  D: $$A
  E: "${UNDEFINED}x"
job:
  rules:
    - if: $C == "a-b-c"
  script:
    - echo $C
"#,
    );
    // GitLab's server expands recursively for rules...
    assert_eq!(names(&p), ["job"]);
    // ...but the runner expands the payload once, so nested references stay one level deep.
    assert_eq!(expanded(&p, "job", "B").unwrap(), "a-b");
    assert_eq!(expanded(&p, "job", "C").unwrap(), "$A-b-c");
    assert_eq!(expanded(&p, "job", "D").unwrap(), "$A");
    assert_eq!(expanded(&p, "job", "E").unwrap(), "x");
    // The script is sent as written: the shell expands it.
    assert_eq!(p.job("job").unwrap().script(), ["echo $C"]);
}

#[test]
fn runner_expand_helper() {
    let v = |k: &str, val: &str, raw: bool| JobVariable {
        key: k.into(),
        value: val.into(),
        public: true,
        masked: false,
        file: false,
        raw,
    };
    let out = runner_expand(&[
        v("X", "1", false),
        v("Y", "${X}$X$$X$", false),
        v("Z", "$X", true),
        v("X", "2", false),
    ]);
    assert_eq!(out[1], ("Y".to_string(), "22$X$".to_string()));
    assert_eq!(out[2].1, "$X");
}

#[test]
fn server_side_expansion_of_environment_and_tags() {
    let p = pipeline(
        r#"
variables:
  TIER: review
deploy:
  environment:
    name: $TIER/$CI_COMMIT_REF_SLUG
    url: https://$CI_COMMIT_REF_SLUG.example.com
  tags: [runner-$TIER]
  resource_group: env-$TIER
  script: echo
"#,
    );
    let j = p.job("deploy").unwrap();
    assert_eq!(j.environment.as_ref().unwrap()["name"], "review/main");
    assert_eq!(j.environment.as_ref().unwrap()["url"], "https://main.example.com");
    assert_eq!(j.variable("CI_ENVIRONMENT_NAME").unwrap(), "review/main");
    assert_eq!(
        j.variable("CI_ENVIRONMENT_URL").unwrap(),
        "https://main.example.com"
    );
    assert_eq!(j.variable("CI_ENVIRONMENT_TIER").unwrap(), "development");
    let slug = j.variable("CI_ENVIRONMENT_SLUG").unwrap();
    assert!(slug.starts_with("review-main-") && slug.len() == 18, "{slug}");
    assert_eq!(j.tags, ["runner-review"]);
    assert_eq!(j.resource_group.as_deref(), Some("env-review"));
}
