//! `exec --source/--ref/--tag/--target-branch/--mr-*`: the event a local pipeline simulates, so that `--list` and
//! a run show what GitLab would create for a merge request, a tag, a schedule or a web/API/trigger pipeline.
//!
//! The flags only change the pipeline context (predefined variables, the ref, the merge request); the rules
//! themselves are evaluated by `oxrunner-pipeline` exactly as for a push.

use anyhow::bail;
use clap::ValueEnum;
use oxrunner_pipeline::{MergeRequest, PipelineContext, PipelineSource};

/// The values of `CI_PIPELINE_SOURCE` a local run can simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    #[value(name = "push")]
    Push,
    #[value(name = "merge_request_event")]
    MergeRequestEvent,
    #[value(name = "schedule")]
    Schedule,
    #[value(name = "web")]
    Web,
    #[value(name = "api")]
    Api,
    #[value(name = "trigger")]
    Trigger,
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SourceFlags {
    /// The event the pipeline is created for (CI_PIPELINE_SOURCE): push (default), merge_request_event,
    /// schedule, web, api or trigger.
    #[arg(long = "source", value_enum, value_name = "EVENT")]
    pub source: Option<Source>,
    /// The branch the pipeline runs for (default: the checked-out branch; for a merge request, its source
    /// branch). Jobs still run on your working tree.
    #[arg(long = "ref", value_name = "BRANCH")]
    pub ref_name: Option<String>,
    /// Run a pipeline for this tag (CI_COMMIT_TAG) instead of a branch.
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "ref_name")]
    pub tag: Option<String>,
    /// The merge request's target branch (default: the default branch). With a branch pipeline, says that the
    /// branch has an open merge request (CI_OPEN_MERGE_REQUESTS).
    #[arg(long = "target-branch", value_name = "BRANCH")]
    pub target_branch: Option<String>,
    /// The merge request's labels (CI_MERGE_REQUEST_LABELS), comma-separated or repeated.
    #[arg(long = "mr-labels", value_name = "LABELS", value_delimiter = ',')]
    pub mr_labels: Vec<String>,
    /// The merge request's IID (default 1).
    #[arg(long = "mr-iid", value_name = "IID")]
    pub mr_iid: Option<u64>,
    /// The merge request's title (default: the commit title).
    #[arg(long = "mr-title", value_name = "TITLE")]
    pub mr_title: Option<String>,
}

impl SourceFlags {
    /// Applies the flags to a context read from the repository.
    pub fn apply(&self, ctx: &mut PipelineContext) -> anyhow::Result<()> {
        let source = self.source.unwrap_or(Source::Push);
        let is_mr = source == Source::MergeRequestEvent;
        if !is_mr {
            let mr_only = [
                (!self.mr_labels.is_empty(), "--mr-labels"),
                (self.mr_iid.is_some() && self.target_branch.is_none(), "--mr-iid"),
                (self.mr_title.is_some(), "--mr-title"),
            ];
            if let Some((_, flag)) = mr_only.iter().find(|(set, _)| *set) {
                bail!("{flag} describes a merge request\nhint: add --source merge_request_event");
            }
        }
        if let Some(r) = &self.ref_name {
            check_ref_name(r, "--ref")?;
            ctx.ref_name = Some(r.clone());
        }
        if let Some(tag) = &self.tag {
            if is_mr {
                bail!(
                    "--tag cannot be used with --source merge_request_event: GitLab runs merge request pipelines \
                     for the source branch\nhint: use --ref BRANCH for the source branch"
                );
            }
            check_ref_name(tag, "--tag")?;
            ctx.ref_name = Some(tag.clone());
            ctx.ref_is_tag = true;
        }
        ctx.source = match source {
            Source::Push if self.tag.is_some() => PipelineSource::Tag,
            Source::Push => PipelineSource::Push,
            Source::MergeRequestEvent => PipelineSource::MergeRequest,
            Source::Schedule => PipelineSource::Schedule,
            Source::Web => PipelineSource::Web,
            Source::Api => PipelineSource::Api,
            Source::Trigger => PipelineSource::Trigger,
        };
        if let Some(t) = &self.target_branch {
            check_ref_name(t, "--target-branch")?;
        }
        let iid = self.mr_iid.unwrap_or(1);
        if is_mr {
            ctx.merge_request = Some(self.merge_request(ctx, iid)?);
        } else if self.target_branch.is_some() && self.tag.is_none() {
            ctx.open_merge_request = Some(iid);
        }
        Ok(())
    }

    fn merge_request(&self, ctx: &PipelineContext, iid: u64) -> anyhow::Result<MergeRequest> {
        let Some(source_branch) = ctx.ref_name.clone() else {
            bail!(
                "a merge request pipeline needs a source branch, and HEAD is not on a branch\nhint: pass --ref BRANCH"
            );
        };
        let target_branch = self.target_branch.clone().unwrap_or_else(|| ctx.default_branch());
        if target_branch == source_branch {
            bail!(
                "the merge request's source and target branch are both {source_branch:?}\nhint: pass \
                 --target-branch BRANCH (default: the default branch), or --ref for the source branch"
            );
        }
        let title = self.mr_title.clone().unwrap_or_else(|| {
            let message = ctx.commit_message.as_deref().unwrap_or_default();
            message.lines().next().unwrap_or_default().to_string()
        });
        let diff_base_sha = merge_base(ctx, &target_branch);
        if diff_base_sha.is_none() && ctx.project_dir.join(".git").exists() {
            errln!(
                "WARNING: the target branch {target_branch:?} is not in this repository (neither origin/{target_branch} \
                 nor {target_branch}): rules:changes count every file as changed\nhint: fetch it, or pass \
                 --target-branch BRANCH"
            );
        }
        Ok(MergeRequest {
            iid,
            source_branch,
            target_branch,
            title,
            labels: self
                .mr_labels
                .iter()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            diff_base_sha,
        })
    }
}

/// Where the source branch left the target branch, as `rules:changes` compares them (remote branch first).
fn merge_base(ctx: &PipelineContext, target: &str) -> Option<String> {
    [format!("origin/{target}"), target.to_string()]
        .iter()
        .find_map(|base| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&ctx.project_dir)
                .args(["merge-base", base, "HEAD"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !sha.is_empty()).then_some(sha)
        })
}

/// A ref name as git allows it (no option-looking or empty names: they end up in git's argv).
fn check_ref_name(name: &str, flag: &str) -> anyhow::Result<()> {
    let bad = name.is_empty()
        || name.starts_with('-')
        || name.contains("..")
        || name.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        bail!(
            "{flag} {name:?} is not a valid git ref name\nhint: use a branch or tag name such as feature/login or v1.2.0"
        );
    }
    Ok(())
}
