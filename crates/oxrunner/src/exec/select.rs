//! Which jobs run, and what each waits for.

use std::collections::{BTreeSet, HashMap};

use oxrunner_pipeline::{Pipeline, PipelineJob};

/// A job name from the command line matched against the pipeline: the exact name, or the base name of
/// `parallel` jobs (`test` selects `test 1/3` and `test: [a, b]`).
fn matches(job: &str, wanted: &str) -> bool {
    if job == wanted {
        return true;
    }
    if let Some(rest) = job.strip_prefix(wanted) {
        if rest.starts_with(": [") {
            return true;
        }
        if let Some(n) = rest.strip_prefix(' ') {
            return n.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
            });
        }
    }
    false
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no job named {0:?} in this pipeline\nhint: `oxrunner exec --list` shows the job names")]
    Unknown(String),
}

/// Indices of the jobs to run, in pipeline order. `named` empty: every job.
pub fn select(pipeline: &Pipeline, named: &[String], with_needs: bool) -> Result<Vec<usize>, SelectError> {
    if named.is_empty() {
        return Ok((0..pipeline.jobs.len()).collect());
    }
    let mut chosen = BTreeSet::new();
    for want in named {
        let before = chosen.len();
        chosen.extend(
            pipeline
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| matches(&j.name, want))
                .map(|(i, _)| i),
        );
        if chosen.len() == before && !pipeline.jobs.iter().any(|j| matches(&j.name, want)) {
            return Err(SelectError::Unknown(want.clone()));
        }
    }
    if with_needs {
        let all: Vec<usize> = (0..pipeline.jobs.len()).collect();
        let mut stack: Vec<usize> = chosen.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for p in predecessors(pipeline, i, &all) {
                if chosen.insert(p) {
                    stack.push(p);
                }
            }
        }
    }
    Ok(chosen.into_iter().collect())
}

/// What job `i` waits for among `set`: its `needs`, or without `needs` every job of an earlier stage.
pub fn predecessors(pipeline: &Pipeline, i: usize, set: &[usize]) -> Vec<usize> {
    let job = &pipeline.jobs[i];
    match &job.needs {
        Some(needs) => {
            let by_name: HashMap<&str, usize> =
                set.iter().map(|&k| (pipeline.jobs[k].name.as_str(), k)).collect();
            let mut out: Vec<usize> = needs
                .iter()
                .filter_map(|n| by_name.get(n.job.as_str()).copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        }
        None => set
            .iter()
            .copied()
            .filter(|&k| pipeline.jobs[k].stage_index < job.stage_index)
            .collect(),
    }
}

/// Names of the jobs whose artifacts and dotenv `job` receives (the payload's `dependencies`).
pub fn dependency_names(job: &PipelineJob) -> Vec<String> {
    let mut names: Vec<String> = job.payload.dependencies.iter().map(|d| d.name.clone()).collect();
    // A dynamic child pipeline's trigger job reads its configuration from the generator's artifacts.
    if let Some(d) = job.trigger.as_ref().and_then(|t| t.dynamic.as_ref()) {
        for f in &d.files {
            if !names.contains(&f.job) {
                names.push(f.job.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn names_match_parallel_jobs() {
        assert!(matches("test", "test"));
        assert!(matches("test 1/3", "test"));
        assert!(matches("test: [a, b]", "test"));
        assert!(!matches("testing", "test"));
        assert!(!matches("test x/3", "test"));
    }
}
