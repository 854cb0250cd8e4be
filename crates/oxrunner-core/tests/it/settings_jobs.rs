//! `[[runners]]` git settings acted on in a shell job with real bash and git: `clean_git_config` and
//! `safe_directory_checkout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oxrunner_core::{
    JobCancel, JobOutcome, JobPlan, NoopHooks, RunnerContext, ShellExecutor, TraceWriter, Variable, run_job,
};

use crate::job::env;

async fn run(plan: &JobPlan, ctx: &RunnerContext) -> (JobOutcome, String) {
    let spool = tempfile::tempdir().unwrap();
    let (trace, handle) = TraceWriter::new(spool.path(), plan.mask_set(), 0).unwrap();
    let mut exec = ShellExecutor::new()
        .with_login_shell(false)
        .with_kill_grace(Duration::from_secs(3));
    let outcome = run_job(plan, ctx, &mut exec, &NoopHooks, &trace, JobCancel::new()).await;
    handle.finish().await;
    let log = oxrunner_core::trace::strip_timestamps(&String::from_utf8_lossy(&handle.read_all().unwrap()));
    (outcome, log)
}

#[tokio::test]
async fn clean_git_config_removes_what_an_earlier_job_planted() {
    let env = env();
    let plant = ["git config oxr.planted yes"];
    let probe = ["echo \"planted=$(git config --get oxr.planted || echo none)\""];
    // The shell executor keeps the checkout's config by default, as gitlab-runner.
    let (outcome, log) = run(&env.plan(&plant), &env.ctx()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let (_, log) = run(&env.plan(&probe), &env.ctx()).await;
    assert!(log.contains("\nplanted=yes\n"), "{log}");

    let cleaning = RunnerContext {
        clean_git_config: Some(true),
        ..env.ctx()
    };
    let (_, log) = run(&env.plan(&probe), &cleaning).await;
    assert!(log.contains("\nplanted=none\n"), "{log}");
}

#[tokio::test]
async fn safe_directory_checkout_marks_the_project_dir_safe() {
    let env = env();
    let home = tempfile::tempdir().unwrap();
    let probe = ["echo \"safe=$(git config --global --get-all safe.directory || echo none)\""];
    let plan = |script: &[&str]| {
        let mut p = env.plan(script);
        // git's --global file lives in the job's HOME: never the user's own.
        p.variables
            .push(Variable::new("HOME", home.path().display().to_string()));
        p
    };
    let (outcome, log) = run(&plan(&probe), &env.ctx()).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    assert!(log.contains("\nsafe=none\n"), "{log}");

    let ctx = RunnerContext {
        safe_directory_checkout: true,
        ..env.ctx()
    };
    let (outcome, log) = run(&plan(&probe), &ctx).await;
    assert_eq!(outcome, JobOutcome::Success, "{log}");
    let dir = oxrunner_core::build_dir(&plan(&probe), &ctx);
    assert!(log.contains(&format!("\nsafe={}\n", dir.display())), "{log}");
}
