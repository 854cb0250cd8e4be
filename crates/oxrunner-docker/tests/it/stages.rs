#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stages as execs in the one job container: what a stage leaves behind, cancels, the main process.

use crate::support as common;

use std::time::Duration;

use common::{Trace, config, engine, objects_of, plan, run, runner, step};
use oxrunner_core::{
    CancellationToken, Executor, ExitStatus, GitStrategy, ImageSpec, JobCancel, JobOutcome, NoopHooks,
    Sources, Step, run_job,
};
use oxrunner_docker::DockerExecutor;

/// Guards against a hang only; no timing is asserted.
const HANG: Duration = Duration::from_secs(60);

/// `ps` output of the job container, one process per line.
async fn processes(exec: &mut DockerExecutor) -> String {
    let trace = Trace::new();
    assert_eq!(run(exec, "ps -o pid,args", &trace).await, ExitStatus::Code(0));
    trace.text()
}

fn with_entrypoint(job_id: i64, entrypoint: &[&str]) -> oxrunner_core::JobPlan {
    oxrunner_core::JobPlan {
        image: Some(ImageSpec {
            name: common::IMAGE.into(),
            entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            ..ImageSpec::default()
        }),
        ..plan(job_id)
    }
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn background_processes_end_with_their_stage_and_only_the_stage_output_is_logged() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(501), &trace.writer).await.unwrap();
    let before = trace.text();

    // One child keeps the stage's output open, one does not, one would print after the stage ended.
    let status = tokio::time::timeout(
        HANG,
        run(
            &mut exec,
            "sleep 301 & sleep 302 >/dev/null 2>&1 & (sleep 2; echo too-late) & echo started; exit 4",
            &trace,
        ),
    )
    .await
    .expect("a stage must end when its shell does");
    assert_eq!(status, ExitStatus::Code(4));
    // Exactly the stage's output: nothing of the container's main process (a shell on a terminal).
    assert_eq!(trace.text().strip_prefix(before.as_str()), Some("started\n"));

    let ps = processes(&mut exec).await;
    assert!(!ps.contains("sleep 30"), "{ps}");
    assert!(!ps.contains("sleep 2"), "{ps}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!trace.text().contains("too-late"), "{}", trace.text());
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn after_a_cancel_nothing_of_the_stage_runs_and_the_next_stage_runs_in_the_same_container() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(502), &trace.writer).await.unwrap();
    let id = exec.container_id().unwrap().to_owned();
    assert_eq!(
        run(&mut exec, "echo kept > /builds/kept.txt", &trace).await,
        ExitStatus::Code(0)
    );

    let cancel = CancellationToken::new();
    let stage = exec.run(
        step(
            "setsid sleep 603 </dev/null >/dev/null 2>&1 & sleep 601 & echo started; sleep 602",
            "/builds/group/project",
        ),
        &trace.writer,
        cancel.clone(),
    );
    // Cancel once the stage has started its processes.
    let fire = async {
        while !trace.text().contains("started") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
    };
    let (status, ()) = tokio::time::timeout(HANG, async { tokio::join!(stage, fire) })
        .await
        .expect("cancel must end the stage");
    assert_eq!(status.unwrap(), ExitStatus::Signal(9));

    // The container was killed with everything in it, even what left the stage's session; the next stage
    // (after_script after a cancel) starts it again and sees the build volume as it was.
    let check = Trace::new();
    assert_eq!(
        run(&mut exec, "cat /builds/kept.txt; ps -o pid,args", &check).await,
        ExitStatus::Code(0)
    );
    let text = check.text();
    assert!(text.starts_with("kept\n"), "{text}");
    assert!(!text.contains("sleep 60"), "{text}");
    assert_eq!(exec.container_id(), Some(id.as_str()));
    let (containers, _) = objects_of(&docker, &ctx.short_token).await;
    assert_eq!(containers, vec![id]);
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn after_script_runs_after_a_script_timeout() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut plan = plan(503);
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    plan.steps = vec![Step {
        name: "script".into(),
        script: vec!["sleep 604 & echo script-started; sleep 605".into()],
        timeout: Some(Duration::from_secs(2)),
        ..Step::default()
    }];
    plan.after_script = Some(Step {
        name: "after_script".into(),
        script: vec!["echo after-script-ran; ps -o pid,args".into()],
        ..Step::default()
    });
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    let outcome = tokio::time::timeout(
        HANG,
        run_job(
            &plan,
            &ctx,
            &mut exec,
            &NoopHooks,
            &trace.writer,
            JobCancel::new(),
        ),
    )
    .await
    .expect("the timeout must end the script");
    let log = trace.text();
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}\n{log}");
    assert!(log.contains("script-started"), "{log}");
    assert!(log.contains("after-script-ran"), "{log}");
    // `ps` lines end with the command; the echoed script line ends with a colour reset.
    assert!(
        !log.lines()
            .any(|l| l.ends_with("sleep 604") || l.ends_with("sleep 605")),
        "{log}"
    );
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_job_entrypoint_runs_unless_the_config_forbids_overriding_it() {
    let Some(_docker) = engine().await else { return };
    // The entrypoint leaves a mark and then runs the command it is given, as an entrypoint must.
    let entrypoint = [
        "sh",
        "-c",
        "echo from-entrypoint; echo ran > /tmp/entrypoint-ran; exec \"$@\"",
        "--",
    ];
    for (disable, expected) in [(false, "ran\n"), (true, "no-mark\n")] {
        let cfg = oxrunner_config::DockerConfig {
            disable_entrypoint_overwrite: Some(disable),
            ..config()
        };
        let mut exec = DockerExecutor::new(cfg, runner());
        let trace = Trace::new();
        exec.prepare(&with_entrypoint(504, &entrypoint), &trace.writer)
            .await
            .unwrap();
        let before = trace.text();
        let status = run(
            &mut exec,
            "cat /tmp/entrypoint-ran 2>/dev/null || echo no-mark",
            &trace,
        )
        .await;
        assert_eq!(status, ExitStatus::Code(0));
        // The entrypoint's own output belongs to the main process, not to a stage.
        assert_eq!(trace.text().strip_prefix(before.as_str()), Some(expected));
        exec.cleanup().await;
    }
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn an_entrypoint_that_exits_fails_the_stage_with_its_output_and_a_hint() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(
        &with_entrypoint(505, &["sh", "-c", "echo broken-entrypoint; exit 3"]),
        &trace.writer,
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let status = tokio::time::timeout(HANG, run(&mut exec, "echo never", &trace))
            .await
            .unwrap();
        assert_eq!(status, ExitStatus::Code(3));
    }
    let log = trace.text();
    assert!(log.contains("broken-entrypoint"), "{log}");
    assert!(log.contains("main process ended (exit code 3)"), "{log}");
    assert!(log.contains("image:entrypoint"), "{log}");
    assert!(!log.contains("never"), "{log}");
    exec.cleanup().await;
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

/// `count` pairs of lines, `out-N` on stdout then `err-N` on stderr, as the job writes them.
fn alternating(count: usize) -> String {
    (1..=count).map(|n| format!("out-{n}\nerr-{n}\n")).collect()
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn stdout_and_stderr_lines_keep_the_order_the_stage_wrote_them_in() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    exec.prepare(&plan(506), &trace.writer).await.unwrap();
    let before = trace.text();
    // Each echo is a builtin and so one write(2) of its own; the engine reads stdout and stderr of an exec from
    // two pipes, so lines of the two streams reach the log in the job's order only if both share one pipe.
    let script = "i=1; while [ $i -le 300 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done";
    let status = tokio::time::timeout(HANG, run(&mut exec, script, &trace))
        .await
        .expect("the stage must end");
    assert_eq!(status, ExitStatus::Code(0));
    // Cleaned up before the check, so that a failure leaves nothing on the engine.
    exec.cleanup().await;
    let text = trace.text();
    let stage = text.strip_prefix(before.as_str()).unwrap_or(&text);
    assert!(stage == alternating(300), "lines out of order:\n{stage}");
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_job_script_alternating_stdout_and_stderr_is_logged_in_order() {
    let Some(docker) = engine().await else { return };
    let ctx = runner();
    let mut plan = plan(507);
    plan.sources = Sources {
        strategy: GitStrategy::None,
        ..Sources::default()
    };
    // One script line per write, as a user writes them in .gitlab-ci.yml; the driver echoes every line too.
    let script = (1..=40)
        .flat_map(|n| [format!("echo out-{n}"), format!("echo err-{n} >&2")])
        .collect();
    plan.steps = vec![Step {
        name: "script".into(),
        script,
        ..Step::default()
    }];
    let host = tempfile::tempdir().unwrap();
    let (outcome, log) = common::run_job_in(&plan, &ctx, config(), host.path()).await;
    assert!(matches!(outcome, JobOutcome::Success), "{outcome:?}\n{log}");
    let written: String = log
        .lines()
        .filter(|l| l.starts_with("out-") || l.starts_with("err-"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(written == alternating(40), "lines out of order:\n{log}");
    assert_eq!(objects_of(&docker, &ctx.short_token).await, (vec![], vec![]));
}

/// One job whose entrypoint ends at once, its objects removed: what is wrong with its first stage, if anything.
async fn stage_after_an_exiting_entrypoint(docker: bollard::Docker, delay_ms: u32) -> Option<String> {
    let ctx = runner();
    let mut exec = DockerExecutor::new(config(), ctx.clone());
    let trace = Trace::new();
    let entrypoint = format!("sleep 0.{delay_ms:03}; exit 3");
    exec.prepare(&with_entrypoint(508, &["sh", "-c", &entrypoint]), &trace.writer)
        .await
        .unwrap();
    let status = tokio::time::timeout(
        HANG,
        exec.run(
            step("echo never", "/builds/group/project"),
            &trace.writer,
            CancellationToken::new(),
        ),
    )
    .await;
    exec.cleanup().await;
    let log = trace.text();
    let left = objects_of(&docker, &ctx.short_token).await;
    // A stage that got in and finished before the main process ended has simply passed; one that did not must
    // report the main process's end, never an engine error.
    let ended =
        matches!(status, Ok(Ok(ExitStatus::Code(3)))) && log.contains("main process ended (exit code 3)");
    let finished_first = matches!(status, Ok(Ok(ExitStatus::Code(0)))) && log.contains("never");
    let ok = (ended || finished_first) && left == (vec![], vec![]);
    (!ok).then(|| format!("{status:?}, left {left:?}\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_main_process_that_ends_as_the_first_stage_starts_fails_the_stage_with_its_exit_code() {
    let Some(docker) = engine().await else { return };
    // The entrypoint ends at once, so it may end between the stage's exec being created and being started; many
    // jobs at the same time keep the engine busy and give that window many chances. A stage that starts in time
    // may also finish first; otherwise it fails with the main process's exit code and the hint, never with an
    // engine error.
    let jobs: Vec<_> = (0..40)
        .map(|n| tokio::spawn(stage_after_an_exiting_entrypoint(docker.clone(), n * 2)))
        .collect();
    let mut failures = Vec::new();
    for job in jobs {
        failures.extend(job.await.unwrap());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
