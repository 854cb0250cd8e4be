//! Variable definitions and the two expansion flavours: GitLab's server side (used for `rules`, `include`,
//! `environment`, `tags`...) and the runner's (one pass over the payload list).

use std::collections::{HashMap, HashSet};

use crate::error::{Loc, PipelineError};
use crate::model::JobVariable;
use crate::yaml::{Node, Val};

#[derive(Clone, Debug, PartialEq)]
pub struct VarDef {
    pub key: String,
    pub value: String,
    /// `expand: false` → sent with `raw: true`.
    pub raw: bool,
    pub loc: Loc,
}

/// Parse a `variables:` mapping (global, job, `rules:variables`, `workflow:rules:variables`).
pub fn parse_defs(node: &Node, path: &str) -> Result<Vec<VarDef>, PipelineError> {
    let bad = |loc: &Loc| {
        PipelineError::at_hint(
            loc,
            format!("{path} config should be a hash of key value pairs, value can be a hash"),
            "write `NAME: value` or `NAME: { value: ..., description: ..., expand: false }`",
        )
    };
    let map = match &node.val {
        Val::Null => return Ok(Vec::new()),
        Val::Map(m) => m,
        _ => return Err(bad(&node.loc)),
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        if !valid_name(key) {
            return Err(PipelineError::at(
                &v.loc,
                format!("{path} config uses invalid variable name `{key}`"),
            ));
        }
        let (value, raw) = match &v.val {
            Val::Map(m) => {
                for k in m.keys() {
                    if !matches!(k.as_str(), "value" | "description" | "options" | "expand") {
                        return Err(PipelineError::at(
                            &v.loc,
                            format!("{path}:{key} config contains unknown keys: {k}"),
                        ));
                    }
                }
                let value = match m.get("value") {
                    Some(n) => n.scalar_string().ok_or_else(|| bad(&n.loc))?,
                    None => String::new(),
                };
                if let Some(opts) = m.get("options") {
                    let list = opts.as_seq().ok_or_else(|| bad(&opts.loc))?;
                    let options: Vec<String> = list.iter().filter_map(Node::scalar_string).collect();
                    if !options.contains(&value) {
                        return Err(PipelineError::at(
                            &v.loc,
                            format!("{path}:{key} config value must be present in options"),
                        ));
                    }
                }
                let raw = match m.get("expand").map(|n| &n.val) {
                    None => false,
                    Some(Val::Bool(b)) => !b,
                    Some(_) => {
                        return Err(PipelineError::at(
                            &v.loc,
                            format!("{path}:{key} expand should be a boolean value"),
                        ));
                    }
                };
                (value, raw)
            }
            Val::Seq(_) | Val::Ref(_) => return Err(bad(&v.loc)),
            _ => (v.scalar_string().unwrap_or_default(), false),
        };
        out.push(VarDef {
            key: key.clone(),
            value,
            raw,
            loc: v.loc.clone(),
        });
    }
    Ok(out)
}

fn valid_name(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Overlay `over` on `base`: a redefined key keeps its first position, as Ruby hash merges do.
pub fn overlay(base: &mut Vec<VarDef>, over: &[VarDef]) {
    for v in over {
        match base.iter_mut().find(|b| b.key == v.key) {
            Some(b) => *b = v.clone(),
            None => base.push(v.clone()),
        }
    }
}

/// The longest value an expansion may produce. Nested references multiply (`A: $B$B`, `B: $C$C`, ...), so
/// without a bound a few lines of YAML expand to gigabytes; no real value is longer than a whole CI file.
pub const MAX_EXPANDED_BYTES: usize = 1024 * 1024;

/// The most bytes one variable table may hold after expansion: many variables each referencing one long value
/// multiply too, and every job expands its own table.
pub const MAX_EXPANDED_TABLE_BYTES: usize = 16 * MAX_EXPANDED_BYTES;

/// A variable whose expansion passed [`MAX_EXPANDED_BYTES`] or [`MAX_EXPANDED_TABLE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpansionTooBig {
    pub key: String,
}

impl ExpansionTooBig {
    /// The error, placed at the definition of the variable among `defs` when it is one of them.
    pub fn into_error(self, defs: &[&[VarDef]]) -> PipelineError {
        let message = format!(
            "variable `{}` expands to more than {MAX_EXPANDED_BYTES} bytes (or the variables together to more than {MAX_EXPANDED_TABLE_BYTES})",
            self.key
        );
        let hint = "each reference to a variable copies its value, and nested references multiply: reference a long value once, or mark it `expand: false`";
        match defs
            .iter()
            .flat_map(|d| d.iter())
            .rev()
            .find(|d| d.key == self.key)
        {
            Some(def) => PipelineError::at_hint(&def.loc, message, hint),
            None => PipelineError::Pipeline {
                message,
                hint: Some(hint.to_string()),
            },
        }
    }
}

/// Replace `$NAME` / `${NAME}` using `lookup`; `missing_empty` drops unknown names (GitLab's `expand`),
/// otherwise they are kept verbatim (`expand_existing`). A result past [`MAX_EXPANDED_BYTES`] is not built:
/// the text is returned as written, as a reference cycle is.
pub fn expand_with(s: &str, lookup: &dyn Fn(&str) -> Option<String>, missing_empty: bool) -> String {
    expand_bounded(s, lookup, missing_empty).unwrap_or_else(|| s.to_string())
}

/// [`expand_with`], or `None` when the result would pass [`MAX_EXPANDED_BYTES`].
fn expand_bounded(s: &str, lookup: &dyn Fn(&str) -> Option<String>, missing_empty: bool) -> Option<String> {
    if !s.contains('$') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let (name, end) = if i + 1 < b.len() && b[i + 1] == b'{' {
            match s[i + 2..].find('}') {
                Some(rel) => {
                    let n = &s[i + 2..i + 2 + rel];
                    if valid_name(n) {
                        (n, i + 3 + rel)
                    } else {
                        i += 1;
                        continue;
                    }
                }
                None => {
                    i += 1;
                    continue;
                }
            }
        } else {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j == start {
                i += 1;
                continue;
            }
            (&s[start..j], j)
        };
        out.push_str(&s[last..i]);
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None if missing_empty => {}
            None => out.push_str(&s[i..end]),
        }
        if out.len() > MAX_EXPANDED_BYTES {
            return None;
        }
        i = end;
        last = end;
    }
    out.push_str(&s[last..]);
    (out.len() <= MAX_EXPANDED_BYTES).then_some(out)
}

/// GitLab's server-side `sort_and_expand_all`: each value is expanded with its references expanded
/// first (so nesting works), `raw` values are left alone, cycles stay unexpanded.
/// Values past [`MAX_EXPANDED_BYTES`], or tables past [`MAX_EXPANDED_TABLE_BYTES`], are an error.
pub fn server_expand_all(
    list: &[(String, String, bool)],
) -> Result<HashMap<String, String>, ExpansionTooBig> {
    let mut defs: HashMap<&str, (&str, bool)> = HashMap::new();
    for (k, v, raw) in list {
        defs.insert(k.as_str(), (v.as_str(), *raw));
    }
    let mut table = Table::default();
    let keys: Vec<&str> = list.iter().map(|(k, _, _)| k.as_str()).collect();
    for k in keys {
        let mut visiting = HashSet::new();
        resolve_one(k, &defs, &mut table, &mut visiting, 0)?;
    }
    Ok(table.done)
}

#[derive(Default)]
struct Table {
    done: HashMap<String, String>,
    bytes: usize,
}

impl Table {
    fn insert(&mut self, key: &str, value: String) -> Result<(), ExpansionTooBig> {
        self.bytes = self.bytes.saturating_add(value.len());
        if self.bytes > MAX_EXPANDED_TABLE_BYTES {
            return Err(ExpansionTooBig { key: key.to_string() });
        }
        self.done.insert(key.to_string(), value);
        Ok(())
    }
}

fn resolve_one(
    key: &str,
    defs: &HashMap<&str, (&str, bool)>,
    table: &mut Table,
    visiting: &mut HashSet<String>,
    depth: usize,
) -> Result<Option<String>, ExpansionTooBig> {
    if let Some(v) = table.done.get(key) {
        return Ok(Some(v.clone()));
    }
    let Some(&(value, raw)) = defs.get(key) else {
        return Ok(None);
    };
    if raw || !value.contains('$') {
        table.insert(key, value.to_string())?;
        return Ok(Some(value.to_string()));
    }
    if depth > 64 || !visiting.insert(key.to_string()) {
        // A cycle leaves the value as written, like GitLab.
        return Ok(Some(value.to_string()));
    }
    let mut refs = Vec::new();
    for name in referenced_names(value) {
        if name != key
            && let Some(v) = resolve_one(&name, defs, table, visiting, depth + 1)?
        {
            refs.push((name, v));
        }
    }
    let expanded = expand_bounded(
        value,
        &|n| refs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
        false,
    )
    .ok_or_else(|| ExpansionTooBig { key: key.to_string() })?;
    visiting.remove(key);
    table.insert(key, expanded.clone())?;
    Ok(Some(expanded))
}

/// Names referenced as `$X` or `${X}` in `s`.
pub fn referenced_names(s: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    expand_with(
        s,
        &|n| {
            names.borrow_mut().push(n.to_string());
            None
        },
        false,
    );
    names.into_inner()
}

/// The runner's `Variables.Expand`: one pass, each value expanded against the unexpanded list
/// (last definition wins), `$$` → `$`, unknown names → empty.
pub fn runner_expand(vars: &[JobVariable]) -> Vec<(String, String)> {
    let get =
        |name: &str| -> Option<String> { vars.iter().rev().find(|v| v.key == name).map(|v| v.value.clone()) };
    vars.iter()
        .map(|v| {
            let value = if v.raw {
                v.value.clone()
            } else {
                runner_expand_value(&v.value, &get)
            };
            (v.key.clone(), value)
        })
        .collect()
}

/// Go `os.Expand` as the runner uses it (`$$` is a literal dollar).
pub fn runner_expand_value(s: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i + 1 < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&s[last..i]);
        let c = b[i + 1];
        let (name, w) = if c == b'{' {
            match s[i + 2..].find('}') {
                Some(rel) if rel > 0 => (&s[i + 2..i + 2 + rel], rel + 3),
                // Go reports a bad substitution and eats `${`.
                _ => ("", 2),
            }
        } else if c == b'$' {
            ("$", 2)
        } else if b"*#@!?-".contains(&c) || c.is_ascii_digit() {
            (&s[i + 1..i + 2], 2)
        } else {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j == i + 1 {
                out.push('$');
                i += 1;
                last = i;
                continue;
            }
            (&s[i + 1..j], j - i)
        };
        if name == "$" {
            out.push('$');
        } else if !name.is_empty() {
            out.push_str(&get(name).unwrap_or_default());
        }
        i += w;
        last = i;
    }
    out.push_str(&s[last..]);
    out
}
