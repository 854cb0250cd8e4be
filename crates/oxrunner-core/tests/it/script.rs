#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Script rendering and variable expansion, checked by reading the scripts and by running them in bash and sh.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use oxrunner_core::script::ScriptContext;
use oxrunner_core::script::git::{GitSettings, SourcesScript};
use oxrunner_core::{JobPlan, RunnerContext, Sources, Step, Variable, Variables};

fn run_in(shell: &str, script: &str, dir: &Path) -> (i32, String) {
    let mut child = Command::new(shell)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8(out.stdout).unwrap();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

const TRICKY: &str = "it's \"quoted\" $HOME `date` \\n back\\slash\nsecond line ünï€ $$";

fn context_parts(root: &Path) -> (JobPlan, RunnerContext, Variables) {
    let plan = JobPlan {
        project_path: "g/p".into(),
        ..JobPlan::default()
    };
    let ctx = RunnerContext {
        pre_build_script: Some("echo pre-build".into()),
        post_build_script: Some("echo post-build".into()),
        builds_dir: root.to_path_buf(),
        ..RunnerContext::default()
    };
    let mut raw = Variable::new("TRICKY", TRICKY);
    raw.raw = true;
    let vars: Variables = vec![
        raw,
        Variable::new("FILE", TRICKY).into_file(),
        Variable::new("not-a-valid-name", "skipped"),
    ]
    .into();
    (plan, ctx, vars)
}

#[test]
fn exports_survive_any_value_in_bash_and_sh() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("g/p");
    std::fs::create_dir_all(&project).unwrap();
    let tmp = dir.path().join("g/p.tmp");
    let (plan, ctx, vars) = context_parts(dir.path());
    let sc = ScriptContext {
        plan: &plan,
        ctx: &ctx,
        vars: &vars,
        project_dir: &project,
        tmp_dir: &tmp,
        xtrace: false,
    };
    let step = Step {
        name: "script".into(),
        script: vec![
            "printf '%s|' \"$TRICKY\"".into(),
            "printf '%s|' \"$(cat \"$FILE\")\"".into(),
            "echo; pwd".into(),
            "read -r line || echo stdin-is-dev-null".into(),
        ],
        ..Step::default()
    };
    let script = sc.user_step(&step);
    for shell in ["bash", "sh"] {
        let (code, out) = run_in(shell, &script, dir.path());
        assert_eq!(code, 0, "{shell}: {out}");
        assert_eq!(out.matches(&format!("{TRICKY}|")).count(), 2, "{shell}: {out}");
        assert!(
            out.contains(&format!("\n{}\n", project.display())),
            "{shell}: {out}"
        );
        assert!(out.contains("stdin-is-dev-null"), "{shell}: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "\x1b[32;1m$ echo pre-build\x1b[0;m", "{shell}");
        assert_eq!(lines[1], "pre-build");
        assert!(out.contains("\x1b[32;1m$ echo post-build\x1b[0;m\npost-build\n"));
        assert_eq!(std::fs::read_to_string(tmp.join("FILE")).unwrap(), TRICKY);
    }
}

#[test]
fn wrapper_shape_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("g/p");
    std::fs::create_dir_all(&project).unwrap();
    let tmp = dir.path().join("g/p.tmp");
    let (plan, ctx, vars) = context_parts(dir.path());
    let sc = ScriptContext {
        plan: &plan,
        ctx: &ctx,
        vars: &vars,
        project_dir: &project,
        tmp_dir: &tmp,
        xtrace: true,
    };
    let step = Step {
        name: "script".into(),
        script: vec!["echo one".into(), "false | cat".into(), "echo never".into()],
        ..Step::default()
    };
    let script = sc.user_step(&step);
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[0], "trap 'exit 1' TERM");
    assert!(lines.contains(&"set -o errexit"));
    assert!(lines.contains(&"set +o noclobber"));
    assert!(lines.contains(&"set -o xtrace"));
    assert!(script.contains("(trap 'exit 1' TERM; eval '"));
    assert!(script.ends_with(") < /dev/null\nexit 0\n"));
    // pipefail makes a failing pipeline stop the step (bash only: dash has no pipefail).
    let (code, out) = run_in("bash", &script, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(!out.lines().any(|l| l == "never"), "{out}");
    let step = Step {
        name: "script".into(),
        script: vec!["echo one".into(), "(exit 7)".into(), "echo never".into()],
        ..Step::default()
    };
    let script = sc.user_step(&step);
    for shell in ["bash", "sh"] {
        let (code, out) = run_in(shell, &script, dir.path());
        assert_eq!(code, 7, "{shell}: {out}");
        assert!(out.contains("one\n"));
        // xtrace echoes the eval'd body, so look for the command's own output line only.
        assert!(!out.lines().any(|l| l == "never"), "{shell}: {out}");
    }
}

#[test]
fn get_sources_keeps_credentials_out_of_remote_url() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("g/p");
    let tmp = dir.path().join("g/p.tmp");
    let plan = JobPlan {
        project_path: "g/p".into(),
        sources: Sources {
            repo_url: "https://gitlab-ci-token:sekrit-token@127.0.0.1:1/g/p.git".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            ref_name: "main".into(),
            refspecs: vec!["+refs/heads/*:refs/origin/heads/*".into()],
            depth: 5,
            ..Sources::default()
        },
        ..JobPlan::default()
    };
    let ctx = RunnerContext {
        version: "1.2.3".into(),
        ..RunnerContext::default()
    };
    let settings = GitSettings::resolve(&plan, &Variables::new());
    let script = SourcesScript {
        client_cert_paths: None,
        plan: &plan,
        ctx: &ctx,
        settings: &settings,
        project_dir: &project,
        tmp_dir: &tmp,
        ca_file_path: Some(tmp.join("CI_SERVER_TLS_CA_FILE")),
    }
    .render();
    assert!(script.contains("git remote add origin 'https://127.0.0.1:1/g/p.git'"));
    assert!(script.contains(
        "[url \"https://gitlab-ci-token:sekrit-token@127.0.0.1:1\"]\n\tinsteadOf = \"https://127.0.0.1:1\""
    ));
    assert!(script.contains("[http \"https://127.0.0.1:1\"]\n\tsslCAInfo = "));
    assert!(script.contains("fetch origin --no-recurse-submodules '+refs/heads/*:refs/origin/heads/*' --depth 5 '--prune' '--quiet'"));
    assert!(script.contains("checkout -f -q '0123456789abcdef0123456789abcdef01234567'"));
    assert!(script.contains("git clean '-ffdx'"));

    // Run it for real: the fetch fails (nothing listens on port 1), but the repository config is already
    // written and must not contain the token.
    let (code, out) = run_in("bash", &format!("set -e\n{script}"), dir.path());
    assert_ne!(code, 0, "{out}");
    let config = std::fs::read_to_string(project.join(".git/config")).unwrap();
    assert!(config.contains("url = https://127.0.0.1:1/g/p.git"), "{config}");
    assert!(!config.contains("sekrit-token"), "{config}");
    let ext = std::fs::read_to_string(tmp.join(".gitlab-runner.ext.conf")).unwrap();
    assert!(ext.contains("sekrit-token"));
    let out = Command::new("git")
        .args([
            "config",
            "--get",
            "url.https://gitlab-ci-token:sekrit-token@127.0.0.1:1.insteadof",
        ])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "https://127.0.0.1:1");
}

#[test]
fn git_settings_from_variables() {
    let plan = JobPlan::default();
    let vars: Variables = vec![
        Variable::new("GIT_STRATEGY", "clone"),
        Variable::new("GIT_DEPTH", "3"),
        Variable::new("GIT_CLEAN_FLAGS", "none"),
        Variable::new("GIT_SUBMODULE_STRATEGY", "recursive"),
        Variable::new("GET_SOURCES_ATTEMPTS", "11"),
        Variable::new("GIT_CHECKOUT", "false"),
    ]
    .into();
    let s = GitSettings::resolve(&plan, &vars);
    assert_eq!(s.strategy, oxrunner_core::GitStrategy::Clone);
    assert_eq!(s.depth, 3);
    assert_eq!(s.clean_flags, None);
    assert_eq!(s.submodule_strategy, oxrunner_core::SubmoduleStrategy::Recursive);
    assert_eq!(s.submodule_depth, 3);
    assert_eq!(s.attempts, 1);
    assert!(!s.checkout);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
}

#[test]
fn expansion_rules() {
    let mut raw = Variable::new("RAW", "$A stays");
    raw.raw = true;
    let vars: Variables = vec![
        Variable::new("A", "a"),
        Variable::new("B", "${A}-$A-$$A-$UNDEFINED-$1-${}-$"),
        raw,
        Variable::new("F", "content").into_file(),
        Variable::new("USES_F", "path=$F"),
        Variable::new("CHAIN", "$B"),
        Variable::new("A", "override"),
    ]
    .into();
    let e = vars.expanded(&|v| format!("/tmp/{}", v.key));
    // Lookups see the last definition of A and are not repeated (single pass).
    assert_eq!(e.value("B"), Some("override-override-$A--$1--$"));
    assert_eq!(e.value("RAW"), Some("$A stays"));
    assert_eq!(e.value("USES_F"), Some("path=/tmp/F"));
    assert_eq!(e.value("CHAIN"), Some("${A}-$A-$$A-$UNDEFINED-$1-${}-$"));
    assert_eq!(e.value("F"), Some("content"));
}

/// Under CI_DEBUG_TRACE a transfer stage is still not traced: its helper lines carry pre-signed cache URLs that
/// must not reach the job log.
#[test]
fn transfer_stages_are_not_traced_under_debug_trace() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("g/p");
    std::fs::create_dir_all(&project).unwrap();
    let tmp = dir.path().join("g/p.tmp");
    let (plan, ctx, vars) = context_parts(dir.path());
    let sc = ScriptContext {
        plan: &plan,
        ctx: &ctx,
        vars: &vars,
        project_dir: &project,
        tmp_dir: &tmp,
        xtrace: true,
    };
    let script = sc.transfer_stage(
        "OXRUNNER_CACHE_URL='http://127.0.0.1:9/b/k?X-Amz-Signature=s3cr3t' sh -c 'echo helper-ran'\n",
    );
    assert!(!script.lines().any(|l| l == "set -o xtrace"), "{script}");
    let (code, out) = run_in("bash", &script, dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("helper-ran"), "{out}");
    assert!(!out.contains("s3cr3t"), "{out}");
}
