//! Job variables: ordered list, "last one wins" lookup and gitlab-runner's `$VAR` / `${VAR}` expansion.

use std::fmt;

/// One job variable, as sent by GitLab (`variables[]` of the job payload) or added by the runner.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Variable {
    /// Variable name.
    pub key: String,
    /// Value (for file variables: the file content).
    pub value: String,
    /// Visible in job logs/UI (GitLab's flag; informative only).
    pub public: bool,
    /// Masked in the trace.
    pub masked: bool,
    /// File-type variable: the value is written to a file and the variable holds its path.
    pub file: bool,
    /// Never expanded.
    pub raw: bool,
}

impl Variable {
    /// A plain public variable.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            public: true,
            ..Self::default()
        }
    }

    /// A masked (secret) variable.
    pub fn masked(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            masked: true,
            ..Self::default()
        }
    }

    /// Marks the variable as file-type.
    pub fn into_file(mut self) -> Self {
        self.file = true;
        self
    }
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only public, unmasked values are safe to print.
        let value: &dyn fmt::Debug = if self.public && !self.masked {
            &self.value
        } else {
            &"[MASKED]"
        };
        f.debug_struct("Variable")
            .field("key", &self.key)
            .field("value", value)
            .field("public", &self.public)
            .field("masked", &self.masked)
            .field("file", &self.file)
            .field("raw", &self.raw)
            .finish()
    }
}

/// An ordered list of variables; later entries override earlier ones on lookup, and all are exported in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables(Vec<Variable>);

impl Variables {
    /// An empty list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a variable (it overrides earlier ones with the same key).
    pub fn push(&mut self, var: Variable) {
        self.0.push(var);
    }

    /// Appends all variables of `other`.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Variable>) {
        self.0.extend(other);
    }

    /// Iterates in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Variable> {
        self.0.iter()
    }

    /// Number of entries (duplicates included).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last variable named `key`.
    pub fn find(&self, key: &str) -> Option<&Variable> {
        self.0.iter().rev().find(|v| v.key == key)
    }

    /// The raw value of the last variable named `key` (file variables: their content).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.find(key).map(|v| v.value.as_str())
    }

    /// The value of `key` parsed as a boolean the way gitlab-runner does (`1`, `t`, `true`, ... case-insensitive).
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.value(key).and_then(parse_bool)
    }

    /// Expands every non-raw value once, looking names up in the unexpanded list (gitlab-runner `Expand`).
    ///
    /// `file_path` maps a file variable to the path its content will be written to, so `$FILE_VAR` expands to
    /// the path as it does in the job's shell.
    pub fn expanded(&self, file_path: &dyn Fn(&Variable) -> String) -> Variables {
        let lookup = |name: &str| -> String {
            match self.find(name) {
                Some(v) if v.file => file_path(v),
                Some(v) => v.value.clone(),
                None => String::new(),
            }
        };
        Variables(
            self.0
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    if !v.raw {
                        v.value = expand_with(&v.value, &lookup);
                    }
                    v
                })
                .collect(),
        )
    }

    /// Expands `$VAR`/`${VAR}` in `text` with this list (file variables expand to their content here; use on an
    /// already [`expanded`](Self::expanded) list for settings such as `GIT_CLONE_PATH`).
    pub fn expand(&self, text: &str) -> String {
        expand_with(text, &|name: &str| {
            self.value(name).map(str::to_owned).unwrap_or_default()
        })
    }
}

impl From<Vec<Variable>> for Variables {
    fn from(v: Vec<Variable>) -> Self {
        Self(v)
    }
}

impl FromIterator<Variable> for Variables {
    fn from_iter<T: IntoIterator<Item = Variable>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Variables {
    type Item = &'a Variable;
    type IntoIter = std::slice::Iter<'a, Variable>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Variables {
    type Item = Variable;
    type IntoIter = std::vec::IntoIter<Variable>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Parses booleans like Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn is_name_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Shell-style expansion with Go `os.Expand` semantics as used by gitlab-runner:
/// `$NAME` and `${NAME}` are looked up (unknown → empty), `$$` becomes `$`, the positional/special parameters
/// (`$1`, `$*`, `$#`, `$@`, `$!`, `$?`, `$-`) are kept verbatim, a `$` not followed by a name stays as is, and an
/// invalid `${...}` is dropped.
pub fn expand_with(text: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        out.push_str(&text[copied..i]);
        let next = bytes[i + 1];
        let consumed;
        if next == b'{' {
            match text[i + 2..].find('}') {
                Some(rel) => {
                    let name = &text[i + 2..i + 2 + rel];
                    if !name.is_empty() && name.bytes().all(is_name_byte) {
                        out.push_str(&lookup(name));
                    } else if name.len() == 1 && is_special(name.as_bytes()[0]) {
                        out.push_str(&special(name.as_bytes()[0]));
                    }
                    consumed = 2 + rel + 1;
                }
                None => {
                    // Unterminated `${`: Go eats the two characters.
                    consumed = 2;
                }
            }
        } else if is_special(next) {
            out.push_str(&special(next));
            consumed = 2;
        } else if is_name_byte(next) {
            let len = bytes[i + 1..].iter().take_while(|b| is_name_byte(**b)).count();
            out.push_str(&lookup(&text[i + 1..i + 1 + len]));
            consumed = 1 + len;
        } else {
            out.push('$');
            consumed = 1;
        }
        i += consumed;
        copied = i;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_special(b: u8) -> bool {
    matches!(b, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || b.is_ascii_digit()
}

fn special(b: u8) -> String {
    if b == b'$' {
        "$".to_owned()
    } else {
        format!("${}", b as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        vec![Variable::new("A", "x"), Variable::new("B", "$A-y")].into()
    }

    #[test]
    fn expands_forms() {
        let v = vars();
        assert_eq!(v.expand("$A ${A} $$A $1 $ end$"), "x x $A $1 $ end$");
        assert_eq!(v.expand("${MISSING}|$MISSING|"), "||");
    }

    #[test]
    fn single_pass() {
        let e = vars().expanded(&|_| String::new());
        assert_eq!(e.value("B"), Some("x-y"));
        let chain: Variables = vec![
            Variable::new("A", "$B"),
            Variable::new("B", "$C"),
            Variable::new("C", "c"),
        ]
        .into();
        let e = chain.expanded(&|_| String::new());
        assert_eq!(e.value("A"), Some("$C"));
    }
}
