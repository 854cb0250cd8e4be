#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 2: include, spec:inputs, extends, default, inherit, hidden jobs.

use crate::support as common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::*;
use oxrunner_pipeline::{merged_config, resolve};

#[test]
fn local_includes_with_globs_nesting_and_rules() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            r#"
include:
  - local: ci/*.yml
  - local: /extra/nested.yml
  - local: skipped.yml
    rules:
      - if: $CI_COMMIT_BRANCH == "release"
  - 'ci/sub/**.yml'
variables:
  WHO: main
a:
  script: echo main-a
"#,
        ),
        (
            "ci/a.yml",
            "a:\n  stage: build\n  script: echo included-a\n  variables: { FROM: a }\n",
        ),
        (
            "ci/b.yml",
            "b:\n  script: echo b\nvariables:\n  WHO: included\n  ONLY_INCLUDED: yes\n",
        ),
        ("ci/sub/c.yml", "c:\n  script: echo c\n"),
        ("extra/nested.yml", "include: extra/deeper.yml\n"),
        ("extra/deeper.yml", "deep:\n  script: echo deep\n"),
        ("skipped.yml", "skipped:\n  script: echo never\n"),
    ]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(names(&p), ["a", "b", "deep", "c"]);
    let a = p.job("a").unwrap();
    // The including file wins; mappings merge deeply.
    assert_eq!(a.script(), ["echo main-a"]);
    assert_eq!(a.stage, "build");
    assert_eq!(a.variable("FROM").unwrap(), "a");
    assert_eq!(a.variable("WHO").unwrap(), "main");
    assert_eq!(a.variable("ONLY_INCLUDED").unwrap(), "true");
}

#[test]
fn include_errors_name_the_file_and_position() {
    let d = repo(&[(
        ".gitlab-ci.yml",
        "include:\n  - local: ../outside.yml\njob:\n  script: x\n",
    )]);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:2:5: Local file `../outside.yml` does not exist!\nhint:"),
        "{e}"
    );
    let d = repo(&[(".gitlab-ci.yml", "include: missing.yml\njob:\n  script: x\n")]);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:1:10: Local file `missing.yml` does not exist!"),
        "{e}"
    );
    let d = repo(&[
        (".gitlab-ci.yml", "include: a.yml\njob:\n  script: x\n"),
        ("a.yml", "include: a.yml\n"),
    ]);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(e.to_string().contains("include cycle"), "{e}");
    let d = repo(&[
        (".gitlab-ci.yml", "include: bad.yml\n"),
        ("bad.yml", "job:\n  script: [\n"),
    ]);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(e.to_string().starts_with("bad.yml:"), "{e}");
    for (inc, what) in [
        (
            "template: Auto-DevOps.gitlab-ci.yml",
            "include:template `Auto-DevOps.gitlab-ci.yml` cannot be fetched offline",
        ),
        (
            "project: group/other\n    file: ci.yml",
            "include:project `group/other` (ci.yml) cannot be fetched",
        ),
        (
            "component: gitlab.com/org/comp/x@1.0",
            "include:component `gitlab.com/org/comp/x@1.0` cannot be fetched",
        ),
    ] {
        let d = repo(&[(
            ".gitlab-ci.yml",
            &format!("include:\n  - {inc}\njob:\n  script: x\n"),
        )]);
        let e = resolve(&ctx(d.path())).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
        assert!(e.to_string().contains("\nhint: "), "{e}");
    }
}

#[test]
fn remote_include_over_loopback_and_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).unwrap();
        let body = "remote-job:\n  script: echo remote\n";
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let d = repo(&[(
        ".gitlab-ci.yml",
        &format!("include: http://127.0.0.1:{port}/ci.yml\nlocal-job:\n  script: x\n"),
    )]);
    let p = resolve(&ctx(d.path())).unwrap();
    server.join().unwrap();
    assert_eq!(names(&p), ["remote-job", "local-job"]);

    // A closed port: a clear error, no hang.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let d = repo(&[(
        ".gitlab-ci.yml",
        &format!("include:\n  remote: http://127.0.0.1:{port}/x.yml\n"),
    )]);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "Remote file `http://127.0.0.1:{port}/x.yml` could not be fetched"
        )),
        "{e}"
    );
}

#[test]
fn spec_inputs_types_defaults_options_regex() {
    let tpl = r#"spec:
  inputs:
    stage:
      default: test
    env:
      options: [dev, prod]
    replicas:
      type: number
      default: 1
    verbose:
      type: boolean
      default: false
    flags:
      type: array
      default: ["-a"]
    name:
      regex: ^[a-z]+$
---
"deploy-$[[ inputs.env ]]":
  stage: $[[ inputs.stage ]]
  script:
    - echo $[[ inputs.name ]] $[[ inputs.replicas ]] $[[ inputs.verbose ]]
    - echo $[[ inputs.name | truncate(0,2) ]]
  variables:
    FLAGS: "flags=$[[ inputs.flags ]]"
  parallel: $[[ inputs.replicas ]]
"#;
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - local: tpl.yml\n    inputs: { env: prod, replicas: 2, name: web }\n",
        ),
        ("tpl.yml", tpl),
    ]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(names(&p), ["deploy-prod 1/2", "deploy-prod 2/2"]);
    let j = p.job("deploy-prod 1/2").unwrap();
    assert_eq!(j.stage, "test");
    assert_eq!(j.script(), ["echo web 2 false", "echo we"]);
    assert_eq!(j.variable("FLAGS").unwrap(), "flags=[\"-a\"]");

    for (inputs, msg) in [
        (
            "{ env: staging, name: web }",
            "`env` input: `staging` cannot be used because it is not in the list of allowed options",
        ),
        (
            "{ env: dev }",
            "`name` input: required value has not been provided",
        ),
        (
            "{ env: dev, name: Web1 }",
            "`name` input: provided value does not match required RegEx pattern",
        ),
        (
            "{ env: dev, name: web, replicas: many }",
            "`replicas` input: provided value is not a number",
        ),
        (
            "{ env: dev, name: web, bogus: 1 }",
            "unknown input arguments: bogus",
        ),
    ] {
        let d = repo(&[
            (
                ".gitlab-ci.yml",
                &format!("include:\n  - local: tpl.yml\n    inputs: {inputs}\n"),
            ),
            ("tpl.yml", tpl),
        ]);
        let e = resolve(&ctx(d.path())).unwrap_err();
        assert!(e.to_string().contains(msg), "{inputs}: {e}");
    }
}

#[test]
fn main_file_inputs_from_the_cli() {
    let d = repo(&[(
        ".gitlab-ci.yml",
        "spec:\n  inputs:\n    target:\n---\njob:\n  script: echo $[[ inputs.target ]]\n",
    )]);
    let mut c = ctx(d.path());
    c.inputs = vec![("target".into(), "arm64".into())];
    let p = resolve(&c).unwrap();
    assert_eq!(p.job("job").unwrap().script(), ["echo arm64"]);
}

#[test]
fn extends_multi_level_multiple_parents_and_deep_merge() {
    let p = pipeline(
        r#"
.base:
  image: ruby:3
  variables: { A: base, B: base }
  script: [echo base]
  cache: { key: k, paths: [a] }
.middle:
  extends: .base
  variables: { B: middle, C: middle }
  cache: { paths: [b] }
.other:
  tags: [docker]
  variables: { C: other }
job:
  extends: [.middle, .other]
  variables: { D: job }
"#,
    );
    let j = p.job("job").unwrap();
    assert_eq!(j.variable("A").unwrap(), "base");
    assert_eq!(j.variable("B").unwrap(), "middle");
    assert_eq!(j.variable("C").unwrap(), "other");
    assert_eq!(j.variable("D").unwrap(), "job");
    assert_eq!(j.tags, ["docker"]);
    assert_eq!(j.payload.cache[0].key, "k-non_protected");
    assert_eq!(j.payload.cache[0].paths, ["b"]);
    assert_eq!(names(&p), ["job"], "hidden jobs are not created");
}

#[test]
fn extends_errors() {
    let e = pipeline_err(".a:\n  extends: .b\n.b:\n  extends: .a\njob:\n  extends: .a\n  script: x\n");
    assert!(
        e.to_string()
            .contains("circular dependency detected in `extends`"),
        "{e}"
    );
    let e = pipeline_err("job:\n  extends: .nope\n  script: x\n");
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:2:12: job: unknown keys in `extends` (.nope)"),
        "{e}"
    );
}

#[test]
fn default_deprecated_globals_and_inherit() {
    let p = pipeline(
        r#"
image: old:1
before_script: [echo global-before]
default:
  image: new:2
  tags: [shared]
  retry: 2
  interruptible: true
variables:
  G1: one
  G2: two
plain:
  script: echo plain
own:
  image: own:3
  before_script: []
  script: echo own
no-defaults:
  inherit:
    default: false
    variables: [G2]
  script: echo none
some-defaults:
  inherit:
    default: [tags]
    variables: false
  script: echo some
"#,
    );
    let plain = p.job("plain").unwrap();
    assert_eq!(plain.payload.image.name, "new:2");
    assert_eq!(plain.script(), ["echo global-before", "echo plain"]);
    assert_eq!(plain.tags, ["shared"]);
    assert_eq!(plain.retry.max, 2);
    assert!(plain.interruptible);
    let own = p.job("own").unwrap();
    assert_eq!(own.payload.image.name, "own:3");
    assert_eq!(own.script(), ["echo own"]);
    let none = p.job("no-defaults").unwrap();
    assert!(none.payload.image.name.is_empty());
    assert!(none.tags.is_empty());
    assert_eq!(none.variable("G1"), None);
    assert_eq!(none.variable("G2").unwrap(), "two");
    let some = p.job("some-defaults").unwrap();
    assert_eq!(some.tags, ["shared"]);
    assert!(some.payload.image.name.is_empty());
    assert_eq!(some.variable("G1"), None);
}

#[test]
fn merged_config_shows_the_result() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "include: inc.yml\ndefault:\n  image: alpine\n.t:\n  script: [echo t]\njob:\n  extends: .t\n  after_script:\n    - !reference [.t, script]\n",
        ),
        ("inc.yml", "stages: [one, two]\n"),
    ]);
    let y = merged_config(&ctx(d.path())).unwrap();
    assert_eq!(
        y,
        "stages:\n- .pre\n- one\n- two\n- .post\njob:\n  script:\n  - echo t\n  after_script:\n  - - echo t\n  image: alpine\n"
    );
}

#[test]
fn project_include_of_this_project_reads_git() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - project: group/sub/proj\n    ref: main\n    file: [/ci/shared.yml]\nlocal:\n  script: x\n",
        ),
        ("ci/shared.yml", "shared:\n  script: echo shared\n"),
    ]);
    // The committed version is used, not the working tree.
    write(
        d.path(),
        &[("ci/shared.yml", "changed:\n  script: echo changed\n")],
    );
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(names(&p), ["shared", "local"]);
}

#[test]
fn include_count_limit() {
    let mut files: Vec<(String, String)> = (0..151)
        .map(|i| (format!("inc/f{i:03}.yml"), format!("j{i}:\n  script: x\n")))
        .collect();
    files.push((".gitlab-ci.yml".into(), "include: inc/*.yml\n".into()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let d = repo(&refs);
    let e = resolve(&ctx(d.path())).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:1:10: Maximum of 150 nested includes are allowed!"),
        "{e}"
    );
}

#[test]
fn include_paths_expand_predefined_and_cli_variables() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - local: ci/$CI_COMMIT_REF_NAME.yml\n  - local: ci/$TARGET.yml\n",
        ),
        ("ci/main.yml", "from-branch:\n  script: x\n"),
        ("ci/arm.yml", "from-cli:\n  script: x\n"),
    ]);
    let mut c = ctx(d.path());
    c.variables = vec![("TARGET".into(), "arm".into())];
    let p = resolve(&c).unwrap();
    assert_eq!(names(&p), ["from-branch", "from-cli"]);
}
