//! Keep tokens out of logs, `Debug` output and error messages.

/// Text shown instead of a secret.
pub const MASK: &str = "[MASKED]";

/// Replace the userinfo of a URL (GitLab puts `gitlab-ci-token:<job token>` there) and the values of
/// token-like query parameters with [`MASK`]. Unparseable input is returned with any `user:pass@` part
/// masked by hand, so a typo in a URL cannot leak the token either.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Setters only fail for cannot-be-a-base URLs, which carry no userinfo.
                let _ = url.set_password(Some(MASK));
            } else if !url.username().is_empty() {
                let _ = url.set_username(MASK);
            }
            let sensitive = url.query_pairs().any(|(k, _)| is_sensitive_param(&k));
            if sensitive {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_sensitive_param(&k) {
                            MASK.to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            // The url crate percent-encodes the brackets; undo that so the mask reads as one.
            url.to_string().replace("%5BMASKED%5D", MASK)
        }
        Err(_) => redact_userinfo_by_hand(raw),
    }
}

fn is_sensitive_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token")
        || n == "x-amz-signature"
        || n == "x-amz-credential"
        || n == "x-amz-security-token"
        || n == "signature"
}

fn redact_userinfo_by_hand(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{MASK}@{}", &raw[..scheme_end + 3], &rest[at + 1..]),
        None => raw.to_string(),
    }
}

/// `Debug` helper: shows whether a secret is set, never its value.
pub fn secret(value: &str) -> &'static str {
    if value.is_empty() { "\"\"" } else { MASK }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_in_userinfo() {
        assert_eq!(
            redact_url("https://gitlab-ci-token:glcbt-abc@gitlab.example.com/g/p.git"),
            "https://gitlab-ci-token:[MASKED]@gitlab.example.com/g/p.git"
        );
        assert!(!redact_url("https://u:secret@h/").contains("secret"));
    }

    #[test]
    fn masks_lone_username_and_token_params() {
        let r = redact_url("https://glpat-xyz@h/x?private_token=abc&a=1");
        assert!(!r.contains("glpat-xyz"), "{r}");
        assert!(!r.contains("abc"), "{r}");
        assert!(r.contains("a=1"), "{r}");
    }

    #[test]
    fn masks_unparseable_userinfo() {
        let r = redact_url("https://user:pa ss@ho st/x");
        assert_eq!(r, "https://[MASKED]@ho st/x");
    }

    #[test]
    fn leaves_plain_urls_alone() {
        assert_eq!(
            redact_url("https://gitlab.example.com/api/v4/jobs/request"),
            "https://gitlab.example.com/api/v4/jobs/request"
        );
    }
}
