//! The table printed when the pipeline is done.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::scheduler::Status;

pub struct Row {
    pub name: String,
    pub stage: String,
    pub status: Status,
    pub duration: Duration,
    pub attempts: u32,
    /// The `coverage:` value read from the job's log.
    pub coverage: Option<String>,
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Passed => "passed".into(),
        Status::Failed {
            allowed: true,
            exit_code,
            ..
        } => match exit_code {
            Some(c) => format!("failed (allowed, exit {c})"),
            None => "failed (allowed)".into(),
        },
        Status::Failed {
            exit_code, reason, ..
        } => match exit_code {
            Some(c) => format!("FAILED (exit {c})"),
            None => format!("FAILED ({reason})"),
        },
        Status::Skipped(why) => format!("skipped: {why}"),
        Status::Manual => "manual (not run; use --manual NAME)".into(),
        Status::ManualBlocking => "manual, blocks the pipeline (not run; use --manual NAME)".into(),
        Status::Blocked(by) => format!("created: waits for manual job {by}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Green, yellow or red for a status, when colour is on.
fn paint(text: String, s: &Status, colour: bool) -> String {
    if !colour {
        return text;
    }
    let code = match s {
        Status::Passed => "32",
        Status::Failed { allowed: true, .. } => "33",
        Status::Failed { .. } => "31;1",
        Status::Skipped(_) | Status::Manual | Status::Blocked(_) => "90",
        Status::ManualBlocking => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

pub fn render(rows: &[Row], passed: bool, wall: Duration, logs: &Path, colour: bool) -> String {
    let w_name = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(3);
    let w_stage = rows
        .iter()
        .map(|r| r.stage.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<w_name$}  {:<w_stage$}  {:>8}  STATUS",
        "JOB", "STAGE", "DURATION"
    );
    for r in rows {
        let retries = if r.attempts > 1 {
            format!(", {} attempts", r.attempts)
        } else {
            String::new()
        };
        let retries = match &r.coverage {
            Some(c) => format!("{retries}, coverage {c}%"),
            None => retries,
        };
        let _ = writeln!(
            out,
            "{:<w_name$}  {:<w_stage$}  {:>8}  {}{retries}",
            r.name,
            r.stage,
            secs(r.duration),
            paint(status_text(&r.status), &r.status, colour)
        );
    }
    let allowed = rows
        .iter()
        .filter(|r| matches!(r.status, Status::Failed { allowed: true, .. }))
        .count();
    let _ = write!(
        out,
        "\nPipeline {} in {} ({} jobs, {allowed} allowed to fail). Logs: {}",
        verdict(rows, passed),
        secs(wall),
        rows.len(),
        logs.display()
    );
    out
}

/// `blocked` when nothing failed but a blocking manual job was not played (GitLab's pipeline status).
fn verdict(rows: &[Row], passed: bool) -> &'static str {
    let blocked = rows
        .iter()
        .any(|r| matches!(r.status, Status::ManualBlocking | Status::Blocked(_)));
    if passed && !blocked {
        "passed"
    } else if blocked && !rows.iter().any(|r| r.status.blocks()) {
        "blocked"
    } else {
        "FAILED"
    }
}
