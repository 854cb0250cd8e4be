//! `FF_POSIXLY_CORRECT_ESCAPES`: the stage scripts quote values in gitlab-runner's POSIX double-quote form with the
//! flag and in single quotes without it, and every value reaches the job unchanged either way, in bash and in sh.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use oxrunner_core::script::ScriptContext;
use oxrunner_core::{JobPlan, RunnerContext, Step, Variable, Variables};

const VALUES: &[&str] = &[
    "it's \"quoted\" $HOME `date` \\n back\\slash",
    "first\nsecond",
    "a;b|c&d",
    "~x {y} #z",
    "ünï€ 世界",
    "tab\there\r!",
    "plain",
    "",
];

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

/// The rendered script step (printing every variable and file variable between markers) and what it printed.
fn render_and_run(posix: Option<bool>, shell: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("g/p");
    std::fs::create_dir_all(&project).unwrap();
    let tmp = dir.path().join("g/p.tmp");
    let plan = JobPlan::default();
    let ctx = RunnerContext {
        builds_dir: dir.path().to_path_buf(),
        ..RunnerContext::default()
    };
    let mut vars: Vec<Variable> = Vec::new();
    if let Some(on) = posix {
        vars.push(Variable::new("FF_POSIXLY_CORRECT_ESCAPES", on.to_string()));
    }
    let mut script = Vec::new();
    for (i, value) in VALUES.iter().enumerate() {
        let mut raw = Variable::new(format!("V{i}"), *value);
        raw.raw = true;
        vars.push(raw);
        vars.push(Variable::new(format!("F{i}"), *value).into_file());
        script.push(format!(
            "printf '<%s>' \"$V{i}\" \"$(cat \"$F{i}\"; printf .)\" >> result"
        ));
    }
    // A command whose own text needs every kind of quoting (the eval'd body carries it).
    script.push("printf '<%s>' \"it's\" 'a \"b\" $c \\d' ünï >> result".into());
    let vars: Variables = vars.into();
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
        script,
        ..Step::default()
    };
    let text = sc.user_step(&step);
    let (code, out) = run_in(shell, &text, dir.path());
    assert_eq!(code, 0, "{shell}: {out}\n{text}");
    (text, std::fs::read_to_string(project.join("result")).unwrap())
}

fn expected_output() -> String {
    let mut out = String::new();
    for value in VALUES {
        out.push_str(&format!("<{value}><{value}.>"));
    }
    out.push_str("<it's><a \"b\" $c \\d><ünï>");
    out
}

#[test]
fn values_reach_the_job_unchanged_in_both_forms_in_bash_and_sh() {
    for shell in ["bash", "sh"] {
        for posix in [None, Some(false), Some(true)] {
            let (_, printed) = render_and_run(posix, shell);
            assert_eq!(printed, expected_output(), "{shell} posix={posix:?}");
        }
    }
}

/// The body a stage script hands to `eval`, as bash reads it from the script's own quoting.
fn eval_body(script: &str) -> String {
    let marker = "(trap 'exit 1' TERM; eval ";
    assert!(script.contains(marker), "{script}");
    let printing = script.replace(marker, "(printf '%s' ");
    let dir = tempfile::tempdir().unwrap();
    let (code, body) = run_in("bash", &printing, dir.path());
    assert_eq!(code, 0, "{body}");
    body
}

#[test]
fn the_flag_selects_posix_double_quotes() {
    let (on, _) = render_and_run(Some(true), "bash");
    assert!(on.contains("(trap 'exit 1' TERM; eval \""), "{on}");
    assert!(
        !on.contains("'\\''"),
        "no single-quote escapes with the flag: {on}"
    );
    let body = eval_body(&on);
    assert!(
        body.contains("export V0=\"it's \\\"quoted\\\" \\$HOME \\`date\\` \\\\n back\\\\slash\"\n"),
        "{body}"
    );
    assert!(body.contains("export V1=\"first\nsecond\"\n"), "{body}");
    assert!(body.contains("export V6=plain\n"), "{body}");
    assert!(body.contains("export V7=''\n"), "{body}");
    assert!(body.contains("printf '%s' \"a;b|c&d\" > "), "{body}");

    let (off, _) = render_and_run(Some(false), "bash");
    assert!(off.contains("(trap 'exit 1' TERM; eval '"), "{off}");
    let body = eval_body(&off);
    assert!(
        body.contains("export V0='it'\\''s \"quoted\" $HOME `date` \\n back\\slash'\n"),
        "{body}"
    );
    let (default, _) = render_and_run(None, "bash");
    assert!(default.contains("(trap 'exit 1' TERM; eval '"), "{default}");
}
