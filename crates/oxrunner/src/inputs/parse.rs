//! Parser of `${{ }}` templates: text with embedded expressions of GitLab's moa language (literals, identifiers,
//! `.`/`[]` access, calls, unary and binary operators with moa's precedence, array and object literals, double-quoted
//! strings that embed templates themselves).
//!
//! The text comes from a job's author, so nesting ([`MAX_DEPTH`]), operator chains ([`MAX_CHAIN`]) and literal
//! sizes are bounded, and every error names the expression (its first 80 characters).

use super::budget::MAX_ITEMS;
use super::value::{Val, Value};

/// Deepest nesting of expressions (parentheses, literals, unary operators, templates in strings) accepted.
pub const MAX_DEPTH: usize = 64;

/// Most binary operators in a row (`a + b + c ...`), counted over all open chains: a chain is a left-deep tree
/// that evaluation walks recursively, so it is bounded like nesting, but apart, since long sums are common.
pub const MAX_CHAIN: usize = 256;

/// Words moa keeps for future use: they are not identifiers.
const RESERVED: &[&str] = &[
    "array",
    "as",
    "break",
    "case",
    "const",
    "continue",
    "default",
    "else",
    "fallthrough",
    "float",
    "for",
    "func",
    "function",
    "goto",
    "if",
    "import",
    "in",
    "int",
    "let",
    "loop",
    "map",
    "namespace",
    "number",
    "object",
    "package",
    "range",
    "return",
    "string",
    "struct",
    "switch",
    "type",
    "var",
    "void",
    "while",
];

/// A template: literal text and expressions, in order.
#[derive(Debug)]
pub enum Segment {
    Text(String),
    Expr { expr: Expr, source: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Plus,
    Neg,
    Not,
}

#[derive(Debug)]
pub enum Expr {
    Lit(Val),
    /// A double-quoted string with embedded templates.
    Template(Vec<Segment>),
    Ident(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `a && b`: `a` if it is falsy, else `b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`: `a` if it is truthy, else `b`.
    Or(Box<Expr>, Box<Expr>),
    Array(Vec<Expr>),
    Object(Vec<(Expr, Expr)>),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Splits `text` into literal text and expressions. `\${{` stands for a literal `${{`; no other backslash is
/// special outside expressions.
pub fn parse_template(text: &str) -> Result<Vec<Segment>, ParseError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        depth: 0,
        chain: 0,
    };
    p.template(None)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    chain: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn err<T>(&self, start: usize, what: impl std::fmt::Display) -> Result<T, ParseError> {
        let shown: String = self.src[start..].chars().take(80).collect();
        Err(ParseError(format!("`{shown}`: {what}")))
    }

    fn enter(&mut self, start: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(start, format!("expression nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// Text up to the end (`quote` = None) or up to the closing `"` of a double-quoted string, whose escapes it
    /// then decodes.
    fn template(&mut self, quote: Option<usize>) -> Result<Vec<Segment>, ParseError> {
        let mut segments = Vec::new();
        let mut text = String::new();
        loop {
            let rest = self.rest();
            if rest.starts_with("\\${{") {
                text.push_str("${{");
                self.pos += 4;
            } else if rest.starts_with("${{") {
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                let start = self.pos;
                self.pos += 3;
                self.enter(start)?;
                let expr = self.expr()?;
                self.skip_ws();
                if !self.rest().starts_with("}}") {
                    return self.err(start, "expected `}}` to close the expression");
                }
                self.pos += 2;
                self.depth -= 1;
                let source = self.src[start..self.pos].to_string();
                segments.push(Segment::Expr { expr, source });
            } else if let Some(start) = quote {
                match rest.chars().next() {
                    None => return self.err(start, "unterminated string"),
                    Some('"') => {
                        self.pos += 1;
                        break;
                    }
                    Some('\\') => text.push(self.dq_escape(start)?),
                    Some(c) => {
                        text.push(c);
                        self.pos += c.len_utf8();
                    }
                }
            } else {
                // Stop at each `$` and `\`: either may start `${{` or `\${{`.
                match rest.find(['$', '\\']) {
                    Some(0) => {
                        text.push_str(&rest[..1]);
                        self.pos += 1;
                    }
                    Some(n) => {
                        text.push_str(&rest[..n]);
                        self.pos += n;
                    }
                    None => {
                        text.push_str(rest);
                        self.pos = self.src.len();
                        break;
                    }
                }
            }
        }
        if !text.is_empty() || segments.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(segments)
    }

    fn dq_escape(&mut self, start: usize) -> Result<char, ParseError> {
        let mut chars = self.rest().chars();
        chars.next();
        let c = match chars.next() {
            Some(c) => c,
            None => return self.err(start, "unterminated string"),
        };
        self.pos += 1 + c.len_utf8();
        Ok(match c {
            '\\' => '\\',
            '"' => '"',
            '/' => '/',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            'u' => return self.unicode_escape(start),
            other => return self.err(start, format!("invalid escape `\\{other}` in string")),
        })
    }

    fn hex4(&mut self, start: usize) -> Result<u32, ParseError> {
        let digits = self
            .rest()
            .get(..4)
            .filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        match digits.and_then(|d| u32::from_str_radix(d, 16).ok()) {
            Some(n) => {
                self.pos += 4;
                Ok(n)
            }
            None => self.err(start, "`\\u` needs four hexadecimal digits"),
        }
    }

    fn unicode_escape(&mut self, start: usize) -> Result<char, ParseError> {
        let hi = self.hex4(start)?;
        let code = if (0xD800..0xDC00).contains(&hi) && self.rest().starts_with("\\u") {
            self.pos += 2;
            let lo = self.hex4(start)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return self.err(start, "invalid surrogate pair in `\\u` escape");
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.err(start, "`\\u` escape is not a character"),
        }
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
    }

    /// Consumes `tok` (after white space) if it is next; a one-character operator is not taken from a longer one.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if !rest.starts_with(tok) {
            return false;
        }
        let next = rest[tok.len()..].chars().next();
        let longer = match tok {
            "=" | "<" | ">" | "!" => next == Some('='),
            "&" => next == Some('&'),
            "|" => next == Some('|'),
            _ => false,
        };
        if longer {
            return false;
        }
        self.pos += tok.len();
        true
    }

    fn expect(&mut self, tok: &str, start: usize) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            self.err(start, format!("expected `{tok}`"))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.binary(0)
    }

    /// Precedence climbing over moa's levels: `||` < `&&` < comparisons < `+ -` < `* / %`.
    fn binary(&mut self, level: usize) -> Result<Expr, ParseError> {
        const LEVELS: &[&[(&str, Option<BinOp>)]] = &[
            &[("||", None)],
            &[("&&", None)],
            &[
                ("==", Some(BinOp::Eq)),
                ("!=", Some(BinOp::Ne)),
                ("<=", Some(BinOp::Le)),
                (">=", Some(BinOp::Ge)),
                ("<", Some(BinOp::Lt)),
                (">", Some(BinOp::Gt)),
            ],
            &[("+", Some(BinOp::Add)), ("-", Some(BinOp::Sub))],
            &[
                ("*", Some(BinOp::Mul)),
                ("/", Some(BinOp::Div)),
                ("%", Some(BinOp::Rem)),
            ],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let start = self.pos;
        let mut lhs = self.binary(level + 1)?;
        let mut chained = 0usize;
        'outer: loop {
            for (tok, op) in ops.iter() {
                if self.eat(tok) {
                    chained += 1;
                    self.chain += 1;
                    if self.chain > MAX_CHAIN {
                        return self.err(
                            start,
                            format!("more than {MAX_CHAIN} operators in a row; split the expression"),
                        );
                    }
                    let rhs = self.binary(level + 1)?;
                    let (l, r) = (Box::new(lhs), Box::new(rhs));
                    lhs = match (op, *tok) {
                        (Some(op), _) => Expr::Binary(*op, l, r),
                        (None, "&&") => Expr::And(l, r),
                        (None, _) => Expr::Or(l, r),
                    };
                    continue 'outer;
                }
            }
            break;
        }
        self.chain -= chained;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let op = if self.eat("!") {
            Some(UnOp::Not)
        } else if self.eat("-") {
            Some(UnOp::Neg)
        } else if self.eat("+") {
            Some(UnOp::Plus)
        } else {
            None
        };
        match op {
            Some(op) => {
                self.enter(start)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Unary(op, Box::new(inner)))
            }
            None => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let mut e = self.primary()?;
        let mut chained = 0usize;
        loop {
            if self.eat(".") {
                self.skip_ws();
                let name = match self.word() {
                    Some(w) => w,
                    None => return self.err(start, "expected a property name after `.`"),
                };
                e = Expr::Member(Box::new(e), name);
            } else if self.eat("[") {
                self.enter(start)?;
                let idx = self.expr()?;
                self.depth -= 1;
                self.expect("]", start)?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else if self.eat("(") {
                let Expr::Ident(name) = e else {
                    return self.err(start, "only a function name can be called");
                };
                self.enter(start)?;
                let args = self.list(")", start)?;
                self.depth -= 1;
                e = Expr::Call(name, args);
            } else {
                break;
            }
            chained += 1;
            self.enter(start)?;
        }
        self.depth -= chained;
        Ok(e)
    }

    /// Comma-separated expressions up to `close`; a trailing comma is allowed.
    fn list(&mut self, close: &str, start: usize) -> Result<Vec<Expr>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            if items.len() == MAX_ITEMS {
                return self.err(start, format!("a list of more than {MAX_ITEMS} elements"));
            }
            items.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close, start)?;
                return Ok(items);
            }
        }
    }

    fn word(&mut self) -> Option<String> {
        let rest = self.rest();
        let first = rest.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let w = rest[..len].to_string();
        self.pos += len;
        Some(w)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.rest().chars().next() else {
            return self.err(start, "expected an expression");
        };
        match c {
            '(' => {
                self.pos += 1;
                self.enter(start)?;
                let e = self.expr()?;
                self.depth -= 1;
                self.expect(")", start)?;
                Ok(e)
            }
            '[' => {
                self.pos += 1;
                self.enter(start)?;
                let items = self.list("]", start)?;
                self.depth -= 1;
                Ok(Expr::Array(items))
            }
            '{' => {
                self.pos += 1;
                self.enter(start)?;
                let entries = self.object(start)?;
                self.depth -= 1;
                Ok(Expr::Object(entries))
            }
            '"' => {
                self.pos += 1;
                self.enter(start)?;
                let segments = self.template(Some(start))?;
                self.depth -= 1;
                Ok(match segments.as_slice() {
                    [Segment::Text(t)] => Expr::Lit(Val::string(t.as_str())),
                    _ => Expr::Template(segments),
                })
            }
            '\'' => self.single_quoted(start),
            '0'..='9' => self.number(start),
            _ => match self.word() {
                Some(w) => match w.as_str() {
                    "true" => Ok(Expr::Lit(Val::plain(Value::Bool(true)))),
                    "false" => Ok(Expr::Lit(Val::plain(Value::Bool(false)))),
                    "null" => Ok(Expr::Lit(Val::plain(Value::Null))),
                    r if RESERVED.contains(&r) => self.err(start, format!("`{r}` is a reserved word")),
                    _ => Ok(Expr::Ident(w)),
                },
                None => self.err(start, format!("unexpected `{c}`")),
            },
        }
    }

    fn object(&mut self, start: usize) -> Result<Vec<(Expr, Expr)>, ParseError> {
        let mut entries = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(entries);
            }
            self.skip_ws();
            // A bare word is the key's text, not a variable: `{name: 1}` has the key "name".
            let key = if let Some(w) = self.word() {
                Expr::Lit(Val::string(w))
            } else if self.rest().starts_with('(') || self.rest().starts_with(['"', '\'']) {
                self.primary()?
            } else {
                return self.err(
                    start,
                    "expected an object key (a name, a string or `(expression)`)",
                );
            };
            self.expect(":", start)?;
            let value = self.expr()?;
            if entries.len() == MAX_ITEMS {
                return self.err(start, format!("an object of more than {MAX_ITEMS} elements"));
            }
            entries.push((key, value));
            if !self.eat(",") {
                self.expect("}", start)?;
                return Ok(entries);
            }
        }
    }

    /// `'...'`: raw text; only `\\` and `\'` are escapes.
    fn single_quoted(&mut self, start: usize) -> Result<Expr, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let mut chars = self.rest().chars();
            match chars.next() {
                None => return self.err(start, "unterminated string"),
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Expr::Lit(Val::string(out)));
                }
                Some('\\') if matches!(chars.next(), Some('\\' | '\'')) => {
                    out.push(self.src[self.pos + 1..].chars().next().unwrap_or('\\'));
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<Expr, ParseError> {
        let bytes = self.rest().as_bytes();
        let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut len = digits(0);
        if bytes.get(len) == Some(&b'.') && bytes.get(len + 1).is_some_and(u8::is_ascii_digit) {
            len += 1 + digits(len + 1);
        }
        if matches!(bytes.get(len), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(len + 1), Some(b'+' | b'-')));
            let exp = digits(len + 1 + sign);
            if exp == 0 {
                return self.err(start, "exponent without digits");
            }
            len += 1 + sign + exp;
        }
        let text = &self.rest()[..len];
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                self.pos += len;
                Ok(Expr::Lit(Val::plain(Value::Number(n))))
            }
            _ => self.err(start, "number out of range"),
        }
    }
}
