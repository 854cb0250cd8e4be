//! Tests of the custom executor's stage calls against real bash drivers.

use std::time::Duration;

use oxrunner_core::{MaskSet, Stage, StageCommand, TraceWriter};

use super::*;

fn driver(dir: &Path, body: &str) -> String {
    let path = dir.join("driver.sh");
    std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&path, mode).unwrap();
    path.to_string_lossy().into_owned()
}

fn executor(run: String) -> CustomExecutor {
    let settings = CustomSettings {
        run: Program {
            exec: run,
            args: Vec::new(),
        },
        graceful_kill: Duration::from_millis(500),
        force_kill: Duration::from_secs(5),
        ..CustomSettings::default()
    };
    let mut exec = CustomExecutor::new(settings);
    exec.make_temp().unwrap();
    exec
}

fn trace(dir: &Path) -> (TraceWriter, oxrunner_core::TraceHandle) {
    TraceWriter::new(dir, MaskSet::new(Vec::<String>::new(), &[]), 1 << 20).unwrap()
}

fn stage(stage: Stage) -> StageCommand {
    StageCommand {
        stage,
        script: "true\n".into(),
        shell_workdir: PathBuf::from("/"),
        predefined: true,
    }
}

/// A driver that records every stage's code in `$BUILD_EXIT_CODE_FILE` (here 0 for the passing script) and then
/// fails on its own with `$BUILD_FAILURE_EXIT_CODE` in a later stage: the later stage is a failure, never a
/// success read from the earlier stage's file.
#[tokio::test]
async fn a_build_failure_is_never_a_success_whatever_the_code_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let run = driver(
        dir.path(),
        r#"case "$2" in
  build_script) echo 0 > "$BUILD_EXIT_CODE_FILE"; exit 0 ;;
  upload_artifacts_on_success) exit "$BUILD_FAILURE_EXIT_CODE" ;;
  *) echo 0 > "$BUILD_EXIT_CODE_FILE"; exit "$BUILD_FAILURE_EXIT_CODE" ;;
esac"#,
    );
    let mut exec = executor(run);
    let (trace, _handle) = trace(dir.path());
    let ok = exec
        .run_stage(
            stage(Stage::Step("script".into())),
            &trace,
            CancellationToken::new(),
        )
        .await;
    assert_eq!(ok.unwrap(), ExitStatus::Code(0));
    // The file of the stage before is gone: exit 1 without a file is upstream's default build failure, code 1.
    let failed = exec
        .run_stage(
            stage(Stage::UploadArtifactsOnSuccess),
            &trace,
            CancellationToken::new(),
        )
        .await;
    assert_eq!(failed.unwrap(), ExitStatus::Code(1));
    // A file saying 0 with exit 1 is still a failed stage.
    let failed = exec
        .run_stage(stage(Stage::AfterScript), &trace, CancellationToken::new())
        .await;
    assert!(!matches!(failed, Ok(ExitStatus::Code(0))), "{failed:?}");
    exec.cleanup_job().await;
}

/// The exit-code file is read with a bound: a driver writing a huge file gets a system failure, not a runner
/// reading it all into memory.
#[tokio::test]
async fn a_huge_exit_code_file_is_read_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let run = driver(
        dir.path(),
        r#"{ printf 3; head -c 3000000 /dev/zero | tr '\0' 7; echo; } > "$BUILD_EXIT_CODE_FILE"; exit 1"#,
    );
    let mut exec = executor(run);
    let (trace, _handle) = trace(dir.path());
    let res = exec
        .run_stage(stage(Stage::AfterScript), &trace, CancellationToken::new())
        .await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("exit code 2"), "{err}");
    exec.cleanup_job().await;
}

/// A FIFO at the exit-code file must not block the runner (the read never waits for a writer).
#[test]
fn a_fifo_as_exit_code_file_does_not_block_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let run = driver(dir.path(), r#"mkfifo "$BUILD_EXIT_CODE_FILE"; exit 1"#);
    let spool = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    // On its own thread: a blocked read would otherwise hang the test instead of failing it.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt.block_on(async {
            let mut exec = executor(run);
            let (trace, _handle) = trace(&spool);
            let res = exec
                .run_stage(stage(Stage::AfterScript), &trace, CancellationToken::new())
                .await;
            exec.cleanup_job().await;
            res.map_err(|e| e.to_string())
        });
        let _ = tx.send(res);
    });
    let res = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("reading the exit-code FIFO blocked the runner");
    let err = res.unwrap_err();
    assert!(err.contains("exit code 2"), "{err}");
}

/// The driver stops waiting for prepare_exec (job canceled): prepare_exec gets SIGTERM, its trap tears down what
/// it made, and cleanup_exec starts only after that (as upstream, which waits for the stopped prepare_exec).
#[tokio::test]
async fn cleanup_exec_starts_after_a_dropped_prepare_exec_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let started = dir.path().join("prepare.started");
    let prepare = driver(
        dir.path(),
        &format!(
            "trap 'sleep 0.3; echo prepare-trap >> {l}; exit 0' TERM\necho up > {s}\nwhile :; do sleep 0.05; done",
            l = log.display(),
            s = started.display()
        ),
    );
    let cleanup_path = dir.path().join("cleanup.sh");
    std::fs::write(
        &cleanup_path,
        format!("#!/bin/bash\necho cleanup >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cleanup_path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut exec = executor("true".into());
    exec.settings.prepare = Some(Program {
        exec: prepare,
        args: Vec::new(),
    });
    exec.settings.cleanup = Some(Program {
        exec: cleanup_path.to_string_lossy().into_owned(),
        args: Vec::new(),
    });
    let (trace, _handle) = trace(dir.path());
    let plan = oxrunner_core::JobPlan::default();
    tokio::select! {
        res = exec.prepare(&plan, &trace) => panic!("prepare_exec ended by itself: {res:?}"),
        () = async {
            while !started.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
    exec.cleanup_job().await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "prepare-trap\ncleanup\n",
        "prepare_exec's trap must have run, and before cleanup_exec"
    );
}
