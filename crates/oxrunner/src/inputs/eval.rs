//! Evaluation of parsed `${{ }}` templates against a job's inputs (`job.inputs.<name>`), with moa's semantics:
//! no implicit conversions, short-circuit `&&`/`||` that return an operand, comparison by kind, the built-ins
//! `str`, `num` and `bool`, and the sensitive mark carried through every operation.
//!
//! Strings are bounded by [`super::budget::MAX_TEXT`] and the work of a job's whole evaluation by a [`Meter`]: a
//! job author can make the runner build neither an arbitrarily large value nor spend arbitrary time.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use super::budget::{Meter, bounded};
use super::parse::{BinOp, Expr, Segment, UnOp};
use super::value::{Val, Value, format_number};

/// Why an expression could not be evaluated (the message never contains an input's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

/// What identifiers resolve to: only `job` (whose `inputs` are the job's inputs), and what evaluating has cost.
pub struct Context {
    job: Val,
    pub meter: Meter,
    /// Set once an operation looked at a sensitive value: whether a later step fails could tell something about
    /// it, so the caller reports any failure after that as the sensitive-input error.
    observed: Cell<bool>,
}

impl Context {
    pub fn new(inputs: Val) -> Context {
        let sensitive = inputs.sensitive;
        Context {
            job: Val {
                v: Value::Object(Rc::new(vec![("inputs".to_string(), inputs)])),
                sensitive,
            },
            meter: Meter::default(),
            observed: Cell::new(false),
        }
    }

    /// Whether a sensitive value was looked at since the last call (which resets it).
    pub fn take_observed(&self) -> bool {
        self.observed.replace(false)
    }

    fn see(&self, v: &Val) {
        if v.sensitive {
            self.observed.set(true);
        }
    }

    /// Whether `o` is `job` or `job.inputs`: these are marked when any input is sensitive, but the names of the
    /// inputs are no secret.
    fn is_root(&self, o: &Val) -> bool {
        let Value::Object(job) = &self.job.v else {
            return false;
        };
        match &o.v {
            Value::Object(entries) => {
                Rc::ptr_eq(entries, job)
                    || job
                        .iter()
                        .any(|(_, v)| matches!(&v.v, Value::Object(i) if Rc::ptr_eq(i, entries)))
            }
            _ => false,
        }
    }

    /// The text of a template: each expression's value as text, between the literal parts.
    pub fn render(&self, segments: &[Segment]) -> Result<Val, EvalError> {
        let mut out = String::new();
        let mut sensitive = false;
        for seg in segments {
            match seg {
                Segment::Text(t) => {
                    self.meter.charge(t.len())?;
                    out.push_str(t);
                }
                Segment::Expr { expr, source } => {
                    let v = self
                        .eval(expr)
                        .and_then(|v| Ok((v.to_text(&self.meter)?, v.sensitive)))
                        .map_err(|e| EvalError(format!("`{}`: {}", shorten(source), e.0)))?;
                    sensitive |= v.1;
                    bounded(out.len() + v.0.len())?;
                    out.push_str(&v.0);
                }
            }
            bounded(out.len())?;
        }
        Ok(Val::string(out).taint(sensitive))
    }

    fn eval(&self, e: &Expr) -> Result<Val, EvalError> {
        self.meter.charge(1)?;
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Template(segments) => self.render(segments),
            Expr::Ident(name) if name == "job" => Ok(self.job.clone()),
            Expr::Ident(name) => Err(EvalError(format!(
                "unknown identifier `{name}` (job inputs are read as `job.inputs.<name>`)"
            ))),
            Expr::Member(obj, name) => {
                let o = self.eval(obj)?;
                if !self.is_root(&o) {
                    self.see(&o);
                }
                self.member(&o, name)
            }
            Expr::Index(obj, idx) => {
                let o = self.eval(obj)?;
                let i = self.eval(idx)?;
                self.see(&i);
                if !self.is_root(&o) {
                    self.see(&o);
                }
                self.index(&o, &i)
            }
            Expr::Call(name, args) => {
                let vals = args.iter().map(|a| self.eval(a)).collect::<Result<Vec<_>, _>>()?;
                vals.iter().for_each(|v| self.see(v));
                self.call(name, &vals)
            }
            Expr::Unary(op, inner) => {
                let v = self.eval(inner)?;
                self.see(&v);
                unary(*op, v)
            }
            Expr::And(l, r) => {
                let lv = self.eval(l)?;
                self.see(&lv);
                if lv.truthy() {
                    self.eval(r).map(|v| v.taint(lv.sensitive))
                } else {
                    Ok(lv)
                }
            }
            Expr::Or(l, r) => {
                let lv = self.eval(l)?;
                self.see(&lv);
                if lv.truthy() {
                    Ok(lv)
                } else {
                    self.eval(r).map(|v| v.taint(lv.sensitive))
                }
            }
            Expr::Binary(op, l, r) => {
                let (lv, rv) = (self.eval(l)?, self.eval(r)?);
                self.see(&lv);
                self.see(&rv);
                self.binary(*op, lv, rv)
            }
            Expr::Array(items) => {
                let vals = items
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let sensitive = vals.iter().any(|v| v.sensitive);
                Ok(Val::plain(Value::Array(Rc::new(vals))).taint(sensitive))
            }
            Expr::Object(entries) => {
                let mut out: Vec<(String, Val)> = Vec::with_capacity(entries.len());
                // A later duplicate key replaces the value in place: a map keeps the dedupe linear.
                let mut at: HashMap<Rc<str>, usize> = HashMap::with_capacity(entries.len());
                let mut sensitive = false;
                for (k, v) in entries {
                    let key = self.eval(k)?;
                    let Value::String(name) = &key.v else {
                        return Err(EvalError(format!(
                            "object key must be a string, not {}",
                            key.kind().name()
                        )));
                    };
                    let value = self.eval(v)?;
                    sensitive |= key.sensitive | value.sensitive;
                    self.meter.charge(name.len())?;
                    match at.get(name) {
                        Some(&i) => out[i].1 = value,
                        None => {
                            at.insert(name.clone(), out.len());
                            out.push((name.to_string(), value));
                        }
                    }
                }
                Ok(Val::plain(Value::Object(Rc::new(out))).taint(sensitive))
            }
        }
    }
}

/// An expression's source for an error message: at most 80 characters, like the parser shows.
fn shorten(source: &str) -> String {
    let mut chars = source.chars();
    let head: String = chars.by_ref().take(80).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

impl Context {
    fn member(&self, o: &Val, name: &str) -> Result<Val, EvalError> {
        match &o.v {
            Value::Object(entries) => {
                self.meter.charge(entries.len())?;
                entries
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| EvalError(format!("attribute `{name}` not found")))
            }
            _ => Err(EvalError(format!(
                "cannot read attribute `{name}` of a {}",
                o.kind().name()
            ))),
        }
    }

    fn index(&self, o: &Val, i: &Val) -> Result<Val, EvalError> {
        match (&o.v, &i.v) {
            (Value::Array(items), Value::Number(n)) => {
                let pos = (n.fract() == 0.0 && *n >= 0.0)
                    .then_some(*n as usize)
                    .filter(|p| *p < items.len());
                match pos {
                    Some(p) => Ok(items[p].clone().taint(i.sensitive)),
                    // The length of a sensitive array is part of the secret.
                    None if o.sensitive || i.sensitive => {
                        Err(EvalError("index out of range (a sensitive value)".into()))
                    }
                    None => Err(EvalError(format!(
                        "index {} out of range for an array of {} elements",
                        format_number(*n),
                        items.len()
                    ))),
                }
            }
            (Value::Object(_), Value::String(key)) => match self.member(o, key) {
                Ok(v) => Ok(v.taint(i.sensitive)),
                Err(_) if i.sensitive => Err(EvalError("attribute (a sensitive value) not found".into())),
                Err(e) => Err(e),
            },
            _ => Err(EvalError(format!(
                "cannot index a {} with a {}",
                o.kind().name(),
                i.kind().name()
            ))),
        }
    }

    fn call(&self, name: &str, args: &[Val]) -> Result<Val, EvalError> {
        let [arg] = args else {
            return Err(match name {
                "str" | "num" | "bool" => EvalError(format!("{name}() takes 1 argument, got {}", args.len())),
                _ => EvalError(format!("unknown function `{name}` (available: str, num, bool)")),
            });
        };
        let out = match name {
            "str" => Val::string(arg.to_text(&self.meter)?),
            "num" => match &arg.v {
                Value::Number(_) => arg.clone(),
                Value::String(s) => {
                    self.meter.charge(s.len())?;
                    match s.trim().parse::<f64>() {
                        Ok(n) if n.is_finite() => Val::plain(Value::Number(n)),
                        _ => return Err(EvalError("num(): the string is not a number".into())),
                    }
                }
                _ => {
                    return Err(EvalError(format!(
                        "num() needs a string, not {}",
                        arg.kind().name()
                    )));
                }
            },
            "bool" => Val::plain(Value::Bool(arg.truthy())),
            _ => {
                return Err(EvalError(format!(
                    "unknown function `{name}` (available: str, num, bool)"
                )));
            }
        };
        Ok(out.taint(arg.sensitive))
    }

    fn binary(&self, op: BinOp, l: Val, r: Val) -> Result<Val, EvalError> {
        let s = l.sensitive | r.sensitive;
        let mismatch = || {
            EvalError(format!(
                "invalid operation: {} {} {}",
                l.kind().name(),
                op.symbol(),
                r.kind().name()
            ))
        };
        let out = match op {
            BinOp::Eq => Value::Bool(l.equals(&r, &self.meter)?),
            BinOp::Ne => Value::Bool(!l.equals(&r, &self.meter)?),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ord = l.compare_same(&r, &self.meter)?.ok_or_else(mismatch)?;
                Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            BinOp::Add => match (&l.v, &r.v) {
                (Value::String(a), Value::String(b)) => {
                    bounded(a.len() + b.len())?;
                    self.meter.charge(a.len() + b.len())?;
                    Value::String(format!("{a}{b}").into())
                }
                (Value::Number(a), Value::Number(b)) => finite(a + b)?,
                _ => return Err(mismatch()),
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                let (Value::Number(a), Value::Number(b)) = (&l.v, &r.v) else {
                    return Err(mismatch());
                };
                if matches!(op, BinOp::Div | BinOp::Rem) && *b == 0.0 {
                    return Err(EvalError("division by zero".into()));
                }
                finite(match op {
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                })?
            }
        };
        Ok(Val::plain(out).taint(s))
    }
}

fn unary(op: UnOp, v: Val) -> Result<Val, EvalError> {
    let s = v.sensitive;
    match (op, &v.v) {
        (UnOp::Not, _) => Ok(Val::plain(Value::Bool(!v.truthy())).taint(s)),
        (UnOp::Plus, Value::Number(_)) => Ok(v),
        (UnOp::Neg, Value::Number(n)) => Ok(Val::plain(Value::Number(-n)).taint(s)),
        (UnOp::Plus | UnOp::Neg, _) => Err(EvalError(format!(
            "unary `{}` needs a number, not {}",
            if op == UnOp::Neg { "-" } else { "+" },
            v.kind().name()
        ))),
    }
}

fn finite(n: f64) -> Result<Value, EvalError> {
    if n.is_finite() {
        Ok(Value::Number(n))
    } else {
        Err(EvalError("number out of range".into()))
    }
}
