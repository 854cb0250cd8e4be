//! The two pipeline results GitLab records beyond passed and failed: a pipeline `blocked` by a manual job that
//! may not fail, and each job's `coverage:` value read from its log. Both are also written, with every job's
//! status, to `.oxrunner/pipeline.json` for tools.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::job::Env;
use super::scheduler::{Node, Record, Status};
use super::summary::Row;

/// Exit status of `oxrunner exec` when nothing failed but a blocking manual job was not played.
pub const BLOCKED_EXIT_CODE: u8 = 3;

/// Per job: its `coverage:` regex and log, taken before the scheduler consumes the nodes.
pub struct CoverageInputs(Vec<(Option<String>, PathBuf)>);

pub fn coverage_inputs(env: &Env, nodes: &[Node]) -> CoverageInputs {
    CoverageInputs(
        nodes
            .iter()
            .map(|n| (n.spec.job.coverage.clone(), env.log_path(&n.spec.dir)))
            .collect(),
    )
}

/// The coverage of every job that ran and has a `coverage:` regex, as GitLab would record it.
pub async fn coverage(inputs: CoverageInputs, records: &[Record]) -> Vec<Option<String>> {
    let ran: Vec<bool> = records
        .iter()
        .map(|r| matches!(r.status, Status::Passed | Status::Failed { .. }))
        .collect();
    // Logs may be large: read them off the async workers.
    tokio::task::spawn_blocking(move || {
        inputs
            .0
            .into_iter()
            .zip(ran)
            .map(|((regex, log), ran)| {
                let regex = regex.filter(|_| ran)?;
                let file = std::fs::File::open(log).ok()?;
                oxrunner_pipeline::extract_coverage(&regex, std::io::BufReader::new(file))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The blocking manual jobs the pipeline waits for, by name (those of a child pipeline a `strategy: depend`
/// trigger job waits for included).
pub fn to_play<'a>(names: impl Iterator<Item = &'a str>, records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, r) in names.zip(records) {
        let wanted = match &r.status {
            Status::ManualBlocking => name,
            Status::Blocked(by) => by.as_str(),
            _ => continue,
        };
        if !out.iter().any(|o| o == wanted) {
            out.push(wanted.to_string());
        }
    }
    out
}

/// What the user reads under the summary of a blocked pipeline.
pub fn blocked_note(to_play: &[String]) -> String {
    let args: Vec<String> = to_play.iter().map(|n| format!("--manual {}", quote(n))).collect();
    format!(
        "Pipeline blocked: manual job{} {} must be played before the jobs waiting for {it} can start.\nhint: play {it} with `oxrunner exec {}`",
        if to_play.len() == 1 { "" } else { "s" },
        to_play.join(", "),
        args.join(" "),
        it = if to_play.len() == 1 { "it" } else { "them" },
    )
}

fn quote(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', r"'\''"))
    }
}

/// The pipeline's status as GitLab names it.
pub fn pipeline_status(passed: bool, to_play: &[String]) -> &'static str {
    match (passed, to_play.is_empty()) {
        (false, _) => "failed",
        (true, false) => "blocked",
        (true, true) => "success",
    }
}

/// A job's status as GitLab's API names it.
fn job_status(s: &Status) -> &'static str {
    match s {
        Status::Passed => "success",
        Status::Failed { .. } => "failed",
        Status::Skipped(_) => "skipped",
        Status::Manual | Status::ManualBlocking => "manual",
        Status::Blocked(_) => "created",
    }
}

/// `.oxrunner/pipeline.json`: the run's result (status, jobs with status, duration and coverage), replaced
/// whole so a reader never sees half of it. A failure to write it is reported, not fatal.
pub fn write_report(state: &Path, rows: &[Row], status: &str, wall: Duration) -> Result<(), String> {
    let jobs: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "stage": r.stage,
                "status": job_status(&r.status),
                "allow_failure": matches!(r.status, Status::Failed { allowed: true, .. }),
                "failure_reason": match &r.status { Status::Failed { reason, .. } => Some(reason.as_str()), _ => None },
                "duration": r.duration.as_secs_f64(),
                "coverage": r.coverage.as_deref().and_then(|c| c.parse::<f64>().ok()),
            })
        })
        .collect();
    let report = json!({"status": status, "duration": wall.as_secs_f64(), "jobs": jobs});
    let path = state.join("pipeline.json");
    let tmp = state.join("tmp").join("pipeline.json.part");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    // A fresh file (O_EXCL): never written through a link a job left in the state directory.
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, (text + "\n").as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
