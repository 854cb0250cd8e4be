//! The job payload's `secrets` (the `.gitlab-ci.yml` `secrets:` keyword as GitLab hands it to the runner):
//! one entry per variable name, each naming the provider that holds its value.
//!
//! The entries carry JWTs (ID tokens, or `$VARIABLE` references to them) and auth data, so `Debug` shows only
//! what locates a secret (server URL, engine, path, field), never a JWT or an auth parameter. Providers this
//! build does not resolve are kept as JSON, so a custom executor's job-response file still holds them whole.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::redact::{MASK, redact_url, secret};

/// `null` → `T::default()` (GitLab sends `null` for unset objects).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `secrets`: variable name → where its value lives. Empty when the job has none.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secrets(#[serde(deserialize_with = "nullable")] pub BTreeMap<String, Secret>);

impl Secrets {
    /// Whether the job asks for no secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Secret)> {
        self.0.iter()
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// One secret. GitLab sets exactly one provider; `file` says whether the variable is a file (default: yes).
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Secret {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp_secret_manager: Option<OpaqueSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<OpaqueSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_secrets_manager: Option<OpaqueSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab_secrets_manager: Option<GitLabSecretsManagerSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<bool>,
}

impl Secret {
    /// gitlab-runner's rule: a secret is a file variable unless the job says `file: false`.
    pub fn is_file(&self) -> bool {
        self.file.unwrap_or(true)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Secret");
        if let Some(v) = &self.vault {
            s.field("vault", v);
        }
        if let Some(g) = &self.gitlab_secrets_manager {
            s.field("gitlab_secrets_manager", g);
        }
        for (name, other) in [
            ("gcp_secret_manager", &self.gcp_secret_manager),
            ("azure_key_vault", &self.azure_key_vault),
            ("aws_secrets_manager", &self.aws_secrets_manager),
        ] {
            if let Some(o) = other {
                s.field(name, o);
            }
        }
        s.field("file", &self.file).finish()
    }
}

/// A provider kept as JSON (AWS Secrets Manager, GCP Secret Manager, Azure Key Vault): it holds a JWT, so
/// `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct OpaqueSecret(pub serde_json::Value);

impl OpaqueSecret {
    /// A top-level string field (`name`, `secret_id`): what names the secret in an error.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(serde_json::Value::as_str)
    }
}

impl fmt::Debug for OpaqueSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// `vault`: a HashiCorp Vault (or OpenBao) secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct VaultSecret {
    #[serde(deserialize_with = "nullable")]
    pub server: VaultServer,
    #[serde(deserialize_with = "nullable")]
    pub engine: VaultEngine,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub field: String,
}

/// `vault.server`.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct VaultServer {
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    #[serde(deserialize_with = "nullable")]
    pub auth: VaultAuth,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
}

impl fmt::Debug for VaultServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A server URL may carry userinfo (`https://user:pass@vault`).
        f.debug_struct("VaultServer")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// `vault.server.auth`: the auth method (`jwt`), its mount path and its login data (`jwt`, `role`).
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct VaultAuth {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    /// Login parameters; values are JSON as GitLab sent them (strings in practice).
    #[serde(deserialize_with = "nullable")]
    pub data: BTreeMap<String, serde_json::Value>,
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys say which parameters were given; the values (a JWT) never show.
        let keys: Vec<&String> = self.data.keys().collect();
        f.debug_struct("VaultAuth")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("data_keys", &keys)
            .finish()
    }
}

/// `vault.engine`: the secrets engine kind (`kv-v2`, `kv-v1`, `generic`) and where it is mounted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct VaultEngine {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
}

/// `gitlab_secrets_manager`: GitLab's own secrets manager (OpenBao), read with inline authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct GitLabSecretsManagerSecret {
    #[serde(deserialize_with = "nullable")]
    pub server: GitLabSecretsManagerServer,
    #[serde(deserialize_with = "nullable")]
    pub engine: VaultEngine,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub field: String,
}

/// `gitlab_secrets_manager.server`.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct GitLabSecretsManagerServer {
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    #[serde(deserialize_with = "nullable")]
    pub inline_auth: InlineAuth,
}

impl fmt::Debug for GitLabSecretsManagerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabSecretsManagerServer")
            .field("url", &redact_url(&self.url))
            .field("inline_auth", &self.inline_auth)
            .finish()
    }
}

/// `gitlab_secrets_manager.server.inline_auth`: `path` is the login path (older GitLab sends only
/// `auth_mount`, meaning `auth/<auth_mount>/login`).
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[allow(missing_docs)]
pub struct InlineAuth {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub jwt: String,
    #[serde(deserialize_with = "nullable")]
    pub role: String,
    #[serde(deserialize_with = "nullable")]
    pub auth_mount: String,
}

impl fmt::Debug for InlineAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineAuth")
            .field("path", &self.path)
            .field("jwt", &secret(&self.jwt))
            .field("role", &self.role)
            .field("auth_mount", &self.auth_mount)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.claims.signature";

    fn parse(json: serde_json::Value) -> Secrets {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn vault_entry_as_gitlab_sends_it() {
        let s = parse(serde_json::json!({
            "DATABASE_PASSWORD": {
                "vault": {
                    "server": {
                        "url": "https://vault.example.com",
                        "auth": {"name": "jwt", "path": "jwt", "data": {"jwt": JWT, "role": "deploy"}},
                        "namespace": "ops"
                    },
                    "engine": {"name": "kv-v2", "path": "kv"},
                    "path": "production/db",
                    "field": "password"
                },
                "file": false
            }
        }));
        let db = s.get("DATABASE_PASSWORD").unwrap();
        let vault = db.vault.as_ref().unwrap();
        assert_eq!(vault.server.url, "https://vault.example.com");
        assert_eq!(vault.server.namespace, "ops");
        assert_eq!(vault.server.auth.name, "jwt");
        assert_eq!(vault.server.auth.data["role"], "deploy");
        assert_eq!(vault.engine.name, "kv-v2");
        assert_eq!(vault.engine.path, "kv");
        assert_eq!(
            (vault.path.as_str(), vault.field.as_str()),
            ("production/db", "password")
        );
        assert!(!db.is_file());
        let debug = format!("{s:?}");
        assert!(!debug.contains(JWT), "{debug}");
        assert!(
            debug.contains("production/db") && debug.contains("data_keys"),
            "{debug}"
        );
    }

    #[test]
    fn server_urls_hide_their_userinfo_in_debug() {
        let s = parse(serde_json::json!({
            "V": {"vault": {"server": {"url": "https://ci:vault-pass-1@vault.example.com"}}},
            "G": {"gitlab_secrets_manager": {"server": {"url": "https://bao-user:bao-pass-2@bao.example"}}}
        }));
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("vault-pass-1") && !debug.contains("bao-pass-2"),
            "{debug}"
        );
        assert!(
            debug.contains("vault.example.com") && debug.contains("bao.example"),
            "{debug}"
        );
    }

    #[test]
    fn file_is_the_default_and_nulls_are_tolerated() {
        let s = parse(serde_json::json!({
            "A": {"vault": {"server": null, "engine": null, "path": "p", "field": null}},
            "B": {"vault": {"path": "p"}, "file": null}
        }));
        assert!(s.get("A").unwrap().is_file());
        assert!(s.get("B").unwrap().is_file());
        assert_eq!(s.get("A").unwrap().vault.as_ref().unwrap().field, "");
        assert!(parse(serde_json::Value::Null).is_empty());
    }

    #[test]
    fn other_providers_stay_whole_and_hidden() {
        let json = serde_json::json!({
            "AWS": {"aws_secrets_manager": {"secret_id": "prod/db", "server": {"region": "eu-west-1", "jwt": JWT}}},
            "GSM": {"gitlab_secrets_manager": {
                "server": {"url": "https://bao.example", "inline_auth": {"path": "auth/gitlab/login", "jwt": JWT, "role": "r"}},
                "engine": {"name": "kv-v2", "path": "secrets/kv"}, "path": "db", "field": "value"
            }}
        });
        let s = parse(json.clone());
        let aws = s.get("AWS").unwrap().aws_secrets_manager.as_ref().unwrap();
        assert_eq!(aws.text("secret_id"), Some("prod/db"));
        let gsm = s.get("GSM").unwrap().gitlab_secrets_manager.as_ref().unwrap();
        assert_eq!(gsm.server.inline_auth.jwt, JWT);
        assert_eq!(gsm.engine.path, "secrets/kv");
        let debug = format!("{s:?}");
        assert!(!debug.contains(JWT) && !debug.contains("eu-west-1"), "{debug}");
        // A custom executor's job-response file gets what GitLab sent.
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["AWS"], json["AWS"]);
        assert_eq!(
            back["GSM"]["gitlab_secrets_manager"]["server"]["inline_auth"]["jwt"],
            JWT
        );
    }
}
