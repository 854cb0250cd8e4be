//! The values of GitLab's `${{ }}` expression language (moa) as far as job inputs need them: kinds, truthiness,
//! ordering and the text a value becomes when it is interpolated.
//!
//! Every value carries a `sensitive` mark. It is set on a sensitive input and on everything computed from one, so
//! the caller can refuse a result that would put a secret into a script.

use std::cmp::Ordering;
use std::rc::Rc;

use super::budget::{Meter, bounded};
use super::eval::EvalError;

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
    /// their shortest form, `true`/`false`, `<null>`, arrays and objects as compact JSON. The text is bounded
    /// while it is written, and each byte is charged to `meter`.
    pub fn to_text(&self, meter: &Meter) -> Result<String, EvalError> {
        match &self.v {
            Value::String(s) => {
                bounded(s.len())?;
                meter.charge(s.len())?;
                Ok(s.to_string())
            }
            Value::Null => Ok("<null>".into()),
            _ => {
                let mut out = String::new();
                self.write_json(&mut out, meter)?;
                Ok(out)
            }
        }
    }

    fn write_json(&self, out: &mut String, meter: &Meter) -> Result<(), EvalError> {
        let before = out.len();
        match &self.v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&format_number(*n)),
            Value::String(s) => push_json_string(out, s)?,
            Value::Array(a) => {
                out.push('[');
                for (i, e) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    e.write_json(out, meter)?;
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, e)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, k)?;
                    out.push(':');
                    e.write_json(out, meter)?;
                }
                out.push('}');
            }
        }
        bounded(out.len())?;
        meter.charge(out.len() - before)
    }

    /// Equality of kind and content; `1 == "1"` is false, object key order does not matter.
    pub fn equals(&self, other: &Val, meter: &Meter) -> Result<bool, EvalError> {
        Ok(self.kind() == other.kind() && self.compare_same(other, meter)? == Some(Ordering::Equal))
    }

    /// The order of two values of one kind; `None` for different kinds (or a NaN, which JSON cannot carry). Each
    /// element and byte looked at is charged to `meter`.
    pub fn compare_same(&self, other: &Val, meter: &Meter) -> Result<Option<Ordering>, EvalError> {
        meter.charge(1)?;
        Ok(match (&self.v, &other.v) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
            (Value::String(a), Value::String(b)) => {
                meter.charge(a.len().min(b.len()))?;
                Some(a.as_bytes().cmp(b.as_bytes()))
            }
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.compare_any(y, meter)? {
                        Some(Ordering::Equal) => {}
                        o => return Ok(o),
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            (Value::Object(a), Value::Object(b)) => compare_objects(a, b, meter)?,
            _ => None,
        })
    }
    /// Inside containers, elements of different kinds order by kind so that mixed arrays still compare.
    fn compare_any(&self, other: &Val, meter: &Meter) -> Result<Option<Ordering>, EvalError> {
        let (a, b) = (self.kind() as u8, other.kind() as u8);
        if a != b {
            return Ok(Some(a.cmp(&b)));
        }
        self.compare_same(other, meter)
    }
}

type Entries = Rc<Vec<(String, Val)>>;

fn compare_objects(a: &Entries, b: &Entries, meter: &Meter) -> Result<Option<Ordering>, EvalError> {
    if a.len() != b.len() {
        return Ok(Some(a.len().cmp(&b.len())));
    }
    // Sorting n entries costs about n log n comparisons of keys.
    let log = usize::BITS - a.len().leading_zeros();
    meter.charge(2 * a.len() * log as usize)?;
    fn sorted(o: &Entries) -> Vec<&(String, Val)> {
        let mut v: Vec<&(String, Val)> = o.iter().collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }
    let (a, b) = (sorted(a), sorted(b));
    for ((ka, _), (kb, _)) in a.iter().zip(b.iter()).map(|(x, y)| (*x, *y)) {
        meter.charge(ka.len().min(kb.len()))?;
        match ka.cmp(kb) {
            Ordering::Equal => {}
            o => return Ok(Some(o)),
        }
    }
    for ((_, va), (_, vb)) in a.iter().zip(b.iter()).map(|(x, y)| (*x, *y)) {
        match va.compare_any(vb, meter)? {
            Some(Ordering::Equal) => {}
            o => return Ok(o),
        }
    }
    Ok(Some(Ordering::Equal))
}

/// `s` as a JSON string; refused before escaping when even its unescaped length is too long.
fn push_json_string(out: &mut String, s: &str) -> Result<(), EvalError> {
    bounded(out.len() + s.len())?;
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(e) => return Err(EvalError(format!("cannot write a string as JSON: {e}"))),
    }
    bounded(out.len())
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
