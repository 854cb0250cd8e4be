#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The payload the pipeline builds is GitLab's wire shape: it survives JSON both ways unchanged, and every key of a
//! real GitLab payload (the API crate's fixture) is present with the same JSON type.

use crate::support as common;

use common::pipeline;
use oxrunner_wire::JobResponse;
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../oxrunner-api/tests/fixtures/job-response.network-gitlab_test.json"
);

/// Every key of `fixture` is in `ours` with the same JSON type; objects and the first element of arrays are
/// compared recursively. `path` names the place for the failure message.
fn same_shape(fixture: &Value, ours: &Value, path: &str) {
    match (fixture, ours) {
        (Value::Object(f), Value::Object(o)) => {
            for (k, fv) in f {
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} is missing in the pipeline's payload"));
                same_shape(fv, ov, &format!("{path}.{k}"));
            }
        }
        (Value::Array(f), Value::Array(o)) => {
            if let (Some(fv), Some(ov)) = (f.first(), o.first()) {
                same_shape(fv, ov, &format!("{path}[0]"));
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, _) => {}
        (f, o) => panic!("{path}: GitLab sends {f}, the pipeline {o}"),
    }
}

#[test]
fn payload_round_trips_and_has_gitlab_shape() {
    let p = pipeline(
        r#"
build:
  stage: build
  image:
    name: ruby:3.3
    entrypoint: ["/bin/sh"]
    docker: { platform: arm64/v8 }
  services:
    - name: postgresql:9.5
      alias: db-pg
      entrypoint: ["/bin/sh"]
      command: [sleep, "30"]
      ports: [5432, { number: 8080, protocol: http, name: web }]
  variables: { GREETING: hello }
  before_script: [date]
  script: ["ls -ls"]
  after_script: ["ls -ls"]
  artifacts:
    name: artifact.zip
    paths: [out/*]
    when: always
    expire_in: 7d
    reports: { junit: report.xml }
  cache: { key: vendor, paths: [vendor/*], policy: push }
  hooks: { pre_get_sources_script: [echo pre] }
test:
  stage: test
  script: [echo test]
"#,
    );
    let job = &p.job("build").unwrap().payload;
    let json = serde_json::to_value(job).unwrap();
    let back: JobResponse = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, job, "the payload changes on its way through JSON");

    let mut fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    // A local pipeline has no registry credentials and no earlier job; their shape is the API crate's to test.
    for key in ["credentials", "dependencies"] {
        fixture.as_object_mut().unwrap().remove(key);
    }
    same_shape(&fixture, &json, "payload");

    assert_eq!(json["services"][0]["ports"][0]["number"], 5432);
    assert_eq!(json["services"][0]["ports"][1]["name"], "web");
    assert_eq!(json["hooks"][0]["name"], "pre_get_sources_script");
    let test = &p.job("test").unwrap().payload;
    assert_eq!(test.dependencies.len(), 1, "{:?}", test.dependencies);
    assert_eq!(
        serde_json::to_value(test).unwrap()["dependencies"][0]["name"],
        "build"
    );
}
