//! Dynamic child pipelines: `trigger: include: [{artifact: FILE, job: GENERATOR}]`. GitLab creates the child
//! pipeline when the trigger job runs, from FILE in GENERATOR's artifacts; so the resolved parent only records
//! where the configuration will come from, and the runner resolves it ([`DynamicChild::resolve`]) once the
//! generator has passed.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::context::PipelineContext;
use crate::error::{PipelineError, Warning};
use crate::model::Pipeline;
use crate::yaml::{Node, Val};

/// Where a dynamic child pipeline's configuration comes from, and the context it is resolved in.
#[derive(Clone, Serialize)]
pub struct DynamicChild {
    /// The job whose artifacts hold the configuration.
    pub job: String,
    /// The configuration's path inside that job's artifacts archive.
    pub artifact: String,
    /// The child's context (source `parent_pipeline`, the trigger job's variables); may hold CLI secrets.
    #[serde(skip)]
    ctx: PipelineContext,
    #[serde(skip)]
    depth: usize,
}

impl fmt::Debug for DynamicChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicChild")
            .field("job", &self.job)
            .field("artifact", &self.artifact)
            .finish_non_exhaustive()
    }
}

impl DynamicChild {
    /// The child pipeline for `text`, the generated configuration; errors point into the artifact's file.
    pub fn resolve(&self, text: &str) -> Result<Pipeline, PipelineError> {
        crate::resolve_child_text(&self.ctx, text, self.depth)
    }

    /// GitLab's message when the generator is missing or left no such file.
    pub fn not_found(&self) -> String {
        format!(
            "Job `{}` not found in parent pipeline or does not have artifacts!",
            self.job
        )
    }
}

/// The artifact entry of a `trigger:include`, if it has one: `Ok(None)` for includes of repository files.
pub(crate) fn from_include(
    inc: &Node,
    mut child: PipelineContext,
    depth: usize,
    path: &str,
    jobs: &HashSet<String>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<DynamicChild>, PipelineError> {
    let entries: Vec<&Node> = match &inc.val {
        Val::Seq(items) => items.iter().collect(),
        _ => vec![inc],
    };
    let Some(entry) = entries
        .iter()
        .find(|e| e.as_map().is_some_and(|m| m.contains_key("artifact")))
    else {
        return Ok(None);
    };
    let hint = "a dynamic child pipeline is one `- artifact: FILE` with `job: GENERATOR`";
    if entries.len() > 1 {
        return Err(PipelineError::at_hint(
            &inc.loc,
            format!("{path}:include: an artifact include cannot be combined with other includes here"),
            format!("{hint}; include the other files from the generated configuration"),
        ));
    }
    let m = entry
        .as_map()
        .ok_or_else(|| PipelineError::at(&entry.loc, "include config should be a hash"))?;
    let field = |k: &str| m.get(k).and_then(Node::scalar_string).filter(|s| !s.is_empty());
    let (Some(artifact), Some(job)) = (field("artifact"), field("job")) else {
        return Err(PipelineError::at_hint(
            &entry.loc,
            format!("{path}:include config must specify the job where to fetch the artifact from"),
            hint,
        ));
    };
    if !jobs.contains(&job) {
        warnings.push(Warning::at(
            &entry.loc,
            format!(
                "{path}: the generator job `{job}` is not in this pipeline; GitLab fails the trigger job when it runs (Job `{job}` not found in parent pipeline or does not have artifacts!)"
            ),
        ));
    }
    child.ci_file = PathBuf::from(artifact.trim_start_matches('/'));
    Ok(Some(DynamicChild {
        job,
        artifact: artifact.trim_start_matches('/').to_string(),
        ctx: child,
        depth,
    }))
}
