//! `parallel: N` and `parallel:matrix`: job names and per-instance variables exactly as GitLab makes them.

use crate::error::PipelineError;
use crate::yaml::{Map, Node, Val};

/// GitLab's limit on instances of one parallel job.
pub const MAX_PARALLEL: usize = 200;

/// One instance of a (possibly parallel) job.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    /// (CI_NODE_INDEX, CI_NODE_TOTAL)
    pub node: Option<(usize, usize)>,
    pub matrix: Vec<(String, String)>,
}

pub fn instances(name: &str, job: &Map) -> Result<Vec<Instance>, PipelineError> {
    let Some(p) = job.get("parallel") else {
        return Ok(vec![Instance {
            name: name.to_string(),
            node: None,
            matrix: Vec::new(),
        }]);
    };
    match &p.val {
        Val::Int(n) => {
            let n = usize::try_from(*n).unwrap_or(0);
            if !(2..=MAX_PARALLEL).contains(&n) {
                return Err(PipelineError::at(
                    &p.loc,
                    format!(
                        "jobs:{name}:parallel config must be greater than or equal to 2 and less than or equal to {MAX_PARALLEL}"
                    ),
                ));
            }
            Ok((1..=n)
                .map(|i| Instance {
                    name: format!("{name} {i}/{n}"),
                    node: Some((i, n)),
                    matrix: Vec::new(),
                })
                .collect())
        }
        Val::Map(m) => {
            let matrix = m.get("matrix").ok_or_else(|| {
                PipelineError::at(
                    &p.loc,
                    format!("jobs:{name}:parallel should be an integer or a hash"),
                )
            })?;
            let combos = matrix_combos(matrix, &format!("jobs:{name}:parallel:matrix"))?;
            if combos.len() > MAX_PARALLEL {
                return Err(PipelineError::at(
                    &matrix.loc,
                    format!(
                        "jobs:{name}:parallel:matrix config generates too many jobs (maximum is {MAX_PARALLEL})"
                    ),
                ));
            }
            let total = combos.len();
            Ok(combos
                .into_iter()
                .enumerate()
                .map(|(i, c)| Instance {
                    name: matrix_name(name, &c),
                    node: Some((i + 1, total)),
                    matrix: c,
                })
                .collect())
        }
        _ => Err(PipelineError::at(
            &p.loc,
            format!("jobs:{name}:parallel should be an integer or a hash"),
        )),
    }
}

/// `test: [linux, amd64]`
pub fn matrix_name(base: &str, combo: &[(String, String)]) -> String {
    let vals: Vec<&str> = combo.iter().map(|(_, v)| v.as_str()).collect();
    format!("{base}: [{}]", vals.join(", "))
}

/// Every combination of a matrix, in GitLab's order (`Array#product`: the first variable varies slowest).
pub fn matrix_combos(matrix: &Node, path: &str) -> Result<Vec<Vec<(String, String)>>, PipelineError> {
    let items = matrix.as_seq().ok_or_else(|| {
        PipelineError::at(&matrix.loc, format!("{path} config should be an array of hashes"))
    })?;
    let mut out = Vec::new();
    for item in items {
        let m = item.as_map().ok_or_else(|| {
            PipelineError::at(&item.loc, format!("{path} config should be an array of hashes"))
        })?;
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (k, v) in m {
            let values: Vec<String> = match &v.val {
                Val::Seq(s) => s
                    .iter()
                    .map(|x| {
                        x.scalar_string().ok_or_else(|| {
                            PipelineError::at(
                                &x.loc,
                                format!("{path}:{k} should be a string or an array of strings"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => vec![v.scalar_string().ok_or_else(|| {
                    PipelineError::at(
                        &v.loc,
                        format!("{path}:{k} should be a string or an array of strings"),
                    )
                })?],
            };
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for c in &combos {
                for val in &values {
                    let mut c2 = c.clone();
                    c2.push((k.clone(), val.clone()));
                    next.push(c2);
                }
            }
            combos = next;
            if combos.len() > MAX_PARALLEL * 4 {
                return Err(PipelineError::at(
                    &matrix.loc,
                    format!("{path} config generates too many jobs (maximum is {MAX_PARALLEL})"),
                ));
            }
        }
        out.extend(combos);
    }
    Ok(out)
}
