//! `$VAR` / `${VAR}` expansion with the semantics of Go's `os.ExpandEnv`, which gitlab-runner
//! applies to `url` and `token` when it loads the file.

/// Expands `$NAME` and `${NAME}` using `lookup`; unknown variables become empty, like Go.
pub fn expand_env_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut copied_from = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[copied_from..i]);
            let (name, consumed) = shell_name(&input[i + 1..]);
            match name {
                Some(name) => out.push_str(&lookup(name).unwrap_or_default()),
                // `$` followed by something that is not a name stays literal.
                None if consumed == 0 => out.push('$'),
                // Malformed `${...`: Go drops the characters it consumed.
                None => {}
            }
            i += 1 + consumed;
            copied_from = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[copied_from..]);
    out
}

/// Expands using the process environment.
pub fn expand_env(input: &str) -> String {
    expand_env_with(input, |name| std::env::var(name).ok())
}

fn is_special(b: u8) -> bool {
    matches!(b, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || b.is_ascii_digit()
}

fn is_name_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Returns the variable name at the start of `s` and how many bytes it used.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let bytes = s.as_bytes();
    if bytes[0] == b'{' {
        if bytes.len() > 2 && is_special(bytes[1]) && bytes[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&s[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if is_special(bytes[0]) {
        return (Some(&s[0..1]), 1);
    }
    let len = bytes.iter().take_while(|b| is_name_byte(**b)).count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&s[..len]), len)
    }
}

#[cfg(test)]
mod tests {
    use super::expand_env_with;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("gitlab.local".into()),
            "TOKEN" => Some("glrt-abc".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_go() {
        assert_eq!(expand_env_with("https://$HOST/", lookup), "https://gitlab.local/");
        assert_eq!(expand_env_with("${TOKEN}", lookup), "glrt-abc");
        assert_eq!(expand_env_with("a${MISSING}b", lookup), "ab");
        assert_eq!(expand_env_with("cost: 5$", lookup), "cost: 5$");
        assert_eq!(expand_env_with("a$ b", lookup), "a$ b");
        assert_eq!(expand_env_with("${}x", lookup), "x");
        assert_eq!(expand_env_with("no vars", lookup), "no vars");
        assert_eq!(expand_env_with("ünï$HOST", lookup), "ünïgitlab.local");
    }
}
