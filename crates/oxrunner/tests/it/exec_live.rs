//! `oxrunner exec` output: piped, the prefixed lines of today, byte for byte (modulo timings and machine names);
//! on a terminal (a real one: tmux), the live board redrawn in place, then the failed jobs' last lines and their
//! `reports:junit` failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::exec::Repo;

const SAMPLE: &str = r#"
stages: [build, test]
compile:
  stage: build
  script:
    - echo compiling
    - mkdir -p out && echo bin > out/app
  artifacts:
    paths: [out/]
unit:
  stage: test
  script:
    - printf 'one\ntwo\n'
    - cat out/app
"#;

const SAMPLE_OUTPUT: &str = r#"compile | Running with oxrunner VERSION
compile |   on oxrunner-exec local, system ID: local
compile | Preparing the "shell" executor
compile | Using Shell (bash) executor...
compile | Preparing environment
compile | Running on HOST...
compile | Getting source from Git repository
compile | Skipping Git repository setup
compile | Executing "step_script" stage of the job script
compile | $ echo compiling
compile | compiling
compile | $ mkdir -p out && echo bin > out/app
compile | Uploading artifacts for successful job
compile | Uploading artifacts...
compile | found 2 matching artifact files and directories
compile | Uploading artifacts as "archive" to coordinator... stored  path=REPO/.oxrunner/artifacts/compile/archive/artifacts.zip
compile | Cleaning up project directory and file based variables
compile | Job succeeded
unit    | Running with oxrunner VERSION
unit    |   on oxrunner-exec local, system ID: local
unit    | Preparing the "shell" executor
unit    | Using Shell (bash) executor...
unit    | Preparing environment
unit    | Running on HOST...
unit    | Getting source from Git repository
unit    | Skipping Git repository setup
unit    | Downloading artifacts
unit    | Downloading artifacts for compile (1)...
unit    | Downloading artifacts from coordinator... ok  path=REPO/.oxrunner/artifacts/compile/archive/artifacts.zip
unit    | Executing "step_script" stage of the job script
unit    | $ printf 'one\ntwo\n'
unit    | one
unit    | two
unit    | $ cat out/app
unit    | bin
unit    | Cleaning up project directory and file based variables
unit    | Job succeeded

JOB      STAGE  DURATION  STATUS
compile  build      T.Ts  passed
unit     test       T.Ts  passed

Pipeline passed in T.Ts (2 jobs, 0 allowed to fail). Logs: REPO/.oxrunner/logs
"#;

/// Replaces what differs between machines and runs: the version, the host name, the repository path, timings.
fn normalise(out: &str, repo: &Path) -> String {
    let repo = repo.display().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    out.lines()
        .map(|l| {
            let mut l = l.replace(&repo, "REPO");
            if let Some(at) = l.find("Running with oxrunner ") {
                l.truncate(at);
                l.push_str("Running with oxrunner VERSION");
            }
            l = l.replace(&format!("Running on {}...", host.trim()), "Running on HOST...");
            let words: Vec<String> = l
                .split(' ')
                .map(|w| {
                    let t = w.trim_end_matches('s');
                    let timing = w.ends_with('s')
                        && t.split_once('.').is_some_and(|(a, b)| {
                            !a.is_empty()
                                && b.len() == 1
                                && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
                        });
                    if timing { "T.Ts".to_string() } else { w.to_string() }
                })
                .collect();
            words.join(" ")
        })
        .map(|l| l + "\n")
        .collect()
}

#[test]
fn piped_output_keeps_the_prefixed_lines() {
    let repo = Repo::new(SAMPLE, &[]);
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    let got = normalise(&run.stdout(), repo.path());
    assert_eq!(got, SAMPLE_OUTPUT, "piped output changed:\n{}", run.dump());
    assert!(!run.stdout().contains('\x1b'), "no escape sequences when piped");
}

const LIVE: &str = r#"
stages: [build, test]
compile:
  stage: build
  script: [echo compiled]
waiter:
  stage: test
  script:
    - echo "waiting for the go file"
    - while [ ! -e "$MARKERS/go" ]; do sleep 0.1; done
    - echo released
unit:
  stage: test
  script:
    - mkdir -p reports
    - printf '<testsuite><testcase classname="calc" name="adds"><failure message="expected 3, got 4"/></testcase><testcase name="ok"/></testsuite>' > reports/junit.xml
    - echo "unit tests done"
    - exit 1
  artifacts:
    reports:
      junit: reports/junit.xml
"#;

/// A private tmux server (its own socket name), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux must be installed (scripts/ensure-deps installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane with its scroll-back.
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-2000", "-t", "oxrt"])
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pane = self.capture();
            if cond(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pane:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn row<'a>(pane: &'a str, job: &str) -> Option<&'a str> {
    pane.lines()
        .map(str::trim_end)
        .find(|l| l.trim_start().starts_with(&format!("{job} ")) && l.starts_with("  "))
}

#[test]
fn terminal_shows_the_live_board_and_the_failures() {
    let repo = Repo::new(LIVE, &[]);
    let markers = repo.markers();
    let tmux = Tmux {
        socket: format!("oxrt-live-{}", std::process::id()),
    };
    let cmd = format!(
        "cd '{}' && NO_COLOR=1 '{}' exec --concurrency 4 --variable MARKERS='{}'; echo EXIT=$?; sleep 600",
        repo.path().display(),
        env!("CARGO_BIN_EXE_oxrunner"),
        markers.display()
    );
    tmux.run(&["new-session", "-d", "-s", "oxrt", "-x", "110", "-y", "40", &cmd]);

    let pane = tmux.wait_for("the board with a running job", |p| {
        row(p, "waiter").is_some_and(|r| r.contains("running") && r.ends_with(r#"do sleep 0.1; done"#))
            && row(p, "unit").is_some_and(|r| r.contains("FAILED"))
    });
    assert!(
        row(&pane, "compile").is_some_and(|r| r.contains("passed")),
        "{pane}"
    );
    assert!(pane.contains("oxrunner exec: 2/3 jobs done, 1 running"), "{pane}");
    assert!(
        pane.lines().position(|l| l.trim_end() == "build")
            < pane.lines().position(|l| l.trim_end() == "test"),
        "stages in order:\n{pane}"
    );
    assert!(
        !pane.contains("compile | "),
        "job lines are not scrolled past on a terminal:\n{pane}"
    );

    std::fs::write(markers.join("go"), "").unwrap();
    let pane = tmux.wait_for("the end of the run", |p| p.contains("EXIT="));
    assert!(pane.contains("EXIT=1"), "{pane}");
    // Redrawn in place: no frame of the board is left behind, in the pane or its scroll-back.
    assert!(!pane.contains("jobs done,"), "{pane}");
    assert!(pane.contains("--- unit failed; its last "), "{pane}");
    assert!(
        pane.lines().any(|l| l.trim_end() == "  unit tests done"),
        "{pane}"
    );
    assert!(
        pane.contains("--- unit: 1 failed test in reports:junit"),
        "{pane}"
    );
    assert!(pane.contains("  FAILED calc.adds: expected 3, got 4"), "{pane}");
    assert!(pane.contains("Pipeline FAILED"), "{pane}");
    let log = std::fs::read_to_string(repo.path().join(".oxrunner/logs/waiter.log")).unwrap();
    assert!(log.contains("released"), "the full log is kept:\n{log}");
}

#[test]
fn piped_failures_list_junit_failures_without_repeating_lines() {
    let repo = Repo::new(LIVE, &[]);
    std::fs::write(repo.markers().join("go"), "").unwrap();
    let run = repo.exec(&[]);
    assert!(!run.ok());
    let out = run.stdout();
    assert!(
        out.contains("--- unit: 1 failed test in reports:junit\n  FAILED calc.adds: expected 3, got 4\n"),
        "{}",
        run.dump()
    );
    assert!(
        !out.contains("its last"),
        "piped output already showed the lines:\n{out}"
    );
}
