//! `FF_ENABLE_JOB_CLEANUP` with the shell executor, real git and bash: after the job (succeeded or failed) the
//! project directory is removed for `clone` and `empty`, returned to its commit for `fetch`, left for `none`; and
//! without the flag it stays as the job left it. The cleanup removes links a job planted, never their targets.

use std::path::Path;

use oxrunner_core::{JobCancel, JobOutcome, JobPlan, Variable, build_dir};

use crate::job::{Env, env};

fn with(env: &Env, script: &[&str], vars: &[(&str, &str)]) -> JobPlan {
    let mut plan = env.plan(script);
    for (k, v) in vars {
        plan.variables.push(Variable::new(*k, *v));
    }
    plan
}

const ON: (&str, &str) = ("FF_ENABLE_JOB_CLEANUP", "true");

#[tokio::test]
async fn clone_removes_the_project_dir_after_success_and_after_failure() {
    let env = env();
    for (script, succeeded) in [("touch built.txt", true), ("touch built.txt && exit 3", false)] {
        let plan = with(&env, &[script], &[("GIT_STRATEGY", "clone"), ON]);
        let (outcome, log) = env.run(&plan, JobCancel::new()).await;
        assert_eq!(outcome == JobOutcome::Success, succeeded, "{log}");
        let dir = build_dir(&plan, &env.ctx());
        assert!(!dir.exists(), "{} left after {script:?}:\n{log}", dir.display());
    }
}

#[tokio::test]
async fn without_the_flag_the_project_dir_stays() {
    let env = env();
    let plan = with(&env, &["touch built.txt"], &[("GIT_STRATEGY", "clone")]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(build_dir(&plan, &env.ctx()).join("built.txt").exists(), "{log}");
}

#[tokio::test]
async fn empty_removes_the_project_dir_and_none_leaves_it_with_a_notice() {
    let env = env();
    let plan = with(&env, &["touch built.txt"], &[("GIT_STRATEGY", "empty"), ON]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!build_dir(&plan, &env.ctx()).exists(), "{log}");

    let plan = with(&env, &["touch built.txt"], &[("GIT_STRATEGY", "none"), ON]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(build_dir(&plan, &env.ctx()).join("built.txt").exists(), "{log}");
    assert!(log.contains("Skipping build directory cleanup step"), "{log}");
}

#[tokio::test]
async fn fetch_returns_the_checkout_to_its_commit() {
    let env = env();
    let plan = with(
        &env,
        &["touch untracked.txt", "echo changed > hello.txt"],
        &[("GIT_STRATEGY", "fetch"), ON],
    );
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let dir = build_dir(&plan, &env.ctx());
    assert!(dir.join(".git").is_dir(), "{log}");
    assert!(!dir.join("untracked.txt").exists(), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("hello.txt")).unwrap(),
        "committed content\n"
    );
}

/// A job that links into a directory outside its checkout, and one that swaps its project dir for a link: the
/// cleanup removes the links and leaves the targets (and a read-only directory of its own does not stop it).
#[tokio::test]
async fn links_are_removed_not_followed() {
    let env = env();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep").unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .unwrap();
    let target = outside.path().display().to_string();
    let link_inside = format!("ln -s '{target}' linked && mkdir -p ro/sub && chmod 0555 ro/sub ro");
    let plan = with(&env, &[&link_inside], &[("GIT_STRATEGY", "clone"), ON]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(!build_dir(&plan, &env.ctx()).exists(), "{log}");
    assert_kept(outside.path());

    let swap = format!("cd .. && mv project project.real && ln -s '{target}' project");
    let plan = with(&env, &[&swap], &[("GIT_STRATEGY", "clone"), ON]);
    let (outcome, log) = env.run(&plan, JobCancel::new()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let dir = build_dir(&plan, &env.ctx());
    assert!(std::fs::symlink_metadata(&dir).is_err(), "{log}");
    assert_kept(outside.path());
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
}

fn assert_kept(outside: &Path) {
    assert_eq!(std::fs::read_to_string(outside.join("keep.txt")).unwrap(), "keep");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(outside).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o500, "the target's mode was changed");
}

/// An executor with remote files: the runner-side checkout goes with a `clone` job's project dir under the flag,
/// and stays without it or for `fetch`.
#[tokio::test]
async fn the_runner_side_checkout_goes_with_a_clone() {
    let env = crate::remote_sources::env();
    for (vars, removed) in [
        (&[("GIT_STRATEGY", "clone"), ON][..], true),
        (&[("GIT_STRATEGY", "clone")][..], false),
        (&[("GIT_STRATEGY", "fetch"), ON][..], false),
    ] {
        let mut plan = env.plan(&["true"]);
        for (k, v) in vars {
            plan.variables.push(Variable::new(*k, *v));
        }
        let (outcome, log) = env
            .run(&plan, &env.ctx(), oxrunner_core::EnvironmentFacts::default())
            .await;
        assert_eq!(outcome, JobOutcome::Success, "{log}");
        let checkout = env.checkout(&plan);
        assert_eq!(
            !checkout.exists(),
            removed,
            "{vars:?}: {}\n{log}",
            checkout.display()
        );
    }
}

/// `empty` under the flag removes only its own `<dir>-empty` project dir, as upstream: the runner-side checkout
/// that an earlier `fetch` job of the slot left is not that job's, and the next `fetch` builds on it.
#[tokio::test]
async fn an_empty_job_leaves_the_slots_runner_side_checkout() {
    let env = crate::remote_sources::env();
    let mut checkout = None;
    for strategy in ["fetch", "empty"] {
        let mut plan = env.plan(&["true"]);
        plan.variables.push(Variable::new("GIT_STRATEGY", strategy));
        plan.variables.push(Variable::new(ON.0, ON.1));
        let (outcome, log) = env
            .run(&plan, &env.ctx(), oxrunner_core::EnvironmentFacts::default())
            .await;
        assert_eq!(outcome, JobOutcome::Success, "{log}");
        let dir = checkout.get_or_insert_with(|| env.checkout(&plan)).clone();
        assert!(
            dir.join(".git").is_dir(),
            "after {strategy}: {}\n{log}",
            dir.display()
        );
    }
}

/// `GIT_CLONE_PATH` with a trailing `/`: the project dir is the cleaned path, so a job that swaps it for a link
/// gets the link removed, not the target emptied through `link/` (and the tmp dir stays beside it, not inside).
#[tokio::test]
async fn a_trailing_slash_in_the_clone_path_does_not_defeat_the_link_guard() {
    let env = env();
    let ctx = oxrunner_core::RunnerContext {
        custom_build_dir: true,
        ..env.ctx()
    };
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep").unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .unwrap();
    let target = outside.path().display().to_string();
    let swap = format!("cd .. && mv x x.real && ln -s '{target}' x");
    let clone_path = format!("{}/x/", ctx.builds_dir.display());
    let plan = with(
        &env,
        &[&swap],
        &[("GIT_CLONE_PATH", &clone_path), ("GIT_STRATEGY", "clone"), ON],
    );
    let dir = build_dir(&plan, &ctx);
    assert_eq!(dir, ctx.builds_dir.join("x"));
    let (outcome, log) = env.run_in(&plan, &ctx).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(std::fs::symlink_metadata(&dir).is_err(), "{log}");
    assert_kept(outside.path());
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
}
