//! Evaluation of parsed `${{ }}` templates against a job's inputs (`job.inputs.<name>`), with moa's semantics:
//! no implicit conversions, short-circuit `&&`/`||` that return an operand, comparison by kind, the built-ins
//! `str`, `num` and `bool`, and the sensitive mark carried through every operation.
//!
//! Results are bounded by [`MAX_TEXT`]: a job author cannot make the runner build an arbitrarily large string.

use std::rc::Rc;

use super::parse::{BinOp, Expr, Segment, UnOp};
use super::value::{Val, Value, format_number};

/// Largest string an expression or a whole interpolated field may produce (4 MiB).
pub const MAX_TEXT: usize = 4 << 20;

/// Why an expression could not be evaluated (the message never contains an input's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

/// What identifiers resolve to: only `job` (whose `inputs` are the job's inputs).
pub struct Context {
    job: Val,
}

impl Context {
    pub fn new(inputs: Val) -> Context {
        let sensitive = inputs.sensitive;
        Context {
            job: Val {
                v: Value::Object(Rc::new(vec![("inputs".to_string(), inputs)])),
                sensitive,
            },
        }
    }

    /// The text of a template: each expression's value as text, between the literal parts.
    pub fn render(&self, segments: &[Segment]) -> Result<Val, EvalError> {
        let mut out = String::new();
        let mut sensitive = false;
        for seg in segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Expr { expr, source } => {
                    let v = self
                        .eval(expr)
                        .map_err(|e| EvalError(format!("`{source}`: {}", e.0)))?;
                    sensitive |= v.sensitive;
                    out.push_str(&v.to_text());
                }
            }
            bounded(&out)?;
        }
        Ok(Val::string(out).taint(sensitive))
    }

    fn eval(&self, e: &Expr) -> Result<Val, EvalError> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Template(segments) => self.render(segments),
            Expr::Ident(name) if name == "job" => Ok(self.job.clone()),
            Expr::Ident(name) => Err(EvalError(format!(
                "unknown identifier `{name}` (job inputs are read as `job.inputs.<name>`)"
            ))),
            Expr::Member(obj, name) => {
                let o = self.eval(obj)?;
                member(&o, name)
            }
            Expr::Index(obj, idx) => {
                let o = self.eval(obj)?;
                let i = self.eval(idx)?;
                index(&o, &i)
            }
            Expr::Call(name, args) => {
                let vals = args.iter().map(|a| self.eval(a)).collect::<Result<Vec<_>, _>>()?;
                call(name, &vals)
            }
            Expr::Unary(op, inner) => unary(*op, self.eval(inner)?),
            Expr::And(l, r) => {
                let lv = self.eval(l)?;
                if lv.truthy() {
                    self.eval(r).map(|v| v.taint(lv.sensitive))
                } else {
                    Ok(lv)
                }
            }
            Expr::Or(l, r) => {
                let lv = self.eval(l)?;
                if lv.truthy() {
                    Ok(lv)
                } else {
                    self.eval(r).map(|v| v.taint(lv.sensitive))
                }
            }
            Expr::Binary(op, l, r) => binary(*op, self.eval(l)?, self.eval(r)?),
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
                    let name = name.to_string();
                    out.retain(|(existing, _)| *existing != name);
                    out.push((name, value));
                }
                Ok(Val::plain(Value::Object(Rc::new(out))).taint(sensitive))
            }
        }
    }
}

fn bounded(s: &str) -> Result<(), EvalError> {
    if s.len() > MAX_TEXT {
        return Err(EvalError(format!("result longer than {} MiB", MAX_TEXT >> 20)));
    }
    Ok(())
}

fn member(o: &Val, name: &str) -> Result<Val, EvalError> {
    match &o.v {
        Value::Object(entries) => entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| EvalError(format!("attribute `{name}` not found"))),
        _ => Err(EvalError(format!(
            "cannot read attribute `{name}` of a {}",
            o.kind().name()
        ))),
    }
}

fn index(o: &Val, i: &Val) -> Result<Val, EvalError> {
    match (&o.v, &i.v) {
        (Value::Array(items), Value::Number(n)) => {
            let pos = (n.fract() == 0.0 && *n >= 0.0)
                .then_some(*n as usize)
                .filter(|p| *p < items.len());
            match pos {
                Some(p) => Ok(items[p].clone().taint(i.sensitive)),
                None => Err(EvalError(format!(
                    "index {} out of range for an array of {} elements",
                    shown(i, format_number(*n)),
                    items.len()
                ))),
            }
        }
        (Value::Object(_), Value::String(key)) => match member(o, key) {
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

/// A value for an error message, unless it is sensitive: errors reach the job log.
fn shown(v: &Val, text: String) -> String {
    if v.sensitive {
        "(a sensitive value)".into()
    } else {
        text
    }
}

fn call(name: &str, args: &[Val]) -> Result<Val, EvalError> {
    let [arg] = args else {
        return Err(match name {
            "str" | "num" | "bool" => EvalError(format!("{name}() takes 1 argument, got {}", args.len())),
            _ => EvalError(format!("unknown function `{name}` (available: str, num, bool)")),
        });
    };
    let out = match name {
        "str" => {
            let text = arg.to_text();
            bounded(&text)?;
            Val::string(text)
        }
        "num" => match &arg.v {
            Value::Number(_) => arg.clone(),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Val::plain(Value::Number(n)),
                _ => return Err(EvalError("num(): the string is not a number".into())),
            },
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

fn binary(op: BinOp, l: Val, r: Val) -> Result<Val, EvalError> {
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
        BinOp::Eq => Value::Bool(l.equals(&r)),
        BinOp::Ne => Value::Bool(!l.equals(&r)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = l.compare_same(&r).ok_or_else(mismatch)?;
            Value::Bool(match op {
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        BinOp::Add => match (&l.v, &r.v) {
            (Value::String(a), Value::String(b)) => {
                let joined = format!("{a}{b}");
                bounded(&joined)?;
                Value::String(joined.into())
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

fn finite(n: f64) -> Result<Value, EvalError> {
    if n.is_finite() {
        Ok(Value::Number(n))
    } else {
        Err(EvalError("number out of range".into()))
    }
}
