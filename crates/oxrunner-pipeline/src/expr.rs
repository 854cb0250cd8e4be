//! GitLab's CI/CD expression language (`rules:if`, `only:variables`, `include:rules:if`).
//!
//! `$VAR`, "string", 'string', /regex/flags, `null`, `==`, `!=`, `=~`, `!~`, `&&` (binds tighter), `||`,
//! parentheses. An undefined variable is `null`, which is neither equal to `""` nor matched by any regex.
//! Patterns are RE2-style as in GitLab (the `regex` crate has the same syntax family).

use regex::Regex;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Var(String),
    Str(String),
    Pattern(String, String),
    Null,
    Eq,
    Ne,
    Match,
    NoMatch,
    And,
    Or,
    LParen,
    RParen,
}

#[derive(Clone, Debug)]
enum Value {
    Nil,
    Str(String),
    Pattern(String, String),
    Bool(bool),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Str(s) => !s.is_empty(),
            Value::Pattern(..) => true,
            Value::Bool(b) => *b,
        }
    }
}

/// A syntax or regex error in an expression; the caller adds the location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError(pub String);

fn lex(src: &str) -> Result<Vec<Tok>, ExprError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let bad = || ExprError(format!("invalid expression syntax: {src}"));
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j == start {
                    return Err(bad());
                }
                out.push(Tok::Var(src[start..j].to_string()));
                i = j;
            }
            b'"' | b'\'' => {
                let rest = &src[i + 1..];
                let end = rest.find(c as char).ok_or_else(bad)?;
                out.push(Tok::Str(rest[..end].to_string()));
                i += end + 2;
            }
            b'/' => {
                // A pattern runs to the next unescaped `/`.
                let mut j = i + 1;
                let mut pat = String::new();
                while j < b.len() && b[j] != b'/' {
                    if b[j] == b'\\' && j + 1 < b.len() && b[j + 1] == b'/' {
                        pat.push('/');
                        j += 2;
                        continue;
                    }
                    let ch = src[j..].chars().next().ok_or_else(bad)?;
                    pat.push(ch);
                    j += ch.len_utf8();
                }
                if j >= b.len() {
                    return Err(bad());
                }
                j += 1;
                let fstart = j;
                while j < b.len() && matches!(b[j], b'i' | b'm' | b's' | b'x' | b'U') {
                    j += 1;
                }
                out.push(Tok::Pattern(pat, src[fstart..j].to_string()));
                i = j;
            }
            b'=' | b'!' if i + 1 < b.len() => {
                let t = match (c, b[i + 1]) {
                    (b'=', b'=') => Tok::Eq,
                    (b'!', b'=') => Tok::Ne,
                    (b'=', b'~') => Tok::Match,
                    (b'!', b'~') => Tok::NoMatch,
                    _ => return Err(bad()),
                };
                out.push(t);
                i += 2;
            }
            b'&' if src[i..].starts_with("&&") => {
                out.push(Tok::And);
                i += 2;
            }
            b'|' if src[i..].starts_with("||") => {
                out.push(Tok::Or);
                i += 2;
            }
            b'(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            _ if src[i..].starts_with("null")
                && !src[i + 4..]
                    .bytes()
                    .next()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || n == b'_') =>
            {
                out.push(Tok::Null);
                i += 4;
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[derive(Clone, Debug)]
enum Ast {
    Leaf(Tok),
    Cmp(Box<Ast>, Tok, Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
}

/// A parsed expression, reusable across jobs.
#[derive(Clone, Debug)]
pub struct Expr {
    ast: Ast,
    src: String,
}

struct P<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
    src: &'a str,
}

impl P<'_> {
    fn err(&self) -> ExprError {
        ExprError(format!("invalid expression syntax: {}", self.src))
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.and()?;
        while self.toks.get(self.pos) == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Ast::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.cmp()?;
        while self.toks.get(self.pos) == Some(&Tok::And) {
            self.pos += 1;
            let right = self.cmp()?;
            left = Ast::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let left = self.primary()?;
        match self.toks.get(self.pos) {
            Some(op @ (Tok::Eq | Tok::Ne | Tok::Match | Tok::NoMatch)) => {
                let op = op.clone();
                self.pos += 1;
                let right = self.primary()?;
                if matches!(op, Tok::Match | Tok::NoMatch)
                    && !matches!(right, Ast::Leaf(Tok::Pattern(..) | Tok::Var(_)))
                {
                    return Err(self.err());
                }
                Ok(Ast::Cmp(Box::new(left), op, Box::new(right)))
            }
            _ => Ok(left),
        }
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let t = self.toks.get(self.pos).cloned().ok_or_else(|| self.err())?;
        self.pos += 1;
        match t {
            Tok::LParen => {
                self.depth += 1;
                if self.depth > 64 {
                    return Err(self.err());
                }
                let inner = self.or()?;
                self.depth -= 1;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return Err(self.err());
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::Var(_) | Tok::Str(_) | Tok::Null => Ok(Ast::Leaf(t)),
            Tok::Pattern(ref p, ref f) => {
                compile(p, f)?;
                Ok(Ast::Leaf(t))
            }
            _ => Err(self.err()),
        }
    }
}

fn compile(pat: &str, flags: &str) -> Result<Regex, ExprError> {
    let mut inline = String::new();
    for f in flags.chars() {
        match f {
            'i' | 'm' | 's' | 'x' | 'U' => inline.push(f),
            _ => {}
        }
    }
    let full = if inline.is_empty() {
        pat.to_string()
    } else {
        format!("(?{inline}){pat}")
    };
    regex::RegexBuilder::new(&full)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ExprError(format!("invalid regular expression /{pat}/: {e}")))
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let toks = lex(src)?;
        if toks.is_empty() {
            return Err(ExprError(format!("invalid expression syntax: {src}")));
        }
        let mut p = P {
            toks: &toks,
            pos: 0,
            depth: 0,
            src,
        };
        let ast = p.or()?;
        if p.pos != toks.len() {
            return Err(p.err());
        }
        Ok(Expr {
            ast,
            src: src.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<bool, ExprError> {
        Ok(eval(&self.ast, lookup)?.truthy())
    }
}

fn eval(ast: &Ast, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Value, ExprError> {
    Ok(match ast {
        Ast::Leaf(t) => match t {
            Tok::Var(n) => lookup(n).map_or(Value::Nil, Value::Str),
            Tok::Str(s) => Value::Str(s.clone()),
            Tok::Pattern(p, f) => Value::Pattern(p.clone(), f.clone()),
            _ => Value::Nil,
        },
        Ast::And(l, r) => {
            let lv = eval(l, lookup)?;
            if lv.truthy() { eval(r, lookup)? } else { lv }
        }
        Ast::Or(l, r) => {
            let lv = eval(l, lookup)?;
            if lv.truthy() { lv } else { eval(r, lookup)? }
        }
        Ast::Cmp(l, op, r) => {
            let lv = eval(l, lookup)?;
            let rv = eval(r, lookup)?;
            match op {
                Tok::Eq => Value::Bool(equal(&lv, &rv)),
                Tok::Ne => Value::Bool(!equal(&lv, &rv)),
                Tok::Match => Value::Bool(matches(&lv, &rv)?),
                _ => Value::Bool(!matches(&lv, &rv)?),
            }
        }
    })
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Pattern(p, f), Value::Pattern(q, g)) => p == q && f == g,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

fn matches(left: &Value, right: &Value) -> Result<bool, ExprError> {
    let Value::Str(text) = left else {
        return Ok(false);
    };
    let re = match right {
        Value::Pattern(p, f) => compile(p, f)?,
        // A variable on the right holding "/re/flags" is a pattern; anything else matches literally.
        Value::Str(s) => match s.strip_prefix('/').and_then(|r| r.rsplit_once('/')) {
            Some((p, f)) if f.chars().all(|c| "imsxU".contains(c)) => compile(p, f)?,
            _ => compile(&regex::escape(s), "")?,
        },
        _ => return Ok(false),
    };
    Ok(re.is_match(text))
}
