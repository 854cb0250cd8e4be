#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group 5: workflow:rules, rules, only/except, when.

use crate::support as common;

use std::time::Duration;

use common::*;
use oxrunner_pipeline::{AllowFailure, Expr, Need, When, resolve};

fn eval(e: &str) -> bool {
    let vars = [
        ("BRANCH", "main"),
        ("EMPTY", ""),
        ("MSG", "Release v1.2 [skip tests]"),
        ("PATTERN", "/^rel/i"),
        ("CI_X", "x"),
    ];
    Expr::parse(e)
        .unwrap()
        .eval(&|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
        .unwrap()
}

#[test]
fn expression_language() {
    assert!(eval("$BRANCH == \"main\""));
    assert!(eval("$BRANCH == 'main'"));
    assert!(eval("\"main\" == $BRANCH"));
    assert!(!eval("$BRANCH != \"main\""));
    assert!(eval("$BRANCH"));
    assert!(!eval("$EMPTY"), "empty is false");
    assert!(!eval("$UNDEFINED"));
    assert!(eval("$UNDEFINED == null"));
    assert!(!eval("$EMPTY == null"), "empty is not null");
    assert!(!eval("$UNDEFINED == \"\""));
    assert!(eval("$EMPTY == \"\""));
    assert!(eval("$MSG =~ /skip tests/"));
    assert!(!eval("$MSG =~ /^skip/"));
    assert!(eval("$MSG =~ /^release/i"));
    assert!(eval("$MSG !~ /^release/"));
    assert!(!eval("$UNDEFINED =~ /.*/"), "null never matches");
    assert!(eval("$UNDEFINED !~ /.*/"));
    assert!(eval("$MSG =~ $PATTERN"), "a variable on the right is a pattern");
    assert!(eval("$MSG =~ /v1\\.2/"));
    assert!(
        eval("$BRANCH == \"x\" || $CI_X == \"x\" && $BRANCH == \"main\""),
        "&& binds tighter than ||"
    );
    assert!(!eval(
        "($BRANCH == \"x\" || $CI_X == \"x\") && $BRANCH == \"dev\""
    ));
    assert!(eval("$MSG =~ /a\\/b/ || $BRANCH"));
    for bad in [
        "$BRANCH ==",
        "${BRANCH} == \"main\"",
        "$BRANCH == main",
        "($BRANCH",
        "$MSG =~ \"x\"",
        "$MSG =~ /[/",
    ] {
        assert!(Expr::parse(bad).is_err(), "{bad}");
    }
}

/// GitLab derives the default `allow_failure` from the job's own `when:`; rules change it only when they set it.
#[test]
fn allow_failure_default_follows_the_jobs_own_when() {
    let p = pipeline(
        r#"
manual-both:
  script: echo
  when: manual
  rules:
    - when: manual
manual-then-on-success:
  script: echo
  when: manual
  rules:
    - when: on_success
manual-rule-sets-it:
  script: echo
  when: manual
  rules:
    - when: manual
      allow_failure: false
rule-only:
  script: echo
  rules:
    - when: manual
"#,
    );
    let af = |j: &str| p.job(j).unwrap().allow_failure.clone();
    assert_eq!(af("manual-both"), AllowFailure::Yes);
    assert_eq!(af("manual-then-on-success"), AllowFailure::Yes);
    assert_eq!(af("manual-rule-sets-it"), AllowFailure::No);
    assert_eq!(af("rule-only"), AllowFailure::No);
    assert!(!p.job("manual-both").unwrap().blocks_pipeline());
    assert!(p.job("rule-only").unwrap().blocks_pipeline());
}

#[test]
fn rules_when_allow_failure_variables_needs() {
    let p = pipeline(
        r#"
build:
  script: echo
manual-job:
  script: echo
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
      when: manual
later:
  script: echo
  rules:
    - when: delayed
      start_in: 30 minutes
soft:
  script: echo
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      allow_failure: true
      variables: { MODE: rules }
      needs: [build]
    - when: never
codes:
  script: echo
  allow_failure:
    exit_codes: [3, 4]
excluded:
  script: echo
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
      when: never
    - when: always
no-match:
  script: echo
  rules:
    - if: $CI_COMMIT_TAG
classic-manual:
  script: echo
  when: manual
"#,
    );
    assert_eq!(
        names(&p),
        ["build", "manual-job", "later", "soft", "codes", "classic-manual"]
    );
    let m = p.job("manual-job").unwrap();
    assert_eq!(m.when, When::Manual);
    assert_eq!(m.allow_failure, AllowFailure::No, "manual from rules is blocking");
    assert_eq!(m.variable("CI_JOB_MANUAL").unwrap(), "true");
    assert_eq!(p.job("classic-manual").unwrap().allow_failure, AllowFailure::Yes);
    assert_eq!(
        p.job("later").unwrap().when,
        When::Delayed {
            start_in: Duration::from_secs(1800)
        }
    );
    let soft = p.job("soft").unwrap();
    assert_eq!(soft.allow_failure, AllowFailure::Yes);
    assert_eq!(soft.variable("MODE").unwrap(), "rules");
    assert_eq!(
        soft.needs,
        Some(vec![Need {
            job: "build".into(),
            artifacts: true,
            optional: false
        }])
    );
    assert_eq!(
        p.job("codes").unwrap().allow_failure,
        AllowFailure::ExitCodes(vec![3, 4])
    );
}

#[test]
fn workflow_rules_filter_the_pipeline() {
    let p = pipeline("workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\njob:\n  script: echo\n");
    assert!(p.jobs.is_empty());
    assert!(
        p.warnings
            .iter()
            .any(|w| w.message == "Pipeline filtered out by workflow rules.")
    );
    let p = pipeline(
        "workflow:\n  name: 'Pipeline for $CI_COMMIT_REF_NAME'\n  rules:\n    - when: always\njob:\n  script: echo\n",
    );
    assert_eq!(p.name.as_deref(), Some("Pipeline for main"));
    assert_eq!(
        p.job("job").unwrap().variable("CI_PIPELINE_NAME").unwrap(),
        "Pipeline for main"
    );
}

#[test]
fn changes_and_exists() {
    let yaml = r#"
docs:
  script: echo
  rules:
    - changes: ["docs/**/*.md"]
code:
  script: echo
  rules:
    - changes:
        paths: [src/*.rs]
        compare_to: refs/heads/main
has-dockerfile:
  script: echo
  rules:
    - exists: [Dockerfile]
has-cargo:
  script: echo
  rules:
    - exists:
        paths: ["**/Cargo.toml"]
only-changes:
  script: echo
  only:
    changes: [src/**/*]
"#;
    let d = repo(&[
        (".gitlab-ci.yml", yaml),
        ("src/main.rs", "fn main() {}\n"),
        ("crate/Cargo.toml", ""),
    ]);
    git(d.path(), &["checkout", "-q", "-b", "feature"]);
    write(d.path(), &[("docs/guide/intro.md", "# hi\n")]);
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "docs"]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(names(&p), ["docs", "has-cargo"]);

    write(d.path(), &[("src/lib.rs", "\n")]);
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "code"]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(names(&p), ["docs", "code", "has-cargo", "only-changes"]);

    // Without a diff base (e.g. scheduled pipelines) GitLab treats `changes` as true.
    let mut c = ctx(d.path());
    c.source = oxrunner_pipeline::PipelineSource::Web;
    c.changed_files = None;
    let p = resolve(&c).unwrap();
    assert!(p.job("docs").is_some());

    let mut c = ctx(d.path());
    c.changed_files = Some(vec!["README.md".into()]);
    let p = resolve(&c).unwrap();
    assert_eq!(
        names(&p),
        ["code", "has-cargo"],
        "compare_to still diffs against main"
    );
}

#[test]
fn only_except_refs_and_variables() {
    let p = pipeline(
        r#"
variables:
  DEPLOY: "yes"
on-main:
  script: echo
  only: [main]
on-regex:
  script: echo
  only: ["/^ma/"]
except-main:
  script: echo
  except: [main]
only-vars:
  script: echo
  only:
    refs: [branches]
    variables: [$DEPLOY == "yes"]
except-vars:
  script: echo
  except:
    variables: [$DEPLOY]
k8s:
  script: echo
  only:
    kubernetes: active
"#,
    );
    assert_eq!(names(&p), ["on-main", "on-regex", "only-vars"]);
}

#[test]
fn rule_errors_have_positions() {
    let e = pipeline_err("job:\n  script: echo\n  rules:\n    - if: $A = \"x\"\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:4:11: jobs:job:rules:rule:if invalid expression syntax: $A = \"x\""
    );
    let e = pipeline_err("job:\n  script: echo\n  rules:\n    - iff: $A\n");
    assert!(
        e.to_string()
            .starts_with(".gitlab-ci.yml:4:7: jobs:job:rules:rule config contains unknown keys: iff"),
        "{e}"
    );
    let e = pipeline_err("job:\n  script: echo\n  when: delayed\n");
    assert!(
        e.to_string()
            .contains("start in should be specified for delayed job"),
        "{e}"
    );
    let e = pipeline_err("job:\n  script: echo\n  only: [main]\n  rules:\n    - when: always\n");
    assert_eq!(
        e.to_string(),
        ".gitlab-ci.yml:2:3: jobs:job config key may not be used with `rules`: only"
    );
}

#[test]
fn reference_rules_are_flattened() {
    let p = pipeline(
        r#"
.only-main:
  rules:
    - if: $CI_COMMIT_BRANCH != "main"
      when: never
    - if: $CI_COMMIT_MESSAGE =~ /skip-me/
      when: never
a:
  script: x
  rules:
    - !reference [.only-main, rules]
    - when: manual
b:
  script: x
  rules:
    - !reference [.only-main, rules]
    - if: $CI_COMMIT_TAG
"#,
    );
    assert_eq!(names(&p), ["a"]);
    assert_eq!(p.job("a").unwrap().when, When::Manual);
}
