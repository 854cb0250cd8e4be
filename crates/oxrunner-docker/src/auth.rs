//! Registry credentials for pulls, in gitlab-runner's order: the `DOCKER_AUTH_CONFIG` variable, the runner
//! user's `~/.docker/config.json`, then the job's `credentials` from GitLab.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bollard::auth::DockerCredentials;
use oxrunner_core::RegistryCredential;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";

/// The registry host of an image reference (`registry.example.com:5000/a/b:1` → `registry.example.com:5000`);
/// references without one live on Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize(first)
        }
        _ => DOCKER_HUB.to_owned(),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`.
fn normalize(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// One `auths` entry of a docker config JSON.
#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct DockerConfigFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

/// Credentials for `registry` from a docker config JSON text (`auths.<server>.auth` or username/password).
fn from_config_json(json: &str, registry: &str) -> Option<DockerCredentials> {
    let file: DockerConfigFile = serde_json::from_str(json).ok()?;
    let (server, entry) = file
        .auths
        .iter()
        .find(|(server, _)| normalize(server) == registry)?;
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = String::from_utf8(STANDARD.decode(auth.trim()).ok()?).ok()?;
            let (u, p) = decoded.split_once(':')?;
            (u.to_owned(), p.to_owned())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return None,
    };
    Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(server.clone()),
        ..Default::default()
    })
}

/// The runner user's docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
pub fn home_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Finds credentials for pulling `image`.
pub fn credentials_for(
    image: &str,
    docker_auth_config: Option<&str>,
    home_config: Option<&Path>,
    job: &[RegistryCredential],
) -> Option<DockerCredentials> {
    let registry = registry_of(image);
    if let Some(c) = docker_auth_config.and_then(|json| from_config_json(json, &registry)) {
        return Some(c);
    }
    if let Some(c) = home_config
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|json| from_config_json(&json, &registry))
    {
        return Some(c);
    }
    job.iter()
        .find(|c| c.kind == "registry" && normalize(&c.url) == registry)
        .map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.expose().to_owned()),
            serveraddress: Some(c.url.clone()),
            ..Default::default()
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_of("busybox:latest"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("registry.example.com/g/p:1"), "registry.example.com");
        assert_eq!(registry_of("127.0.0.1:5000/img"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/img"), "localhost");
        assert_eq!(normalize("https://index.docker.io/v1/"), "docker.io");
    }

    #[test]
    fn order_is_variable_then_home_then_job() {
        let json = r#"{"auths":{"https://registry.example.com":{"auth":"dmFyOnZhci1wYXNz"}}}"#;
        let job = vec![RegistryCredential {
            kind: "registry".into(),
            url: "registry.example.com".into(),
            username: "gitlab-ci-token".into(),
            password: "job-token".into(),
        }];
        let c = credentials_for("registry.example.com/a:1", Some(json), None, &job).unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("var"), Some("var-pass"))
        );

        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("config.json");
        std::fs::write(
            &home,
            r#"{"auths":{"registry.example.com":{"username":"home","password":"hp"}}}"#,
        )
        .unwrap();
        let c = credentials_for("registry.example.com/a:1", Some("{}"), Some(&home), &job).unwrap();
        assert_eq!(c.username.as_deref(), Some("home"));

        let c = credentials_for("registry.example.com/a:1", None, None, &job).unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("gitlab-ci-token"), Some("job-token"))
        );
        assert!(credentials_for("other.example.com/a:1", Some(json), Some(&home), &job).is_none());
    }
}
