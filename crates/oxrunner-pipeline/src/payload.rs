//! The job payload GitLab sends a runner (`POST /jobs/request` response), built from a resolved job.

use serde_json::{Value, json};

use crate::context::PipelineContext;
use crate::error::{Loc, PipelineError};
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

pub fn payload_variables(p: &Value) -> Vec<JobVariable> {
    p["variables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| JobVariable {
            key: v["key"].as_str().unwrap_or_default().to_string(),
            value: v["value"].as_str().unwrap_or_default().to_string(),
            public: v["public"].as_bool().unwrap_or(false),
            masked: v["masked"].as_bool().unwrap_or(false),
            file: v["file"].as_bool().unwrap_or(false),
            raw: v["raw"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn image(n: &Node, path: &str) -> Result<Value, PipelineError> {
    match &n.val {
        Val::Str(s) => Ok(json!({ "name": s, "ports": [] })),
        Val::Map(m) => {
            let name = m
                .get("name")
                .and_then(Node::scalar_string)
                .ok_or_else(|| PipelineError::at(&n.loc, format!("{path} config should contain a name")))?;
            let mut o = serde_json::Map::new();
            o.insert("name".into(), name.into());
            for (k, key) in [("alias", "alias")] {
                if let Some(v) = m.get(k) {
                    o.insert(key.into(), v.to_json());
                }
            }
            for k in ["entrypoint", "command"] {
                if let Some(v) = m.get(k) {
                    o.insert(k.into(), json!(strings(v, &format!("{path}:{k}"))?));
                }
            }
            o.insert("ports".into(), m.get("ports").map_or(json!([]), Node::to_json));
            if let Some(v) = m.get("pull_policy") {
                o.insert(
                    "pull_policy".into(),
                    json!(strings(v, &format!("{path}:pull_policy"))?),
                );
            }
            if let Some(Val::Map(vars)) = m.get("variables").map(|v| &v.val) {
                let list: Vec<Value> = vars
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v.scalar_string().unwrap_or_default(), "public": true, "file": false, "masked": false, "raw": false}))
                    .collect();
                o.insert("variables".into(), Value::Array(list));
            }
            if let Some(d) = m.get("docker") {
                o.insert("executor_opts".into(), json!({ "docker": d.to_json() }));
            }
            if let Some(d) = m.get("kubernetes") {
                let eo = o.entry("executor_opts").or_insert_with(|| json!({}));
                eo["kubernetes"] = d.to_json();
            }
            Ok(Value::Object(o))
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

fn artifacts(n: &Node, path: &str) -> Result<Vec<Value>, PipelineError> {
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
        let mut a = serde_json::Map::new();
        if let Some(nm) = m.get("name").and_then(Node::scalar_string) {
            a.insert("name".into(), nm.into());
        }
        a.insert("untracked".into(), untracked.into());
        a.insert("paths".into(), json!(paths));
        if let Some(e) = m.get("exclude") {
            a.insert("exclude".into(), json!(strings(e, &format!("{path}:exclude"))?));
        }
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
        a.insert("when".into(), when.into());
        a.insert("artifact_type".into(), "archive".into());
        a.insert("artifact_format".into(), "zip".into());
        if let Some(e) = &expire_in {
            a.insert("expire_in".into(), e.clone().into());
        }
        out.push(Value::Object(a));
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
            let mut r = json!({
                "name": file,
                "untracked": false,
                "paths": files,
                "when": "always",
                "artifact_type": kind,
                "artifact_format": format,
            });
            if let Some(e) = &expire_in {
                r["expire_in"] = e.clone().into();
            }
            out.push(r);
        }
    }
    Ok(out)
}

fn caches(n: &Node, ctx: &PipelineContext, job: &str, path: &str) -> Result<Vec<Value>, PipelineError> {
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
    let protected = false;
    let suffix = |k: &str, unprotect: bool| {
        if unprotect {
            k.to_string()
        } else if protected {
            format!("{k}-protected")
        } else {
            format!("{k}-non_protected")
        }
    };
    let mut out = Vec::new();
    for c in list {
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
                Val::Map(km) => files_key(km, ctx, &k.loc, path)?,
                _ => k.scalar_string().unwrap_or_else(|| "default".into()),
            },
        };
        let _ = job;
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
        out.push(json!({
            "key": suffix(&key, unprotect),
            "untracked": matches!(m.get("untracked").map(|u| &u.val), Some(Val::Bool(true))),
            "policy": policy,
            "paths": m.get("paths").map(|p| strings(p, &format!("{path}:paths"))).transpose()?.unwrap_or_default(),
            "when": when,
            "fallback_keys": fallback,
        }));
    }
    Ok(out)
}

/// `cache:key:files`: SHA-1 of the sorted ids of the last commits touching the files, joined by `-`,
/// prefixed by `prefix-`; `default` when no file has a commit (GitLab's `key_from_files`).
fn files_key(km: &Map, ctx: &PipelineContext, loc: &Loc, path: &str) -> Result<String, PipelineError> {
    use sha1::{Digest, Sha1};
    let files = km
        .get("files")
        .map(|f| strings(f, &format!("{path}:key:files")))
        .transpose()?
        .unwrap_or_default();
    if files.len() > 2 {
        return Err(PipelineError::at(
            loc,
            format!("{path}:key:files config has too many items (maximum is 2)"),
        ));
    }
    let rev = ctx.sha.clone().unwrap_or_else(|| "HEAD".into());
    let mut ids: Vec<String> = files
        .iter()
        .filter(|f| !f.is_empty())
        .filter_map(|f| {
            crate::context::git(&ctx.project_dir, &["rev-list", "--max-count=1", &rev, "--", f]).ok()
        })
        .filter(|s| !s.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    let digest = if ids.is_empty() {
        "default".to_string()
    } else {
        hex::encode(Sha1::digest(ids.join("-").as_bytes()))
    };
    let prefix = km.get("prefix").and_then(Node::scalar_string).unwrap_or_default();
    Ok(if prefix.is_empty() {
        digest
    } else {
        format!("{prefix}-{digest}")
    })
}

pub struct PayloadInput<'a> {
    pub ctx: &'a PipelineContext,
    pub id: u64,
    pub dependencies: Vec<String>,
}

pub fn build_payload(b: &Built, p: &PayloadInput<'_>) -> Result<Value, PipelineError> {
    let cfg = &b.cfg;
    let path = format!("jobs:{}", b.base);
    let job_id = [
        ("CI_JOB_ID".to_string(), p.id.to_string()),
        (
            "CI_JOB_URL".to_string(),
            format!(
                "{}/-/jobs/{}",
                b.payload_vars
                    .iter()
                    .find(|v| v.0 == "CI_PROJECT_URL")
                    .map(|v| v.1.as_str())
                    .unwrap_or_default(),
                p.id
            ),
        ),
    ];
    let vars: Vec<Value> = job_id
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v, "public": true, "file": false, "masked": false, "raw": false}))
        .chain(b.payload_vars.iter().map(|(k, v, public, raw, masked)| json!({"key": k, "value": v, "public": public, "file": false, "masked": masked, "raw": raw})))
        .collect();
    let get = |k: &str| {
        b.payload_vars
            .iter()
            .rev()
            .find(|v| v.0 == k)
            .map(|v| v.1.clone())
            .unwrap_or_default()
    };
    let mut script = Vec::new();
    if let Some(n) = cfg.get("before_script") {
        script.extend(script_lines(n, &format!("{path}:before_script"))?);
    }
    if let Some(n) = cfg.get("script") {
        script.extend(script_lines(n, &format!("{path}:script"))?);
    }
    let t = b.timeout_secs;
    let mut steps = vec![
        json!({"name": "script", "script": script, "timeout": t, "when": "on_success", "allow_failure": false}),
    ];
    if let Some(n) = cfg.get("after_script") {
        steps.push(json!({"name": "after_script", "script": script_lines(n, &format!("{path}:after_script"))?, "timeout": t, "when": "always", "allow_failure": true}));
    }
    let is_tag = p.ctx.source == crate::context::PipelineSource::Tag;
    let ref_name = get("CI_COMMIT_REF_NAME");
    let sha = get("CI_COMMIT_SHA");
    let mut refspecs = vec![format!("+{sha}:refs/pipelines/{}", get("CI_PIPELINE_ID"))];
    refspecs.push(if is_tag {
        format!("+refs/tags/{ref_name}:refs/tags/{ref_name}")
    } else {
        format!("+refs/heads/{ref_name}:refs/remotes/origin/{ref_name}")
    });
    let depth: i64 = get("GIT_DEPTH").parse().unwrap_or(20);
    let mut o = json!({
        "id": p.id,
        "allow_git_fetch": true,
        "job_info": {
            "id": p.id,
            "name": b.job.name,
            "stage": b.job.stage,
            "pipeline_id": get("CI_PIPELINE_ID").parse::<u64>().unwrap_or(1),
            "project_id": 1,
            "project_name": get("CI_PROJECT_NAME"),
            "project_full_path": get("CI_PROJECT_PATH"),
        },
        "git_info": {
            "repo_url": get("CI_REPOSITORY_URL"),
            "repo_object_format": "sha1",
            "ref": ref_name,
            "sha": sha,
            "before_sha": get("CI_COMMIT_BEFORE_SHA"),
            "ref_type": if is_tag { "tag" } else { "branch" },
            "refspecs": refspecs,
            "depth": depth,
            "protected": false,
        },
        "runner_info": { "timeout": t },
        "variables": vars,
        "steps": steps,
        "image": Value::Null,
        "services": [],
        "artifacts": [],
        "cache": [],
        "credentials": [],
        "dependencies": p.dependencies.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
        "features": { "trace_sections": true, "failure_reasons": ["unknown_failure", "script_failure", "stuck_or_timeout_failure", "runner_system_failure", "job_execution_timeout"] },
    });
    if let Some(n) = cfg.get("image") {
        o["image"] = image(n, &format!("{path}:image"))?;
    }
    if let Some(n) = cfg.get("services") {
        let list: Vec<Value> = match &n.val {
            Val::Seq(s) => s
                .iter()
                .map(|x| image(x, &format!("{path}:services")))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(PipelineError::at(
                    &n.loc,
                    format!("{path}:services config should be an array"),
                ));
            }
        };
        o["services"] = Value::Array(list);
    }
    if let Some(n) = cfg.get("artifacts") {
        o["artifacts"] = Value::Array(artifacts(n, &format!("{path}:artifacts"))?);
    }
    if let Some(n) = cfg.get("cache") {
        o["cache"] = Value::Array(caches(n, p.ctx, &b.job.name, &format!("{path}:cache"))?);
    }
    if let Some(Val::Map(h)) = cfg.get("hooks").map(|h| &h.val) {
        let mut hooks = Vec::new();
        for (k, v) in h {
            hooks.push(json!({"name": k, "script": script_lines(v, &format!("{path}:hooks:{k}"))?}));
        }
        o["hooks"] = Value::Array(hooks);
    }
    Ok(o)
}
