//! One job definition (after includes, extends, references and defaults) → the job GitLab would create,
//! or nothing when `rules`/`only`/`except`/`when: never` exclude it.

use std::collections::HashMap;

use oxrunner_wire::{JobResponse, Variable};

use crate::error::{Loc, PipelineError, Warning};
use crate::job_keys::{
    allow_failure_for, parse_coverage, parse_interruptible, parse_retry, parse_timeout, parse_when,
};
use crate::model::{Need, PipelineJob, Retry, When};
use crate::parallel::{Instance, matrix_combos, matrix_name};
use crate::payload::variable;
use crate::rules::{Facts, RuleMatch, eval_only_except, eval_rules};
use crate::util::environment_slug;
use crate::vars::{VarDef, expand_with, overlay, parse_defs, server_expand_all};
use crate::yaml::{Map, Node, Val};

pub const JOB_KEYS: &[&str] = &[
    "after_script",
    "allow_failure",
    "artifacts",
    "before_script",
    "cache",
    "coverage",
    "dast_configuration",
    "dependencies",
    "environment",
    "except",
    "extends",
    "hooks",
    "id_tokens",
    "identity",
    "image",
    "inherit",
    "inputs",
    "interruptible",
    "manual_confirmation",
    "needs",
    "only",
    "pages",
    "parallel",
    "publish",
    "release",
    "resource_group",
    "retry",
    "rules",
    "run",
    "script",
    "secrets",
    "services",
    "stage",
    "start_in",
    "tags",
    "timeout",
    "trigger",
    "variables",
    "when",
];

pub struct Globals<'a> {
    pub facts: &'a Facts<'a>,
    pub stages: Vec<String>,
    /// Global `variables` with `workflow:rules:variables` applied.
    pub global_vars: Vec<VarDef>,
    pub predefined: Vec<(String, String)>,
    pub cli: Vec<(String, String)>,
}

/// A `needs` entry before it is matched against the jobs that exist.
#[derive(Clone, Debug)]
pub struct NeedSpec {
    pub job: String,
    pub artifacts: bool,
    pub optional: bool,
    /// `needs:parallel:matrix`: instance names selected.
    pub instances: Option<Vec<String>>,
    pub loc: Loc,
}

pub struct Built {
    pub job: PipelineJob,
    pub base: String,
    pub needs: Option<Vec<NeedSpec>>,
    pub needs_loc: Loc,
    pub dependencies: Option<(Vec<String>, Loc)>,
    /// Variables sent in the payload, in precedence order.
    pub payload_vars: Vec<Variable>,
    pub cfg: Map,
    pub timeout_secs: u64,
    /// Global + job + matrix + rules variables (forwarded to child pipelines).
    pub yaml_vars: Vec<VarDef>,
}

fn err(loc: &Loc, m: impl Into<String>) -> PipelineError {
    PipelineError::at(loc, m)
}

pub fn build(
    g: &Globals<'_>,
    base: &str,
    inst: &Instance,
    cfg: &Map,
    loc: &Loc,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Built>, PipelineError> {
    let name = inst.name.as_str();
    let path = format!("jobs:{base}");
    check_keys(cfg, base, &path, loc, warnings)?;
    let (stage, stage_index) = parse_stage(g, cfg, base, &path, loc)?;
    let mut yaml_vars = job_variables(g, inst, cfg, &path, loc)?;
    let job_predef = job_predefined(name, &stage, inst);
    let table = lookup_table(g, &job_predef, &yaml_vars, &[])?;
    let lookup = |n: &str| table.get(n).cloned();

    let Some(rule) = parse_selection(g, cfg, base, &path, &lookup)? else {
        return Ok(None);
    };
    let Some(when) = parse_when(&rule, cfg, &path, loc)? else {
        return Ok(None);
    };
    let table = if rule.variables.is_empty() {
        table
    } else {
        lookup_table(g, &job_predef, &yaml_vars, &rule.variables)?
    };
    overlay(&mut yaml_vars, &rule.variables);
    let lookup = |n: &str| table.get(n).cloned();

    let allow_failure = allow_failure_for(&rule, cfg, &path)?;
    let retry = match cfg.get("retry") {
        Some(n) => parse_retry(n, &path)?,
        None => Retry::default(),
    };
    let timeout = parse_timeout(cfg, &path)?;
    let interruptible = parse_interruptible(&rule, cfg, &path)?;
    let resource_group = cfg
        .get("resource_group")
        .and_then(Node::scalar_string)
        .map(|s| expand_with(&s, &lookup, true));
    let tags = parse_tags(cfg, &path, &lookup)?;
    let coverage = parse_coverage(cfg, &path)?;
    let (environment, env_vars) = match cfg.get("environment") {
        Some(n) => {
            let (j, v) = environment(n, &lookup, &path)?;
            (Some(j), v)
        }
        None => (None, Vec::new()),
    };
    warn_unsupported(cfg, &path, warnings);

    let needs_node = rule.needs.as_ref().or_else(|| cfg.get("needs"));
    let needs = match needs_node {
        Some(n) => Some(parse_needs(n, &path, warnings)?),
        None => None,
    };
    let dependencies = parse_dependencies(cfg, &path)?;
    let payload_vars = payload_variables(g, &job_predef, when == When::Manual, env_vars, cfg, &yaml_vars);

    let timeout_secs = timeout.map_or(3600, |d| d.as_secs().max(1));
    let job = PipelineJob {
        name: name.to_string(),
        stage,
        stage_index,
        when,
        needs: None,
        dependencies: None,
        allow_failure,
        retry,
        timeout,
        resource_group,
        interruptible,
        environment,
        trigger: None,
        tags,
        coverage,
        payload: JobResponse::default(),
    };
    Ok(Some(Built {
        job,
        base: base.to_string(),
        needs_loc: needs_node.map_or_else(|| loc.clone(), |n| n.loc.clone()),
        needs,
        dependencies,
        payload_vars,
        cfg: cfg.clone(),
        timeout_secs,
        yaml_vars,
    }))
}

/// Unknown keys only warn (newer GitLab keywords must not break a local run); a job without anything to
/// run, or `rules` mixed with the keywords it replaces, is rejected as GitLab does.
fn check_keys(
    cfg: &Map,
    base: &str,
    path: &str,
    loc: &Loc,
    warnings: &mut Vec<Warning>,
) -> Result<(), PipelineError> {
    let unknown: Vec<&str> = cfg
        .keys()
        .filter(|k| !JOB_KEYS.contains(&k.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        warnings.push(Warning::at(
            loc,
            format!("{path} config contains unknown keys: {}", unknown.join(", ")),
        ));
    }
    if !cfg.contains_key("script") && !cfg.contains_key("trigger") && !cfg.contains_key("run") {
        return Err(PipelineError::at_hint(
            loc,
            format!("{path} config should implement the script:, run:, or trigger: keyword"),
            format!(
                "if `{base}` is not meant to be a job, check the spelling of the keyword or prefix it with a dot to hide it"
            ),
        ));
    }
    if cfg.contains_key("rules") {
        let clash: Vec<&str> = ["only", "except", "start_in"]
            .into_iter()
            .filter(|k| cfg.contains_key(*k))
            .collect();
        if !clash.is_empty() {
            return Err(err(
                loc,
                format!(
                    "{path} config key may not be used with `rules`: {}",
                    clash.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn parse_stage(
    g: &Globals<'_>,
    cfg: &Map,
    base: &str,
    path: &str,
    loc: &Loc,
) -> Result<(String, usize), PipelineError> {
    let stage = match cfg.get("stage") {
        Some(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| err(&s.loc, format!("{path}:stage config should be a string")))?,
        None => "test".to_string(),
    };
    let Some(stage_index) = g.stages.iter().position(|s| *s == stage) else {
        return Err(PipelineError::at_hint(
            cfg.get("stage").map_or(loc, |s| &s.loc),
            format!(
                "{base} job: chosen stage {stage} does not exist; available stages are {}",
                g.stages.join(", ")
            ),
            "add the stage to the top-level `stages:` list",
        ));
    };
    Ok((stage, stage_index))
}

/// The job's YAML variables before `rules` pick any: global (subject to `inherit:variables`) < job < matrix.
fn job_variables(
    g: &Globals<'_>,
    inst: &Instance,
    cfg: &Map,
    path: &str,
    loc: &Loc,
) -> Result<Vec<VarDef>, PipelineError> {
    let mut yaml_vars = inherited_globals(g, cfg, path)?;
    if let Some(v) = cfg.get("variables") {
        overlay(&mut yaml_vars, &parse_defs(v, &format!("{path}:variables"))?);
    }
    let matrix_defs: Vec<VarDef> = inst
        .matrix
        .iter()
        .map(|(k, v)| VarDef {
            key: k.clone(),
            value: v.clone(),
            raw: false,
            loc: loc.clone(),
        })
        .collect();
    overlay(&mut yaml_vars, &matrix_defs);
    Ok(yaml_vars)
}

fn job_predefined(name: &str, stage: &str, inst: &Instance) -> Vec<(String, String)> {
    let mut job_predef: Vec<(String, String)> = vec![
        ("CI_JOB_NAME".into(), name.to_string()),
        ("CI_JOB_NAME_SLUG".into(), crate::context::slug(name, 63)),
        ("CI_JOB_STAGE".into(), stage.to_string()),
    ];
    if let Some((i, n)) = inst.node {
        job_predef.push(("CI_NODE_INDEX".into(), i.to_string()));
        job_predef.push(("CI_NODE_TOTAL".into(), n.to_string()));
    }
    job_predef
}

/// The values `rules`, `tags`, `resource_group` and `environment` expand against, in precedence order.
fn lookup_table(
    g: &Globals<'_>,
    job_predef: &[(String, String)],
    yaml_vars: &[VarDef],
    extra: &[VarDef],
) -> Result<HashMap<String, String>, PipelineError> {
    let mut all: Vec<(String, String, bool)> = g
        .predefined
        .iter()
        .chain(job_predef.iter())
        .map(|(k, v)| (k.clone(), v.clone(), false))
        .collect();
    let mut yv = yaml_vars.to_vec();
    overlay(&mut yv, extra);
    all.extend(yv.into_iter().map(|d| (d.key, d.value, d.raw)));
    all.extend(g.cli.iter().map(|(k, v)| (k.clone(), v.clone(), false)));
    server_expand_all(&all).map_err(|e| e.into_error(&[yaml_vars, extra]))
}

/// `rules` or `only`/`except`: `None` when they exclude the job, else the matching rule's overrides
/// (empty without `rules`).
fn parse_selection(
    g: &Globals<'_>,
    cfg: &Map,
    base: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RuleMatch>, PipelineError> {
    match cfg.get("rules") {
        Some(r) => eval_rules(r, g.facts, lookup, &format!("{path}:rules")),
        None => {
            if eval_only_except(cfg.get("only"), cfg.get("except"), g.facts, lookup, base)? {
                Ok(Some(RuleMatch::default()))
            } else {
                Ok(None)
            }
        }
    }
}

fn parse_tags(
    cfg: &Map,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, PipelineError> {
    Ok(match cfg.get("tags") {
        Some(n) => crate::payload::strings(n, &format!("{path}:tags"))?
            .into_iter()
            .map(|t| expand_with(&t, lookup, true))
            .collect(),
        None => Vec::new(),
    })
}

fn parse_dependencies(cfg: &Map, path: &str) -> Result<Option<(Vec<String>, Loc)>, PipelineError> {
    cfg.get("dependencies")
        .map(|n| {
            Ok((
                crate::payload::strings(n, &format!("{path}:dependencies"))?,
                n.loc.clone(),
            ))
        })
        .transpose()
}

/// Keywords that need a server-side service: the job still runs, so they warn rather than fail.
fn warn_unsupported(cfg: &Map, path: &str, warnings: &mut Vec<Warning>) {
    for k in ["secrets", "id_tokens"] {
        if let Some(n) = cfg.get(k) {
            warnings.push(Warning::at(
                &n.loc,
                format!("{path}:{k} are not available locally: the job runs without them (no secret provider or OIDC issuer)"),
            ));
        }
    }
    if let Some(n) = cfg.get("release") {
        warnings.push(Warning::at(
            &n.loc,
            format!("{path}:release is not supported locally: the release step is skipped"),
        ));
    }
}

/// The payload's variables in GitLab's precedence order (later entries win in the runner).
fn payload_variables(
    g: &Globals<'_>,
    job_predef: &[(String, String)],
    manual: bool,
    env_vars: Vec<(String, String)>,
    cfg: &Map,
    yaml_vars: &[VarDef],
) -> Vec<Variable> {
    let mut payload_vars: Vec<Variable> = g
        .predefined
        .iter()
        .chain(job_predef.iter())
        .map(|(k, v)| variable(k, v, true, false, false))
        .collect();
    if manual {
        payload_vars.push(variable("CI_JOB_MANUAL", "true", true, false, false));
    }
    payload_vars.extend(
        env_vars
            .into_iter()
            .map(|(k, v)| variable(k, v, true, false, false)),
    );
    if let Some(Val::Map(tokens)) = cfg.get("id_tokens").map(|n| &n.val) {
        for k in tokens.keys() {
            payload_vars.push(variable(k, "", false, false, true));
        }
    }
    payload_vars.extend(
        yaml_vars
            .iter()
            .map(|d| variable(&d.key, &d.value, true, d.raw, false)),
    );
    // CLI values may be secrets: not public, so they stay out of `Debug` output.
    payload_vars.extend(g.cli.iter().map(|(k, v)| variable(k, v, false, false, false)));
    payload_vars
}

fn inherited_globals(g: &Globals<'_>, cfg: &Map, path: &str) -> Result<Vec<VarDef>, PipelineError> {
    let inherit = cfg
        .get("inherit")
        .and_then(Node::as_map)
        .and_then(|m| m.get("variables"));
    Ok(match inherit.map(|n| &n.val) {
        None | Some(Val::Bool(true)) => g.global_vars.clone(),
        Some(Val::Bool(false)) => Vec::new(),
        Some(Val::Seq(items)) => {
            let keep: Vec<String> = items.iter().filter_map(Node::scalar_string).collect();
            g.global_vars
                .iter()
                .filter(|v| keep.contains(&v.key))
                .cloned()
                .collect()
        }
        Some(_) => {
            return Err(err(
                inherit.map_or(&Loc::default(), |n| &n.loc),
                format!("{path}:inherit:variables config should be a boolean value or an array of strings"),
            ));
        }
    })
}

fn environment(
    n: &Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &str,
) -> Result<(serde_json::Value, Vec<(String, String)>), PipelineError> {
    let (name, m) = match &n.val {
        Val::Str(s) => (s.clone(), None),
        Val::Map(m) => (
            m.get("name")
                .and_then(Node::scalar_string)
                .ok_or_else(|| err(&n.loc, format!("{path}:environment name can't be blank")))?,
            Some(m),
        ),
        _ => {
            return Err(err(
                &n.loc,
                format!("{path}:environment config should be a hash or a string"),
            ));
        }
    };
    let name = expand_with(&name, lookup, true);
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), name.clone().into());
    let mut vars = vec![
        ("CI_ENVIRONMENT_NAME".to_string(), name.clone()),
        ("CI_ENVIRONMENT_SLUG".to_string(), environment_slug(&name)),
    ];
    let action = m
        .and_then(|m| m.get("action"))
        .and_then(Node::scalar_string)
        .unwrap_or_else(|| "start".into());
    if let Some(m) = m {
        if let Some(u) = m.get("url").and_then(Node::scalar_string) {
            let u = expand_with(&u, lookup, true);
            obj.insert("url".into(), u.clone().into());
            vars.push(("CI_ENVIRONMENT_URL".into(), u));
        }
        for k in ["on_stop", "auto_stop_in", "deployment_tier"] {
            if let Some(v) = m.get(k).and_then(Node::scalar_string) {
                obj.insert(k.into(), v.into());
            }
        }
    }
    obj.insert("action".into(), action.clone().into());
    vars.push(("CI_ENVIRONMENT_ACTION".into(), action));
    let tier = m
        .and_then(|m| m.get("deployment_tier"))
        .and_then(Node::scalar_string)
        .unwrap_or_else(|| guess_tier(&name).to_string());
    vars.push(("CI_ENVIRONMENT_TIER".into(), tier));
    Ok((serde_json::Value::Object(obj), vars))
}

/// GitLab guesses `deployment_tier` from the environment name.
fn guess_tier(name: &str) -> &'static str {
    let n = name.to_lowercase();
    let has = |ws: &[&str]| ws.iter().any(|w| n.contains(w));
    if has(&["prod", "live"]) && !has(&["pre", "non"]) {
        "production"
    } else if has(&["stag", "model", "pre", "demo"]) {
        "staging"
    } else if has(&["test", "qa", "uat"]) {
        "testing"
    } else if has(&["dev", "review", "trunk"]) {
        "development"
    } else {
        "other"
    }
}

fn parse_needs(n: &Node, path: &str, warnings: &mut Vec<Warning>) -> Result<Vec<NeedSpec>, PipelineError> {
    let items: Vec<&Node> = match &n.val {
        Val::Seq(s) => s.iter().collect(),
        Val::Null => Vec::new(),
        _ => vec![n],
    };
    if items.len() > 50 {
        return Err(err(
            &n.loc,
            format!("{path}:needs config has too many entries (maximum: 50)"),
        ));
    }
    let mut out = Vec::new();
    for i in items {
        match &i.val {
            Val::Str(s) => out.push(NeedSpec {
                job: s.clone(),
                artifacts: true,
                optional: false,
                instances: None,
                loc: i.loc.clone(),
            }),
            Val::Map(m) => {
                if m.contains_key("project") || m.contains_key("pipeline") {
                    warnings.push(Warning::at(
                        &i.loc,
                        format!("{path}:needs: cross-project and parent-pipeline needs are not available locally; ignored"),
                    ));
                    continue;
                }
                let job = m
                    .get("job")
                    .and_then(Node::as_str)
                    .ok_or_else(|| err(&i.loc, format!("{path}:needs config must contain job")))?;
                let flag = |k: &str, d: bool| match m.get(k).map(|v| &v.val) {
                    None => Ok(d),
                    Some(Val::Bool(b)) => Ok(*b),
                    Some(_) => Err(err(&i.loc, format!("{path}:needs:{k} should be a boolean value"))),
                };
                let instances = match m
                    .get("parallel")
                    .and_then(Node::as_map)
                    .and_then(|p| p.get("matrix"))
                {
                    Some(mx) => Some(
                        matrix_combos(mx, &format!("{path}:needs:parallel:matrix"))?
                            .iter()
                            .map(|c| matrix_name(job, c))
                            .collect(),
                    ),
                    None => None,
                };
                out.push(NeedSpec {
                    job: job.to_string(),
                    artifacts: flag("artifacts", true)?,
                    optional: flag("optional", false)?,
                    instances,
                    loc: i.loc.clone(),
                });
            }
            _ => {
                return Err(err(
                    &i.loc,
                    format!("{path}:needs config should be an array of strings or hashes"),
                ));
            }
        }
    }
    Ok(out)
}

pub fn to_need(job: &str, spec: &NeedSpec) -> Need {
    Need {
        job: job.to_string(),
        artifacts: spec.artifacts,
        optional: spec.optional,
    }
}
