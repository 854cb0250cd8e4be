//! `[runners.kubernetes]` (gitlab-runner `KubernetesConfig`). The main keys are typed; the
//! long tail (`*_overwrite_max_allowed`, container security contexts, ...) is kept in
//! [`KubernetesConfig::other`] so nothing in a user's file is lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::serde_helpers::string_or_vec;
use crate::secret::Secret;

/// Every key gitlab-runner's `KubernetesConfig` accepts. The struct keeps the long tail in
/// [`KubernetesConfig::other`] (serde `flatten`), so the key set cannot be read from the
/// derive and is listed here for the unknown-key check.
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "pod_cpu_limit",
    "pod_cpu_limit_overwrite_max_allowed",
    "pod_cpu_request",
    "pod_cpu_request_overwrite_max_allowed",
    "pod_memory_limit",
    "pod_memory_limit_overwrite_max_allowed",
    "pod_memory_request",
    "pod_memory_request_overwrite_max_allowed",
    "suspend_pvc_size",
    "suspend_pvc_storage_class",
    "pod_disruption_budget",
    "autoscaler",
    "host",
    "context",
    "cert_file",
    "key_file",
    "ca_file",
    "bearer_token_overwrite_allowed",
    "bearer_token",
    "image",
    "namespace",
    "namespace_overwrite_allowed",
    "namespace_per_job",
    "privileged",
    "runtime_class_name",
    "allow_privilege_escalation",
    "cpu_limit",
    "cpu_limit_overwrite_max_allowed",
    "cpu_request",
    "cpu_request_overwrite_max_allowed",
    "memory_limit",
    "memory_limit_overwrite_max_allowed",
    "memory_request",
    "memory_request_overwrite_max_allowed",
    "ephemeral_storage_limit",
    "ephemeral_storage_limit_overwrite_max_allowed",
    "ephemeral_storage_request",
    "ephemeral_storage_request_overwrite_max_allowed",
    "service_cpu_limit",
    "service_cpu_limit_overwrite_max_allowed",
    "service_cpu_request",
    "service_cpu_request_overwrite_max_allowed",
    "service_memory_limit",
    "service_memory_limit_overwrite_max_allowed",
    "service_memory_request",
    "service_memory_request_overwrite_max_allowed",
    "service_ephemeral_storage_limit",
    "service_ephemeral_storage_limit_overwrite_max_allowed",
    "service_ephemeral_storage_request",
    "service_ephemeral_storage_request_overwrite_max_allowed",
    "helper_cpu_limit",
    "helper_cpu_limit_overwrite_max_allowed",
    "helper_cpu_request",
    "helper_cpu_request_overwrite_max_allowed",
    "helper_memory_limit",
    "helper_memory_limit_overwrite_max_allowed",
    "helper_memory_request",
    "helper_memory_request_overwrite_max_allowed",
    "helper_ephemeral_storage_limit",
    "helper_ephemeral_storage_limit_overwrite_max_allowed",
    "helper_ephemeral_storage_request",
    "helper_ephemeral_storage_request_overwrite_max_allowed",
    "allowed_images",
    "allowed_pull_policies",
    "allowed_services",
    "allowed_users",
    "allowed_groups",
    "pull_policy",
    "node_selector",
    "node_selector_overwrite_allowed",
    "node_tolerations",
    "node_tolerations_overwrite_allowed",
    "affinity",
    "image_pull_secrets",
    "use_service_account_image_pull_secrets",
    "helper_image",
    "helper_image_flavor",
    "helper_image_autoset_arch_and_os",
    "pod_termination_grace_period_seconds",
    "cleanup_grace_period_seconds",
    "cleanup_resources_timeout",
    "poll_interval",
    "poll_timeout",
    "resource_availability_check_max_attempts",
    "retry_limit",
    "retry_backoff_max",
    "retry_limits",
    "pod_labels",
    "pod_labels_overwrite_allowed",
    "scheduler_name",
    "service_account",
    "service_account_overwrite_allowed",
    "automount_service_account_token",
    "pod_annotations",
    "pod_annotations_overwrite_allowed",
    "pod_security_context",
    "init_permissions_container_security_context",
    "build_container_security_context",
    "helper_container_security_context",
    "service_container_security_context",
    "volumes",
    "host_aliases",
    "services",
    "cap_add",
    "cap_drop",
    "dns_policy",
    "dns_config",
    "container_lifecycle",
    "priority_class_name",
    "pod_spec",
    "logs_base_dir",
    "scripts_base_dir",
    "print_pod_warning_events",
];

/// `[runners.kubernetes]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesConfig {
    /// API server URL; empty = in-cluster or kubeconfig.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// kubeconfig context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Client key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// API server CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Bearer token for the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// Jobs may set `KUBERNETES_BEARER_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_overwrite_allowed: Option<bool>,
    /// Default job image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Namespace of job pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Regex of namespaces a job may choose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_overwrite_allowed: Option<String>,
    /// One namespace per job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_per_job: Option<bool>,
    /// Run containers privileged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `allowPrivilegeEscalation` of containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Runtime class of pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// Build container CPU limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    /// Build container CPU request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// Build container memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// Build container memory request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// Build container ephemeral storage limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_limit: Option<String>,
    /// Build container ephemeral storage request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_request: Option<String>,
    /// Service CPU limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpu_limit: Option<String>,
    /// Service CPU request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpu_request: Option<String>,
    /// Service memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_memory_limit: Option<String>,
    /// Service memory request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_memory_request: Option<String>,
    /// Helper CPU limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_cpu_limit: Option<String>,
    /// Helper CPU request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_cpu_request: Option<String>,
    /// Helper memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_memory_limit: Option<String>,
    /// Helper memory request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_memory_request: Option<String>,
    /// Image allow-list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    /// Service allow-list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_services: Vec<String>,
    /// Pull policies a job may request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_pull_policies: Vec<String>,
    /// Users a job may run as.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_users: Vec<String>,
    /// Groups a job may run as.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// Pull policies (string or list).
    #[serde(deserialize_with = "string_or_vec", skip_serializing_if = "Vec::is_empty")]
    pub pull_policy: Vec<String>,
    /// Node selector labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations (`key=value` to effect).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_tolerations: BTreeMap<String, String>,
    /// Registry secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Helper image override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_image: Option<String>,
    /// Helper image flavor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper_image_flavor: Option<String>,
    /// Service account of job pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Extra pod labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Added capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Dropped capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Pod DNS policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    /// Seconds between pod status polls (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<i64>,
    /// Seconds to wait for the pod (default 180).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_timeout: Option<i64>,
    /// API request retries (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_limit: Option<i64>,
    /// Max retry back-off in ms (default 2000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_max: Option<i64>,
    /// Grace period when deleting resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_grace_period_seconds: Option<i64>,
    /// Pod termination grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_termination_grace_period_seconds: Option<i64>,
    /// Go duration for cleanup (default 5m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_resources_timeout: Option<String>,
    /// Base directory of job logs in the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_base_dir: Option<String>,
    /// Base directory of scripts in the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scripts_base_dir: Option<String>,
    /// Pod priority class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Pod scheduler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// `[runners.kubernetes.volumes]` (host_path, pvc, config_map, secret, empty_dir, csi, nfs), kept as TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<toml::Table>,
    /// `[runners.kubernetes.affinity]`, kept as TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<toml::Table>,
    /// `[runners.kubernetes.pod_security_context]`, kept as TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<toml::Table>,
    /// `[runners.kubernetes.dns_config]`, kept as TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<toml::Table>,
    /// `[[runners.kubernetes.services]]`, kept as TOML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<toml::Table>,
    /// `[[runners.kubernetes.host_aliases]]`, kept as TOML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<toml::Table>,
    /// `[[runners.kubernetes.pod_spec]]` patches, kept as TOML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_spec: Vec<toml::Table>,
    /// Every other key of the section, verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}
