//! Expansion of a [`JobSpec`] into the job JSON GitLab hands to a runner (§1.8 of the API notes).

use serde_json::{Value, json};

use crate::records::{Project, RunnerRecord};
use crate::spec::{ImageSpec, JobSpec, VarFlags};

/// `Enums::Ci::CommitStatus.failure_reasons` keys, sent as `features.failure_reasons`.
pub(crate) const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "user_blocked",
    "project_deleted",
    "ci_quota_exceeded",
    "pipeline_loop_detected",
    "no_matching_runner",
    "trace_size_exceeded",
    "builds_disabled",
    "environment_creation_failure",
    "deployment_rejected",
    "failed_outdated_deployment_job",
    "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found",
    "invalid_bridge_trigger",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
];

/// Token prefixes GitLab asks runners to mask (`features.token_mask_prefixes`).
const TOKEN_MASK_PREFIXES: &[&str] = &[
    "glpat-", "gloas-", "gldt-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-",
    "glffct-", "glrtr-",
];

pub(crate) const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// A dependency as the payload shows it: id, name, and the archive's file name and size.
pub(crate) type Dependency = (i64, String, Option<(String, usize)>);

/// Everything besides the spec needed to build the payload.
pub(crate) struct PayloadContext<'a> {
    pub job_id: i64,
    pub job_token: &'a str,
    pub pipeline_id: i64,
    pub base_url: &'a str,
    pub project: Option<&'a Project>,
    pub sha: &'a str,
    pub runner: &'a RunnerRecord,
    /// (id, name, artifact file name and size) of each dependency.
    pub dependencies: Vec<Dependency>,
}

fn var(key: &str, value: impl Into<String>, flags: VarFlags) -> Value {
    let mut v = json!({
        "key": key,
        "value": value.into(),
        "public": flags.public,
        "masked": flags.masked,
    });
    if flags.file {
        v["file"] = json!(true);
    }
    if flags.raw {
        v["raw"] = json!(true);
    }
    v
}

fn slug(s: &str) -> String {
    let lowered: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed: String = lowered.chars().take(63).collect();
    trimmed.trim_matches('-').to_string()
}

fn split_url(base_url: &str) -> (String, String, String) {
    let (scheme, rest) = base_url.split_once("://").unwrap_or(("http", base_url));
    let (host, port) = rest
        .rsplit_once(':')
        .unwrap_or((rest, if scheme == "https" { "443" } else { "80" }));
    (scheme.to_string(), host.to_string(), port.to_string())
}

pub(crate) fn git_depth(spec: &JobSpec) -> i64 {
    spec.variables
        .iter()
        .rev()
        .find(|(k, _, _)| k == "GIT_DEPTH")
        .and_then(|(_, v, _)| v.trim().parse::<i64>().ok())
        .unwrap_or(20)
}

fn image_json(image: &ImageSpec) -> Value {
    let mut v = json!({ "name": image.name });
    if let Some(alias) = &image.alias {
        v["alias"] = json!(alias);
    }
    if !image.entrypoint.is_empty() {
        v["entrypoint"] = json!(image.entrypoint);
    }
    if !image.command.is_empty() {
        v["command"] = json!(image.command);
    }
    if !image.pull_policy.is_empty() {
        v["pull_policy"] = json!(image.pull_policy);
    }
    if !image.variables.is_empty() {
        v["variables"] = Value::Array(
            image
                .variables
                .iter()
                .map(|(k, val)| var(k, val.clone(), VarFlags::YAML))
                .collect(),
        );
    }
    if let Some(opts) = &image.executor_opts {
        v["executor_opts"] = opts.clone();
    }
    v
}

fn project_path(ctx: &PayloadContext<'_>) -> String {
    ctx.project
        .map(|p| p.path.clone())
        .unwrap_or_else(|| "fake/no-project".to_string())
}

fn predefined_variables(spec: &JobSpec, ctx: &PayloadContext<'_>, repo_url: &str) -> Vec<Value> {
    let (scheme, host, port) = split_url(ctx.base_url);
    let path = project_path(ctx);
    let project_id = ctx.project.map(|p| p.id).unwrap_or(0).to_string();
    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
    let namespace = path.rsplit_once('/').map(|(n, _)| n).unwrap_or("").to_string();
    let root_ns = namespace.split('/').next().unwrap_or("").to_string();
    let project_url = format!("{}/{}", ctx.base_url, path);
    let p = VarFlags::YAML;
    let tags = format!(
        "[{}]",
        ctx.runner
            .tags
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let secret = VarFlags {
        public: false,
        masked: true,
        file: false,
        raw: false,
    };
    let private = VarFlags {
        public: false,
        masked: false,
        file: false,
        raw: false,
    };
    let short_sha: String = ctx.sha.chars().take(8).collect();
    vec![
        var("CI_PIPELINE_ID", ctx.pipeline_id.to_string(), p),
        var("CI_PIPELINE_IID", ctx.pipeline_id.to_string(), p),
        var("CI_PIPELINE_SOURCE", "push", p),
        var(
            "CI_PIPELINE_URL",
            format!("{project_url}/-/pipelines/{}", ctx.pipeline_id),
            p,
        ),
        var("CI_JOB_ID", ctx.job_id.to_string(), p),
        var("CI_JOB_URL", format!("{project_url}/-/jobs/{}", ctx.job_id), p),
        var("CI_JOB_TOKEN", ctx.job_token, secret),
        var("CI_JOB_NAME", spec.name.clone(), p),
        var("CI_JOB_NAME_SLUG", slug(&spec.name), p),
        var("CI_JOB_STAGE", spec.stage.clone(), p),
        var("CI_NODE_TOTAL", "1", p),
        var("CI_REGISTRY_USER", "gitlab-ci-token", p),
        var("CI_REGISTRY_PASSWORD", ctx.job_token, secret),
        var("CI_REPOSITORY_URL", repo_url, private),
        var("CI_COMMIT_SHA", ctx.sha, p),
        var("CI_COMMIT_SHORT_SHA", short_sha, p),
        var("CI_COMMIT_BEFORE_SHA", NULL_SHA, p),
        var("CI_COMMIT_REF_NAME", spec.ref_name.clone(), p),
        var("CI_COMMIT_REF_SLUG", slug(&spec.ref_name), p),
        var("CI_COMMIT_BRANCH", spec.ref_name.clone(), p),
        var("CI_COMMIT_REF_PROTECTED", "false", p),
        var("CI_COMMIT_TITLE", "Import project files", p),
        var("CI_COMMIT_MESSAGE", "Import project files", p),
        var("CI_COMMIT_DESCRIPTION", "", p),
        var("CI_COMMIT_AUTHOR", "Fake GitLab <fake@example.invalid>", p),
        var("CI_DEFAULT_BRANCH", "main", p),
        var("CI_CONFIG_PATH", ".gitlab-ci.yml", p),
        var("CI_PROJECT_ID", project_id, p),
        var("CI_PROJECT_NAME", name.clone(), p),
        var("CI_PROJECT_TITLE", name, p),
        var("CI_PROJECT_PATH", path.clone(), p),
        var("CI_PROJECT_PATH_SLUG", slug(&path), p),
        var("CI_PROJECT_NAMESPACE", namespace, p),
        var("CI_PROJECT_ROOT_NAMESPACE", root_ns, p),
        var("CI_PROJECT_URL", project_url, p),
        var("CI_PROJECT_VISIBILITY", "private", p),
        var("CI_SERVER_URL", ctx.base_url, p),
        var("CI_SERVER_HOST", host.clone(), p),
        var("CI_SERVER_PORT", port, p),
        var("CI_SERVER_PROTOCOL", scheme, p),
        var("CI_SERVER_FQDN", host, p),
        var("CI_SERVER_NAME", "GitLab", p),
        var("CI_SERVER_VERSION", "18.6.0", p),
        var("CI_SERVER_VERSION_MAJOR", "18", p),
        var("CI_SERVER_VERSION_MINOR", "6", p),
        var("CI_SERVER_VERSION_PATCH", "0", p),
        var("CI_SERVER_REVISION", "fake", p),
        var("CI_API_V4_URL", format!("{}/api/v4", ctx.base_url), p),
        var("CI_API_GRAPHQL_URL", format!("{}/api/graphql", ctx.base_url), p),
        var("CI_RUNNER_ID", ctx.runner.id.to_string(), p),
        var("CI_RUNNER_DESCRIPTION", ctx.runner.description.clone(), p),
        var("CI_RUNNER_TAGS", tags, p),
        var("GITLAB_USER_ID", "1", p),
        var("GITLAB_USER_LOGIN", "root", p),
        var("GITLAB_USER_NAME", "Administrator", p),
        var("GITLAB_USER_EMAIL", "admin@example.invalid", p),
        var("GITLAB_FEATURES", "", p),
        var("CI", "true", p),
        var("GITLAB_CI", "true", p),
    ]
}

/// GitLab's `BuildRunnerPresenter#refspecs`: the pipeline's persistent ref, plus the branch
/// (shallow) or every branch and tag (full clone).
fn refspecs(spec: &JobSpec, pipeline_id: i64, depth: i64, has_repo: bool) -> Vec<String> {
    let mut specs = Vec::new();
    if has_repo {
        specs.push(format!(
            "+refs/pipelines/{pipeline_id}:refs/pipelines/{pipeline_id}"
        ));
    }
    if depth > 0 {
        specs.push(format!("+refs/heads/{0}:refs/remotes/origin/{0}", spec.ref_name));
    } else {
        specs.push("+refs/heads/*:refs/remotes/origin/*".to_string());
        specs.push("+refs/tags/*:refs/tags/*".to_string());
    }
    specs
}

pub(crate) fn build(spec: &JobSpec, ctx: &PayloadContext<'_>) -> Value {
    let (scheme, rest) = ctx.base_url.split_once("://").unwrap_or(("http", ctx.base_url));
    let path = project_path(ctx);
    let repo_url = format!("{scheme}://gitlab-ci-token:{}@{rest}/{path}.git", ctx.job_token);
    let depth = git_depth(spec);
    let job_timeout = spec.timeout.unwrap_or(3600);
    let timeout = match ctx.runner.maximum_timeout {
        Some(max) => job_timeout.min(max),
        None => job_timeout,
    };

    let mut variables = predefined_variables(spec, ctx, &repo_url);
    variables.extend(spec.variables.iter().map(|(k, v, f)| var(k, v.clone(), *f)));

    let steps = steps(spec, timeout);
    let artifacts = artifacts(spec);
    let cache = cache(spec);
    let dependencies = dependencies(ctx);

    let project_id = ctx.project.map(|p| p.id).unwrap_or(0);
    let mut payload = json!({
        "id": ctx.job_id,
        "token": ctx.job_token,
        "allow_git_fetch": true,
        "job_info": {
            "id": ctx.job_id,
            "name": spec.name,
            "stage": spec.stage,
            "pipeline_id": ctx.pipeline_id,
            "project_id": project_id,
            "project_name": path.rsplit('/').next().unwrap_or(&path),
            "project_full_path": path,
            "time_in_queue_seconds": 0.0,
            "project_jobs_running_on_instance_runners_count": "0",
            "queue_size": 0,
            "queue_depth": 0,
        },
        "git_info": {
            "repo_url": repo_url,
            "repo_object_format": "sha1",
            "ref": spec.ref_name,
            "sha": ctx.sha,
            "before_sha": NULL_SHA,
            "ref_type": "branch",
            "refspecs": refspecs(spec, ctx.pipeline_id, depth, ctx.project.is_some()),
            "depth": depth,
            "protected": false,
        },
        "runner_info": {
            "timeout": timeout,
            "runner_session_url": null,
        },
        "variables": variables,
        "steps": steps,
        "image": spec.image.as_ref().map(image_json),
        "services": spec.services.iter().map(image_json).collect::<Vec<_>>(),
        "artifacts": artifacts,
        "cache": cache,
        "credentials": spec.credentials,
        "dependencies": dependencies,
        "features": {
            "trace_sections": true,
            "token_mask_prefixes": TOKEN_MASK_PREFIXES,
            "failure_reasons": FAILURE_REASONS,
        },
    });
    if spec.image.is_none() {
        payload["image"] = Value::Null;
    }
    if let Some(suspend) = &spec.suspend {
        payload["suspend_options"] = suspend_json(suspend);
    }
    if !spec.inputs.is_empty() {
        payload["inputs"] = Value::Array(
            spec.inputs
                .iter()
                .map(|i| {
                    json!({
                        "key": i.key,
                        "value": {"type": i.kind, "content": i.content, "sensitive": i.sensitive},
                    })
                })
                .collect(),
        );
    }
    payload
}

/// GitLab sends `before_script` and `script` as one step, `after_script` as a second.
fn steps(spec: &JobSpec, timeout: u64) -> Vec<Value> {
    let mut script = spec.before_script.clone();
    script.extend(spec.script.iter().cloned());
    let mut steps = vec![json!({
        "name": "script",
        "script": script,
        "timeout": timeout,
        "when": "on_success",
        "allow_failure": spec.allow_failure,
    })];
    if !spec.after_script.is_empty() {
        steps.push(json!({
            "name": "after_script",
            "script": spec.after_script,
            "timeout": timeout,
            "when": "always",
            "allow_failure": true,
        }));
    }
    steps
}

fn artifacts(spec: &JobSpec) -> Vec<Value> {
    spec.artifacts
        .iter()
        .map(|a| {
            let mut v = json!({
                "name": a.name.clone().unwrap_or_default(),
                "untracked": a.untracked,
                "paths": a.paths,
                "when": a.when,
                "artifact_type": a.artifact_type,
                "artifact_format": a.artifact_format,
                "expire_in": a.expire_in,
            });
            if !a.exclude.is_empty() {
                v["exclude"] = json!(a.exclude);
            }
            v
        })
        .collect()
}

fn cache(spec: &JobSpec) -> Vec<Value> {
    spec.cache
        .iter()
        .map(|c| {
            json!({
                "key": c.key,
                "untracked": c.untracked,
                "policy": c.policy,
                "paths": c.paths,
                "when": c.when,
                "fallback_keys": c.fallback_keys,
            })
        })
        .collect()
}

fn dependencies(ctx: &PayloadContext<'_>) -> Vec<Value> {
    ctx.dependencies
        .iter()
        .map(|(id, name, file)| {
            // Recent GitLab hands out the running job's token for every dependency.
            let mut v = json!({ "id": id, "name": name, "token": ctx.job_token });
            if let Some((filename, size)) = file {
                v["artifacts_file"] = json!({ "filename": filename, "size": size });
            }
            v
        })
        .collect()
}

/// A raw payload keeps everything but the job's identity, which must be the fake's.
pub(crate) fn from_raw(raw: &Value, job_id: i64, job_token: &str) -> Value {
    let mut v = raw.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), json!(job_id));
        obj.insert("token".into(), json!(job_token));
    }
    v
}

/// `suspend_options` as GitLab writes it: false flags and an absent key are left out.
fn suspend_json(s: &crate::spec::SuspendSpec) -> Value {
    let mut out = serde_json::Map::new();
    if s.on_success {
        out.insert("suspend_on_success".into(), Value::Bool(true));
    }
    if s.on_failure {
        out.insert("suspend_on_failure".into(), Value::Bool(true));
    }
    if let Some(key) = &s.key {
        out.insert("runtime_environment_key".into(), Value::String(key.clone()));
    }
    Value::Object(out)
}
