//! The `[runners.docker]` keys that become engine `HostConfig` fields beyond the basics in the executor: devices,
//! ulimits, tmpfs, sysctls, namespaces, the privileged allow-lists and the service containers' own limits; plus
//! [`unsupported_keys`], the configured keys this executor does not honour (for the daemon to warn about).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    DeviceMapping, HostConfig, HostConfigIsolationEnum, HostConfigLogConfig, ResourcesUlimits,
};
use oxrunner_config::DockerConfig;

use crate::error::DockerError;
use crate::settings::{image_allowed, parse_cpus, parse_size};

/// Parses a `devices` entry `host[:container[:permissions]]` (container path defaults to the host path,
/// permissions to `rwm`, as `docker run --device` does).
pub fn parse_device(spec: &str) -> Result<DeviceMapping, DockerError> {
    let bad = |detail: &str| DockerError::Config {
        key: "devices",
        value: spec.to_owned(),
        detail: detail.to_owned(),
        hint: "write \"/dev/host\" or \"/dev/host:/dev/container[:rwm]\"",
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(bad("too many ':'")),
    };
    if host.is_empty() || container.is_empty() {
        return Err(bad("empty device path"));
    }
    if perms.is_empty() || !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(bad("permissions must be made of r, w and m"));
    }
    Ok(DeviceMapping {
        path_on_host: Some(host.to_owned()),
        path_in_container: Some(container.to_owned()),
        cgroup_permissions: Some(perms.to_owned()),
    })
}

/// Parses the `ulimit` table (`nofile = "1024:2048"`, or one number for both soft and hard).
pub fn parse_ulimits(table: &BTreeMap<String, String>) -> Result<Vec<ResourcesUlimits>, DockerError> {
    table
        .iter()
        .map(|(name, value)| {
            let bad = |detail: &str| DockerError::Config {
                key: "ulimit",
                value: format!("{name} = {value:?}"),
                detail: detail.to_owned(),
                hint: "write name = \"soft:hard\" or name = \"limit\", e.g. nofile = \"1024:2048\"",
            };
            let num = |s: &str| s.trim().parse::<i64>().map_err(|_| bad("not a number"));
            let (soft, hard) = match value.split_once(':') {
                Some((s, h)) => (num(s)?, num(h)?),
                None => {
                    let n = num(value)?;
                    (n, n)
                }
            };
            if soft > hard && hard >= 0 {
                return Err(bad("the soft limit is above the hard limit"));
            }
            Ok(ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            })
        })
        .collect()
}

fn parse_isolation(value: &str) -> Result<Option<HostConfigIsolationEnum>, DockerError> {
    match value.trim() {
        "" => Ok(None),
        "default" => Ok(Some(HostConfigIsolationEnum::DEFAULT)),
        "process" => Ok(Some(HostConfigIsolationEnum::PROCESS)),
        "hyperv" => Ok(Some(HostConfigIsolationEnum::HYPERV)),
        _ => Err(DockerError::Config {
            key: "isolation",
            value: value.to_owned(),
            detail: "unknown isolation mode".to_owned(),
            hint: "use \"default\", \"process\" or \"hyperv\" (Windows engines only), or remove the key",
        }),
    }
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn map_of(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn text(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

fn log_config(cfg: &DockerConfig) -> HostConfigLogConfig {
    // json-file like gitlab-runner: the service logs shown on a failed health check are read back through the
    // engine, which only works for drivers that keep logs locally.
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: map_of(&cfg.log_options),
    }
}

/// Privileged for a container of `image`: `privileged` is granted only when `allowed` (the
/// `allowed_privileged_images` / `allowed_privileged_services` patterns) is empty or matches the image, as
/// gitlab-runner does.
pub fn privileged_for(privileged: Option<bool>, image: &str, allowed: &[String]) -> Option<bool> {
    privileged.map(|p| p && image_allowed(image, allowed))
}

/// Adds the job container's extra settings to `hc` (built by the executor from the basic keys).
pub fn extend_job(cfg: &DockerConfig, image: &str, hc: &mut HostConfig) -> Result<(), DockerError> {
    hc.privileged = privileged_for(cfg.privileged, image, &cfg.allowed_privileged_images);
    hc.devices = non_empty(&cfg.devices)
        .map(|d| d.iter().map(|s| parse_device(s)).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    hc.device_cgroup_rules = non_empty(&cfg.device_cgroup_rules);
    hc.ulimits = (!cfg.ulimit.is_empty())
        .then(|| parse_ulimits(&cfg.ulimit))
        .transpose()?;
    hc.group_add = non_empty(&cfg.group_add);
    hc.sysctls = map_of(&cfg.sysctls);
    hc.tmpfs = map_of(&cfg.tmpfs);
    hc.oom_kill_disable = cfg.oom_kill_disable;
    hc.oom_score_adj = cfg.oom_score_adjust;
    hc.isolation = cfg
        .isolation
        .as_deref()
        .map(parse_isolation)
        .transpose()?
        .flatten();
    hc.userns_mode = text(&cfg.userns_mode);
    hc.ipc_mode = text(&cfg.ipcmode);
    hc.pid_mode = text(&cfg.pid_mode);
    hc.cgroup_parent = text(&cfg.cgroup_parent);
    hc.cpuset_mems = text(&cfg.cpuset_mems);
    hc.volume_driver = text(&cfg.volume_driver);
    hc.links = non_empty(&cfg.links);
    hc.log_config = Some(log_config(cfg));
    hc.device_requests = cfg
        .gpus
        .as_deref()
        .map(|g| crate::gpus::device_request("gpus", g))
        .transpose()?
        .flatten()
        .map(|r| vec![r]);
    Ok(())
}

/// The host config of a service container of `image`: the service limits (`service_*`), `services_tmpfs`,
/// `services_security_opt`, `services_devices` whose pattern matches the image, the shared DNS, hosts, runtime
/// and user namespace settings, and privileged per `services_privileged` (else `privileged`) and
/// `allowed_privileged_services`.
pub fn service_host_config(
    cfg: &DockerConfig,
    image: &str,
    network: &str,
    binds: Vec<String>,
) -> Result<HostConfig, DockerError> {
    let size = |key: &'static str, v: &Option<String>| v.as_deref().map(|m| parse_size(key, m)).transpose();
    let devices: Vec<DeviceMapping> = cfg
        .services_devices
        .iter()
        .filter(|(pattern, _)| image_allowed(image, std::slice::from_ref(*pattern)))
        .flat_map(|(_, list)| list.iter())
        .map(|s| parse_device(s))
        .collect::<Result<_, _>>()?;
    Ok(HostConfig {
        network_mode: Some(network.to_owned()),
        binds: (!binds.is_empty()).then_some(binds),
        privileged: privileged_for(
            cfg.services_privileged.or(cfg.privileged),
            image,
            &cfg.allowed_privileged_services,
        ),
        memory: size("service_memory", &cfg.service_memory)?,
        memory_swap: size("service_memory_swap", &cfg.service_memory_swap)?,
        memory_reservation: size("service_memory_reservation", &cfg.service_memory_reservation)?,
        nano_cpus: cfg.service_cpus.as_deref().map(parse_cpus).transpose()?,
        cpuset_cpus: text(&cfg.service_cpuset_cpus),
        cpu_shares: cfg.service_cpu_shares,
        cgroup_parent: text(&cfg.service_cgroup_parent),
        devices: (!devices.is_empty()).then_some(devices),
        device_requests: cfg
            .service_gpus
            .as_deref()
            .map(|g| crate::gpus::device_request("service_gpus", g))
            .transpose()?
            .flatten()
            .map(|r| vec![r]),
        tmpfs: map_of(&cfg.services_tmpfs),
        security_opt: non_empty(&cfg.services_security_opt),
        dns: non_empty(&cfg.dns),
        dns_search: non_empty(&cfg.dns_search),
        extra_hosts: non_empty(&cfg.extra_hosts),
        runtime: text(&cfg.runtime),
        userns_mode: text(&cfg.userns_mode),
        shm_size: cfg.shm_size.filter(|s| *s > 0),
        log_config: Some(log_config(cfg)),
        ..Default::default()
    })
}

/// `base` (the runner's own labels) plus `container_labels`, whose values are expanded with the job's variables;
/// the runner's labels win on a clash, since cleanup finds its objects by them.
pub fn container_labels(
    cfg: &DockerConfig,
    base: HashMap<String, String>,
    job: &oxrunner_core::Variables,
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = cfg
        .container_labels
        .iter()
        .map(|(k, v)| (k.clone(), job.expand(v)))
        .collect();
    out.extend(base);
    out
}

/// Options of the per-job network from `network_mtu`.
pub fn network_options(cfg: &DockerConfig) -> Option<HashMap<String, String>> {
    cfg.network_mtu
        .filter(|m| *m > 0)
        .map(|mtu| HashMap::from([("com.docker.network.driver.mtu".to_owned(), mtu.to_string())]))
}

/// The configured `[runners.docker]` keys this executor ignores, for a warning at start. Keys about helper
/// images have no meaning here (no helper image is used); the cache-volume keys are superseded by the runner's
/// shared cache store; the rest are not wired.
pub fn unsupported_keys(cfg: &DockerConfig) -> Vec<&'static str> {
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.trim().is_empty());
    let mut out = Vec::new();
    let mut check = |present: bool, key: &'static str| {
        if present {
            out.push(key);
        }
    };
    check(set(&cfg.helper_image), "helper_image");
    check(set(&cfg.helper_image_flavor), "helper_image_flavor");
    check(set(&cfg.mac_address), "mac_address");
    check(set(&cfg.cache_dir), "cache_dir");
    check(cfg.volume_keep.is_some(), "volume_keep");
    check(!cfg.volume_driver_ops.is_empty(), "volume_driver_ops");
    check(
        set(&cfg.service_slot_cgroup_template),
        "service_slot_cgroup_template",
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn devices() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(d.path_in_container.as_deref(), Some("/dev/fuse"));
        assert_eq!(d.cgroup_permissions.as_deref(), Some("rwm"));
        let d = parse_device("/dev/a:/dev/b:r").unwrap();
        assert_eq!(
            (
                d.path_on_host.as_deref(),
                d.path_in_container.as_deref(),
                d.cgroup_permissions.as_deref()
            ),
            (Some("/dev/a"), Some("/dev/b"), Some("r"))
        );
        assert!(parse_device("/dev/a:/dev/b:x").is_err());
        assert!(parse_device("a:b:c:d").is_err());
    }

    #[test]
    fn ulimits() {
        let t = BTreeMap::from([
            ("nofile".to_owned(), "1024:2048".to_owned()),
            ("core".to_owned(), "0".to_owned()),
        ]);
        let u = parse_ulimits(&t).unwrap();
        assert_eq!(u[0].name.as_deref(), Some("core"));
        assert_eq!((u[1].soft, u[1].hard), (Some(1024), Some(2048)));
        let bad = BTreeMap::from([("nofile".to_owned(), "9:1".to_owned())]);
        assert!(parse_ulimits(&bad).is_err());
        let bad = BTreeMap::from([("nofile".to_owned(), "many".to_owned())]);
        assert!(parse_ulimits(&bad).unwrap_err().to_string().contains("ulimit"));
    }

    #[test]
    fn privileged_allow_lists() {
        let allowed = vec!["docker:*-dind".to_owned()];
        assert_eq!(privileged_for(Some(true), "docker:24-dind", &allowed), Some(true));
        assert_eq!(privileged_for(Some(true), "alpine:3", &allowed), Some(false));
        assert_eq!(privileged_for(Some(true), "alpine:3", &[]), Some(true));
        assert_eq!(privileged_for(None, "docker:24-dind", &allowed), None);
        let cfg = DockerConfig {
            privileged: Some(true),
            services_privileged: Some(false),
            ..DockerConfig::default()
        };
        let hc = service_host_config(&cfg, "docker:24-dind", "net", vec![]).unwrap();
        assert_eq!(hc.privileged, Some(false));
    }

    #[test]
    fn labels_from_config() {
        let mut job = oxrunner_core::Variables::new();
        job.push(oxrunner_core::Variable::new("CI_PROJECT_PATH", "group/app"));
        let cfg = DockerConfig {
            container_labels: BTreeMap::from([
                ("team.project".to_owned(), "$CI_PROJECT_PATH".to_owned()),
                ("com.oxrunner.runner".to_owned(), "spoofed".to_owned()),
            ]),
            ..DockerConfig::default()
        };
        let base = HashMap::from([("com.oxrunner.runner".to_owned(), "t1234567".to_owned())]);
        let labels = container_labels(&cfg, base, &job);
        assert_eq!(labels["team.project"], "group/app");
        assert_eq!(labels["com.oxrunner.runner"], "t1234567");
    }

    #[test]
    fn isolation_and_unsupported() {
        assert!(parse_isolation("process").unwrap().is_some());
        assert!(parse_isolation("vm").is_err());
        let mut cfg = DockerConfig::default();
        assert!(unsupported_keys(&cfg).is_empty());
        cfg.helper_image = Some("gitlab/gitlab-runner-helper:x".into());
        // `gpus` became device requests (gpus.rs): no longer named here.
        cfg.gpus = Some("all".into());
        assert_eq!(unsupported_keys(&cfg), vec!["helper_image"]);
    }
}
