//! What `oxrunner exec` prints about failed jobs when the pipeline is done: the last lines of each failed job
//! (with the live board, which did not scroll them past) and the failed tests of its `reports:junit`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use super::job::{Env, JobSpec};
use super::junit::{self, Report};
use super::scheduler::{Record, Status};
use crate::hooks::LocalTransport;

/// Prints the report of every failed job among `specs` (same order as `records`).
pub async fn report(env: &Env, specs: &[Arc<JobSpec>], records: &[Record]) {
    for (spec, record) in specs.iter().zip(records) {
        if !matches!(record.status, Status::Failed { .. }) {
            continue;
        }
        let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
        let dir = store.job_dir(spec.id, &spec.job.name).join("junit");
        // Decompressing and parsing is blocking work on job output: off the async workers.
        let junit = tokio::task::spawn_blocking(move || junit::read_dir(&dir))
            .await
            .unwrap_or_default();
        let tail = env.console.tail(&spec.display);
        let text = render(&spec.display, &tail, &env.log_path(&spec.dir), &junit);
        if !text.is_empty() {
            env.console.note(&text);
        }
    }
}

fn render(job: &str, tail: &[String], log: &Path, junit: &Report) -> String {
    let mut out = String::new();
    if !tail.is_empty() {
        let _ = writeln!(
            out,
            "\n--- {job} failed; its last {} lines (full log: {}):",
            tail.len(),
            log.display()
        );
        for line in tail {
            let _ = writeln!(out, "  {line}");
        }
    }
    if junit.failed > 0 || junit.problem.is_some() {
        let _ = writeln!(
            out,
            "\n--- {job}: {} failed test{} in reports:junit",
            junit.failed,
            if junit.failed == 1 { "" } else { "s" }
        );
        for f in &junit.failures {
            if f.message.is_empty() {
                let _ = writeln!(out, "  FAILED {}", f.name);
            } else {
                let _ = writeln!(out, "  FAILED {}: {}", f.name, f.message);
            }
        }
        if junit.failed > junit.failures.len() {
            let _ = writeln!(out, "  ... and {} more", junit.failed - junit.failures.len());
        }
        if let Some(p) = &junit.problem {
            let _ = writeln!(out, "  (report: {p})");
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::junit::TestFailure;

    #[test]
    fn tail_and_junit_failures() {
        let junit = Report {
            failures: vec![TestFailure {
                name: "math.adds".into(),
                message: "expected 3".into(),
            }],
            failed: 3,
            problem: None,
        };
        let text = render(
            "unit",
            &["ok 1".into(), "not ok 2".into()],
            Path::new("logs/unit.log"),
            &junit,
        );
        assert_eq!(
            text,
            "\n--- unit failed; its last 2 lines (full log: logs/unit.log):\n  ok 1\n  not ok 2\n\n--- unit: 3 \
             failed tests in reports:junit\n  FAILED math.adds: expected 3\n  ... and 2 more"
        );
        assert_eq!(render("unit", &[], Path::new("x"), &Report::default()), "");
    }
}
