//! How stage scripts quote the values they carry (variables, file variable contents, the `eval`'d body).
//!
//! gitlab-runner's bash writer has two forms: bash's ANSI-C `$'...'` by default and, with
//! `FF_POSIXLY_CORRECT_ESCAPES`, POSIX double quotes with `\` before `` ` `` `"` `\` `$`. The default here is POSIX
//! single quotes instead of `$'...'`: bash reads the same bytes from both, and single quotes also work where the
//! job's shell is `sh` (dash has no `$'...'`), which upstream needs the flag for. With the flag on the text is
//! upstream's double-quoted form, with one correction: upstream leaves a word bare unless it holds one of a few
//! listed bytes, so a value such as `it's`, `a;b`, `~x` or one with a newline but no space is cut or expanded by
//! the shell; here any ASCII byte outside upstream's own list of plain bytes (`[A-Za-z0-9,./@_-]`) quotes the word.

use super::bash::quote;

/// The quoting form of one job's scripts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quoting {
    /// `'...'`, a `'` written as `'\''`.
    #[default]
    Single,
    /// `FF_POSIXLY_CORRECT_ESCAPES`: gitlab-runner's `PosixShellEscape`.
    PosixDouble,
}

impl Quoting {
    /// The form `FF_POSIXLY_CORRECT_ESCAPES` asks for.
    pub fn from_flag(posixly_correct: bool) -> Self {
        if posixly_correct {
            Self::PosixDouble
        } else {
            Self::Single
        }
    }

    /// `s` as one shell word.
    pub fn word(self, s: &str) -> String {
        match self {
            Self::Single => quote(s),
            Self::PosixDouble => posix_double(s),
        }
    }
}

/// gitlab-runner's `PosixShellEscape` form: the word unchanged when every byte is plain (non-ASCII bytes are, as
/// upstream), else double quotes with a backslash before the four bytes that stay special inside them; `''` for the
/// empty string.
fn posix_double(s: &str) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    let mut needs_quotes = false;
    for c in s.chars() {
        match c {
            '`' | '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
                needs_quotes = true;
            }
            c if !c.is_ascii()
                || c.is_ascii_alphanumeric()
                || matches!(c, ',' | '.' | '/' | '@' | '_' | '-') =>
            {
                out.push(c);
            }
            _ => {
                out.push(c);
                needs_quotes = true;
            }
        }
    }
    if needs_quotes { format!("\"{out}\"") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_double_matches_upstream_cases() {
        let q = Quoting::PosixDouble;
        assert_eq!(q.word(""), "''");
        assert_eq!(q.word("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(q.word("a b"), "\"a b\"");
        assert_eq!(q.word("$HOME `x` \"y\" \\"), "\"\\$HOME \\`x\\` \\\"y\\\" \\\\\"");
        assert_eq!(q.word("ünï€"), "ünï€");
        assert_eq!(q.word("hello, 世界"), "\"hello, 世界\"");
        assert_eq!(
            q.word("export variable='test' && echo $variable"),
            "\"export variable='test' && echo \\$variable\""
        );
        // Upstream leaves these bare, which the shell would cut or expand.
        assert_eq!(q.word("it's"), "\"it's\"");
        assert_eq!(q.word("a\nb"), "\"a\nb\"");
        assert_eq!(q.word("~x"), "\"~x\"");
        assert_eq!(Quoting::Single.word("it's"), "'it'\\''s'");
    }
}
