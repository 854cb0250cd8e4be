//! `spec:inputs` headers and `$[[ inputs.name ]]` interpolation.

use indexmap::IndexMap;

use crate::error::{Loc, PipelineError};
use crate::rules::Lookup;
use crate::yaml::{Map, Node, Val, plain_scalar};

/// GitLab's `Interpolation::Block::MAX_FUNCTIONS`.
const MAX_FUNCTIONS: usize = 3;

/// Input values given by an includer (typed YAML) or the CLI (strings, converted by the declared type).
#[derive(Clone, Debug, Default)]
pub struct InputArgs {
    pub values: IndexMap<String, Node>,
    pub loc: Loc,
}

impl InputArgs {
    pub fn from_cli(pairs: &[(String, String)], loc: &Loc) -> InputArgs {
        let values = pairs
            .iter()
            .map(|(k, v)| (k.clone(), Node::new(Val::Str(v.clone()), loc.clone())))
            .collect();
        InputArgs {
            values,
            loc: loc.clone(),
        }
    }
}

/// Check the provided inputs against the spec and return the final value of every input.
pub fn resolve_inputs(
    spec: Option<&Node>,
    args: &InputArgs,
    cli: bool,
) -> Result<IndexMap<String, Node>, PipelineError> {
    let decls: Map = match spec.map(|s| &s.val) {
        Some(Val::Map(m)) => match m.get("inputs").map(|i| &i.val) {
            Some(Val::Map(i)) => i.clone(),
            Some(Val::Null) | None => Map::new(),
            Some(_) => {
                return Err(PipelineError::at(
                    &spec.map(|s| s.loc.clone()).unwrap_or_default(),
                    "spec:inputs config must be a hash",
                ));
            }
        },
        _ => Map::new(),
    };
    let unknown: Vec<&str> = args
        .values
        .keys()
        .filter(|k| !decls.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(PipelineError::at(
            &args.loc,
            format!("unknown input arguments: {}", unknown.join(", ")),
        ));
    }
    let mut out = IndexMap::new();
    for (name, decl) in &decls {
        let empty = Map::new();
        let d = decl.as_map().unwrap_or(&empty);
        let ty = d.get("type").and_then(Node::as_str).unwrap_or("string");
        if !matches!(ty, "string" | "number" | "boolean" | "array") {
            return Err(PipelineError::at(
                &decl.loc,
                format!("header:spec:inputs:{name} input type unknown value: {ty}"),
            ));
        }
        let provided = args.values.get(name);
        let value = match (provided, d.get("default")) {
            (Some(v), _) => {
                let v = if cli { convert_cli(v, ty) } else { v.clone() };
                check_type(name, &v, ty)?;
                v
            }
            (None, Some(def)) => def.clone(),
            (None, None) => {
                return Err(PipelineError::at(
                    &args.loc,
                    format!("`{name}` input: required value has not been provided"),
                ));
            }
        };
        if let Some(opts) = d.get("options").and_then(Node::as_seq) {
            check_options(name, &value, opts, ty)?;
        }
        if let Some(re) = d.get("regex").and_then(Node::as_str) {
            check_regex(name, &value, re, provided.is_none())?;
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// GitLab's `validate_options`: an array input may hold only allowed items and names the others.
fn check_options(name: &str, value: &Node, opts: &[Node], ty: &str) -> Result<(), PipelineError> {
    let allowed = |v: &Node| opts.iter().any(|o| o.scalar_string() == v.scalar_string());
    let shown = match &value.val {
        Val::Seq(items) => {
            let bad: Vec<String> = items
                .iter()
                .filter(|i| !allowed(i))
                .map(|i| i.scalar_string().unwrap_or_else(|| i.to_json().to_string()))
                .collect();
            if bad.is_empty() {
                return Ok(());
            }
            bad.join(", ")
        }
        _ if allowed(value) => return Ok(()),
        _ => format!("`{}`", value.scalar_string().unwrap_or_default()),
    };
    let list = if ty == "number" {
        "the list of the allowed options"
    } else {
        "the list of allowed options"
    };
    Err(PipelineError::at(
        &value.loc,
        format!("`{name}` input: {shown} cannot be used because it is not in {list}"),
    ))
}

/// `regex:` applies to string values; a pattern that does not compile is reported as such, not as a mismatch.
fn check_regex(name: &str, value: &Node, re: &str, is_default: bool) -> Result<(), PipelineError> {
    let Val::Str(text) = &value.val else {
        return Ok(());
    };
    let pat = re
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or(re);
    let Ok(compiled) = regex::RegexBuilder::new(pat).size_limit(1 << 20).build() else {
        return Err(PipelineError::at_hint(
            &value.loc,
            format!("`{name}` input: invalid regular expression"),
            format!("`{re}` is not a valid RE2 regular expression"),
        ));
    };
    if compiled.is_match(text) {
        return Ok(());
    }
    let which = if is_default { "default" } else { "provided" };
    Err(PipelineError::at(
        &value.loc,
        format!("`{name}` input: {which} value does not match required RegEx pattern"),
    ))
}

fn convert_cli(v: &Node, ty: &str) -> Node {
    let s = v.scalar_string().unwrap_or_default();
    match ty {
        "number" | "boolean" => Node::new(plain_scalar(&s), v.loc.clone()),
        "array" => match serde_json::from_str::<serde_json::Value>(&s) {
            Ok(serde_json::Value::Array(items)) => Node::new(
                Val::Seq(
                    items
                        .into_iter()
                        .map(|i| {
                            let s = i.as_str().map_or_else(|| i.to_string(), str::to_string);
                            Node::new(Val::Str(s), v.loc.clone())
                        })
                        .collect(),
                ),
                v.loc.clone(),
            ),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

fn check_type(name: &str, v: &Node, ty: &str) -> Result<(), PipelineError> {
    let ok = match ty {
        "number" => matches!(v.val, Val::Int(_) | Val::Float(_)),
        "boolean" => matches!(v.val, Val::Bool(_)),
        "array" => matches!(v.val, Val::Seq(_)),
        _ => matches!(v.val, Val::Str(_)),
    };
    if ok {
        Ok(())
    } else {
        Err(PipelineError::at(
            &v.loc,
            format!("`{name}` input: provided value is not a {ty}"),
        ))
    }
}

/// Replace `$[[ inputs.x ]]` in every string (keys included). A string that is exactly one
/// interpolation takes the input's type (so arrays and booleans survive).
pub fn interpolate(
    node: &mut Node,
    inputs: &IndexMap<String, Node>,
    vars: Lookup<'_>,
) -> Result<(), PipelineError> {
    match &mut node.val {
        Val::Str(s) if s.contains("$[[") => {
            let loc = node.loc.clone();
            *node = interpolate_str(s, inputs, &loc, vars)?;
        }
        Val::Seq(items) | Val::Ref(items) => {
            for i in items {
                interpolate(i, inputs, vars)?;
            }
        }
        Val::Map(m) => {
            let old = std::mem::take(m);
            for (k, mut v) in old {
                interpolate(&mut v, inputs, vars)?;
                let key = if k.contains("$[[") {
                    interpolate_str(&k, inputs, &v.loc, vars)?
                        .scalar_string()
                        .unwrap_or(k)
                } else {
                    k
                };
                m.insert(key, v);
            }
        }
        _ => {}
    }
    Ok(())
}

fn interpolate_str(
    s: &str,
    inputs: &IndexMap<String, Node>,
    loc: &Loc,
    vars: Lookup<'_>,
) -> Result<Node, PipelineError> {
    let mut out = String::new();
    let mut rest = s;
    let mut whole: Option<Node> = None;
    while let Some(start) = rest.find("$[[") {
        let Some(end) = rest[start..].find("]]") else {
            break;
        };
        let inner = rest[start + 3..start + end].trim();
        let value = eval_block(inner, inputs, loc, vars)?;
        if start == 0 && start + end + 2 == rest.len() && out.is_empty() {
            whole = Some(value);
            rest = "";
            break;
        }
        out.push_str(&rest[..start]);
        out.push_str(&render(&value));
        rest = &rest[start + end + 2..];
    }
    if let Some(w) = whole {
        return Ok(w);
    }
    out.push_str(rest);
    Ok(Node::new(Val::Str(out), loc.clone()))
}

fn render(n: &Node) -> String {
    match &n.val {
        Val::Seq(_) | Val::Map(_) => n.to_json().to_string(),
        _ => n.scalar_string().unwrap_or_default(),
    }
}

fn eval_block(
    inner: &str,
    inputs: &IndexMap<String, Node>,
    loc: &Loc,
    vars: Lookup<'_>,
) -> Result<Node, PipelineError> {
    let mut parts = inner.split('|').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let Some(name) = head.strip_prefix("inputs.") else {
        return Err(PipelineError::at(
            loc,
            format!("unknown interpolation key: `{head}`"),
        ));
    };
    let mut value = inputs.get(name).cloned().ok_or_else(|| {
        PipelineError::at_hint(
            loc,
            format!("unknown interpolation key: `{name}`"),
            "declare it under spec:inputs in the header of this file",
        )
    })?;
    let funcs: Vec<&str> = parts.collect();
    if funcs.len() > MAX_FUNCTIONS {
        return Err(PipelineError::at_hint(
            loc,
            "too many functions in interpolation block",
            format!("GitLab allows at most {MAX_FUNCTIONS} functions in one `$[[ ]]`; interpolate in steps"),
        ));
    }
    for func in funcs {
        if func == "expand_vars" && !matches!(value.val, Val::Str(_)) {
            return Err(PipelineError::at(
                loc,
                "invalid input type: expand_vars can only be used with string inputs",
            ));
        }
        let s = render(&value);
        let new = if func == "posix_escape" {
            s.chars()
                .flat_map(|c| {
                    let esc = !(c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c));
                    esc.then_some('\\').into_iter().chain(std::iter::once(c))
                })
                .collect()
        } else if func == "expand_vars" {
            expand_existing(&s, vars)
        } else if let Some(args) = func.strip_prefix("truncate(").and_then(|a| a.strip_suffix(')')) {
            let nums: Vec<usize> = args.split(',').filter_map(|n| n.trim().parse().ok()).collect();
            let [off, len] = nums[..] else {
                return Err(PipelineError::at(
                    loc,
                    format!("invalid interpolation function arguments: {func}"),
                ));
            };
            s.chars().skip(off).take(len).collect()
        } else {
            return Err(PipelineError::at(
                loc,
                format!("unknown interpolation function: `{func}`"),
            ));
        };
        value = Node::new(Val::Str(new), loc.clone());
    }
    Ok(value)
}

/// GitLab's `ExpandVariables.expand_existing`: `$VAR` and `${VAR}` are replaced when the variable exists (among
/// those `include` may use) and left as written otherwise.
fn expand_existing(s: &str, vars: Lookup<'_>) -> String {
    crate::vars::expand_with(s, vars, false)
}
