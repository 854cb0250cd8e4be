//! Feature flags that change what a shell job does, run through the driver with real bash and git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxrunner_core::{JobCancel, JobOutcome, Variable};

use crate::job::env;

#[tokio::test]
async fn bash_exit_code_check_fails_where_errexit_does_not() {
    let env = env();
    // errexit ignores a failure on the left of `&&`; gitlab-runner's check after each command does not.
    let script = ["false && true", "echo reached-the-end"];
    let plan = env.plan(&script);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\nreached-the-end\n"), "{log}");

    let mut plan = env.plan(&script);
    plan.variables
        .push(Variable::new("FF_ENABLE_BASH_EXIT_CODE_CHECK", "true"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert!(
        matches!(
            outcome,
            JobOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(!log.contains("\nreached-the-end\n"), "{log}");
}

#[tokio::test]
async fn legacy_bash_eval_feeds_the_script_from_a_pipe() {
    let env = env();
    let script = ["echo \"stdin=$(readlink /proc/self/fd/0)\""];
    let (outcome, log) = env.run(&env.plan(&script), JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\nstdin=/dev/null\n"), "{log}");

    let mut plan = env.plan(&script);
    plan.variables
        .push(Variable::new("FF_USE_LEGACY_BASH_EVAL", "true"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\nstdin=pipe:["), "{log}");
}

#[tokio::test]
async fn mask_all_default_tokens_off_masks_only_personal_access_tokens() {
    let env = env();
    let script = ["echo glrt-abcdefghijklmnop glpat-abcdefghijklmnop"];
    let (_, log) = env.run(&env.plan(&script), JobCancel::new()).await;
    assert!(log.contains("\nglrt-[MASKED] glpat-[MASKED]\n"), "{log}");

    let mut plan = env.plan(&script);
    plan.variables
        .push(Variable::new("FF_MASK_ALL_DEFAULT_TOKENS", "false"));
    let (_, log) = env.run(&plan, JobCancel::new()).await;
    assert!(log.contains("\nglrt-abcdefghijklmnop glpat-[MASKED]\n"), "{log}");
}

#[tokio::test]
async fn script_sections_show_a_multi_line_command_in_a_collapsed_section() {
    let env = env();
    let script = ["echo one\necho two", "echo single"];
    let mut plan = env.plan(&script);
    plan.features.trace_sections = true;
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(
        log.contains("\x1b[32;1m$ echo one # collapsed multi-line command\x1b[0;m\none\ntwo\n"),
        "{log}"
    );

    plan.variables.push(Variable::new("FF_SCRIPT_SECTIONS", "true"));
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let start = log
        .find(":section_script_step_0[hide_duration=true,collapsed=true]\r\x1b[0K\x1b[32;1m$ echo one\necho two\x1b[0;m\n")
        .unwrap_or_else(|| panic!("{log}"));
    let rest = &log[start..];
    let end = rest
        .find(":section_script_step_0\r\x1b[0K\none\ntwo\n")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(rest[..end].contains("section_end:"), "{log}");
    // Single-line commands are echoed as before.
    assert!(log.contains("\x1b[32;1m$ echo single\x1b[0;m\nsingle\n"), "{log}");
}
