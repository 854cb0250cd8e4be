//! The `vault` resolver: log in with the `jwt` auth method (`POST /v1/auth/<path>/login` with `jwt` and `role`),
//! then read the secret from a `kv-v2` (`<mount>/data/<path>`), `kv-v1` or `generic` (`<mount>/<path>`) engine
//! and pick its `field`, all under the secret's namespace. gitlab-runner's rules: a missing path or field is
//! "not found" (the feature flag decides what that means), a 4xx is the job's configuration, a 5xx the server's.

use oxrunner_api::VaultSecret;
use serde_json::Value;

use super::http::{Auth, BaoClient, BaoError};
use super::{ResolveError, go_text};

/// The values of one secret's login data after variable expansion.
fn login_data(secret: &VaultSecret, expand: &(dyn Fn(&str) -> String + Sync)) -> Result<Value, ResolveError> {
    let data = &secret.server.auth.data;
    if !data.contains_key("jwt") {
        return Err(
            ResolveError::system("missing required auth method configuration key \"jwt\"").with_hint(
                "GitLab sends the ID token as `server.auth.data.jwt`: give the job an `id_tokens:` entry and name \
                 it in the secret",
            ),
        );
    }
    // Only the parameters the jwt method takes are sent, as upstream filters them.
    let mut body = serde_json::Map::new();
    for key in ["jwt", "role"] {
        if let Some(v) = data.get(key) {
            body.insert(key.to_owned(), Value::String(expand(&go_text(v))));
        }
    }
    Ok(Value::Object(body))
}

/// Resolves one `vault` secret: `Ok(None)` when the path or the field does not exist.
pub async fn resolve(
    secret: &VaultSecret,
    expand: &(dyn Fn(&str) -> String + Sync),
) -> Result<Option<String>, ResolveError> {
    let url = expand(&secret.server.url);
    let namespace = expand(&secret.server.namespace);
    let auth_name = expand(&secret.server.auth.name);
    let auth_path = expand(&secret.server.auth.path);
    let engine = expand(&secret.engine.name);
    let mount = expand(&secret.engine.path);
    let path = expand(&secret.path);
    let field = expand(&secret.field);

    if auth_name != "jwt" {
        return Err(
            ResolveError::system(format!("factory for auth method {auth_name:?} is not registered"))
                .with_hint("this runner logs in to Vault with the `jwt` auth method only, as gitlab-runner"),
        );
    }
    let body = login_data(secret, expand)?;
    let mut client = BaoClient::new(&url, &namespace).await.map_err(classify)?;

    let login = format!("auth/{auth_path}/login");
    let answer = client.write(&login, &body).await.map_err(|e| {
        classify(e).context(format!(
            "logging in to {} at auth/{auth_path}/login",
            client.shown()
        ))
    })?;
    let token = answer
        .pointer("/auth/client_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ResolveError::system(format!(
                "logging in to {} at auth/{auth_path}/login: the answer holds no auth.client_token",
                client.shown()
            ))
        })?;
    client.set_auth(Auth::Token(token.to_owned()));

    let data = read_engine(&client, &engine, &mount, &path)
        .await
        .map_err(|e| e.context(format!("reading {engine} secret {mount}/{path}")))?;
    // Upstream reads the field as a Go `interface{}`: a JSON null is nil, "not found"; nulls nested inside a
    // value still print as `<nil>`.
    Ok(data.and_then(|d| d.get(&field).filter(|v| !v.is_null()).map(go_text)))
}

/// The secret's key/value data from `engine` mounted at `mount`; `None` when nothing is stored there.
pub async fn read_engine(
    client: &BaoClient,
    engine: &str,
    mount: &str,
    path: &str,
) -> Result<Option<serde_json::Map<String, Value>>, ResolveError> {
    match engine {
        "kv-v2" => {
            let answer = client
                .read(&format!("{mount}/data/{path}"))
                .await
                .map_err(classify)?;
            // kv-v2 wraps the key/value pairs: `{"data": {"data": {...}, "metadata": {...}}}`; a deleted
            // version has `data.data` null.
            match answer.as_ref().and_then(|a| a.pointer("/data/data")) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m.clone())),
                Some(_) => Err(ResolveError::system(format!(
                    "data for key {path} cannot be read as key/value pairs"
                ))),
            }
        }
        "kv-v1" | "generic" => {
            let answer = client.read(&format!("{mount}/{path}")).await.map_err(classify)?;
            Ok(answer.and_then(|a| a.get("data").and_then(Value::as_object).cloned()))
        }
        other => Err(
            ResolveError::system(format!("factory for secret engine {other:?} is not registered"))
                .with_hint("use engine `kv-v2`, `kv-v1` or `generic`"),
        ),
    }
}

/// gitlab-runner's classification of a failed request: only Vault's API answers are classified (400, 401,
/// 403, 404: the job's configuration; 5xx: the server's); everything else is a system failure, as upstream.
pub fn classify(err: BaoError) -> ResolveError {
    let text = err.to_string();
    match err {
        BaoError::Api {
            status: 400 | 401 | 403 | 404,
            ..
        } => ResolveError::config(
            text,
            "check the secret's server URL, auth path and role, the ID token's `aud`, and the role's policies",
        ),
        BaoError::Api { status, .. } if status >= 500 => ResolveError::external(text),
        BaoError::Setup(_) => ResolveError::system(text).with_hint(
            "check the secret's server URL, and BAO_CACERT / VAULT_CACERT in the runner's environment",
        ),
        BaoError::Api { .. } | BaoError::Transport(_) => ResolveError::system(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxrunner_core::FailureReason;

    #[test]
    fn only_api_answers_are_classified() {
        let api = |status| BaoError::Api {
            status,
            errors: "x".into(),
        };
        assert_eq!(classify(api(403)).reason, FailureReason::RunnerConfigurationError);
        assert_eq!(
            classify(api(503)).reason,
            FailureReason::RunnerExternalDependencyFailure
        );
        assert_eq!(classify(api(429)).reason, FailureReason::RunnerSystemFailure);
        assert_eq!(
            classify(BaoError::Setup("bad CA".into())).reason,
            FailureReason::RunnerSystemFailure
        );
    }

    #[tokio::test]
    async fn an_unknown_auth_method_is_a_system_failure() {
        let secret: VaultSecret = serde_json::from_value(serde_json::json!({
            "server": {"url": "http://127.0.0.1:1", "auth": {"name": "oidc", "path": "oidc", "data": {"jwt": "j"}}},
            "engine": {"name": "kv-v2", "path": "kv"}, "path": "p", "field": "f"
        }))
        .unwrap();
        let err = resolve(&secret, &|s: &str| s.to_owned()).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::RunnerSystemFailure);
        assert!(
            err.message.contains("\"oidc\" is not registered"),
            "{}",
            err.message
        );
    }
}
