//! After includes: `extends`, then `!reference`, then `default` inheritance — the order GitLab uses.

use std::collections::HashSet;

use crate::error::{Loc, PipelineError};
use crate::load::deep_merge;
use crate::yaml::{Map, Node, Val};

/// GitLab's `extends` nesting limit.
const MAX_EXTENDS_DEPTH: usize = 11;
/// GitLab's `!reference` nesting limit.
const MAX_REFERENCE_DEPTH: usize = 10;

/// Top-level keys that are not jobs.
pub const GLOBAL_KEYS: &[&str] = &[
    "default",
    "include",
    "before_script",
    "image",
    "services",
    "after_script",
    "variables",
    "stages",
    "types",
    "cache",
    "workflow",
    "spec",
];

/// Keys a job inherits from `default` when it does not set them itself.
pub const DEFAULT_KEYS: &[&str] = &[
    "after_script",
    "artifacts",
    "before_script",
    "cache",
    "hooks",
    "id_tokens",
    "image",
    "interruptible",
    "retry",
    "services",
    "tags",
    "timeout",
];

pub fn is_job_key(k: &str) -> bool {
    !GLOBAL_KEYS.contains(&k)
}

/// Resolve `extends` on every hash-valued job-like key (hidden ones included, as they can be parents).
pub fn resolve_extends(cfg: &mut Map) -> Result<(), PipelineError> {
    let names: Vec<String> = cfg
        .iter()
        .filter(|(k, v)| is_job_key(k) && v.as_map().is_some_and(|m| m.contains_key("extends")))
        .map(|(k, _)| k.clone())
        .collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut budget = MAX_EXPANDED_NODES;
    for n in names {
        let mut chain = Vec::new();
        extend_one(cfg, &n, &mut done, &mut chain, &mut budget)?;
    }
    Ok(())
}

/// Bound on nodes copied by `extends`, `!reference` and `default` (each copies whole subtrees, so a
/// small file with aliases could otherwise grow without limit).
pub const MAX_EXPANDED_NODES: usize = 5_000_000;

pub fn charge(budget: &mut usize, size: usize, loc: &Loc) -> Result<(), PipelineError> {
    if size > *budget {
        return Err(PipelineError::at(
            loc,
            "The parsed YAML is too big (the configuration expands beyond the size limit)",
        ));
    }
    *budget -= size;
    Ok(())
}

fn extend_one(
    cfg: &mut Map,
    name: &str,
    done: &mut HashSet<String>,
    chain: &mut Vec<String>,
    budget: &mut usize,
) -> Result<(), PipelineError> {
    if done.contains(name) {
        return Ok(());
    }
    let Some(node) = cfg.get(name) else {
        return Ok(());
    };
    let loc = node.loc.clone();
    let Some(ext) = node.as_map().and_then(|m| m.get("extends")).cloned() else {
        done.insert(name.to_string());
        return Ok(());
    };
    if chain.iter().any(|c| c == name) {
        return Err(PipelineError::at(
            &loc,
            format!("{}: circular dependency detected in `extends`", chain[0]),
        ));
    }
    if chain.len() >= MAX_EXTENDS_DEPTH {
        return Err(PipelineError::at(
            &loc,
            format!("{}: nesting too deep in `extends`", chain[0]),
        ));
    }
    let parents: Vec<String> = match &ext.val {
        Val::Str(s) => vec![s.clone()],
        Val::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    PipelineError::at(
                        &i.loc,
                        format!("jobs:{name}:extends should be an array of strings or a string"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(PipelineError::at(
                &ext.loc,
                format!("jobs:{name}:extends should be an array of strings or a string"),
            ));
        }
    };
    let missing: Vec<&str> = parents
        .iter()
        .filter(|p| cfg.get(p.as_str()).is_none_or(|n| n.as_map().is_none()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(PipelineError::at_hint(
            &ext.loc,
            format!("{name}: unknown keys in `extends` ({})", missing.join(", ")),
            "extends must name jobs or hidden jobs (.name) defined in this pipeline or its includes",
        ));
    }
    chain.push(name.to_string());
    for p in &parents {
        extend_one(cfg, p, done, chain, budget)?;
    }
    chain.pop();
    let mut base = Map::new();
    for p in &parents {
        if let Some(Val::Map(pm)) = cfg.get(p.as_str()).map(|n| &n.val) {
            charge(budget, pm.values().map(Node::count).sum(), &loc)?;
            let mut pm = pm.clone();
            pm.shift_remove("extends");
            deep_merge(&mut base, pm);
        }
    }
    if let Some(Node {
        val: Val::Map(own), ..
    }) = cfg.get(name)
    {
        let mut own = own.clone();
        own.shift_remove("extends");
        deep_merge(&mut base, own);
    }
    if let Some(slot) = cfg.get_mut(name) {
        slot.val = Val::Map(base);
    }
    done.insert(name.to_string());
    Ok(())
}

/// Replace every `!reference [a, b, ...]` with the value it points to.
pub fn resolve_references(cfg: &mut Map) -> Result<(), PipelineError> {
    let snapshot = cfg.clone();
    let mut budget = MAX_EXPANDED_NODES;
    for (_, v) in cfg.iter_mut() {
        resolve_in(v, &snapshot, 0, &mut budget)?;
    }
    Ok(())
}

fn resolve_in(node: &mut Node, root: &Map, depth: usize, budget: &mut usize) -> Result<(), PipelineError> {
    match &mut node.val {
        Val::Ref(path) => {
            let path: Vec<String> = path
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            let shown = format!(
                "!reference [{}]",
                path.iter()
                    .map(|p| format!("\"{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(PipelineError::at(
                    &node.loc,
                    format!(
                        "{shown} is nested too deeply (more than {MAX_REFERENCE_DEPTH} levels), or is part of a circular chain"
                    ),
                ));
            }
            let mut cur: Option<&Node> = None;
            for (i, seg) in path.iter().enumerate() {
                cur = if i == 0 {
                    root.get(seg)
                } else {
                    cur.and_then(Node::as_map).and_then(|m| m.get(seg))
                };
            }
            let Some(found) = cur else {
                return Err(PipelineError::at(
                    &node.loc,
                    format!("{shown} could not be found"),
                ));
            };
            let loc = node.loc.clone();
            charge(budget, found.count(), &node.loc)?;
            let mut value = found.clone();
            resolve_in(&mut value, root, depth + 1, budget)?;
            *node = Node { val: value.val, loc };
        }
        Val::Seq(items) => {
            for i in items {
                resolve_in(i, root, depth, budget)?;
            }
        }
        Val::Map(m) => {
            for (_, v) in m.iter_mut() {
                resolve_in(v, root, depth, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The effective `default:` section, with deprecated global keywords folded in.
pub fn defaults(cfg: &Map) -> Map {
    let mut d = cfg
        .get("default")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    for k in ["image", "services", "cache", "before_script", "after_script"] {
        if let Some(v) = cfg.get(k) {
            d.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
    d
}

/// Which default keys a job inherits (`inherit:default`).
pub fn apply_defaults(job: &mut Map, defaults: &Map, loc: &Loc, name: &str) -> Result<(), PipelineError> {
    let allowed: Option<Vec<String>> = match job
        .get("inherit")
        .and_then(Node::as_map)
        .and_then(|m| m.get("default"))
    {
        None => None,
        Some(Node {
            val: Val::Bool(true), ..
        }) => None,
        Some(Node {
            val: Val::Bool(false),
            ..
        }) => Some(Vec::new()),
        Some(Node {
            val: Val::Seq(items), ..
        }) => Some(items.iter().filter_map(Node::scalar_string).collect()),
        Some(n) => {
            return Err(PipelineError::at(
                &n.loc,
                format!(
                    "jobs:{name}:inherit:default config should be a boolean value or an array of strings"
                ),
            ));
        }
    };
    let _ = loc;
    for (k, v) in defaults {
        if !DEFAULT_KEYS.contains(&k.as_str()) {
            continue;
        }
        if allowed.as_ref().is_some_and(|a| !a.contains(k)) {
            continue;
        }
        if !job.contains_key(k) {
            job.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}
