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

/// The id GitLab gave the runner entry: unlike the short token it survives a token rotation, so a suspended
/// environment is matched by it (with [`LABEL_SYSTEM_ID`]), as gitlab-runner's environment key is.
pub const LABEL_RUNNER_ID: &str = "com.oxrunner.runner-id";
/// The system id of the machine whose runner made the object.
pub const LABEL_SYSTEM_ID: &str = "com.oxrunner.system-id";

/// `labels` with the runner's id and system id, when the runner has an id.
pub fn with_owner(
    mut labels: HashMap<String, String>,
    runner_id: i64,
    system_id: &str,
) -> HashMap<String, String> {
    if runner_id > 0 {
        labels.insert(LABEL_RUNNER_ID.to_owned(), runner_id.to_string());
        labels.insert(LABEL_SYSTEM_ID.to_owned(), system_id.to_owned());
    }
    labels
}

/// Whether labels name this runner: by its id and system id when the object carries them (which outlive a token
/// rotation), else by its short token.
pub fn owned_by(
    labels: Option<&HashMap<String, String>>,
    short_token: &str,
    runner_id: i64,
    system_id: &str,
) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    match label(LABEL_RUNNER_ID) {
        Some(id) => id == runner_id.to_string() && label(LABEL_SYSTEM_ID) == Some(system_id),
        None => label(LABEL_RUNNER) == Some(short_token),
    }
}

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
