//! The job payload GitLab sends a runner (`POST /jobs/request` response), built from a resolved job.

use oxrunner_wire::{
    Artifact, Cache, Dependency, ExecutorOptions, GitInfo, Hook, Image, JobFeatures, JobInfo, JobResponse,
    JobRunnerInfo, Port, Step, Variable,
};
use serde_json::Value;

use crate::context::PipelineContext;
use crate::error::{PipelineError, Warning};
use crate::jobs::Built;
use crate::model::JobVariable;
use crate::yaml::{Map, Node, Val};

/// A string or a list of strings (scalars are turned into strings as GitLab does).
pub fn strings(n: &Node, path: &str) -> Result<Vec<String>, PipelineError> {
    match &n.val {
        Val::Seq(items) => items
            .iter()
            .map(|i| {
                i.scalar_string()
                    .filter(|_| !i.is_null())
                    .ok_or_else(|| PipelineError::at(&i.loc, format!("{path} should be an array of strings")))
            })
            .collect(),
        Val::Null => Ok(Vec::new()),
        _ => Ok(vec![n.scalar_string().ok_or_else(|| {
            PipelineError::at(&n.loc, format!("{path} should be an array of strings"))
        })?]),
    }
}

/// `script`-like keywords: a string or arrays nested up to 10 levels (from `!reference`), flattened.
pub fn script_lines(n: &Node, path: &str) -> Result<Vec<String>, PipelineError> {
    fn go(n: &Node, depth: usize, out: &mut Vec<String>, path: &str) -> Result<(), PipelineError> {
        match &n.val {
            Val::Seq(items) if depth < 10 => {
                for i in items {
                    go(i, depth + 1, out, path)?;
                }
                Ok(())
            }
            Val::Str(_) | Val::Int(_) | Val::Float(_) | Val::Bool(_) => {
                out.push(n.scalar_string().unwrap_or_default());
                Ok(())
            }
            _ => Err(PipelineError::at(
                &n.loc,
                format!("{path} config should be a string or a nested array of strings up to 10 levels deep"),
            )),
        }
    }
    let mut out = Vec::new();
    go(n, 0, &mut out, path)?;
    Ok(out)
}

/// A variable defined in the pipeline, as GitLab lists it in the payload (never a file variable).
pub fn variable(
    key: impl Into<String>,
    value: impl Into<String>,
    public: bool,
    raw: bool,
    masked: bool,
) -> Variable {
    Variable {
        key: key.into(),
        value: value.into(),
        public,
        file: false,
        masked,
        raw,
    }
}

pub fn payload_variables(p: &JobResponse) -> Vec<JobVariable> {
    p.variables
        .iter()
        .map(|v| JobVariable {
            key: v.key.clone(),
            value: v.value.clone(),
            public: v.public,
            masked: v.masked,
            file: v.file,
            raw: v.raw,
        })
        .collect()
}

/// `ports:` entries: a number, or a hash with GitLab's `number`/`protocol`/`name`.
fn ports(n: &Node, path: &str) -> Result<Vec<Port>, PipelineError> {
    let Val::Seq(items) = &n.val else {
        return Err(PipelineError::at(
            &n.loc,
            format!("{path} config should be an array"),
        ));
    };
    items
        .iter()
        .map(|p| match &p.val {
            Val::Int(i) => Ok(Port {
                number: *i,
                ..Port::default()
            }),
            Val::Map(_) => serde_json::from_value(p.to_json()).map_err(|e| {
                PipelineError::at_hint(
                    &p.loc,
                    format!("{path} entry is not a valid port: {e}"),
                    "a port is a number or a hash with `number`, `protocol` and `name`",
                )
            }),
            _ => Err(PipelineError::at(
                &p.loc,
                format!("{path} config should be an array of numbers or hashes"),
            )),
        })
        .collect()
}

/// `docker:`/`kubernetes:` options of an image, typed as GitLab sends them (unknown keys are kept, so the runner
/// can refuse them as gitlab-runner does).
fn executor_opts(m: &Map, n: &Node, path: &str) -> Result<ExecutorOptions, PipelineError> {
    let mut o = serde_json::Map::new();
    for k in ["docker", "kubernetes"] {
        if let Some(d) = m.get(k) {
            o.insert(k.into(), d.to_json());
        }
    }
    serde_json::from_value(Value::Object(o)).map_err(|e| {
        PipelineError::at_hint(
            &n.loc,
            format!("{path} executor options cannot be read: {e}"),
            "`docker:` and `kubernetes:` take a hash of strings such as `platform` and `user`",
        )
    })
}

fn image(n: &Node, path: &str) -> Result<Image, PipelineError> {
    match &n.val {
        Val::Str(s) => Ok(Image {
            name: s.clone(),
            ..Image::default()
        }),
        Val::Map(m) => {
            let name = m
                .get("name")
                .and_then(Node::scalar_string)
                .ok_or_else(|| PipelineError::at(&n.loc, format!("{path} config should contain a name")))?;
            let list = |k: &str| -> Result<Vec<String>, PipelineError> {
                m.get(k)
                    .map(|v| strings(v, &format!("{path}:{k}")))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let variables = match m.get("variables").map(|v| &v.val) {
                Some(Val::Map(vars)) => vars
                    .iter()
                    .map(|(k, v)| variable(k, v.scalar_string().unwrap_or_default(), true, false, false))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Image {
                name,
                alias: m.get("alias").and_then(Node::scalar_string).unwrap_or_default(),
                command: list("command")?,
                entrypoint: list("entrypoint")?,
                ports: m
                    .get("ports")
                    .map(|p| ports(p, &format!("{path}:ports")))
                    .transpose()?
                    .unwrap_or_default(),
                variables,
                pull_policy: list("pull_policy")?,
                executor_opts: executor_opts(m, n, path)?,
            })
        }
        _ => Err(PipelineError::at(
            &n.loc,
            format!("{path} config should be a hash or a string"),
        )),
    }
}

/// Report types and the (file name, format) GitLab gives them in the payload.
fn report_format(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "junit" => ("junit.xml", "gzip"),
        "dotenv" => (".env", "gzip"),
        "cobertura" => ("cobertura-coverage.xml", "gzip"),
        "jacoco" => ("jacoco.xml", "gzip"),
        "metrics" => ("metrics.txt", "gzip"),
        "cyclonedx" => ("gl-sbom.cdx.json", "gzip"),
        "annotations" => ("gl-annotations.json", "gzip"),
        "lsif" => ("lsif.json", "zip"),
        "codequality" => ("gl-code-quality-report.json", "raw"),
        "sast" => ("gl-sast-report.json", "raw"),
        "secret_detection" => ("gl-secret-detection-report.json", "raw"),
        "dependency_scanning" => ("gl-dependency-scanning-report.json", "raw"),
        "container_scanning" => ("gl-container-scanning-report.json", "raw"),
        "dast" => ("gl-dast-report.json", "raw"),
        "api_fuzzing" => ("gl-api-fuzzing-report.json", "raw"),
        "coverage_fuzzing" => ("gl-coverage-fuzzing-report.json", "raw"),
        "terraform" => ("tfplan.json", "raw"),
        "requirements" => ("requirements.json", "raw"),
        "accessibility" => ("gl-accessibility.json", "raw"),
        "browser_performance" => ("browser-performance.json", "raw"),
        "load_performance" => ("load-performance.json", "raw"),
        _ => ("", "raw"),
    }
}

fn artifacts(n: &Node, path: &str) -> Result<Vec<Artifact>, PipelineError> {
    let Val::Map(m) = &n.val else {
        return Err(PipelineError::at(
            &n.loc,
            format!("{path} config should be a hash"),
        ));
    };
    let mut out = Vec::new();
    let paths = m
        .get("paths")
        .map(|p| strings(p, &format!("{path}:paths")))
        .transpose()?
        .unwrap_or_default();
    let untracked = matches!(m.get("untracked").map(|u| &u.val), Some(Val::Bool(true)));
    let expire_in = m.get("expire_in").and_then(Node::scalar_string);
    if untracked || !paths.is_empty() {
        let when = m
            .get("when")
            .and_then(Node::scalar_string)
            .unwrap_or_else(|| "on_success".into());
        if !matches!(when.as_str(), "on_success" | "on_failure" | "always") {
            return Err(PipelineError::at(
                &n.loc,
                format!("{path}:when config should be on_success, on_failure or always"),
            ));
        }
        out.push(Artifact {
            name: m.get("name").and_then(Node::scalar_string).unwrap_or_default(),
            untracked,
            paths,
            exclude: m
                .get("exclude")
                .map(|e| strings(e, &format!("{path}:exclude")))
                .transpose()?
                .unwrap_or_default(),
            when,
            artifact_type: "archive".into(),
            artifact_format: "zip".into(),
            expire_in: expire_in.clone().unwrap_or_default(),
        });
    }
    if let Some(Val::Map(reports)) = m.get("reports").map(|r| &r.val) {
        for (kind, v) in reports {
            let (kind, files) = if kind == "coverage_report" {
                let cm = v.as_map();
                let fmt = cm
                    .and_then(|c| c.get("coverage_format"))
                    .and_then(Node::scalar_string)
                    .unwrap_or_else(|| "cobertura".into());
                let p = cm
                    .and_then(|c| c.get("path"))
                    .and_then(Node::scalar_string)
                    .unwrap_or_default();
                (fmt, vec![p])
            } else {
                (kind.clone(), strings(v, &format!("{path}:reports:{kind}"))?)
            };
            let (file, format) = report_format(&kind);
            out.push(Artifact {
                name: file.into(),
                untracked: false,
                paths: files,
                exclude: Vec::new(),
                when: "always".into(),
                artifact_type: kind,
                artifact_format: format.into(),
                expire_in: expire_in.clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

fn caches(
    n: &Node,
    ctx: &PipelineContext,
    path: &str,
    notices: &mut Vec<Warning>,
) -> Result<Vec<Cache>, PipelineError> {
    let list: Vec<&Node> = match &n.val {
        Val::Seq(s) => s.iter().collect(),
        Val::Null => Vec::new(),
        _ => vec![n],
    };
    if list.len() > 4 {
        return Err(PipelineError::at(
            &n.loc,
            format!("{path} config must be less than or equal to 4 caches"),
        ));
    }
    // GitLab separates the caches of protected and unprotected refs by a suffix on every key (fallback keys
    // too); `unprotect: true` makes a protected ref use the unprotected caches, so it is `-non_protected` as
    // well, never the bare key. exec's runs count as unprotected refs.
    let protected = false;
    let suffix = |k: &str, unprotect: bool| {
        if protected && !unprotect {
            format!("{k}-protected")
        } else {
            format!("{k}-non_protected")
        }
    };
    let mut out = Vec::new();
    for (index, c) in list.into_iter().enumerate() {
        let Val::Map(m) = &c.val else {
            return Err(PipelineError::at(
                &c.loc,
                format!("{path} config should be a hash"),
            ));
        };
        let unprotect = matches!(m.get("unprotect").map(|u| &u.val), Some(Val::Bool(true)));
        let key = match m.get("key") {
            None => "default".to_string(),
            Some(k) => match &k.val {
                Val::Map(km) => crate::cache_key::files_key(km, index, ctx, &k.loc, path, notices)?,
                _ => k.scalar_string().unwrap_or_else(|| "default".into()),
            },
        };
        let policy = m
            .get("policy")
            .and_then(Node::scalar_string)
            .unwrap_or_else(|| "pull-push".into());
        let when = m
            .get("when")
            .and_then(Node::scalar_string)
            .unwrap_or_else(|| "on_success".into());
        let fallback: Vec<String> = m
            .get("fallback_keys")
            .map(|f| strings(f, &format!("{path}:fallback_keys")))
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(|k| suffix(&k, unprotect))
            .collect();
        out.push(Cache {
            key: suffix(&key, unprotect),
            untracked: matches!(m.get("untracked").map(|u| &u.val), Some(Val::Bool(true))),
            policy,
            paths: m
                .get("paths")
                .map(|p| strings(p, &format!("{path}:paths")))
                .transpose()?
                .unwrap_or_default(),
            when,
            fallback_keys: fallback,
        });
    }
    Ok(out)
}

pub struct PayloadInput<'a> {
    pub ctx: &'a PipelineContext,
    pub id: u64,
    pub dependencies: Vec<String>,
    /// Warnings found while building the payload (a cache key that fell back to `default`).
    pub notices: std::cell::RefCell<Vec<Warning>>,
}

/// The payload GitLab would send a runner for this job. `id` and `dependencies` come from the caller; the job
/// token, dependency ids and tokens are filled in by whoever runs it.
pub fn build_payload(b: &Built, p: &PayloadInput<'_>) -> Result<JobResponse, PipelineError> {
    let cfg = &b.cfg;
    let path = format!("jobs:{}", b.base);
    let get = |k: &str| {
        b.payload_vars
            .iter()
            .rev()
            .find(|v| v.key == k)
            .map(|v| v.value.clone())
            .unwrap_or_default()
    };
    let id = i64::try_from(p.id).unwrap_or(i64::MAX);
    let mut variables = vec![
        variable("CI_JOB_ID", p.id.to_string(), true, false, false),
        variable(
            "CI_JOB_URL",
            format!("{}/-/jobs/{}", first_value(b, "CI_PROJECT_URL"), p.id),
            true,
            false,
            false,
        ),
    ];
    variables.extend(b.payload_vars.iter().cloned());
    let mut script = Vec::new();
    if let Some(n) = cfg.get("before_script") {
        script.extend(script_lines(n, &format!("{path}:before_script"))?);
    }
    if let Some(n) = cfg.get("script") {
        script.extend(script_lines(n, &format!("{path}:script"))?);
    }
    let timeout = i64::try_from(b.timeout_secs).unwrap_or(i64::MAX);
    let mut steps = vec![Step {
        name: "script".into(),
        script,
        timeout,
        when: "on_success".into(),
        allow_failure: false,
    }];
    if let Some(n) = cfg.get("after_script") {
        steps.push(Step {
            name: "after_script".into(),
            script: script_lines(n, &format!("{path}:after_script"))?,
            timeout,
            when: "always".into(),
            allow_failure: true,
        });
    }
    let mut o = JobResponse {
        id,
        allow_git_fetch: true,
        job_info: JobInfo {
            name: b.job.name.clone(),
            stage: b.job.stage.clone(),
            pipeline_id: get("CI_PIPELINE_ID").parse().unwrap_or(1),
            project_id: 1,
            project_name: get("CI_PROJECT_NAME"),
            project_full_path: get("CI_PROJECT_PATH"),
            ..JobInfo::default()
        },
        git_info: git_info(&get, p.ctx.is_tag()),
        runner_info: JobRunnerInfo {
            timeout,
            ..JobRunnerInfo::default()
        },
        variables,
        steps,
        dependencies: p
            .dependencies
            .iter()
            .map(|d| Dependency {
                name: d.clone(),
                ..Dependency::default()
            })
            .collect(),
        features: JobFeatures {
            trace_sections: true,
            failure_reasons: FAILURE_REASONS.iter().map(|r| (*r).to_string()).collect(),
            ..JobFeatures::default()
        },
        ..JobResponse::default()
    };
    if let Some(n) = cfg.get("inputs") {
        o.inputs = crate::job_inputs::parse(n, &path)?;
    }
    if let Some(n) = cfg.get("image") {
        o.image = image(n, &format!("{path}:image"))?;
    }
    if let Some(n) = cfg.get("services") {
        let Val::Seq(s) = &n.val else {
            return Err(PipelineError::at(
                &n.loc,
                format!("{path}:services config should be an array"),
            ));
        };
        o.services = s
            .iter()
            .map(|x| image(x, &format!("{path}:services")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(n) = cfg.get("artifacts") {
        o.artifacts = artifacts(n, &format!("{path}:artifacts"))?;
    }
    if let Some(n) = cfg.get("cache") {
        o.cache = caches(n, p.ctx, &format!("{path}:cache"), &mut p.notices.borrow_mut())?;
    }
    if let Some(Val::Map(h)) = cfg.get("hooks").map(|h| &h.val) {
        for (k, v) in h {
            o.hooks.push(Hook {
                name: k.clone(),
                script: script_lines(v, &format!("{path}:hooks:{k}"))?,
            });
        }
    }
    Ok(o)
}

/// Where and what to check out, from the job's predefined variables (`get` finds a variable's last value).
fn git_info(get: &dyn Fn(&str) -> String, is_tag: bool) -> GitInfo {
    let ref_name = get("CI_COMMIT_REF_NAME");
    let sha = get("CI_COMMIT_SHA");
    let refspecs = vec![
        format!("+{sha}:refs/pipelines/{}", get("CI_PIPELINE_ID")),
        if is_tag {
            format!("+refs/tags/{ref_name}:refs/tags/{ref_name}")
        } else {
            format!("+refs/heads/{ref_name}:refs/remotes/origin/{ref_name}")
        },
    ];
    GitInfo {
        repo_url: get("CI_REPOSITORY_URL"),
        repo_object_format: "sha1".into(),
        r#ref: ref_name,
        sha,
        before_sha: get("CI_COMMIT_BEFORE_SHA"),
        ref_type: if is_tag { "tag" } else { "branch" }.into(),
        refspecs,
        depth: get("GIT_DEPTH").parse().unwrap_or(20),
        protected: Some(false),
    }
}

/// Failure reasons GitLab announces to every runner.
const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "job_execution_timeout",
];

/// The first definition of a variable (the project URL is predefined, so a later YAML value does not change it).
fn first_value<'a>(b: &'a Built, key: &str) -> &'a str {
    b.payload_vars
        .iter()
        .find(|v| v.key == key)
        .map_or("", |v| v.value.as_str())
}
