#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 11 item 8: `exec --list` applies GitLab's limits instead of doing unbounded work on a CI file.

use crate::support as common;

use common::*;

#[test]
fn a_file_over_max_yaml_size_bytes_is_refused_with_gitlabs_message() {
    let mut yaml = String::from("job:\n  script: echo hi\n");
    // A comment costs GitLab nothing to parse but still counts against the file size.
    yaml.push_str(&format!("# {}\n", "x".repeat(2 * 1024 * 1024)));
    let e = pipeline_err(&yaml).to_string();
    assert!(
        e.contains(".gitlab-ci.yml:1:1: The parsed YAML is too big"),
        "{e}"
    );
    assert!(e.contains("max_yaml_size_bytes"), "{e}");
}

#[test]
fn an_included_file_over_the_limit_is_refused_at_its_include() {
    let d = repo(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - local: big.yml\njob:\n  script: echo hi\n",
        ),
        ("big.yml", &format!("# {}\n", "y".repeat(3 * 1024 * 1024))),
    ]);
    let e = oxrunner_pipeline::resolve(&ctx(d.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("The parsed YAML is too big"), "{e}");
    assert!(
        e.starts_with(".gitlab-ci.yml:2:"),
        "not located at the include: {e}"
    );
}

/// Each level references the one before 16 times: 16 bytes at A, 16 MiB at F.
fn expansion_bomb() -> String {
    let mut yaml = String::from("variables:\n  A: \"xxxxxxxxxxxxxxxx\"\n");
    for (prev, name) in ["A", "B", "C", "D", "E"].iter().zip(["B", "C", "D", "E", "F"]) {
        yaml.push_str(&format!("  {name}: \"{}\"\n", format!("${prev}").repeat(16)));
    }
    yaml
}

#[test]
fn a_nested_variable_bomb_is_refused_at_the_variable_that_grows_too_big() {
    let yaml = expansion_bomb() + "job:\n  script: echo $F\n";
    let e = pipeline_err(&yaml).to_string();
    assert!(
        e.contains("variable `F` expands to more than 1048576 bytes"),
        "{e}"
    );
    assert!(e.starts_with(".gitlab-ci.yml:7:"), "not located at F: {e}");
    assert!(e.contains("hint:"), "{e}");
}

#[test]
fn many_copies_of_one_long_value_are_bounded_too() {
    // E is exactly 1 MiB (allowed); twenty variables holding it pass the per-table budget.
    let mut yaml: String = expansion_bomb()
        .lines()
        .take(6)
        .map(|l| format!("{l}\n"))
        .collect();
    for i in 0..20 {
        yaml.push_str(&format!("  COPY{i}: \"$E\"\n"));
    }
    yaml.push_str("job:\n  script: echo $COPY0\n");
    let e = pipeline_err(&yaml).to_string();
    assert!(e.contains("expands to more than"), "{e}");
}

#[test]
fn ordinary_nesting_still_expands() {
    // `rules:if` sees GitLab's (nested) expansion.
    let p = pipeline(
        "variables:\n  A: a\n  B: \"$A-$A\"\n  C: \"${B}/$B\"\njob:\n  script: echo\n  rules:\n    - if: '$C == \"a-a/a-a\"'\n",
    );
    assert_eq!(names(&p), ["job"]);
}

#[test]
fn more_jobs_than_gitlab_allows_are_refused_with_its_message() {
    // 11 jobs of parallel: 200 each: 2200 jobs, from a file of a dozen lines.
    let mut yaml = String::new();
    for i in 0..11 {
        yaml.push_str(&format!("job{i}:\n  script: echo\n  parallel: 200\n"));
    }
    let e = pipeline_err(&yaml).to_string();
    assert!(
        e.contains("The number of jobs has exceeded the limit of 2000. Try splitting the configuration with parent-child-pipelines"),
        "{e}"
    );
    assert!(
        e.starts_with(".gitlab-ci.yml:32:"),
        "not located at the job that passed the limit: {e}"
    );
    // 2000 exactly is fine.
    let mut yaml = String::new();
    for i in 0..10 {
        yaml.push_str(&format!("job{i}:\n  script: echo\n  parallel: 200\n"));
    }
    assert_eq!(pipeline(&yaml).jobs.len(), 2000);
}

#[test]
fn nesting_past_max_yaml_depth_gets_gitlabs_message() {
    let yaml = format!(
        "job:\n  script: echo\n  variables:\n    X: {}1{}\n",
        "[".repeat(120),
        "]".repeat(120)
    );
    let e = pipeline_err(&yaml).to_string();
    assert!(e.contains("The parsed YAML is too big"), "{e}");
    assert!(e.contains("max_yaml_depth"), "{e}");
}
