//! A job payload (`api::JobResponse`, from GitLab or from `oxrunner exec`) → the executor-neutral `core::JobPlan`.
//!
//! Only shape changes happen here; meaning (GIT_STRATEGY, attempts, expansion) is read from the variables by the
//! core, so a payload built by `oxrunner exec` and one sent by GitLab behave the same.

use std::time::Duration;

use oxrunner_api::JobResponse;
use oxrunner_core::feature_flags;
use oxrunner_core::{
    ArtifactSpec, ArtifactsFile, CachePolicy, CacheSpec, Dependency, GitStrategy, ImageSpec, JobPlan,
    RegistryCredential, Secret, Sources, Step, TraceFeatures, Variable, Variables, When,
};

/// Why a payload cannot become a plan: it is answered as a failed job, never a crash.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("job {0} has no steps to run (the payload's `steps` is empty)")]
    NoSteps(i64),
    #[error("job {job}: unsupported executor options {keys:?} for image `{image}`")]
    UnsupportedExecutorOptions {
        job: i64,
        image: String,
        keys: Vec<String>,
    },
}

/// Whether the runner can run this payload at all; a refused job is reported failed with the reason.
pub fn check(job: &JobResponse) -> Result<(), PlanError> {
    if job.steps.is_empty() {
        return Err(PlanError::NoSteps(job.id));
    }
    for img in std::iter::once(&job.image).chain(job.services.iter()) {
        let mut keys: Vec<String> = img.executor_opts.other.keys().cloned().collect();
        keys.extend(
            img.executor_opts
                .docker
                .other
                .keys()
                .map(|k| format!("docker.{k}")),
        );
        if !keys.is_empty() {
            return Err(PlanError::UnsupportedExecutorOptions {
                job: job.id,
                image: img.name.clone(),
                keys,
            });
        }
    }
    Ok(())
}

/// The plan of any payload, even one [`check`] refuses: its mask set then still masks the failure's trace by the
/// one rule in `JobPlan::mask_set`.
pub fn job_plan(job: &JobResponse, ca_chain: Option<String>) -> JobPlan {
    let variables: Variables = job.variables.iter().map(variable).collect();

    let mut steps = Vec::new();
    let mut after_script = None;
    for s in &job.steps {
        let step = Step {
            name: s.name.clone(),
            script: s.script.clone(),
            timeout: (s.timeout > 0).then(|| Duration::from_secs(s.timeout.unsigned_abs())),
            when: When::parse(&s.when),
            allow_failure: s.allow_failure,
        };
        if s.name == "after_script" {
            after_script = Some(step);
        } else {
            steps.push(step);
        }
    }
    let image = (!job.image.name.is_empty()).then(|| image_spec(&job.image));

    let git = &job.git_info;
    let sources = sources(job, ca_chain);

    JobPlan {
        job_id: job.id,
        job_name: job.job_info.name.clone(),
        stage: job.job_info.stage.clone(),
        project_id: job.job_info.project_id,
        // gitlab-runner's rule: the repository URL's path; the core falls back to `project-<id>` when it is unsafe.
        project_path: oxrunner_core::plan::project_path_from_repo_url(&git.repo_url)
            .unwrap_or_else(|| job.job_info.project_full_path.clone()),
        variables,
        sources,
        steps,
        after_script,
        timeout: if job.runner_info.timeout > 0 {
            Duration::from_secs(job.runner_info.timeout.unsigned_abs())
        } else {
            Duration::ZERO
        },
        caches: job.cache.iter().map(cache_spec).collect(),
        artifacts: job.artifacts.iter().map(artifact_spec).collect(),
        dependencies: job
            .dependencies
            .iter()
            .map(|d| Dependency {
                id: d.id,
                name: d.name.clone(),
                token: Secret::new(d.token.clone()),
                artifacts_file: d.artifacts_file.as_ref().map(|f| ArtifactsFile {
                    filename: f.filename.clone(),
                    size: u64::try_from(f.size).unwrap_or(0),
                }),
            })
            .collect(),
        image,
        suspend: oxrunner_core::SuspendOptions {
            on_success: job.suspend_options.suspend_on_success,
            on_failure: job.suspend_options.suspend_on_failure,
            runtime_environment_key: job.suspend_options.runtime_environment_key.clone(),
        },
        services: job.services.iter().map(image_spec).collect(),
        credentials: job
            .credentials
            .iter()
            .map(|c| RegistryCredential {
                kind: c.r#type.clone(),
                url: c.url.clone(),
                username: c.username.clone(),
                password: Secret::new(c.password.clone()),
            })
            .collect(),
        features: TraceFeatures {
            trace_sections: job.features.trace_sections,
            token_mask_prefixes: job.features.token_mask_prefixes.clone(),
            failure_reasons: job.features.failure_reasons.clone(),
        },
        job_token: Secret::new(job.token.clone()),
    }
}

/// Resolves every feature flag for `plan` (`[runners.feature_flags]` over the job's variable over
/// `[[runners]] environment` over the default) into `FF_*` job variables; returns what could not be parsed, for
/// the job log.
pub fn resolve_feature_flags(
    plan: &mut JobPlan,
    config: &std::collections::BTreeMap<String, bool>,
    environment: &[String],
) -> Vec<String> {
    let (resolved, problems) = feature_flags::resolve(config, environment, &plan.variables);
    plan.variables = feature_flags::apply(&resolved, &plan.variables);
    problems
}

/// Where and how the job's sources are fetched, with the job's `hooks:` around the fetch.
fn sources(job: &JobResponse, ca_chain: Option<String>) -> Sources {
    let git = &job.git_info;
    let hook = |name: &str| -> Vec<String> {
        job.hooks
            .iter()
            .filter(|h| h.name == name)
            .flat_map(|h| h.script.iter().cloned())
            .collect()
    };
    Sources {
        strategy: if job.allow_git_fetch {
            GitStrategy::Fetch
        } else {
            GitStrategy::Clone
        },
        repo_url: Secret::new(git.repo_url.clone()),
        sha: git.sha.clone(),
        ref_name: git.r#ref.clone(),
        ref_type: if git.ref_type.is_empty() {
            "branch".into()
        } else {
            git.ref_type.clone()
        },
        refspecs: git.refspecs.clone(),
        depth: u32::try_from(git.depth).unwrap_or(0),
        pre_get_sources_script: hook("pre_get_sources_script"),
        post_get_sources_script: hook("post_get_sources_script"),
        ca_file: ca_chain,
        correlation_id: job.job_request_correlation_id.clone(),
        ..Sources::default()
    }
}

fn variable(v: &oxrunner_api::Variable) -> Variable {
    Variable {
        key: v.key.clone(),
        value: v.value.clone(),
        public: v.public,
        masked: v.masked,
        file: v.file,
        raw: v.raw,
    }
}

/// GitLab leaves `artifact_type`/`artifact_format` empty for the plain archive.
fn artifact_spec(a: &oxrunner_api::Artifact) -> ArtifactSpec {
    ArtifactSpec {
        name: a.name.clone(),
        untracked: a.untracked,
        paths: a.paths.clone(),
        exclude: a.exclude.clone(),
        when: When::parse(&a.when),
        artifact_type: if a.artifact_type.is_empty() {
            "archive".into()
        } else {
            a.artifact_type.clone()
        },
        artifact_format: if a.artifact_format.is_empty() {
            "zip".into()
        } else {
            a.artifact_format.clone()
        },
        expire_in: Some(a.expire_in.clone()).filter(|e| !e.is_empty()),
    }
}

fn cache_spec(c: &oxrunner_api::Cache) -> CacheSpec {
    CacheSpec {
        key: c.key.clone(),
        untracked: c.untracked,
        policy: match c.policy.as_str() {
            "pull" => CachePolicy::Pull,
            "push" => CachePolicy::Push,
            _ => CachePolicy::PullPush,
        },
        paths: c.paths.clone(),
        when: When::parse(&c.when),
        fallback_keys: c.fallback_keys.clone(),
    }
}

fn image_spec(i: &oxrunner_api::Image) -> ImageSpec {
    ImageSpec {
        name: i.name.clone(),
        // GitLab sends several aliases in one string, separated by spaces or commas.
        aliases: i
            .alias
            .split([' ', ','])
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        command: i.command.clone(),
        entrypoint: i.entrypoint.clone(),
        ports: i
            .ports
            .iter()
            .filter_map(|p| u16::try_from(p.number).ok())
            .collect(),
        variables: i.variables.iter().map(variable).collect(),
        pull_policy: i.pull_policy.clone(),
        platform: Some(i.executor_opts.docker.platform.clone()).filter(|p| !p.is_empty()),
        user: Some(i.executor_opts.docker.user.clone()).filter(|u| !u.is_empty()),
    }
}
