//! Places where a local pipeline once differed from GitLab (issue 16, items 2–8), each with its own small
//! pipeline: artifacts from `needs` + `dependencies`, optional needs that do not exist, `include:local`
//! wildcards, `cache:key:files`/`files_commits`, input interpolation limits and messages, coverage, blocking
//! manual jobs and dynamic child pipelines.

use crate::support as common;

use common::*;
use oxrunner_pipeline::{AllowFailure, ArtifactFile, When, extract_coverage, resolve};
use sha1::{Digest, Sha1};

fn deps(p: &oxrunner_pipeline::Pipeline, job: &str) -> Vec<String> {
    p.job(job)
        .unwrap()
        .payload
        .dependencies
        .iter()
        .map(|d| d.name.clone())
        .collect()
}

#[test]
fn artifacts_only_when_needs_and_dependencies_both_allow() {
    let p = pipeline(
        r#"
a:
  stage: build
  script: x
b:
  stage: build
  script: x
no-artifacts:
  stage: test
  needs: [{job: a, artifacts: false}]
  dependencies: [a]
  script: x
mixed:
  stage: test
  needs: [{job: a, artifacts: false}, b]
  dependencies: [a, b]
  script: x
both:
  stage: test
  needs: [a]
  dependencies: [a]
  script: x
"#,
    );
    assert!(
        deps(&p, "no-artifacts").is_empty(),
        "{:?}",
        deps(&p, "no-artifacts")
    );
    assert_eq!(deps(&p, "mixed"), ["b"]);
    assert_eq!(deps(&p, "both"), ["a"]);
    // What the job lists stays what the user wrote.
    assert_eq!(
        p.job("no-artifacts").unwrap().dependencies.as_deref(),
        Some(&["a".to_string()][..])
    );
}

#[test]
fn optional_needs_that_do_not_exist_are_dropped() {
    let p = pipeline(
        r#"
build:
  stage: build
  script: x
  parallel:
    matrix:
      - OS: [linux]
test:
  stage: test
  needs:
    - job: build
      parallel:
        matrix:
          - OS: [windows]
      optional: true
    - job: never-defined
      optional: true
    - job: build
      parallel:
        matrix:
          - OS: [linux]
  script: x
"#,
    );
    let needs: Vec<String> = p
        .job("test")
        .unwrap()
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.job.clone())
        .collect();
    assert_eq!(needs, ["build: [linux]"]);
    // Not optional: still GitLab's error.
    let e = pipeline_err("a:\n  script: x\n  needs: [ghost]\n");
    assert!(e.to_string().contains("a job: undefined need: ghost"), "{e}");
}

fn included_jobs(pattern: &str) -> Vec<String> {
    let ci = format!("include:\n  - local: '{pattern}'\nroot:\n  script: x\n");
    let d = repo(&[
        (".gitlab-ci.yml", ci.as_str()),
        ("configs/top.yml", "top:\n  script: x\n"),
        ("configs/sub/deep.yml", "deep:\n  script: x\n"),
        ("configs/sub/more/deeper.yml", "deeper:\n  script: x\n"),
    ]);
    // What `oxrunner exec` keeps in `.oxrunner/` (ignored by git) is not part of the repository.
    write(
        d.path(),
        &[
            (".oxrunner/.gitignore", "*\n"),
            (".oxrunner/builds/job/configs/copy.yml", "copy:\n  script: x\n"),
        ],
    );
    let p = resolve(&ctx(d.path())).unwrap();
    let mut n = names(&p);
    n.retain(|j| j != "root");
    n.sort();
    n
}

#[test]
fn include_local_wildcards_match_as_gitlab() {
    assert_eq!(included_jobs("configs/*.yml"), ["top"]);
    assert_eq!(included_jobs("configs/**.yml"), ["deep", "deeper", "top"]);
    assert_eq!(included_jobs("configs/**/*.yml"), ["deep", "deeper"]);
    assert_eq!(included_jobs("configs/*/*.yml"), ["deep"]);
    assert_eq!(included_jobs("**/*.yml"), ["deep", "deeper", "top"]);
    assert_eq!(included_jobs("**configs/*.yml"), ["top"]);
}

fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

fn git_out(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn cache_key_files_hash_contents_and_files_commits_hash_commits() {
    let ci = r#"
by-content:
  script: x
  cache:
    key:
      files: [a.lock, /b.lock]
      prefix: deps
    paths: [t/]
by-commit:
  script: x
  cache:
    key:
      files_commits: [a.lock]
    paths: [t/]
by-glob:
  script: x
  cache:
    key:
      files: ["*.lock"]
    paths: [t/]
missing:
  script: x
  cache:
    key:
      files: [nowhere.lock]
      prefix: p
    paths: [t/]
"#;
    let d = repo(&[(".gitlab-ci.yml", ci), ("a.lock", "one\n"), ("b.lock", "two\n")]);
    let p = resolve(&ctx(d.path())).unwrap();
    let key = |j: &str| p.job(j).unwrap().payload.cache[0].key.clone();
    let mut blobs = [
        git_out(d.path(), &["rev-parse", "HEAD:a.lock"]),
        git_out(d.path(), &["rev-parse", "HEAD:b.lock"]),
    ];
    blobs.sort();
    let content = sha1_hex(&blobs.join("-"));
    assert_eq!(key("by-content"), format!("deps-{content}-non_protected"));
    assert_eq!(key("by-glob"), format!("0_*-{content}-non_protected"));
    let commit = git_out(d.path(), &["rev-list", "-1", "HEAD", "--", "a.lock"]);
    assert_eq!(key("by-commit"), format!("0-{}-non_protected", sha1_hex(&commit)));
    assert_eq!(key("missing"), "p-default-non_protected");
    let notice = p
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("nowhere.lock"))
        .unwrap_or_else(|| panic!("no notice for the missing file: {:?}", p.warnings));
    assert!(notice.contains("`default`"), "{notice}");
    assert!(notice.contains("missing"), "{notice}");
}

/// Without `key:prefix` GitLab prefixes a files-based key with the cache's index in the job's list and, for
/// `files`, each entry's name up to its first dot; an explicit empty prefix gives the bare digest.
#[test]
fn cache_key_files_default_prefix_is_the_cache_index_and_file_stems() {
    let ci = r#"
two:
  script: x
  cache:
    - key:
        files: [a.lock]
      paths: [t/]
    - key:
        files: [a.lock, /b.lock]
      paths: [u/]
    - key:
        files_commits: [a.lock]
      paths: [v/]
    - key:
        files: [gone.lock]
      paths: [w/]
empty-prefix:
  script: x
  cache:
    key:
      files: [a.lock]
      prefix: ""
    paths: [t/]
"#;
    let d = repo(&[(".gitlab-ci.yml", ci), ("a.lock", "one\n"), ("b.lock", "two\n")]);
    let p = resolve(&ctx(d.path())).unwrap();
    let keys: Vec<String> = p
        .job("two")
        .unwrap()
        .payload
        .cache
        .iter()
        .map(|c| c.key.clone())
        .collect();
    let a = git_out(d.path(), &["rev-parse", "HEAD:a.lock"]);
    let mut ab = [a.clone(), git_out(d.path(), &["rev-parse", "HEAD:b.lock"])];
    ab.sort();
    let commit = git_out(d.path(), &["rev-list", "-1", "HEAD", "--", "a.lock"]);
    assert_eq!(
        keys,
        [
            format!("0_a-{}-non_protected", sha1_hex(&a)),
            format!("1_a_/b-{}-non_protected", sha1_hex(&ab.join("-"))),
            format!("2-{}-non_protected", sha1_hex(&commit)),
            "3_gone-default-non_protected".to_string(),
        ]
    );
    let bare = &p.job("empty-prefix").unwrap().payload.cache[0].key;
    assert_eq!(bare, &format!("{}-non_protected", sha1_hex(&a)));
}

fn with_inputs(header: &str, body: &str) -> String {
    format!("spec:\n  inputs:\n{header}---\n{body}")
}

fn include_err(component: &str, with: &str) -> String {
    let ci = format!("include:\n  - local: c.yml\n    inputs:\n{with}root:\n  script: x\n");
    let d = repo(&[(".gitlab-ci.yml", ci.as_str()), ("c.yml", component)]);
    match resolve(&ctx(d.path())) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn interpolation_limits_and_messages() {
    let four = with_inputs(
        "    name: {default: abcdefgh}\n",
        "job:\n  script: echo $[[ inputs.name | truncate(0,7) | truncate(0,6) | truncate(0,5) | truncate(0,4) ]]\n",
    );
    let e = include_err(&four, "      name: abcdefgh\n");
    assert!(e.contains("too many functions in interpolation block"), "{e}");
    let three = with_inputs(
        "    name: {default: abcdefgh}\n",
        "job:\n  script: echo $[[ inputs.name | truncate(0,7) | truncate(0,6) | truncate(0,5) ]]\n",
    );
    let ci = "include:\n  - local: c.yml\nroot:\n  script: x\n";
    let d = repo(&[(".gitlab-ci.yml", ci), ("c.yml", three.as_str())]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert_eq!(p.job("job").unwrap().script(), ["echo abcde"]);

    let bad_regex = with_inputs(
        "    v: {regex: '^(unclosed$'}\n",
        "job:\n  script: echo $[[ inputs.v ]]\n",
    );
    let e = include_err(&bad_regex, "      v: anything\n");
    assert!(e.contains("`v` input: invalid regular expression"), "{e}");

    let array = with_inputs(
        "    envs: {type: array, options: [dev, staging, production]}\n",
        "job:\n  script: echo $[[ inputs.envs ]]\n",
    );
    let e = include_err(&array, "      envs: [dev, qa, prod]\n");
    assert!(
        e.contains("`envs` input: qa, prod cannot be used because it is not in the list of allowed options"),
        "{e}"
    );
    let ok = "include:\n  - local: c.yml\n    inputs:\n      envs: [dev, production]\nroot:\n  script: x\n";
    let d = repo(&[(".gitlab-ci.yml", ok), ("c.yml", array.as_str())]);
    assert!(resolve(&ctx(d.path())).is_ok());
}

#[test]
fn expand_vars_expands_the_variables_include_may_use() {
    let comp = with_inputs(
        "    where: {default: x}\n",
        "job:\n  script: echo $[[ inputs.where | expand_vars ]]\n",
    );
    let ci = "include:\n  - local: c.yml\n    inputs:\n      where: '$CI_COMMIT_REF_NAME/${FROM_CLI}/$UNKNOWN'\nroot:\n  script: x\n";
    let d = repo(&[(".gitlab-ci.yml", ci), ("c.yml", comp.as_str())]);
    let mut c = ctx(d.path());
    c.variables.push(("FROM_CLI".into(), "cli".into()));
    let p = resolve(&c).unwrap();
    // Variables that do not exist stay as written (GitLab's `expand_existing`).
    assert_eq!(p.job("job").unwrap().script(), ["echo main/cli/$UNKNOWN"]);
}

/// GitLab chomps each line before matching, so the documented pytest-cov regex (ending in `$`) works on `\n`
/// and `\r\n` logs; with `FF_TIMESTAMPS` the 32-character header is cut from each line first, so `^` anchors
/// at the job's own output.
#[test]
fn coverage_regex_sees_lines_without_endings_or_timestamps() {
    let pytest_cov = "/TOTAL.*? (100(?:\\.0+)?\\%|[1-9]?\\d(?:\\.\\d+)?\\%)$/";
    let log = "Name    Stmts   Miss  Cover\nTOTAL      40      3    92.50%\nDone\n";
    assert_eq!(
        extract_coverage(pytest_cov, log.as_bytes()).as_deref(),
        Some("92.50")
    );
    let crlf = log.replace('\n', "\r\n");
    assert_eq!(
        extract_coverage(pytest_cov, crlf.as_bytes()).as_deref(),
        Some("92.50")
    );
    let stamped = "2026-12-07T02:00:00.123456Z 00O Running with oxrunner\n\
                   2026-12-07T02:00:01.000001Z 01O Coverage: 71%\n\
                   2026-12-07T02:00:01.000002Z 01O+ trailing part\n";
    assert_eq!(
        extract_coverage("/^Coverage: (\\d+)%$/", stamped.as_bytes()).as_deref(),
        Some("71")
    );
    // Without a header on the first line nothing is cut.
    let plain = "Coverage: 64%\n";
    assert_eq!(
        extract_coverage("/^Coverage: (\\d+)%$/", plain.as_bytes()).as_deref(),
        Some("64")
    );
}

#[test]
fn coverage_is_read_from_the_log_as_gitlab_does() {
    let log = "Running tests\nCoverage: 12.5%\nlines......: 87.25% (100 of 114)\nTOTAL 3 files\n";
    assert_eq!(
        extract_coverage("/Coverage: \\d+\\.\\d+%/", log.as_bytes()).as_deref(),
        Some("12.5")
    );
    // The last line that matches wins; its last capture group is the value.
    assert_eq!(
        extract_coverage("/(?:Coverage:|lines\\.+:) (\\d+\\.\\d+)%/", log.as_bytes()).as_deref(),
        Some("87.25")
    );
    // A match without a number is passed over for an earlier line.
    assert_eq!(
        extract_coverage("/TOTAL|Coverage: [0-9.]+/", log.as_bytes()).as_deref(),
        Some("12.5")
    );
    assert_eq!(extract_coverage("/nothing here/", log.as_bytes()), None);
    let p = pipeline("t:\n  script: x\n  coverage: '/Coverage: \\d+\\.\\d+%/'\n");
    assert_eq!(
        p.job("t").unwrap().coverage.as_deref(),
        Some("/Coverage: \\d+\\.\\d+%/")
    );
    let json = oxrunner_pipeline::render_list_json(&p);
    assert!(json.contains("\"coverage\""), "{json}");
}

#[test]
fn manual_from_rules_blocks_and_plain_manual_is_optional() {
    let p = pipeline(
        r#"
gate:
  stage: build
  script: x
  rules:
    - when: manual
optional:
  stage: build
  script: x
  when: manual
"#,
    );
    let gate = p.job("gate").unwrap();
    assert_eq!(gate.when, When::Manual);
    assert_eq!(gate.allow_failure, AllowFailure::No);
    assert!(gate.blocks_pipeline());
    let optional = p.job("optional").unwrap();
    assert_eq!(optional.allow_failure, AllowFailure::Yes);
    assert!(!optional.blocks_pipeline());
}

#[test]
fn dynamic_child_pipeline_is_resolved_after_its_generator() {
    let ci = r#"
generate:
  stage: build
  script: echo
  artifacts:
    paths: [child.yml]
run-child:
  stage: test
  needs: [generate]
  trigger:
    include:
      - artifact: child.yml
        job: generate
    strategy: depend
"#;
    let d = repo(&[(".gitlab-ci.yml", ci)]);
    let p = resolve(&ctx(d.path())).unwrap();
    let t = p.job("run-child").unwrap().trigger.as_ref().unwrap();
    assert!(t.pipeline.is_none());
    let dynamic = t.dynamic.as_ref().expect("a dynamic child");
    assert_eq!(
        dynamic.files,
        [ArtifactFile {
            job: "generate".into(),
            artifact: "child.yml".into()
        }]
    );
    let child = dynamic
        .resolve(&["stages: [a]\nfrom-artifact:\n  stage: a\n  script: echo $PARENT_VAR\n".into()])
        .unwrap();
    assert_eq!(names(&child), ["from-artifact"]);
    assert_eq!(
        child
            .job("from-artifact")
            .unwrap()
            .variable("CI_PIPELINE_SOURCE")
            .as_deref(),
        Some("parent_pipeline")
    );
    // GitLab only finds out when it creates the child pipeline: the parent resolves, with a warning here.
    let d = repo(&[(
        ".gitlab-ci.yml",
        "child:\n  trigger:\n    include:\n      - artifact: c.yml\n        job: nowhere\n",
    )]);
    let p = resolve(&ctx(d.path())).unwrap();
    assert!(
        p.warnings.iter().any(|w| w.to_string().contains("`nowhere`")),
        "{:?}",
        p.warnings
    );
}

/// GitLab's own jsonnet project template mixes `local:` and `artifact:` in one `trigger:include` list: the child
/// pipeline is the merge of all entries, in list order (a later file's keys win).
#[test]
fn dynamic_child_merges_artifact_with_other_includes() {
    let ci = r#"
generate:
  stage: build
  script: echo
  artifacts:
    paths: [gen/child.yml]
run-child:
  stage: test
  needs: [generate]
  trigger:
    include:
      - local: ci/base.yml
      - artifact: ./gen/child.yml
        job: generate
      - local: ci/last.yml
"#;
    let base = "stages: [a, b]\nvariables:\n  FROM: base\n  ORDER: base\nfrom-local:\n  stage: a\n  script: echo local\n";
    let last = "variables:\n  ORDER: last\n";
    let d = repo(&[
        (".gitlab-ci.yml", ci),
        ("ci/base.yml", base),
        ("ci/last.yml", last),
    ]);
    let p = resolve(&ctx(d.path())).unwrap();
    let t = p.job("run-child").unwrap().trigger.as_ref().unwrap();
    assert!(t.pipeline.is_none(), "the child waits for the generator");
    let dynamic = t.dynamic.as_ref().expect("a dynamic child");
    assert_eq!(
        dynamic.files,
        [ArtifactFile {
            job: "generate".into(),
            artifact: "gen/child.yml".into()
        }]
    );
    let generated = "variables:\n  ORDER: artifact\n  GEN: made\nfrom-artifact:\n  stage: b\n  script: echo $FROM $ORDER\n";
    let child = dynamic.resolve(&[generated.into()]).unwrap();
    assert_eq!(names(&child), ["from-local", "from-artifact"]);
    let job = child.job("from-artifact").unwrap();
    assert_eq!(job.variable("FROM").as_deref(), Some("base"));
    assert_eq!(job.variable("GEN").as_deref(), Some("made"));
    assert_eq!(job.variable("ORDER").as_deref(), Some("last"));

    // An error in the generated file names the file, as the lone-artifact form does.
    let err = dynamic
        .resolve(&["from-artifact: [\n".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("gen/child.yml"), "{err}");
}

/// GitLab appends `-non_protected` to an `unprotect: true` cache's key and to its fallback keys (never the bare
/// key), so exec's objects are the ones CI jobs on unprotected refs read and write.
#[test]
fn unprotect_caches_and_fallback_keys_carry_the_non_protected_suffix() {
    let ci = r#"
shared:
  script: x
  cache:
    - key: deps
      unprotect: true
      fallback_keys: [main-deps]
      paths: [t/]
    - key: plain
      fallback_keys: [older]
      paths: [u/]
"#;
    let d = repo(&[(".gitlab-ci.yml", ci)]);
    let p = resolve(&ctx(d.path())).unwrap();
    let caches = &p.job("shared").unwrap().payload.cache;
    assert_eq!(caches[0].key, "deps-non_protected");
    assert_eq!(caches[0].fallback_keys, ["main-deps-non_protected"]);
    assert_eq!(caches[1].key, "plain-non_protected");
    assert_eq!(caches[1].fallback_keys, ["older-non_protected"]);
}
