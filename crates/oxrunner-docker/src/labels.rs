//! Labels on every container, volume and network oxrunner creates, so leftovers can be found and removed.

use std::collections::HashMap;

/// The runner that created the object (its short token: the public 8-character prefix, never the full token).
pub const LABEL_RUNNER: &str = "com.oxrunner.runner";
/// The GitLab job id.
pub const LABEL_JOB: &str = "com.oxrunner.job";
/// The GitLab project id.
pub const LABEL_PROJECT: &str = "com.oxrunner.project";
/// What the object is for (`build`, `builds-volume`, ...).
pub const LABEL_TYPE: &str = "com.oxrunner.type";

/// Labels for an object of a job.
pub fn job_labels(runner: &str, job_id: i64, project_id: i64, kind: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_RUNNER.to_owned(), runner.to_owned()),
        (LABEL_JOB.to_owned(), job_id.to_string()),
        (LABEL_PROJECT.to_owned(), project_id.to_string()),
        (LABEL_TYPE.to_owned(), kind.to_owned()),
    ])
}

/// Engine list filter selecting the objects of one runner (and optionally one job).
pub fn label_filter(runner: &str, job_id: Option<i64>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{LABEL_RUNNER}={runner}")];
    if let Some(id) = job_id {
        labels.push(format!("{LABEL_JOB}={id}"));
    }
    HashMap::from([("label".to_owned(), labels)])
}
