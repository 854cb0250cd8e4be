//! Service containers (`services:` of the job and `[[runners.docker.services]]`) on a per-job network, reachable
//! from the job under their aliases.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::CreateContainerOptions;
use oxrunner_config::DockerService;
use oxrunner_core::{ImageSpec, Variable, Variables};

use crate::error::DockerError;
use crate::settings::image_allowed;

/// One service to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Image reference.
    pub image: String,
    /// Host names the job reaches it by.
    pub aliases: Vec<String>,
    /// `CMD` override.
    pub command: Vec<String>,
    /// `ENTRYPOINT` override.
    pub entrypoint: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Pull policies the job asked for.
    pub pull_policy: Vec<String>,
}

/// The aliases of a service: explicit ones, then the two derived from the image (tag and digest stripped,
/// `/` replaced by `__` and by `-`), without duplicates.
pub fn service_aliases(image: &str, explicit: &[String]) -> Vec<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let name = match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    };
    let mut out: Vec<String> = Vec::new();
    let candidates = explicit
        .iter()
        .flat_map(|a| a.split([',', ' ']))
        .map(str::trim)
        .map(str::to_owned)
        .chain([name.replace('/', "__"), name.replace('/', "-")]);
    for alias in candidates {
        if !alias.is_empty() && !out.contains(&alias) {
            out.push(alias);
        }
    }
    out
}

fn env_of(vars: &Variables) -> Vec<String> {
    vars.iter()
        .map(|v: &Variable| format!("{}={}", v.key, v.value))
        .collect()
}

/// The services of a job: the config's first, then the job's (checked against `allowed_services`), capped by
/// `services_limit` (-1 or absent: no cap).
pub fn collect(
    config: &[DockerService],
    job: &[ImageSpec],
    allowed: &[String],
    limit: Option<i64>,
) -> Result<Vec<ServiceSpec>, DockerError> {
    let mut out: Vec<ServiceSpec> = config
        .iter()
        .map(|s| ServiceSpec {
            image: s.name.clone(),
            aliases: service_aliases(&s.name, s.alias.as_slice()),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            env: s.environment.clone(),
            pull_policy: Vec::new(),
        })
        .collect();
    for s in job {
        if !image_allowed(&s.name, allowed) {
            return Err(DockerError::ImageNotAllowed {
                image: s.name.clone(),
                allowed: allowed.join(", "),
            });
        }
        out.push(ServiceSpec {
            image: s.name.clone(),
            aliases: service_aliases(&s.name, &s.aliases),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            env: env_of(&s.variables),
            pull_policy: s.pull_policy.clone(),
        });
    }
    if let Some(max) = limit.filter(|l| *l >= 0)
        && out.len() as i64 > max
    {
        return Err(DockerError::Config {
            key: "services_limit",
            value: max.to_string(),
            detail: format!("the job asks for {} services", out.len()),
            hint: "use fewer services in the job, or raise [runners.docker] services_limit",
        });
    }
    Ok(out)
}

/// Creates the per-job bridge network.
pub async fn create_network(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<String, DockerError> {
    let created = docker
        .create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(DockerError::api(format!("creating network {name}")))?;
    Ok(created.id)
}

/// Creates and starts one service container on `network` under its aliases; returns the container id.
pub async fn start(
    docker: &Docker,
    spec: &ServiceSpec,
    name: &str,
    network: &str,
    labels: HashMap<String, String>,
    privileged: Option<bool>,
) -> Result<String, DockerError> {
    let endpoints = HashMap::from([(
        network.to_owned(),
        EndpointSettings {
            aliases: Some(spec.aliases.clone()),
            ..Default::default()
        },
    )]);
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        env: Some(spec.env.clone()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_owned()),
            privileged,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(DockerError::api(format!(
            "creating service container {name} from {}",
            spec.image
        )))?;
    docker
        .start_container(&created.id, None)
        .await
        .map_err(DockerError::api(format!("starting service {}", spec.image)))?;
    Ok(created.id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn aliases_from_image_names() {
        assert_eq!(service_aliases("postgres:16", &[]), vec!["postgres"]);
        assert_eq!(
            service_aliases(
                "registry.example.com:5000/group/redis:7@sha256:abc",
                &["cache, kv".into()]
            ),
            vec![
                "cache",
                "kv",
                "registry.example.com:5000__group__redis",
                "registry.example.com:5000-group-redis"
            ]
        );
    }

    #[test]
    fn allow_list_and_limit() {
        let job = vec![ImageSpec {
            name: "redis:7".into(),
            ..ImageSpec::default()
        }];
        assert!(collect(&[], &job, &["postgres:*".into()], None).is_err());
        assert_eq!(collect(&[], &job, &[], Some(-1)).unwrap().len(), 1);
        let err = collect(&[], &job, &[], Some(0)).unwrap_err();
        assert!(err.to_string().contains("services_limit"), "{err}");
    }
}
