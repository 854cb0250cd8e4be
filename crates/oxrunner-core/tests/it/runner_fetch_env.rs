//! The runner-side fetch of an executor whose files are remote runs git on the runner host (as root in most
//! installs), so nothing the job's author writes may reach that git as configuration or as a program to run: the
//! job's variables (`GIT_CONFIG_*`, `GIT_TRACE`, ...) stay out of its environment, and extra flags that run a
//! program or load configuration are refused with a hint. The shell executor keeps running get_sources in the
//! job's own environment, as before.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oxrunner_core::{
    EnvironmentFacts, FailureReason, JobCancel, JobOutcome, JobPlan, NoopHooks, RunnerContext, ShellExecutor,
    TraceWriter, Variable, run_job,
};

use super::remote_sources::{Env, env, git};

/// A stand-in for `git upload-pack` that leaves `marker` behind, so a fetch that ran it still succeeds.
fn upload_pack_spy(env: &Env, marker: &Path) -> PathBuf {
    let spy = env.root.join("spy-upload-pack");
    std::fs::write(
        &spy,
        format!(
            "#!/bin/sh\ntouch '{}'\nexec git upload-pack \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
    spy
}

fn assert_fetched(env: &Env, plan: &JobPlan, outcome: &JobOutcome, log: &str) {
    assert_eq!(*outcome, JobOutcome::Success, "{log}");
    assert_eq!(git(&env.checkout(plan), &["rev-parse", "HEAD"]), env.sha);
    assert!(log.contains("committed content\n"), "{log}");
}

#[tokio::test]
async fn git_config_from_job_variables_runs_nothing_on_the_runner() {
    let env = env();
    let marker = env.root.join("fsmonitor-ran");
    let mut plan = env.plan(&["cat hello.txt"]);
    for (key, value) in [
        ("GIT_CONFIG_COUNT", "1".to_owned()),
        ("GIT_CONFIG_KEY_0", "core.fsmonitor".to_owned()),
        ("GIT_CONFIG_VALUE_0", format!("touch {}; false", marker.display())),
    ] {
        plan.variables.push(Variable::new(key, value));
    }
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert!(
        !marker.exists(),
        "the job's core.fsmonitor ran on the runner:\n{log}"
    );
    assert_fetched(&env, &plan, &outcome, &log);
}

#[tokio::test]
async fn git_environment_of_the_job_does_not_reach_the_runner_side_git() {
    let env = env();
    let trace_file = env.root.join("git-trace.log");
    let mut plan = env.plan(&["cat hello.txt"]);
    plan.variables
        .push(Variable::new("GIT_TRACE", trace_file.display().to_string()));
    plan.variables.push(Variable::new(
        "GIT_TRACE_PACKET",
        trace_file.display().to_string(),
    ));
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert!(
        !trace_file.exists(),
        "the runner-side git wrote the job's GIT_TRACE file:\n{log}"
    );
    assert_fetched(&env, &plan, &outcome, &log);
}

#[tokio::test]
async fn an_extra_fetch_flag_that_runs_a_program_is_refused_with_a_hint() {
    for form in [
        "--upload-pack={spy}",
        "--upload-pack {spy}",
        "--upload-p={spy}",
        // git takes a `--` after an option that needs a value as that value, so what follows is still an option.
        "--server-option -- --upload-pack={spy}",
        "-o -- --upload-pack {spy}",
    ] {
        let env = env();
        let marker = env.root.join("upload-pack-ran");
        let spy = upload_pack_spy(&env, &marker);
        let mut plan = env.plan(&["echo never-ran"]);
        let flags = form.replace("{spy}", &spy.display().to_string());
        plan.variables
            .push(Variable::new("GIT_FETCH_EXTRA_FLAGS", flags.clone()));
        let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
        assert!(!marker.exists(), "{flags:?} ran on the runner:\n{log}");
        assert!(
            matches!(
                &outcome,
                JobOutcome::Failed {
                    reason: FailureReason::ScriptFailure,
                    ..
                }
            ),
            "{flags:?}: {outcome:?}\n{log}"
        );
        assert!(log.contains("GIT_FETCH_EXTRA_FLAGS"), "{log}");
        assert!(log.contains("hint: "), "{log}");
        assert!(!log.contains("never-ran\n"), "{log}");
        assert!(
            !env.kinds().iter().any(|k| k.starts_with("push")),
            "{:?}",
            env.kinds()
        );
    }
}

#[tokio::test]
async fn clean_and_submodule_flags_are_checked_too() {
    for (name, flags) in [
        ("GIT_CLEAN_FLAGS", "-ffdx --exec=/bin/true"),
        (
            "GIT_SUBMODULE_UPDATE_FLAGS",
            "--jobs 2 --reference /srv/other/.git",
        ),
    ] {
        let env = env();
        let mut plan = env.plan(&["echo never-ran"]);
        plan.variables.push(Variable::new(name, flags));
        let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
        assert!(
            matches!(&outcome, JobOutcome::Failed { .. }),
            "{name}={flags}: {outcome:?}\n{log}"
        );
        assert!(log.contains(name), "{log}");
        assert!(log.contains("hint: "), "{log}");
        assert!(!log.contains("never-ran\n"), "{log}");
    }
}

#[tokio::test]
async fn harmless_extra_flags_still_reach_the_runner_side_git() {
    let env = env();
    let mut plan = env.plan(&["cat hello.txt"]);
    plan.variables
        .push(Variable::new("GIT_FETCH_EXTRA_FLAGS", "--prune --quiet -j2"));
    plan.variables
        .push(Variable::new("GIT_CLEAN_FLAGS", "-ffdx -e keep"));
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert_fetched(&env, &plan, &outcome, &log);
}

#[tokio::test]
async fn the_shell_executor_still_fetches_in_the_jobs_own_environment() {
    // Its get_sources runs as the job's user with the job's variables: no privilege to guard, so nothing changes.
    let env = env();
    let marker = env.root.join("upload-pack-ran");
    let spy = upload_pack_spy(&env, &marker);
    let mut plan = env.plan(&["cat hello.txt"]);
    plan.variables.push(Variable::new(
        "GIT_FETCH_EXTRA_FLAGS",
        format!("--upload-pack={}", spy.display()),
    ));
    let ctx = RunnerContext {
        executor: "shell".into(),
        ..env.ctx()
    };
    let (trace, handle) = TraceWriter::new(&env.root, plan.mask_set(), 0).unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let outcome = run_job(&plan, &ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned();
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("committed content\n"), "{log}");
    assert!(marker.exists(), "{log}");
}

#[tokio::test]
async fn a_preload_library_of_the_job_is_not_loaded_into_the_runner_side_git() {
    let env = env();
    let library = env.root.join("oxrt-absent-preload.so");
    let mut plan = env.plan(&["cat hello.txt"]);
    plan.variables
        .push(Variable::new("LD_PRELOAD", library.display().to_string()));
    let (outcome, log) = env.run(&plan, &env.ctx(), EnvironmentFacts::default()).await;
    assert_fetched(&env, &plan, &outcome, &log);
    // The fake job environment runs on this host too and does load it (the loader complains there); the fetch's
    // own section must not mention it.
    let start = log.find("Getting source from Git repository").unwrap();
    let end = start + log[start..].find("step_script").unwrap();
    let fetch = &log[start..end];
    assert!(log.contains("Checking out "), "{log}");
    assert!(
        !fetch.contains("oxrt-absent-preload.so"),
        "the runner-side fetch ran with the job's LD_PRELOAD:\n{fetch}"
    );
}
