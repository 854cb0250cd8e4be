//! The values of GitLab's `${{ }}` expression language (moa) as far as job inputs need them: kinds, truthiness,
//! ordering and the text a value becomes when it is interpolated.
//!
//! Every value carries a `sensitive` mark. It is set on a sensitive input and on everything computed from one, so
//! the caller can refuse a result that would put a secret into a script.

use std::cmp::Ordering;
use std::rc::Rc;

/// A value with its sensitivity mark. A container's mark is set when any element's is, and reading an element
/// gives that element's own mark.
#[derive(Clone, Debug)]
pub struct Val {
    pub v: Value,
    pub sensitive: bool,
}

/// Containers are shared (`Rc`): reading `job.inputs.x` a thousand times must not copy a large input each time.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(Rc<str>),
    Array(Rc<Vec<Val>>),
    /// Key order is kept for printing; equality and ordering ignore it.
    Object(Rc<Vec<(String, Val)>>),
}

/// The kinds, named as in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

impl Val {
    pub fn plain(v: Value) -> Val {
        Val { v, sensitive: false }
    }

    pub fn string(s: impl Into<Rc<str>>) -> Val {
        Val::plain(Value::String(s.into()))
    }

    /// The same value, marked sensitive if `sensitive`.
    pub fn taint(mut self, sensitive: bool) -> Val {
        self.sensitive |= sensitive;
        self
    }

    pub fn kind(&self) -> Kind {
        match &self.v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// Falsy: `false`, `0`, `""`, `[]`, `{}` and `null`.
    pub fn truthy(&self) -> bool {
        match &self.v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// A JSON value as an input's content; every part inherits the input's mark.
    pub fn from_json(j: &serde_json::Value, sensitive: bool) -> Val {
        let v = match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.as_str().into()),
            serde_json::Value::Array(a) => {
                Value::Array(Rc::new(a.iter().map(|e| Val::from_json(e, sensitive)).collect()))
            }
            serde_json::Value::Object(o) => Value::Object(Rc::new(
                o.iter()
                    .map(|(k, e)| (k.clone(), Val::from_json(e, sensitive)))
                    .collect(),
            )),
        };
        Val { v, sensitive }
    }

    /// The text of the value where it is interpolated (and what `str()` returns): a string as it is, numbers in
    /// their shortest form, `true`/`false`, `<null>`, arrays and objects as compact JSON.
    pub fn to_text(&self) -> String {
        match &self.v {
            Value::String(s) => s.to_string(),
            Value::Null => "<null>".into(),
            _ => {
                let mut out = String::new();
                self.write_json(&mut out);
                out
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        match &self.v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&format_number(*n)),
            Value::String(s) => out.push_str(&serde_json::Value::String(s.to_string()).to_string()),
            Value::Array(a) => {
                out.push('[');
                for (i, e) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    e.write_json(out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, e)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    e.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Equality of kind and content; `1 == "1"` is false, object key order does not matter.
    pub fn equals(&self, other: &Val) -> bool {
        self.kind() == other.kind() && self.compare_same(other) == Some(Ordering::Equal)
    }

    /// The order of two values of one kind; `None` for different kinds (or a NaN, which JSON cannot carry).
    pub fn compare_same(&self, other: &Val) -> Option<Ordering> {
        match (&self.v, &other.v) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
            (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.compare_any(y)? {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            (Value::Object(a), Value::Object(b)) => {
                if a.len() != b.len() {
                    return Some(a.len().cmp(&b.len()));
                }
                let sorted = |o: &Rc<Vec<(String, Val)>>| {
                    let mut v: Vec<(String, Val)> = o.iter().cloned().collect();
                    v.sort_by(|x, y| x.0.cmp(&y.0));
                    v
                };
                let (a, b) = (sorted(a), sorted(b));
                for ((ka, _), (kb, _)) in a.iter().zip(b.iter()) {
                    match ka.cmp(kb) {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                for ((_, va), (_, vb)) in a.iter().zip(b.iter()) {
                    match va.compare_any(vb)? {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                Some(Ordering::Equal)
            }
            _ => None,
        }
    }

    /// Inside containers, elements of different kinds order by kind so that mixed arrays still compare.
    fn compare_any(&self, other: &Val) -> Option<Ordering> {
        let (a, b) = (self.kind() as u8, other.kind() as u8);
        if a != b {
            return Some(a.cmp(&b));
        }
        self.compare_same(other)
    }
}

/// Numbers print as JSON and JavaScript print them: integers without a fraction below 1e21, the shortest
/// round-tripping decimal otherwise, and an exponent (`1e+21`, `1e-7`) outside [1e-6, 1e21).
pub fn format_number(n: f64) -> String {
    let abs = n.abs();
    if n.fract() == 0.0 && abs < 1e21 {
        return format!("{n:.0}");
    }
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{n:e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        };
    }
    format!("{n}")
}
