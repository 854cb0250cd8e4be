//! Docker runners: the engine answers at `host`/`DOCKER_HOST`, its API version, permission on its socket, the
//! default image under the pull policy, whether jobs see a Docker daemon, and privileged settings.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use oxrunner_config::{DockerConfig, RunnerConfig};
use oxrunner_docker::{Endpoint, PullPolicy};

use super::report::Check;
use super::shell::Account;

/// Bound on asking a registry (through the engine) whether the default image exists.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn checks(r: &RunnerConfig) -> Vec<Check> {
    let default_cfg = DockerConfig::default();
    let cfg = r.docker.as_ref().unwrap_or(&default_cfg);
    let endpoint = Endpoint::resolve(cfg);
    let mut out = Vec::new();
    if let Some(path) = unix_socket(&endpoint.host)
        && let Some(c) = socket_check(path, &endpoint.host)
    {
        out.push(c);
        return out;
    }
    let docker = match endpoint.connect().await {
        Ok(d) => d,
        Err(e) => {
            let text = e.to_string();
            let (cause, fix) = text
                .split_once("\nhint: ")
                .unwrap_or((&text, "start the Docker engine"));
            out.push(Check::fail(
                format!("docker: no engine answers at {}", endpoint.host),
                cause,
                fix,
            ));
            return out;
        }
    };
    out.push(match docker.version().await {
        Ok(v) => Check::ok(format!(
            "docker: engine {} (API {}) answers at {}",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
            endpoint.host
        )),
        Err(e) => Check::fail(
            "docker: the engine does not report its version",
            e.to_string(),
            "check the engine's log (journalctl -u docker)",
        ),
    });
    out.push(image(&docker, cfg).await);
    out.push(daemon_for_jobs(cfg));
    if cfg.privileged == Some(true) {
        out.push(Check::warn(
            "docker: privileged = true",
            "job containers run privileged: a job can take over this host",
            "keep it only for docker:dind; otherwise set privileged = false in [runners.docker]",
        ));
    }
    out
}

fn unix_socket(host: &str) -> Option<&Path> {
    host.strip_prefix("unix://")
        .or_else(|| host.starts_with('/').then_some(host))
        .map(Path::new)
}

/// A missing socket or one this user may not open; `None` when the socket looks usable.
fn socket_check(path: &Path, host: &str) -> Option<Check> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Some(Check::fail(
                format!("docker: no engine at {host}"),
                format!("{}: {e}", path.display()),
                "start Docker (systemctl start docker), or point [runners.docker] host / DOCKER_HOST at a running engine",
            ));
        }
    };
    if !meta.file_type().is_socket() {
        return Some(Check::fail(
            format!("docker: {} is not a socket", path.display()),
            "the engine's address must be its unix socket",
            "point [runners.docker] host at the engine's socket, e.g. unix:///var/run/docker.sock",
        ));
    }
    let me = Account::resolve(None);
    if me.may_path(path, &meta, 6) {
        return None;
    }
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    Some(Check::fail(
        format!("docker: permission denied on {}", path.display()),
        format!(
            "the socket is owned by uid {} group {group} with mode {:04o}; oxrunner runs as {}",
            meta.uid(),
            meta.mode() & 0o7777,
            me.name
        ),
        format!(
            "run oxrunner as root, or add {} to the socket's group: usermod -aG {group} {} (then log in again / restart the service)",
            me.name, me.name
        ),
    ))
}

async fn image(docker: &bollard::Docker, cfg: &DockerConfig) -> Check {
    let Some(image) = cfg.image.as_deref().filter(|i| !i.trim().is_empty()) else {
        return Check::warn(
            "docker: no default image",
            "jobs without `image:` in .gitlab-ci.yml fail",
            "set image = \"alpine:latest\" (or another default) in [runners.docker]",
        );
    };
    let policies = match oxrunner_docker::settings::effective_pull_policies(
        &cfg.pull_policy,
        &cfg.allowed_pull_policies,
        &[],
    ) {
        Ok(p) => p,
        Err(e) => {
            let text = e.to_string();
            let (cause, fix) = text
                .split_once("\nhint: ")
                .unwrap_or((&text, "correct pull_policy"));
            return Check::fail("docker: pull_policy is invalid", cause, fix);
        }
    };
    let names: Vec<&str> = policies.iter().map(PullPolicy::as_str).collect();
    let present = docker.inspect_image(image).await.is_ok();
    let pulls = policies.iter().any(|p| *p != PullPolicy::Never);
    let must_pull = policies.first() == Some(&PullPolicy::Always);
    if present && !must_pull {
        return Check::ok(format!(
            "docker: default image {image} is present (pull_policy {})",
            names.join(", ")
        ));
    }
    if !pulls {
        return Check::fail(
            format!("docker: default image {image} is missing and pull_policy is never"),
            "jobs using the default image fail before they start",
            format!(
                "docker pull {image} (or docker load) on this host, or allow pulling: pull_policy = [\"if-not-present\"]"
            ),
        );
    }
    match tokio::time::timeout(REGISTRY_TIMEOUT, docker.inspect_registry_image(image, None)).await {
        Ok(Ok(_)) => Check::ok(format!(
            "docker: default image {image} can be pulled (pull_policy {})",
            names.join(", ")
        )),
        Ok(Err(e)) if needs_login(&e) => Check::warn(
            format!("docker: default image {image} is in a registry that needs a login"),
            "doctor asks the registry without credentials; jobs supply them with DOCKER_AUTH_CONFIG (a CI/CD variable or the runner's environment), so this was not checked",
            "if jobs fail to pull it: set DOCKER_AUTH_CONFIG for them, or docker login on this host with pull_policy = [\"if-not-present\"]",
        ),
        Ok(Err(e)) => image_unpullable(image, present, &e.to_string()),
        Err(_) => image_unpullable(image, present, "the registry did not answer in time"),
    }
}

/// A registry refusing anonymous access: the engine reports 401/403, or wraps the registry's "unauthorized" or
/// "denied" answer in another status.
fn needs_login(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            let m = message.to_ascii_lowercase();
            matches!(status_code, 401 | 403)
                || m.contains("unauthorized")
                || m.contains("authentication required")
                || m.contains("no basic auth credentials")
                || m.contains("access to the resource is denied")
        }
        _ => false,
    }
}

fn image_unpullable(image: &str, present: bool, cause: &str) -> Check {
    let fix = "check the image name and the registry's login (docker login; DOCKER_AUTH_CONFIG), or use pull_policy = [\"if-not-present\"] with the image loaded on this host";
    if present {
        Check::warn(
            format!("docker: default image {image} is present but its registry does not answer"),
            format!("pull_policy always pulls it before each job: {cause}"),
            fix,
        )
    } else {
        Check::fail(
            format!("docker: default image {image} cannot be pulled"),
            cause.to_string(),
            fix,
        )
    }
}

/// Whether a job that runs `docker` finds a daemon (the guide's "no Docker daemon inside jobs").
fn daemon_for_jobs(cfg: &DockerConfig) -> Check {
    if let Some(v) = cfg.volumes.iter().find(|v| v.contains("docker.sock")) {
        return Check::ok(format!(
            "docker: jobs reach this host's engine through the volume {v} (which gives them root on this host)"
        ));
    }
    if cfg.privileged == Some(true) {
        return Check::ok(
            "docker: jobs can run their own engine with a docker:dind service (privileged = true)",
        );
    }
    Check::ok(
        "docker: jobs get no Docker daemon; jobs that call docker need volumes = [\"/var/run/docker.sock:/var/run/docker.sock\"] or privileged = true with a docker:dind service",
    )
}
