//! Short runner token, as gitlab-runner prints it in logs, build dirs and container names.

/// Prefixes that carry no identity and are removed before shortening. Order matters:
/// the longer `glrt-t1_` forms must be tried before plain `glrt-`.
const FIXED_PREFIXES: [&str; 9] = [
    "glrt-t1_", "glrt-t2_", "glrt-t3_", "glrtr-", "glrt-", "glcbt-", "t1_", "t2_", "t3_",
];

/// Length of the short form (`helpers/shorten_token.go`).
const SHORT_LEN: usize = 9;

/// Shortens a token to the 9 characters gitlab-runner shows: known prefixes (`glrt-`,
/// `glrt-t[123]_`, `t[123]_`, `glrtr-`, `glcbt-`, legacy `GR` + 7 hex) are removed first.
pub fn short_token(token: &str) -> String {
    let body = strip_prefix(token);
    body.chars().take(SHORT_LEN).collect()
}

fn strip_prefix(token: &str) -> &str {
    for prefix in FIXED_PREFIXES {
        if let Some(rest) = token.strip_prefix(prefix) {
            return rest;
        }
    }
    // Legacy registration tokens look like `GR1348941<random>`: `GR` then 7 hex digits.
    if let Some(rest) = token.strip_prefix("GR") {
        let hex_len = rest.bytes().take(7).filter(u8::is_ascii_hexdigit).count();
        if hex_len == 7 && rest.len() >= 7 {
            return &rest[7..];
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::short_token;

    #[test]
    fn strips_known_prefixes() {
        assert_eq!(short_token("glrt-abcdefghijkl"), "abcdefghi");
        assert_eq!(short_token("glrt-t1_abcdefghijkl"), "abcdefghi");
        assert_eq!(short_token("glrt-t3_xyzxyzxyz123"), "xyzxyzxyz");
        assert_eq!(short_token("t2_abcdefghijkl"), "abcdefghi");
        assert_eq!(short_token("glrtr-123456789abc"), "123456789");
        assert_eq!(short_token("glcbt-zzzzzzzzzzzz"), "zzzzzzzzz");
        assert_eq!(short_token("GR1348941abcdefghijk"), "abcdefghi");
    }

    #[test]
    fn plain_and_short_tokens() {
        assert_eq!(short_token("d05b450b6b4446a75b6231284e4a7a"), "d05b450b6");
        assert_eq!(short_token("abc"), "abc");
        assert_eq!(short_token(""), "");
        // `GR` without 7 hex digits is not a registration-token prefix.
        assert_eq!(short_token("GRzzzzzzzzzz"), "GRzzzzzzz");
    }
}
