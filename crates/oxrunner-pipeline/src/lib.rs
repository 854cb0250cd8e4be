//! `.gitlab-ci.yml` + pipeline context → the jobs GitLab would create, each with the payload GitLab would
//! send a runner.
//!
//! The stages follow GitLab's own processing order: YAML load (anchors, `<<`, `!reference` tags) →
//! `include` (with `spec:inputs`) → `extends` → `!reference` → `default` → `workflow:rules` → per job
//! `parallel` expansion, `rules`/`only`/`except`, variables → `needs`/`dependencies` validation → payload.

mod cache_key;
mod compose;
mod context;
mod coverage;
mod dynamic;
mod error;
mod expr;
mod graph;
mod inputs;
mod job_inputs;
mod job_keys;
mod jobs;
mod load;
mod model;
mod parallel;
mod payload;
mod render;
mod rules;
mod util;
mod vars;
mod wildcard;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

pub use context::{MergeRequest, PipelineContext, PipelineSource};
pub use coverage::{coverage_regex, extract_coverage};
pub use dynamic::{ArtifactFile, ArtifactText, DynamicChild};
pub use error::{Loc, PipelineError, Warning};
pub use expr::{Expr, ExprError};
pub use model::{AllowFailure, ChildPipeline, JobVariable, Need, Pipeline, PipelineJob, Retry, When};
pub use render::{render_list, render_list_json};
pub use util::{environment_slug, parse_duration};
pub use vars::{runner_expand, runner_expand_value};

use crate::compose::{apply_defaults, defaults, is_job_key, resolve_extends, resolve_references};
use crate::graph::Defined;
use crate::inputs::InputArgs;
use crate::jobs::{Built, Globals};
use crate::load::{Loader, Source};
use crate::rules::{Facts, eval_rules};
use crate::vars::{VarDef, overlay, parse_defs, server_expand_all};
use crate::yaml::{Map, Node, Val};

/// GitLab allows two levels of child pipelines.
const MAX_CHILD_DEPTH: usize = 2;

/// Resolve the pipeline for `ctx` from `ctx.ci_file`.
pub fn resolve(ctx: &PipelineContext) -> Result<Pipeline, PipelineError> {
    resolve_inner(ctx, None, &[], 0)
}

/// Resolve from the given text of the main CI file (includes are still read from `ctx.project_dir`).
pub fn resolve_str(ctx: &PipelineContext, text: &str) -> Result<Pipeline, PipelineError> {
    resolve_inner(ctx, Some(text), &[], 0)
}

/// The configuration after includes, `extends`, `!reference` and `default`, as YAML.
pub fn merged_config(ctx: &PipelineContext) -> Result<String, PipelineError> {
    let facts = Facts::new(ctx);
    let (cfg, _) = prepare(ctx, None, &[], &facts)?;
    Ok(render::to_yaml(&merged_view(&cfg)?))
}

/// GitLab's `ci_pipeline_size`: GitLab.com's highest plan allows 2000 jobs per pipeline (Self-Managed ships it
/// disabled; a local run still needs a bound, and no pipeline GitLab.com runs is refused).
pub const MAX_JOBS_PER_PIPELINE: usize = 2000;

fn too_many_jobs(loc: &Loc) -> PipelineError {
    PipelineError::at_hint(
        loc,
        format!(
            "The number of jobs has exceeded the limit of {MAX_JOBS_PER_PIPELINE}. Try splitting the configuration with parent-child-pipelines https://docs.gitlab.com/ci/debugging/#pipeline-with-many-jobs-fails-to-start"
        ),
        "jobs created by `parallel` and `parallel:matrix` count one each",
    )
}

fn file_name(ctx: &PipelineContext) -> String {
    if ctx.ci_file.as_os_str().is_empty() {
        ".gitlab-ci.yml".into()
    } else {
        ctx.ci_file.to_string_lossy().into_owned()
    }
}

fn base_lookup(ctx: &PipelineContext) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = ctx.predefined().into_iter().collect();
    m.extend(ctx.variables.iter().cloned());
    m
}

fn prepare(
    ctx: &PipelineContext,
    text: Option<&str>,
    artifacts: &[ArtifactText],
    facts: &Facts<'_>,
) -> Result<(Map, Vec<Warning>), PipelineError> {
    let table = base_lookup(ctx);
    let lookup = |n: &str| table.get(n).cloned();
    let name = file_name(ctx);
    let mut loader = Loader::new(facts, &lookup);
    loader.artifacts = artifacts;
    let loc = Loc::new(&Arc::from(name.as_str()), 1, 1);
    let args = InputArgs::from_cli(&ctx.inputs, &loc);
    let src = match text {
        Some(t) => Source::Text(t),
        None => Source::Path(ctx.ci_path()),
    };
    let mut cfg = loader.load(&name, src, &args, true, None)?;
    resolve_extends(&mut cfg)?;
    resolve_references(&mut cfg)?;
    Ok((cfg, loader.warnings))
}

fn stages(cfg: &Map) -> Result<Vec<String>, PipelineError> {
    let node = cfg.get("stages").or_else(|| cfg.get("types"));
    let listed = match node {
        Some(n) => payload::strings(n, "stages")?,
        None => vec!["build".into(), "test".into(), "deploy".into()],
    };
    let mut out = vec![".pre".to_string()];
    out.extend(listed.into_iter().filter(|s| s != ".pre" && s != ".post"));
    out.push(".post".into());
    Ok(out)
}

fn merged_view(cfg: &Map) -> Result<Node, PipelineError> {
    let d = defaults(cfg);
    let mut out = Map::new();
    let top = Loc::default();
    let mut budget = compose::MAX_EXPANDED_NODES;
    out.insert(
        "stages".into(),
        Node::new(
            Val::Seq(
                stages(cfg)?
                    .into_iter()
                    .map(|s| Node::new(Val::Str(s), top.clone()))
                    .collect(),
            ),
            top.clone(),
        ),
    );
    for k in ["variables", "workflow"] {
        if let Some(v) = cfg.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for (k, v) in cfg {
        if !is_job_key(k) || k.starts_with('.') {
            continue;
        }
        let mut v = v.clone();
        if let Val::Map(m) = &mut v.val {
            apply_defaults(m, &d, &v.loc, k)?;
        }
        compose::charge(&mut budget, v.count(), &v.loc)?;
        out.insert(k.clone(), v);
    }
    Ok(Node::new(Val::Map(out), top))
}

fn resolve_inner(
    ctx: &PipelineContext,
    text: Option<&str>,
    artifacts: &[ArtifactText],
    depth: usize,
) -> Result<Pipeline, PipelineError> {
    let facts = Facts::new(ctx);
    let (cfg, mut warnings) = prepare(ctx, text, artifacts, &facts)?;
    let stages = stages(&cfg)?;
    if let Some(t) = cfg.get("types") {
        warnings.push(Warning::at(&t.loc, "`types` is deprecated: use `stages`"));
    }
    let mut predefined = ctx.predefined();
    let Some(Workflow { global_vars, name }) = workflow(ctx, &cfg, &facts, &predefined, &mut warnings)?
    else {
        return Ok(Pipeline {
            stages,
            jobs: Vec::new(),
            warnings,
            variables: Vec::new(),
            name: None,
        });
    };
    if let Some(n) = &name {
        predefined.push(("CI_PIPELINE_NAME".into(), n.clone()));
    }
    let g = Globals {
        facts: &facts,
        stages: stages.clone(),
        global_vars: global_vars.clone(),
        predefined: predefined.clone(),
        cli: ctx.variables.clone(),
    };
    let (mut built, defined) = build_jobs(&g, &cfg, &mut warnings)?;
    built.sort_by_key(|b| b.job.stage_index);
    let deps = graph::link(&mut built, &defined, &mut warnings)?;
    let jobs_out = finish_jobs(ctx, built, deps, depth, &mut warnings)?;
    if jobs_out.is_empty() {
        warnings.push(Warning::global(
            "no jobs: the rules configuration prevented any jobs from being added to the pipeline",
        ));
    }
    Ok(Pipeline {
        stages,
        jobs: jobs_out,
        warnings,
        variables: pipeline_variables(ctx, &predefined, &global_vars),
        name,
    })
}

/// What `workflow` leaves for the jobs when it lets the pipeline run.
struct Workflow {
    /// Global `variables` with the matching `workflow:rules:variables` applied.
    global_vars: Vec<VarDef>,
    name: Option<String>,
}

/// `workflow:rules` decide whether there is a pipeline at all: `None` when they filter it out.
fn workflow(
    ctx: &PipelineContext,
    cfg: &Map,
    facts: &Facts<'_>,
    predefined: &[(String, String)],
    warnings: &mut Vec<Warning>,
) -> Result<Option<Workflow>, PipelineError> {
    let mut global_vars = match cfg.get("variables") {
        Some(v) => parse_defs(v, "variables")?,
        None => Vec::new(),
    };
    let mut name = None;
    if let Some(Val::Map(wf)) = cfg.get("workflow").map(|w| &w.val) {
        for k in wf.keys() {
            if !matches!(k.as_str(), "rules" | "name" | "auto_cancel") {
                warnings.push(Warning::at(
                    &cfg["workflow"].loc,
                    format!("workflow config contains unknown keys: {k}"),
                ));
            }
        }
        if let Some(rules) = wf.get("rules") {
            let table = global_table(ctx, predefined, &[], &global_vars)?;
            let lookup = |n: &str| table.get(n).cloned();
            match eval_rules(rules, facts, &lookup, "workflow:rules")? {
                Some(m) if m.when.as_ref().and_then(Node::as_str) != Some("never") => {
                    overlay(&mut global_vars, &m.variables)
                }
                _ => {
                    warnings.push(Warning::at(
                        &rules.loc,
                        "Pipeline filtered out by workflow rules.",
                    ));
                    return Ok(None);
                }
            }
        }
        if let Some(n) = wf.get("name").and_then(Node::scalar_string) {
            let table = global_table(ctx, predefined, &[], &global_vars)?;
            name = Some(vars::expand_with(&n, &|k| table.get(k).cloned(), true));
        }
    }
    Ok(Some(Workflow { global_vars, name }))
}

/// The values `workflow:rules` and `workflow:name` expand against, in precedence order.
fn global_table(
    ctx: &PipelineContext,
    predefined: &[(String, String)],
    extra: &[VarDef],
    globals: &[VarDef],
) -> Result<HashMap<String, String>, PipelineError> {
    let mut all: Vec<(String, String, bool)> = predefined
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), false))
        .collect();
    let mut g = globals.to_vec();
    overlay(&mut g, extra);
    all.extend(g.into_iter().map(|d| (d.key, d.value, d.raw)));
    all.extend(ctx.variables.iter().map(|(k, v)| (k.clone(), v.clone(), false)));
    server_expand_all(&all).map_err(|e| e.into_error(&[globals, extra]))
}

/// Every job definition after `default`, expanded by `parallel` and filtered by its rules; also every
/// instance name defined, selected or not, which `needs` is checked against.
fn build_jobs(
    g: &Globals<'_>,
    cfg: &Map,
    warnings: &mut Vec<Warning>,
) -> Result<(Vec<Built>, Defined), PipelineError> {
    let stages = &g.stages;
    let d = defaults(cfg);
    let mut defined = Defined {
        instances: HashMap::new(),
    };
    let mut built: Vec<Built> = Vec::new();
    let mut budget = compose::MAX_EXPANDED_NODES;
    for (k, v) in cfg {
        if !is_job_key(k) || k.starts_with('.') {
            continue;
        }
        let Val::Map(job) = &v.val else {
            return Err(PipelineError::at_hint(
                &v.loc,
                format!("jobs:{k} config should implement the script:, run:, or trigger: keyword"),
                format!("`{k}` is not a GitLab keyword, so it is read as a job; check its spelling"),
            ));
        };
        let mut job = job.clone();
        apply_defaults(&mut job, &d, &v.loc, k)?;
        let stage_index = job
            .get("stage")
            .and_then(Node::as_str)
            .and_then(|s| stages.iter().position(|x| x == s))
            .unwrap_or_else(|| stages.iter().position(|x| x == "test").unwrap_or(0));
        let instances = parallel::instances(k, &job)?;
        let size: usize = job.values().map(Node::count).sum();
        compose::charge(&mut budget, size.saturating_mul(instances.len()), &v.loc)?;
        defined.instances.insert(
            k.clone(),
            instances.iter().map(|i| (i.name.clone(), stage_index)).collect(),
        );
        for inst in &instances {
            if let Some(b) = jobs::build(g, k, inst, &job, &v.loc, warnings)? {
                built.push(b);
                if built.len() > MAX_JOBS_PER_PIPELINE {
                    return Err(too_many_jobs(&v.loc));
                }
            }
        }
    }
    let names: std::collections::HashSet<&str> = built.iter().map(|b| b.job.name.as_str()).collect();
    if names.len() != built.len() {
        return Err(PipelineError::pipeline(
            "job names must be unique (a parallel job name collides with another job)",
        ));
    }
    Ok((built, defined))
}

/// Trigger jobs get their child pipeline, the others the payload a runner would receive; ids follow the
/// stage order `built` is sorted in.
fn finish_jobs(
    ctx: &PipelineContext,
    built: Vec<Built>,
    deps: Vec<Vec<String>>,
    depth: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<PipelineJob>, PipelineError> {
    let mut jobs_out = Vec::with_capacity(built.len());
    let names: HashSet<String> = built.iter().map(|b| b.job.name.clone()).collect();
    for (i, (mut b, deps)) in built.into_iter().zip(deps).enumerate() {
        if let Some(t) = b.cfg.get("trigger").cloned() {
            let parent = Parent {
                ctx,
                depth,
                jobs: &names,
            };
            b.job.trigger = Some(trigger(&parent, &b, &t, warnings)?);
        } else {
            let id = u64::try_from(i).unwrap_or(0) + 1;
            let input = payload::PayloadInput {
                ctx,
                id,
                dependencies: deps,
                notices: std::cell::RefCell::new(Vec::new()),
            };
            b.job.payload = payload::build_payload(&b, &input)?;
            warnings.extend(input.notices.into_inner());
        }
        jobs_out.push(b.job);
    }
    Ok(jobs_out)
}

/// Pipeline-level variables in precedence order; CLI values may be secrets, so they are not public.
fn pipeline_variables(
    ctx: &PipelineContext,
    predefined: &[(String, String)],
    global_vars: &[VarDef],
) -> Vec<JobVariable> {
    predefined
        .iter()
        .map(|(k, v)| JobVariable {
            key: k.clone(),
            value: v.clone(),
            public: true,
            masked: false,
            file: false,
            raw: false,
        })
        .chain(global_vars.iter().map(|d| JobVariable {
            key: d.key.clone(),
            value: d.value.clone(),
            public: true,
            masked: false,
            file: false,
            raw: d.raw,
        }))
        .chain(ctx.variables.iter().map(|(k, v)| JobVariable {
            key: k.clone(),
            value: v.clone(),
            public: false,
            masked: false,
            file: false,
            raw: false,
        }))
        .collect()
}

/// The pipeline a trigger job belongs to.
struct Parent<'a> {
    ctx: &'a PipelineContext,
    depth: usize,
    /// The names of its jobs, which a dynamic child's generator must be one of.
    jobs: &'a HashSet<String>,
}

/// A dynamic child pipeline's configuration, resolved in the context [`trigger`] prepared for it: `text` is the
/// root file, whose `include: artifact:` entries read `artifacts`.
fn resolve_child_text(
    child: &PipelineContext,
    text: &str,
    artifacts: &[ArtifactText],
    depth: usize,
) -> Result<Pipeline, PipelineError> {
    resolve_inner(child, Some(text), artifacts, depth)
}

fn trigger(
    parent: &Parent<'_>,
    b: &Built,
    t: &Node,
    warnings: &mut Vec<Warning>,
) -> Result<ChildPipeline, PipelineError> {
    let (ctx, depth) = (parent.ctx, parent.depth);
    let path = format!("jobs:{}:trigger", b.base);
    let (m, project) = match &t.val {
        Val::Str(p) => (None, Some(p.clone())),
        Val::Map(m) => (Some(m), m.get("project").and_then(Node::scalar_string)),
        _ => {
            return Err(PipelineError::at(
                &t.loc,
                format!("{path} config should be a hash or a string"),
            ));
        }
    };
    let strategy_depend = m.and_then(|m| m.get("strategy")).and_then(Node::as_str) == Some("depend");
    if let Some(p) = project {
        warnings.push(Warning::at(&t.loc, format!("{path}: multi-project pipeline `{p}` cannot be created locally; the trigger job is listed but not run")));
        return Ok(ChildPipeline {
            strategy_depend,
            project: Some(p),
            pipeline: None,
            dynamic: None,
        });
    }
    let Some(inc) = m.and_then(|m| m.get("include")) else {
        return Err(PipelineError::at(
            &t.loc,
            format!("{path} config must contain either project or include"),
        ));
    };
    if depth >= MAX_CHILD_DEPTH {
        return Err(PipelineError::at(
            &t.loc,
            format!("{path}: child pipelines can be nested at most {MAX_CHILD_DEPTH} levels deep"),
        ));
    }
    let mut child = ctx.clone();
    child.source = PipelineSource::ParentPipeline;
    child.inputs = Vec::new();
    child.variables = b
        .yaml_vars
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    child.variables.extend(ctx.variables.iter().cloned());
    let site = dynamic::Site {
        path: &path,
        trigger_job: &b.job.name,
        jobs: parent.jobs,
    };
    if let Some(d) = dynamic::from_include(inc, child.clone(), depth + 1, &site, warnings)? {
        return Ok(ChildPipeline {
            strategy_depend,
            project: None,
            pipeline: None,
            dynamic: Some(d),
        });
    }
    let text = match &inc.val {
        Val::Str(s) => {
            child.ci_file = PathBuf::from(s.trim_start_matches('/'));
            None
        }
        _ => {
            child.ci_file = PathBuf::from(format!("{}.trigger.yml", b.job.name));
            Some(format!("include: {}\n", inc.to_json()))
        }
    };
    let p = resolve_inner(&child, text.as_deref(), &[], depth + 1)?;
    Ok(ChildPipeline {
        strategy_depend,
        project: None,
        pipeline: Some(Box::new(p)),
        dynamic: None,
    })
}
