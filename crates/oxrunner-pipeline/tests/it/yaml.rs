#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 1: YAML as GitLab reads it.

use crate::support as common;

use common::*;

#[test]
fn anchors_aliases_and_merge_keys() {
    let p = pipeline(
        r#"
.defaults: &defaults
  image: alpine:3
  tags: [small]
  variables: { A: from-anchor, B: from-anchor }
.more: &more
  variables: { A: from-more }
  retry: 1
build:
  <<: [*defaults, *more]
  variables: { B: explicit }
  script: [echo build]
test:
  <<: *defaults
  script: &s [echo one, echo two]
again:
  script: *s
"#,
    );
    let build = p.job("build").unwrap();
    // Explicit keys win over merged ones; earlier merge sources win over later ones.
    assert_eq!(build.variable("B").unwrap(), "explicit");
    assert_eq!(
        build.variable("A"),
        None,
        "explicit `variables` replaces the merged mapping entirely"
    );
    assert_eq!(build.tags, ["small"]);
    assert_eq!(build.retry.max, 1);
    assert_eq!(build.payload.image.name, "alpine:3");
    assert_eq!(p.job("test").unwrap().variable("A").unwrap(), "from-anchor");
    assert_eq!(p.job("again").unwrap().script(), ["echo one", "echo two"]);
}

#[test]
fn reference_tags_nested() {
    let p = pipeline(
        r#"
.setup:
  script:
    - echo setup-1
    - echo setup-2
.vars:
  variables:
    URL: http://example
.composite:
  script:
    - !reference [.setup, script]
    - echo composite
job:
  variables:
    URL: !reference [.vars, variables, URL]
  before_script:
    - !reference [.composite, script]
  script:
    - echo main
"#,
    );
    let j = p.job("job").unwrap();
    assert_eq!(
        j.script(),
        ["echo setup-1", "echo setup-2", "echo composite", "echo main"]
    );
    assert_eq!(j.variable("URL").unwrap(), "http://example");
}

#[test]
fn reference_errors() {
    let e = pipeline_err("job:\n  script:\n    - !reference [.missing, script]\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:3:7: !reference [\".missing\", \"script\"] could not be found"
    );
    let e = pipeline_err(
        ".a:\n  script: !reference [.b, script]\n.b:\n  script: !reference [.a, script]\njob:\n  script: !reference [.a, script]\n",
    );
    assert!(e.to_string().contains("nested too deeply"), "{e}");
}

#[test]
fn yaml_1_1_scalars_and_type_errors() {
    let p = pipeline(
        "variables:\n  ON_OFF: on\n  OCTAL: 010\n  FLOAT: 1.0\n  QUOTED: 'yes'\njob:\n  script: echo\n",
    );
    let j = p.job("job").unwrap();
    assert_eq!(j.variable("ON_OFF").unwrap(), "true");
    assert_eq!(j.variable("OCTAL").unwrap(), "8");
    assert_eq!(j.variable("FLOAT").unwrap(), "1.0");
    assert_eq!(j.variable("QUOTED").unwrap(), "yes");
    let e = pipeline_err("job:\n  script: echo\n  variables:\n    - A\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:4:5: jobs:job:variables config should be a hash of key value pairs, value can be a hash\nhint: write `NAME: value` or `NAME: { value: ..., description: ..., expand: false }`"
    );
    let e = pipeline_err("job:\n  script:\n    - {a: b}\n");
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:3:7: jobs:job:script config should be a string or a nested array"),
        "{e}"
    );
}

#[test]
fn syntax_errors_and_duplicate_keys_have_positions() {
    let e = pipeline_err("job:\n  script: [echo a\n  stage: test\n");
    let loc = e.location().unwrap();
    assert_eq!(&*loc.file, ".gitlab-ci.yml");
    assert!(loc.line >= 2, "{e}");
    assert!(e.to_string().contains("Invalid configuration format"), "{e}");
    let p = pipeline("job:\n  script: echo 1\n  script: echo 2\n");
    assert_eq!(p.job("job").unwrap().script(), ["echo 2"]);
    assert_eq!(
        p.warnings[0].to_string(),
        ".gitlab-ci.yml:3:3: warning: duplicate key `script`: the later value replaces the earlier one"
    );
}

#[test]
fn unknown_tags_are_rejected() {
    let e = pipeline_err("job:\n  script: !secret [a]\n");
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:2:11: unknown YAML tag `!secret`"),
        "{e}"
    );
}

#[test]
fn alias_bombs_are_bounded() {
    let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='k' {
        y.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = c;
    }
    let e = pipeline_err(&y);
    assert!(e.to_string().contains("too big"), "{e}");
}
