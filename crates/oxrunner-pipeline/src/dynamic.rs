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

/// One `artifact: FILE` entry of a `trigger:include`: FILE in the artifacts archive of the job `job`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactFile {
    /// The job whose artifacts hold the file.
    pub job: String,
    /// The file's path inside that job's artifacts archive.
    pub artifact: String,
}

/// An artifact include's text, read by the runner once the generator has passed.
#[derive(Clone, Debug)]
pub struct ArtifactText {
    pub file: ArtifactFile,
    pub text: String,
}

/// Where a dynamic child pipeline's configuration comes from, and the context it is resolved in.
#[derive(Clone, Serialize)]
pub struct DynamicChild {
    /// The `artifact:` entries, in the order they are included.
    pub files: Vec<ArtifactFile>,
    /// With other entries beside the artifacts (`local`, `template`, `project`, ...): the child's root
    /// configuration, `include:` with the whole list, as GitLab builds it for the downstream pipeline.
    #[serde(skip)]
    root: Option<String>,
    /// The child's context (source `parent_pipeline`, the trigger job's variables); may hold CLI secrets.
    #[serde(skip)]
    ctx: PipelineContext,
    #[serde(skip)]
    depth: usize,
}

impl fmt::Debug for DynamicChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicChild")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl DynamicChild {
    /// The child pipeline from the texts of its artifact files (one per entry of [`files`](Self::files), in that
    /// order); errors point into the artifact's file.
    pub fn resolve(&self, texts: &[String]) -> Result<Pipeline, PipelineError> {
        let artifacts: Vec<ArtifactText> = self
            .files
            .iter()
            .zip(texts)
            .map(|(file, text)| ArtifactText {
                file: file.clone(),
                text: text.clone(),
            })
            .collect();
        match (&self.root, artifacts.as_slice()) {
            // A lone artifact is the child's configuration itself, so errors name its file.
            (None, [only]) => crate::resolve_child_text(&self.ctx, &only.text, &[], self.depth),
            (Some(root), _) => crate::resolve_child_text(&self.ctx, root, &artifacts, self.depth),
            (None, _) => Err(PipelineError::pipeline(format!(
                "{} artifact files were read for {} artifact includes",
                texts.len(),
                self.files.len()
            ))),
        }
    }

    /// GitLab's message when the generator is missing or left no such file.
    pub fn not_found(file: &ArtifactFile) -> String {
        format!(
            "Job `{}` not found in parent pipeline or does not have artifacts!",
            file.job
        )
    }
}

/// The trigger job whose `trigger:include` is read.
pub(crate) struct Site<'a> {
    /// `jobs:NAME:trigger`, for messages.
    pub path: &'a str,
    pub trigger_job: &'a str,
    /// The parent pipeline's jobs, which a generator must be one of.
    pub jobs: &'a HashSet<String>,
}

/// The artifact entries of a `trigger:include`, if it has any: `Ok(None)` for includes of repository files only.
pub(crate) fn from_include(
    inc: &Node,
    mut child: PipelineContext,
    depth: usize,
    site: &Site<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<DynamicChild>, PipelineError> {
    let entries: Vec<&Node> = match &inc.val {
        Val::Seq(items) => items.iter().collect(),
        _ => vec![inc],
    };
    let is_artifact = |e: &Node| e.as_map().is_some_and(|m| m.contains_key("artifact"));
    if !entries.iter().any(|e| is_artifact(e)) {
        return Ok(None);
    }
    let path = site.path;
    let mut files = Vec::new();
    for entry in entries.iter().filter(|e| is_artifact(e)) {
        let m = entry
            .as_map()
            .ok_or_else(|| PipelineError::at(&entry.loc, "include config should be a hash"))?;
        let field = |k: &str| m.get(k).and_then(Node::scalar_string).filter(|s| !s.is_empty());
        let (Some(artifact), Some(job)) = (field("artifact"), field("job")) else {
            return Err(PipelineError::at_hint(
                &entry.loc,
                format!("{path}:include config must specify the job where to fetch the artifact from"),
                "a dynamic child pipeline's entry is `- artifact: FILE` with `job: GENERATOR`",
            ));
        };
        if !site.jobs.contains(&job) {
            warnings.push(Warning::at(
                &entry.loc,
                format!(
                    "{path}: the generator job `{job}` is not in this pipeline; GitLab fails the trigger job when it runs (Job `{job}` not found in parent pipeline or does not have artifacts!)"
                ),
            ));
        }
        files.push(ArtifactFile {
            job,
            artifact: normalize(&artifact),
        });
    }
    let root = if entries.len() == 1 {
        child.ci_file = PathBuf::from(&files[0].artifact);
        None
    } else {
        child.ci_file = PathBuf::from(format!("{}.trigger.yml", site.trigger_job));
        Some(format!("include: {}\n", inc.to_json()))
    };
    Ok(Some(DynamicChild {
        files,
        root,
        ctx: child,
        depth,
    }))
}

/// An artifact path as it is looked up in the archive: no leading `/` or `./`.
pub fn normalize(artifact: &str) -> String {
    artifact
        .trim_start_matches('/')
        .trim_start_matches("./")
        .to_string()
}
