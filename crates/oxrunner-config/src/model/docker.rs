//! `[runners.docker]` (gitlab-runner `DockerConfig`) and `[[runners.docker.services]]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::serde_helpers::string_or_vec;

/// Default seconds to wait for services to come up.
pub const DEFAULT_WAIT_FOR_SERVICES_TIMEOUT: i64 = 30;

/// `[runners.docker]`. Optional scalars are `None` when absent so a written file only contains
/// what was configured (plus the keys register always writes, see `ConfigDocument::append_runner`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerConfig {
    /// Docker daemon address (default `DOCKER_HOST` or the local socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Directory with `ca.pem`, `cert.pem`, `key.pem` for a TLS daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_path: Option<String>,
    /// Verify the daemon's TLS certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// Hostname of the job container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Default job image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// OCI runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Memory limit (`128m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Memory + swap limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<String>,
    /// Soft memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
    /// CPUs the job may use (`0,1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the job may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Number of CPUs (`1.5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Relative CPU weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// DNS servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Run job containers privileged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Run service containers privileged (defaults to `privileged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_privileged: Option<bool>,
    /// Keep the image entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_entrypoint_overwrite: Option<bool>,
    /// User inside the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Users a job may request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_users: Vec<String>,
    /// Extra groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// User namespace mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// Added Linux capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Dropped Linux capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Do not OOM-kill job processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    /// OOM score adjustment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adjust: Option<i64>,
    /// Security options of job containers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// Security options of service containers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services_security_opt: Vec<String>,
    /// Host devices for job containers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Device cgroup rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// Host devices per service image pattern.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services_devices: BTreeMap<String, Vec<String>>,
    /// GPUs for job containers (`all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<String>,
    /// GPUs for service containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_gpus: Option<String>,
    /// Disable the `/cache` volume and local caches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_cache: Option<bool>,
    /// Volumes (`/cache`, `host:container[:mode]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Volume driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<String>,
    /// Volume driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_driver_ops: BTreeMap<String, String>,
    /// Keep cache volumes after the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_keep: Option<bool>,
    /// Host directory for cache volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// `host:ip` entries for `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Containers to inherit volumes from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// Network mode or custom network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// IPC mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipcmode: Option<String>,
    /// PID namespace mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// Container MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Legacy container links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `[[runners.docker.services]]`: services started with every job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<DockerService>,
    /// Max services per job; -1 = no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_limit: Option<i64>,
    /// Seconds to wait for services; -1 disables the wait (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_services_timeout: Option<i64>,
    /// Image allow-list (glob patterns).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    /// Images that may run privileged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_privileged_images: Vec<String>,
    /// Services that may run privileged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_privileged_services: Vec<String>,
    /// Pull policies a job may request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_pull_policies: Vec<String>,
    /// Service allow-list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_services: Vec<String>,
    /// `always`, `if-not-present`, `never`; a string or a list of fallbacks.
    #[serde(deserialize_with = "string_or_vec", skip_serializing_if = "Vec::is_empty")]
    pub pull_policy: Vec<String>,
    /// Windows isolation mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// `/dev/shm` size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// tmpfs mounts of job containers (path to options).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
    /// tmpfs mounts of service containers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services_tmpfs: BTreeMap<String, String>,
    /// Kernel parameters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Helper image override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_image: Option<String>,
    /// Helper image flavor (`alpine`, `ubuntu`, `ubi-fips`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_image_flavor: Option<String>,
    /// Extra labels on every container.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub container_labels: BTreeMap<String, String>,
    /// Docker log options (`env`, `labels`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub log_options: BTreeMap<String, String>,
    /// IPv6 on per-build networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    /// ulimits (`nofile = "1024:2048"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimit: BTreeMap<String, String>,
    /// MTU of per-build networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mtu: Option<i64>,
    /// Parent cgroup of job containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// Parent cgroup of service containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cgroup_parent: Option<String>,
    /// Template of per-slot service cgroup names (`${slot}` placeholder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_slot_cgroup_template: Option<String>,
    /// Memory limit of services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_memory: Option<String>,
    /// Memory + swap limit of services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_memory_swap: Option<String>,
    /// Soft memory limit of services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_memory_reservation: Option<String>,
    /// CPUs services may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpuset_cpus: Option<String>,
    /// Number of CPUs of services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpus: Option<String>,
    /// Relative CPU weight of services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpu_shares: Option<i64>,
}

impl DockerConfig {
    /// Pull policies in order of preference; `always` when none is configured.
    pub fn pull_policies(&self) -> Vec<String> {
        if self.pull_policy.is_empty() {
            vec!["always".to_owned()]
        } else {
            self.pull_policy.clone()
        }
    }

    /// Seconds to wait for services; `None` when waiting is disabled (negative value).
    pub fn wait_for_services_timeout(&self) -> Option<u64> {
        match self.wait_for_services_timeout {
            None | Some(0) => Some(DEFAULT_WAIT_FOR_SERVICES_TIMEOUT as u64),
            Some(n) => u64::try_from(n).ok(),
        }
    }

    /// True when a volume is mounted at `/cache` in the container (`/cache`, `name:/cache`,
    /// `host:/cache:ro`).
    pub fn has_cache_volume(&self) -> bool {
        self.volumes.iter().any(|v| volume_target(v) == "/cache")
    }
}

/// The container path of a docker volume spec (`src:dst[:mode]` or just `dst`).
pub fn volume_target(spec: &str) -> &str {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [dst] => dst,
        [_, dst] => dst,
        [_, dst, _] => dst,
        _ => spec,
    }
}

/// `[[runners.docker.services]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerService {
    /// Image of the service.
    pub name: String,
    /// Network alias (several separated by spaces or commas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Command overriding the image's `CMD`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Entrypoint overriding the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// `KEY=VALUE` variables of the service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    /// Where a suspendable environment keeps the service's data (gitlab-runner's suspendable environments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend_data_path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_volume_detection() {
        let mut d = DockerConfig::default();
        assert!(!d.has_cache_volume());
        d.volumes = vec!["/var/run/docker.sock:/var/run/docker.sock".into()];
        assert!(!d.has_cache_volume());
        d.volumes.push("cachevol:/cache:rw".into());
        assert!(d.has_cache_volume());
        assert_eq!(volume_target("/cache"), "/cache");
    }

    #[test]
    fn wait_for_services_defaults() {
        let mut d = DockerConfig::default();
        assert_eq!(d.wait_for_services_timeout(), Some(30));
        d.wait_for_services_timeout = Some(-1);
        assert_eq!(d.wait_for_services_timeout(), None);
        d.wait_for_services_timeout = Some(5);
        assert_eq!(d.wait_for_services_timeout(), Some(5));
        assert_eq!(d.pull_policies(), vec!["always".to_owned()]);
    }
}
