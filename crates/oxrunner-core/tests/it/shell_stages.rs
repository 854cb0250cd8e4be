#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Which shell each kind of stage gets, and that output past the output limit is still drained.

use oxrunner_core::{CancellationToken, Executor, MaskSet, ShellExecutor, Stage, StageCommand, TraceWriter};

async fn run_stage(exec: &mut ShellExecutor, stage: Stage, script: &str, dir: &std::path::Path) -> String {
    let (trace, handle) = TraceWriter::new(dir, MaskSet::new(vec!["s3cr3t-value".into()], &[]), 0).unwrap();
    let cmd = StageCommand {
        predefined: stage.is_predefined(),
        stage,
        script: script.to_owned(),
        shell_workdir: dir.to_path_buf(),
    };
    let status = exec.run(cmd, &trace, CancellationToken::new()).await.unwrap();
    assert!(status.success(), "{status}");
    handle.finish().await;
    String::from_utf8_lossy(&handle.read_all().unwrap()).into_owned()
}

const PROBE: &str = "if shopt -q login_shell; then echo shell=login; else echo shell=plain; fi\n";

#[tokio::test]
async fn runner_stages_use_a_plain_shell_and_user_steps_a_login_shell() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = ShellExecutor::new();
    for stage in [
        Stage::PrepareScript,
        Stage::GetSources,
        Stage::CleanupFileVariables,
    ] {
        let out = run_stage(&mut exec, stage.clone(), PROBE, dir.path()).await;
        assert!(out.contains("shell=plain"), "{stage}: {out}");
    }
    for stage in [Stage::Step("script".into()), Stage::AfterScript] {
        let out = run_stage(&mut exec, stage.clone(), PROBE, dir.path()).await;
        assert!(out.contains("shell=login"), "{stage}: {out}");
    }
    let mut plain = ShellExecutor::new().with_login_shell(false);
    let out = run_stage(&mut plain, Stage::Step("script".into()), PROBE, dir.path()).await;
    assert!(out.contains("shell=plain"), "{out}");
}

#[tokio::test]
async fn output_past_the_limit_is_drained_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    // 32 MiB after the 4 MiB limit, the secret in every line, and a marker after all of it: the stage must
    // read everything (or `yes | head` would block on a full pipe) and keep only the first 4 MiB.
    let script = "yes 'line with s3cr3t-value in it' | head -c 37748736; echo after-the-flood\n";
    let out = run_stage(&mut exec, Stage::Step("script".into()), script, dir.path()).await;
    assert!(
        out.contains("Job's log exceeded limit of 4194304 bytes."),
        "{}",
        out.len()
    );
    assert!(!out.contains("after-the-flood"));
    assert!(!out.contains("s3cr3t-value"));
    assert!(out.contains("[MASKED]"));
    assert!(out.len() < 4 * 1024 * 1024 + 1024, "{}", out.len());
}

/// The script reaches the shell as a seekable file, so bash reads it in blocks instead of one byte per `read` call.
#[tokio::test]
async fn the_script_arrives_on_a_seekable_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let script = "if [ -f /dev/stdin ]; then echo stdin=file; else echo stdin=other; fi\n\
                  if [ -x /dev/stdin ]; then echo stdin=executable; else echo stdin=noexec; fi\n";
    let out = run_stage(&mut exec, Stage::Step("script".into()), script, dir.path()).await;
    assert!(out.contains("stdin=file"), "{out}");
    // MFD_NOEXEC_SEAL where the kernel has it (6.3+); older kernels make every memfd executable.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) >= (6, 3) {
        assert!(out.contains("stdin=noexec"), "{out}");
    }
}

/// A command that reads stdin gets the rest of the script, as from gitlab-runner's pipe; a POSIX utility that stops
/// early (`head -n 1`) leaves the file offset after what it used, so the shell goes on with the next line, where
/// from a pipe it would have swallowed a buffer's worth of the script (documented in ARCHITECTURE.md).
#[tokio::test]
async fn a_command_reading_stdin_still_consumes_the_rest_of_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let mut script = String::from("echo first\nhead -n 1 > swallowed.txt\necho never-run\necho second\n");
    // Long enough that bash's block reads run ahead of the command that reads stdin.
    for i in 0..400 {
        script.push_str(&format!(
            ": filler line {i} to make the script longer than one read\n"
        ));
    }
    script.push_str("echo last\n");
    let out = run_stage(&mut exec, Stage::Step("script".into()), &script, dir.path()).await;
    assert!(out.contains("first"), "{out}");
    assert!(!out.contains("never-run"), "{out}");
    assert!(out.contains("second") && out.contains("last"), "{out}");
    let swallowed = std::fs::read_to_string(dir.path().join("swallowed.txt")).unwrap();
    assert_eq!(swallowed, "echo never-run\n");
}

/// The job cannot rewrite the script its own shell is still reading.
#[tokio::test]
async fn the_script_cannot_be_rewritten_by_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = ShellExecutor::new().with_login_shell(false);
    let script = "echo 'echo injected' >> /dev/stdin 2>/dev/null || echo write-refused\necho done\n";
    let out = run_stage(&mut exec, Stage::Step("script".into()), script, dir.path()).await;
    assert!(out.contains("write-refused"), "{out}");
    assert!(
        !out.contains("injected\n") || out.contains("echo injected"),
        "{out}"
    );
    assert!(out.contains("done"), "{out}");
}
