//! YAML as GitLab reads it. GitLab parses with Ruby Psych (YAML 1.1 scalars), resolves `<<` merge keys and
//! knows one custom tag, `!reference`. We build our own tree from parser events so that every node keeps
//! its position, duplicate keys can be reported, and alias expansion stays bounded.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::error::{Loc, PipelineError, Warning};

pub type Map = IndexMap<String, Node>;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub val: Val,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Map),
    /// `!reference [job, key, ...]`, resolved after `extends`.
    Ref(Vec<Node>),
}

/// GitLab rejects documents nested deeper than this (`max_yaml_depth`); it also keeps recursion bounded.
pub const MAX_DEPTH: usize = 100;
/// Upper bound on nodes produced by alias expansion ("billion laughs").
const MAX_NODES: usize = 2_000_000;

impl Node {
    pub fn new(val: Val, loc: Loc) -> Node {
        Node { val, loc }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.val {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.val {
            Val::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.val {
            Val::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.val, Val::Null)
    }

    /// Scalars as GitLab turns them into strings (`1` → "1", `true` → "true"); `None` for collections.
    pub fn scalar_string(&self) -> Option<String> {
        match &self.val {
            Val::Str(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(ruby_float(*f)),
            Val::Bool(b) => Some(b.to_string()),
            Val::Null => Some(String::new()),
            _ => None,
        }
    }

    pub fn count(&self) -> usize {
        match &self.val {
            Val::Seq(s) | Val::Ref(s) => 1 + s.iter().map(Node::count).sum::<usize>(),
            Val::Map(m) => 1 + m.values().map(Node::count).sum::<usize>(),
            _ => 1,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.val {
            Val::Null => J::Null,
            Val::Bool(b) => J::Bool(*b),
            Val::Int(i) => J::from(*i),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Val::Str(s) => J::String(s.clone()),
            Val::Seq(s) => J::Array(s.iter().map(Node::to_json).collect()),
            Val::Ref(s) => {
                let mut o = serde_json::Map::new();
                o.insert(
                    "!reference".into(),
                    J::Array(s.iter().map(Node::to_json).collect()),
                );
                J::Object(o)
            }
            Val::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

/// Ruby's `Float#to_s`: integral floats keep a `.0`.
pub fn ruby_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Loc,
        anchor: usize,
        reference: bool,
    },
    Map {
        map: Map,
        key: Option<(String, Loc, bool)>,
        merges: Vec<Node>,
        loc: Loc,
        anchor: usize,
    },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    docs: Vec<Node>,
    nodes: usize,
    warnings: Vec<Warning>,
}

/// Parse every document of a YAML stream.
pub fn parse_documents(text: &str, file: &Arc<str>) -> Result<(Vec<Node>, Vec<Warning>), PipelineError> {
    let mut b = Builder {
        file: Arc::clone(file),
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        nodes: 0,
        warnings: Vec::new(),
    };
    for item in Parser::new_from_str(text) {
        let (ev, span) = item.map_err(|e| {
            let m = e.marker();
            PipelineError::at_hint(
                &Loc::new(file, m.line(), m.col() + 1),
                format!("Invalid configuration format: {}", e.info()),
                "check indentation, quoting and unclosed brackets around this position",
            )
        })?;
        b.event(ev, span)?;
    }
    Ok((b.docs, b.warnings))
}

impl Builder {
    fn loc(&self, span: Span) -> Loc {
        Loc::new(&self.file, span.start.line(), span.start.col() + 1)
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), PipelineError> {
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let loc = self.loc(span);
                let val = resolve_scalar(&value, style, tag.as_deref(), &loc)?;
                let node = Node::new(val, loc);
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                let plain = style == ScalarStyle::Plain;
                self.push(node, plain)
            }
            Event::Alias(id) => self.alias(id, span),
            Event::SequenceStart(anchor, tag) => {
                let loc = self.loc(span);
                self.depth_check(&loc)?;
                let reference = match tag.as_deref() {
                    None => false,
                    Some(t) if is_reference(t) => true,
                    Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "seq" => false,
                    Some(t) => return Err(unknown_tag(t, &loc)),
                };
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    loc,
                    anchor,
                    reference,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                let loc = self.loc(span);
                self.depth_check(&loc)?;
                match tag.as_deref() {
                    None => {}
                    Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "map" => {}
                    Some(t) => return Err(unknown_tag(t, &loc)),
                }
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    merges: Vec::new(),
                    loc,
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => self.end_sequence(),
            Event::MappingEnd => self.end_mapping(),
            Event::DocumentStart(_) => {
                self.anchors.clear();
                Ok(())
            }
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd | Event::Nothing => Ok(()),
        }
    }

    fn alias(&mut self, id: usize, span: Span) -> Result<(), PipelineError> {
        let loc = self.loc(span);
        let (node, size) = self
            .anchors
            .get(&id)
            .ok_or_else(|| PipelineError::at(&loc, "Invalid configuration format: unknown YAML alias"))?;
        // Count before cloning so an alias bomb never gets materialised.
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(PipelineError::at(
                &loc,
                "The parsed YAML is too big (alias expansion exceeds the node limit)",
            ));
        }
        let node = node.clone();
        self.push(node, false)
    }

    fn end_sequence(&mut self) -> Result<(), PipelineError> {
        let Some(Frame::Seq {
            items,
            loc,
            anchor,
            reference,
        }) = self.stack.pop()
        else {
            return Err(PipelineError::pipeline("YAML parser: unbalanced sequence"));
        };
        let node = if reference {
            if items.is_empty() || items.iter().any(|i| i.as_str().is_none()) {
                return Err(PipelineError::at(
                    &loc,
                    "!reference must be a sequence of strings, e.g. !reference [.job, script]",
                ));
            }
            Node::new(Val::Ref(items), loc)
        } else {
            Node::new(Val::Seq(items), loc)
        };
        self.finish(node, anchor)
    }

    fn end_mapping(&mut self) -> Result<(), PipelineError> {
        let Some(Frame::Map {
            mut map,
            merges,
            loc,
            anchor,
            ..
        }) = self.stack.pop()
        else {
            return Err(PipelineError::pipeline("YAML parser: unbalanced mapping"));
        };
        // Merge keys: explicit keys win over merged ones, and earlier merge sources win over later.
        for src in merges {
            let sources: Vec<Node> = match src.val {
                Val::Map(_) => vec![src],
                Val::Seq(items) => items,
                _ => {
                    return Err(PipelineError::at(
                        &src.loc,
                        "merge key `<<` needs a mapping or a list of mappings",
                    ));
                }
            };
            for s in sources {
                let Val::Map(m) = s.val else {
                    return Err(PipelineError::at(
                        &s.loc,
                        "merge key `<<` needs a mapping or a list of mappings",
                    ));
                };
                for (k, v) in m {
                    map.entry(k).or_insert(v);
                }
            }
        }
        self.finish(Node::new(Val::Map(map), loc), anchor)
    }

    fn depth_check(&self, loc: &Loc) -> Result<(), PipelineError> {
        if self.stack.len() >= MAX_DEPTH {
            // GitLab reports depth and size with one message.
            return Err(PipelineError::at_hint(
                loc,
                "The parsed YAML is too big",
                format!("the document is nested more than {MAX_DEPTH} levels deep (GitLab's max_yaml_depth)"),
            ));
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), PipelineError> {
        if anchor > 0 {
            let size = node.count();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.push(node, false)
    }

    fn push(&mut self, node: Node, plain: bool) -> Result<(), PipelineError> {
        self.nodes += 1;
        match self.stack.last_mut() {
            None => {
                self.docs.push(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { map, key, merges, .. }) => match key.take() {
                None => {
                    let k = match &node.val {
                        Val::Map(_) | Val::Seq(_) | Val::Ref(_) => {
                            return Err(PipelineError::at(
                                &node.loc,
                                "mapping keys must be scalars (strings)",
                            ));
                        }
                        _ => node.scalar_string().unwrap_or_default(),
                    };
                    *key = Some((k, node.loc, plain));
                    Ok(())
                }
                Some((k, kloc, kplain)) => {
                    if k == "<<" && kplain {
                        merges.push(node);
                        return Ok(());
                    }
                    if map.contains_key(&k) {
                        // Psych keeps the last value; so do we, but say so.
                        self.warnings.push(Warning::at(
                            &kloc,
                            format!("duplicate key `{k}`: the later value replaces the earlier one"),
                        ));
                        map.shift_remove(&k);
                    }
                    map.insert(k, node);
                    Ok(())
                }
            },
        }
    }
}

fn is_reference(t: &Tag) -> bool {
    t.handle == "!" && t.suffix == "reference"
}

fn unknown_tag(t: &Tag, loc: &Loc) -> PipelineError {
    PipelineError::at_hint(
        loc,
        format!("unknown YAML tag `{}{}`", t.handle, t.suffix),
        "the only custom tag GitLab supports is !reference [job, key]",
    )
}

fn resolve_scalar(v: &str, style: ScalarStyle, tag: Option<&Tag>, loc: &Loc) -> Result<Val, PipelineError> {
    if let Some(t) = tag {
        if t.handle == "tag:yaml.org,2002:" {
            return Ok(match t.suffix.as_str() {
                "str" => Val::Str(v.to_string()),
                "null" => Val::Null,
                "bool" => match plain_scalar(v) {
                    b @ Val::Bool(_) => b,
                    _ => return Err(PipelineError::at(loc, format!("invalid !!bool value `{v}`"))),
                },
                "int" => match plain_scalar(v) {
                    i @ Val::Int(_) => i,
                    _ => return Err(PipelineError::at(loc, format!("invalid !!int value `{v}`"))),
                },
                "float" => match plain_scalar(v) {
                    Val::Float(f) => Val::Float(f),
                    #[allow(clippy::cast_precision_loss)]
                    Val::Int(i) => Val::Float(i as f64),
                    _ => return Err(PipelineError::at(loc, format!("invalid !!float value `{v}`"))),
                },
                _ => return Err(unknown_tag(t, loc)),
            });
        }
        if is_reference(t) {
            return Err(PipelineError::at(
                loc,
                "!reference must be a sequence, e.g. !reference [.job, script]",
            ));
        }
        return Err(unknown_tag(t, loc));
    }
    if style != ScalarStyle::Plain {
        return Ok(Val::Str(v.to_string()));
    }
    Ok(plain_scalar(v))
}

/// YAML 1.1 plain-scalar resolution as Psych does it: `yes`/`no`/`on`/`off` are booleans, a leading `0`
/// means octal, underscores are allowed in numbers.
pub fn plain_scalar(v: &str) -> Val {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Val::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Val::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Val::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Val::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Val::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Val::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(v) {
        return Val::Int(i);
    }
    if is_float(v)
        && let Ok(f) = v.replace('_', "").parse::<f64>()
    {
        return Val::Float(f);
    }
    Val::Str(v.to_string())
}

fn parse_int(v: &str) -> Option<i64> {
    let (neg, body) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    let parsed = if let Some(h) = clean.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = clean.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = clean.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else if clean.bytes().all(|c| c.is_ascii_digit()) {
        clean.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { parsed.checked_neg()? } else { parsed })
}

fn is_float(v: &str) -> bool {
    let b = v.trim_start_matches(['-', '+']);
    let mut digits = 0;
    let mut dot = false;
    let mut exp = false;
    let mut prev = ' ';
    for c in b.chars() {
        match c {
            '0'..='9' => digits += 1,
            '_' if digits > 0 && !exp => {}
            '.' if !dot && !exp => dot = true,
            'e' | 'E' if digits > 0 && !exp => exp = true,
            '-' | '+' if exp && matches!(prev, 'e' | 'E') => {}
            _ => return false,
        }
        prev = c;
    }
    digits > 0 && (dot || exp) && !matches!(prev, 'e' | 'E' | '-' | '+')
}
