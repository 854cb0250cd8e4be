#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 7: the CLI output helpers.

use crate::support as common;

use common::*;
use oxrunner_pipeline::{render_list, render_list_json};

const CI: &str = r#"
stages: [build, test]
compile:
  stage: build
  script: x
lint:
  stage: test
  needs: []
  allow_failure: true
  script: x
unit:
  stage: test
  needs: [compile]
  script: x
manual:
  stage: test
  when: manual
  script: x
codes:
  stage: test
  allow_failure: { exit_codes: 3 }
  when: delayed
  start_in: 1 minute
  script: x
"#;

#[test]
fn list_table() {
    let p = pipeline(CI);
    assert_eq!(
        render_list(&p),
        "\
NAME     STAGE  WHEN           ALLOW_FAILURE  NEEDS
compile  build  on_success     false          -
lint     test   on_success     true           []
unit     test   on_success     false          compile
manual   test   manual         true           -
codes    test   delayed (60s)  exit codes 3   -
"
    );
}

#[test]
fn list_json() {
    let p = pipeline(CI);
    let v: serde_json::Value = serde_json::from_str(&render_list_json(&p)).unwrap();
    assert_eq!(v[0]["name"], "compile");
    assert_eq!(v[0]["needs"], serde_json::Value::Null);
    assert_eq!(v[1]["needs"], serde_json::json!([]));
    assert_eq!(v[1]["allow_failure"], true);
    assert_eq!(
        v[2]["needs"],
        serde_json::json!([{"job": "compile", "artifacts": true, "optional": false}])
    );
    assert_eq!(v[3]["when"], "manual");
    assert_eq!(v[4]["allow_failure"], serde_json::json!({"exit_codes": [3]}));
    assert_eq!(v[4]["start_in"], 60);
}
