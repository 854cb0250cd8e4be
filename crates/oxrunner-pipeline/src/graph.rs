//! `needs` and `dependencies` across the jobs that exist, with GitLab's validation messages.

use std::collections::HashMap;

use crate::error::{Loc, PipelineError, Warning};
use crate::jobs::{Built, NeedSpec, to_need};
use crate::model::Need;

/// Every job name defined in the configuration (after parallel expansion), with its stage index,
/// grouped by the name the user wrote.
pub struct Defined {
    pub instances: HashMap<String, Vec<(String, usize)>>,
}

impl Defined {
    fn lookup(&self, name: &str) -> Option<Vec<(String, usize)>> {
        if let Some(v) = self.instances.get(name) {
            return Some(v.clone());
        }
        self.instances
            .values()
            .flat_map(|v| v.iter())
            .find(|(n, _)| n == name)
            .map(|x| vec![x.clone()])
    }
}

/// Resolve needs and dependencies in place; returns the payload dependency names per job.
pub fn link(
    built: &mut [Built],
    defined: &Defined,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Vec<String>>, PipelineError> {
    let existing: HashMap<String, usize> = built
        .iter()
        .map(|b| (b.job.name.clone(), b.job.stage_index))
        .collect();
    let mut deps_out = Vec::with_capacity(built.len());
    for b in built.iter_mut() {
        let job = JobRef {
            name: &b.job.name,
            stage_index: b.job.stage_index,
        };
        if let Some(specs) = &b.needs {
            let needs = link_needs(&job, specs, defined, &existing)?;
            b.job.needs = Some(needs);
        }
        let payload_deps: Vec<String>;
        if let Some((deps, loc)) = &b.dependencies {
            let names = link_dependencies(
                &job,
                deps,
                loc,
                b.job.needs.as_deref(),
                defined,
                &existing,
                warnings,
            )?;
            // With `needs`, a listed dependency passes its artifacts only when its need also asks for them.
            payload_deps = match b.job.needs.as_deref() {
                Some(needs) => names
                    .iter()
                    .filter(|d| needs.iter().any(|n| n.job == **d && n.artifacts))
                    .cloned()
                    .collect(),
                None => names.clone(),
            };
            b.job.dependencies = Some(names);
        } else if let Some(needs) = &b.job.needs {
            payload_deps = needs
                .iter()
                .filter(|n| n.artifacts)
                .map(|n| n.job.clone())
                .collect();
        } else {
            payload_deps = Vec::new();
        }
        deps_out.push(payload_deps);
    }
    // Without `needs` or `dependencies`, a job receives artifacts from every job of earlier stages.
    let order: Vec<(String, usize)> = built
        .iter()
        .map(|b| (b.job.name.clone(), b.job.stage_index))
        .collect();
    for (i, b) in built.iter().enumerate() {
        if b.job.needs.is_none() && b.dependencies.is_none() {
            deps_out[i] = order
                .iter()
                .filter(|(_, s)| *s < b.job.stage_index)
                .map(|(n, _)| n.clone())
                .collect();
        }
    }
    check_cycles(built)?;
    Ok(deps_out)
}

/// The job whose `needs`/`dependencies` are being resolved, for the error messages and stage checks.
struct JobRef<'a> {
    name: &'a str,
    stage_index: usize,
}

/// A job's `needs` against the defined jobs (errors name the need) and those in the pipeline (an absent
/// one is an error unless optional).
fn link_needs(
    job: &JobRef<'_>,
    specs: &[NeedSpec],
    defined: &Defined,
    existing: &HashMap<String, usize>,
) -> Result<Vec<Need>, PipelineError> {
    let (name, si) = (job.name, job.stage_index);
    let mut needs: Vec<Need> = Vec::new();
    for spec in specs {
        let Some(all) = defined.lookup(&spec.job) else {
            // GitLab drops an optional need whose job is not defined at all (an include or rule removed it).
            if spec.optional {
                continue;
            }
            return Err(PipelineError::at(
                &spec.loc,
                format!("{name} job: undefined need: {}", spec.job),
            ));
        };
        let targets: Vec<(String, usize)> = match &spec.instances {
            Some(sel) => {
                let mut t = Vec::new();
                for s in sel {
                    match all.iter().find(|(n, _)| n == s) {
                        Some(x) => t.push(x.clone()),
                        None if spec.optional => {}
                        None => {
                            return Err(PipelineError::at(
                                &spec.loc,
                                format!("{name} job: undefined need: {s}"),
                            ));
                        }
                    }
                }
                t
            }
            None => all,
        };
        for (target, tsi) in targets {
            if tsi > si {
                return Err(PipelineError::at(
                    &spec.loc,
                    format!("{name} job: need {target} is not defined in current or prior stages"),
                ));
            }
            if !existing.contains_key(&target) {
                if spec.optional {
                    continue;
                }
                return Err(PipelineError::at_hint(
                    &spec.loc,
                    format!(
                        "'{name}' job needs '{target}' job, but '{target}' does not exist in the pipeline. This might be because of the only, except, or rules keywords. To need a job that sometimes does not exist in the pipeline, use needs:optional."
                    ),
                    "add `optional: true` to the need, or make the rules of both jobs agree",
                ));
            }
            if !needs.iter().any(|n| n.job == target) {
                needs.push(to_need(&target, spec));
            }
        }
    }
    Ok(needs)
}

/// A job's `dependencies`: the names that are in the pipeline; one excluded by rules only warns, as the
/// job can still run without its artifacts.
fn link_dependencies(
    job: &JobRef<'_>,
    deps: &[String],
    loc: &Loc,
    needs: Option<&[Need]>,
    defined: &Defined,
    existing: &HashMap<String, usize>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<String>, PipelineError> {
    let (name, si) = (job.name, job.stage_index);
    let mut names = Vec::new();
    for d in deps {
        let Some(all) = defined.lookup(d) else {
            return Err(PipelineError::at(
                loc,
                format!("{name} job: undefined dependency: {d}"),
            ));
        };
        for (target, tsi) in all {
            if tsi > si || (tsi == si && needs.is_none()) {
                return Err(PipelineError::at(
                    loc,
                    format!("{name} job: dependency {target} is not defined in current or prior stages"),
                ));
            }
            if let Some(needs) = needs
                && !needs.iter().any(|n| n.job == target)
                && existing.contains_key(&target)
            {
                return Err(PipelineError::at(
                    loc,
                    format!("jobs:{name} dependencies the {target} should be part of needs"),
                ));
            }
            if existing.contains_key(&target) {
                names.push(target);
            } else {
                warnings.push(Warning::at(loc, format!("{name} job: dependency {target} is not in this pipeline (excluded by rules); its artifacts will be missing")));
            }
        }
    }
    Ok(names)
}

fn check_cycles(built: &[Built]) -> Result<(), PipelineError> {
    let idx: HashMap<&str, usize> = built
        .iter()
        .enumerate()
        .map(|(i, b)| (b.job.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = built
        .iter()
        .map(|b| {
            b.job
                .needs
                .iter()
                .flatten()
                .filter_map(|n| idx.get(n.job.as_str()).copied())
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done; iterative to stay safe on deep graphs.
    let mut state = vec![0u8; built.len()];
    for start in 0..built.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some((node, next)) = stack.pop() {
            if next < edges[node].len() {
                stack.push((node, next + 1));
                let to = edges[node][next];
                if state[to] == 1 {
                    let mut cycle: Vec<&str> =
                        stack.iter().map(|(n, _)| built[*n].job.name.as_str()).collect();
                    let from = cycle.iter().position(|n| *n == built[to].job.name).unwrap_or(0);
                    cycle.drain(..from);
                    cycle.push(built[to].job.name.as_str());
                    return Err(PipelineError::at_hint(
                        &built[to].needs_loc,
                        format!("The pipeline has circular dependencies: {}", cycle.join(" -> ")),
                        "remove one of the `needs` in the cycle",
                    ));
                }
                if state[to] == 0 {
                    state[to] = 1;
                    stack.push((to, 0));
                }
            } else {
                state[node] = 2;
            }
        }
    }
    Ok(())
}
