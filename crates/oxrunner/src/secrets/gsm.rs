//! The `gitlab_secrets_manager` resolver: GitLab's secrets manager is OpenBao, read with inline authentication
//! (the login path, JWT and role ride along on the read as `X-Vault-Inline-Auth-*` headers; no token is
//! created). As upstream, nothing in it is expanded: GitLab generates every part but the secret's name, and no
//! failure is classified: each is a `runner_system_failure` (upstream's resolver never calls `classifyError`).

use oxrunner_api::{GitLabSecretsManagerSecret, InlineAuth};
use serde_json::Value;

use super::ResolveError;
use super::http::{Auth, BaoClient, clean_path};
use super::vault::{classify, read_engine};

/// Resolves one secret: `Ok(None)` when nothing is stored at its path.
pub async fn resolve(secret: &GitLabSecretsManagerSecret) -> Result<Option<String>, ResolveError> {
    let inline = &secret.server.inline_auth;
    let path = login_path(inline);
    let mut missing = Vec::new();
    if path.is_empty() {
        missing.push("inline auth path is required");
    }
    if inline.jwt.is_empty() {
        missing.push("inline auth JWT is required");
    }
    if inline.role.is_empty() {
        missing.push("inline auth role is required");
    }
    if !missing.is_empty() {
        return Err(
            ResolveError::system(format!("configuring inline auth: {}", missing.join(", "))).with_hint(
                "GitLab sends these with the job; check the GitLab version and its secrets manager settings",
            ),
        );
    }
    let mut client = BaoClient::new(&secret.server.url, "")
        .await
        .map_err(|e| classify(e).unclassified())?;
    client.set_auth(Auth::Inline {
        path,
        params: vec![
            ("jwt".to_owned(), inline.jwt.clone()),
            ("role".to_owned(), inline.role.clone()),
        ],
    });
    let engine = &secret.engine;
    let Some(data) = read_engine(&client, &engine.name, &engine.path, &secret.path)
        .await
        .map_err(|e| {
            e.unclassified()
                .context(format!("getting secret {}/{}", engine.path, secret.path))
        })?
    else {
        return Ok(None);
    };
    // Upstream: a stored secret without the field, or with a non-string value, is an error, not "not found".
    match data.get(&secret.field) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ResolveError::system(format!(
            "getting secret: field {:?} has invalid type {} (expected string)",
            secret.field,
            json_kind(other)
        ))),
        None => Err(ResolveError::system(format!(
            "getting secret: field {:?} not found in secret",
            secret.field
        ))),
    }
}

/// The inline-auth login path: GitLab's `path`, else (older GitLab sends only the mount) `auth/<mount>/login`
/// joined as Go's `path.Join` joins it (no empty or doubled segments).
fn login_path(inline: &InlineAuth) -> String {
    if inline.path.is_empty() {
        clean_path(&format!("auth/{}/login", inline.auth_mount)).join("/")
    } else {
        inline.path.clone()
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_is_joined_as_go_joins_paths() {
        let with = |path: &str, mount: &str| InlineAuth {
            path: path.into(),
            auth_mount: mount.into(),
            ..InlineAuth::default()
        };
        assert_eq!(login_path(&with("", "gitlab_jwt/")), "auth/gitlab_jwt/login");
        assert_eq!(login_path(&with("", "")), "auth/login");
        assert_eq!(login_path(&with("auth/cel/login", "x")), "auth/cel/login");
    }
}
