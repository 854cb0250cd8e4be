//! Service containers (`services:` of the job and `[[runners.docker.services]]`) on a per-job network, reachable
//! from the job under their aliases.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::CreateContainerOptions;
use oxrunner_config::{DockerConfig, DockerService};
use oxrunner_core::{ImageSpec, Variables};

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
    /// `executor_opts:docker:user` of the service.
    pub user: Option<String>,
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

/// The environment every service shares, as gitlab-runner builds it: the runner's `environment` entries, then
/// the job's public variables. Secret (non-public) and file variables stay out: a service image is third-party
/// code that has no business with the project's secrets.
pub fn shared_env(runner_env: &[String], job: &Variables) -> Vec<String> {
    runner_env
        .iter()
        .cloned()
        .chain(
            job.iter()
                .filter(|v| v.public && !v.file)
                .map(|v| format!("{}={}", v.key, v.value)),
        )
        .collect()
}

/// `shared` followed by the service's own `KEY=value` entries, expanded against the job's variables; the
/// engine keeps the last of duplicate keys, so the service's own values win.
fn service_env(
    shared: &[String],
    own: impl Iterator<Item = (String, String)>,
    job: &Variables,
) -> Vec<String> {
    shared
        .iter()
        .cloned()
        .chain(own.map(|(k, v)| format!("{k}={}", job.expand(&v))))
        .collect()
}

/// The services of a job: the config's first (always allowed, like gitlab-runner's internal services), then the
/// job's (checked against `allowed_services`), capped by `services_limit` (-1 or absent: no cap). `shared` is
/// [`shared_env`]; `job` expands service variables and names.
pub fn collect(
    config: &DockerConfig,
    services: &[ImageSpec],
    shared: &[String],
    job: &Variables,
) -> Result<Vec<ServiceSpec>, DockerError> {
    let allowed = &config.allowed_services;
    let mut out: Vec<ServiceSpec> = config
        .services
        .iter()
        .map(|s: &DockerService| ServiceSpec {
            image: s.name.clone(),
            aliases: service_aliases(&s.name, s.alias.as_slice()),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            env: service_env(
                shared,
                s.environment.iter().map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.clone(), String::new()),
                }),
                job,
            ),
            pull_policy: Vec::new(),
            user: None,
        })
        .collect();
    for s in services {
        let image = job.expand(s.name.trim());
        if !image_allowed(&image, allowed) {
            return Err(DockerError::ImageNotAllowed {
                image,
                allowed: allowed.join(", "),
            });
        }
        out.push(ServiceSpec {
            aliases: service_aliases(&image, &s.aliases),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            env: service_env(
                shared,
                s.variables.iter().map(|v| (v.key.clone(), v.value.clone())),
                job,
            ),
            pull_policy: s.pull_policy.clone(),
            user: s.user.clone().filter(|u| !u.is_empty()),
            image,
        });
    }
    let limit = config.services_limit;
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

/// The service container's name, like gitlab-runner's `<prefix>-<image slug>-<index>` (e.g.
/// `runner-x-project-1-concurrent-0-0a1b2c3d-postgres-0`).
pub fn container_name(prefix: &str, image: &str, index: usize) -> String {
    let slug: String = service_aliases(image, &[])
        .first()
        .map(String::as_str)
        .unwrap_or("service")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}-{slug}-{index}")
}

/// Creates the per-job bridge network (`enable_ipv6` and `network_mtu` from the config).
pub async fn create_network(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
    config: &DockerConfig,
) -> Result<String, DockerError> {
    let created = docker
        .create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels),
            enable_ipv6: config.enable_ipv6.filter(|v| *v),
            options: crate::hostcfg::network_options(config),
            ..Default::default()
        })
        .await
        .map_err(DockerError::api(format!("creating network {name}")))?;
    Ok(created.id)
}

/// Creates and starts one service container on `network` under its aliases, with `host_config` (from
/// [`crate::hostcfg::service_host_config`]); returns the container id.
pub async fn start(
    docker: &Docker,
    spec: &ServiceSpec,
    name: &str,
    network: &str,
    labels: HashMap<String, String>,
    host_config: HostConfig,
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
        user: spec.user.clone(),
        labels: Some(labels),
        host_config: Some(host_config),
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
        let vars = Variables::new();
        let mut cfg = DockerConfig {
            allowed_services: vec!["postgres:*".into()],
            ..DockerConfig::default()
        };
        assert!(collect(&cfg, &job, &[], &vars).is_err());
        // The runner's own services are trusted even when the allow-list does not name them.
        cfg.services = vec![DockerService {
            name: "mysql:8".into(),
            ..DockerService::default()
        }];
        assert_eq!(collect(&cfg, &[], &[], &vars).unwrap().len(), 1);
        cfg.allowed_services.clear();
        cfg.services_limit = Some(-1);
        assert_eq!(collect(&cfg, &job, &[], &vars).unwrap().len(), 2);
        cfg.services_limit = Some(1);
        let err = collect(&cfg, &job, &[], &vars).unwrap_err();
        assert!(err.to_string().contains("services_limit"), "{err}");
    }

    #[test]
    fn environment_of_services() {
        use oxrunner_core::Variable;
        let mut job = Variables::new();
        job.push(Variable::new("CI_JOB_ID", "7"));
        job.push(Variable::new("DB", "app"));
        job.push(Variable::masked("SECRET", "hunter2hunter2"));
        job.push(Variable::new("KEYFILE", "data").into_file());
        let shared = shared_env(&["RUNNER_ENV=1".into()], &job);
        // Variable::masked is not public: secrets and file variables stay out.
        assert_eq!(shared, vec!["RUNNER_ENV=1", "CI_JOB_ID=7", "DB=app"]);
        let mut own = Variables::new();
        own.push(Variable::new("POSTGRES_DB", "${DB}_test"));
        own.push(Variable::new("DB", "override"));
        let cfg = DockerConfig {
            services: vec![DockerService {
                name: "mysql:8".into(),
                environment: vec!["MYSQL_DATABASE=$DB".into()],
                ..DockerService::default()
            }],
            ..DockerConfig::default()
        };
        let services = vec![ImageSpec {
            name: "postgres:$DB".into(),
            variables: own,
            ..ImageSpec::default()
        }];
        let specs = collect(&cfg, &services, &shared, &job).unwrap();
        assert_eq!(specs[0].env.last().unwrap(), "MYSQL_DATABASE=app");
        assert_eq!(specs[1].image, "postgres:app");
        let env = &specs[1].env;
        assert!(env.contains(&"CI_JOB_ID=7".to_owned()), "{env:?}");
        assert!(env.contains(&"RUNNER_ENV=1".to_owned()), "{env:?}");
        assert!(env.contains(&"POSTGRES_DB=app_test".to_owned()), "{env:?}");
        assert_eq!(env.last().unwrap(), "DB=override");
        assert_eq!(
            container_name("p", "registry:5000/group/redis:7", 2),
            "p-registry-5000__group__redis-2"
        );
    }
}
