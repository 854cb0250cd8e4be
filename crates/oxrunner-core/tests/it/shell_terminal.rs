//! Review findings on the shell executor's web terminal: whatever is started from the terminal ends with it
//! (even a disowned background job, which `bash -i` puts in a process group of its own), and with `--user`
//! the shell never starts in a directory only root could have entered (the job user can point
//! `CI_PROJECT_DIR` anywhere with a link).
//!
//! Needs root (a throwaway user, and cgroups or the marker to find the processes). Under `CI=true` it runs or
//! fails; elsewhere it skips with a message.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;
use std::time::Duration;

use oxrunner_core::{Executor, ShellExecutor, TermSize, TerminalConn, Variable, Variables};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn can_run(what: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let root = nix::unistd::geteuid().is_root();
    let tools = Command::new("sh")
        .args([
            "-c",
            "command -v useradd && command -v userdel && command -v setsid",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if root && tools {
        return true;
    }
    assert!(
        !ci,
        "CI=true but {what} cannot run: needs root, useradd, userdel and setsid"
    );
    eprintln!("SKIPPED: {what} needs root, useradd, userdel and setsid (it runs under CI=true)");
    false
}

/// A throwaway user, removed on drop even when the test fails.
struct TempUser(String);

impl TempUser {
    fn create(tag: &str) -> TempUser {
        let name = format!("oxrt-{tag}-{}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        let out = Command::new("useradd")
            .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TempUser(name)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

fn vars(project: &std::path::Path) -> Variables {
    let mut vars = Variables::new();
    vars.push(Variable::new("CI_PROJECT_DIR", project.to_string_lossy()));
    vars.push(Variable::new("CI_JOB_ID", "77"));
    vars
}

/// Types `line` and reads the terminal until `until` appears (generous deadline); returns all output.
async fn type_and_read(conn: &mut TerminalConn, line: &str, until: &str) -> String {
    conn.input.write_all(line.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.output.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the terminal ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(until) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("no {until:?} within 30 s"));
    String::from_utf8_lossy(&seen).into_owned()
}

/// Pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disowned_background_job_ends_with_the_terminal() {
    if !can_run("the terminal process test") {
        return;
    }
    let user = TempUser::create("term-bg");
    let project = tempfile::tempdir().unwrap();
    fs::set_permissions(project.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut shell = ShellExecutor::new()
        .with_login_shell(false)
        .with_user(Some(user.0.clone()));
    shell.job_variables(&vars(project.path()));
    let terminal = shell.terminal().unwrap();
    let mut conn = terminal.open(TermSize::default()).await.unwrap();
    let sleeper = ["sleep", "98765"];
    type_and_read(
        &mut conn,
        "nohup sleep 98765 >/dev/null 2>&1 & disown; echo STARTED-$((40+2))\r",
        "STARTED-42",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pids_running(&sleeper).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.control.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = pids_running(&sleeper);
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            for pid in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
            }
            panic!("processes started from the terminal outlived it: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shell.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_user_the_terminal_never_starts_where_only_root_can_go() {
    if !can_run("the terminal directory test") {
        return;
    }
    let user = TempUser::create("term-cd");
    // outer (0700 root) / inner (0755) / f (0644): the user may read f only from inside inner, which it cannot
    // reach by itself.
    let secret_root = tempfile::tempdir().unwrap();
    let outer = secret_root.path().join("outer");
    let inner = outer.join("inner");
    fs::create_dir_all(&inner).unwrap();
    fs::set_permissions(&inner, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&outer, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(inner.join("f"), "TOP-SECRET-VALUE\n").unwrap();
    fs::set_permissions(inner.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
    let builds = tempfile::tempdir().unwrap();
    fs::set_permissions(builds.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let project = builds.path().join("project");
    symlink(&inner, &project).unwrap();

    let mut shell = ShellExecutor::new()
        .with_login_shell(false)
        .with_user(Some(user.0.clone()));
    shell.job_variables(&vars(&project));
    let terminal = shell.terminal().unwrap();
    let mut conn = terminal.open(TermSize::default()).await.unwrap();
    let seen = type_and_read(&mut conn, "cat f; echo DONE-$((40+2))\r", "DONE-42").await;
    conn.control.close().await;
    shell.cleanup().await;
    assert!(
        !seen.contains("TOP-SECRET-VALUE"),
        "the job user read a root-only file: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_user_the_terminal_device_belongs_to_the_job_user() {
    if !can_run("the terminal device test") {
        return;
    }
    let user = TempUser::create("term-tty");
    let project = tempfile::tempdir().unwrap();
    let mut shell = ShellExecutor::new()
        .with_login_shell(false)
        .with_user(Some(user.0.clone()));
    shell.job_variables(&vars(project.path()));
    let terminal = shell.terminal().unwrap();
    let mut conn = terminal.open(TermSize::default()).await.unwrap();
    let seen = type_and_read(
        &mut conn,
        "printf 'O<%s>\\n' \"$(stat -c %U \"$(tty)\")\"; echo E''ND-$((40+2))\r",
        "END-42",
    )
    .await;
    conn.control.close().await;
    shell.cleanup().await;
    assert!(
        seen.contains(&format!("O<{}>", user.0)),
        "the pty is not the job user's: {seen}"
    );
}
