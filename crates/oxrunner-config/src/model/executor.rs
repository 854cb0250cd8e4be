//! `executor = "..."` as a kind: every name gitlab-runner knows (`main.go::newExecutorProviders`) is a variant, so
//! code asks `kind == ExecutorKind::Docker` instead of comparing strings, and an unknown name keeps its spelling
//! for the message that refuses it.

use std::fmt;

/// The executor a runner is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecutorKind {
    Shell,
    Docker,
    DockerWindows,
    DockerMachine,
    DockerAutoscaler,
    Kubernetes,
    Custom,
    Instance,
    Ssh,
    Parallels,
    VirtualBox,
    /// A name gitlab-runner does not know either (or none at all), kept as written.
    Other(String),
}

impl ExecutorKind {
    /// Every kind gitlab-runner knows, in its order.
    pub const KNOWN: [ExecutorKind; 11] = [
        ExecutorKind::Shell,
        ExecutorKind::Docker,
        ExecutorKind::DockerWindows,
        ExecutorKind::DockerMachine,
        ExecutorKind::DockerAutoscaler,
        ExecutorKind::Kubernetes,
        ExecutorKind::Custom,
        ExecutorKind::Instance,
        ExecutorKind::Ssh,
        ExecutorKind::Parallels,
        ExecutorKind::VirtualBox,
    ];

    /// The kind named by `executor = "..."`; names are exact, as in gitlab-runner.
    pub fn parse(name: &str) -> ExecutorKind {
        Self::KNOWN
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or_else(|| ExecutorKind::Other(name.to_owned()))
    }

    /// The name as written in config.toml and sent to GitLab.
    pub fn as_str(&self) -> &str {
        match self {
            ExecutorKind::Shell => "shell",
            ExecutorKind::Docker => "docker",
            ExecutorKind::DockerWindows => "docker-windows",
            ExecutorKind::DockerMachine => "docker+machine",
            ExecutorKind::DockerAutoscaler => "docker-autoscaler",
            ExecutorKind::Kubernetes => "kubernetes",
            ExecutorKind::Custom => "custom",
            ExecutorKind::Instance => "instance",
            ExecutorKind::Ssh => "ssh",
            ExecutorKind::Parallels => "parallels",
            ExecutorKind::VirtualBox => "virtualbox",
            ExecutorKind::Other(name) => name,
        }
    }

    /// True for the kinds gitlab-runner knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, ExecutorKind::Other(_))
    }

    /// True for kinds configured through `[runners.docker]`.
    pub fn uses_docker_config(&self) -> bool {
        matches!(
            self,
            ExecutorKind::Docker
                | ExecutorKind::DockerWindows
                | ExecutorKind::DockerMachine
                | ExecutorKind::DockerAutoscaler
        )
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for kind in ExecutorKind::KNOWN {
            assert_eq!(ExecutorKind::parse(kind.as_str()), kind);
        }
        assert_eq!(
            ExecutorKind::parse("Docker"),
            ExecutorKind::Other("Docker".into())
        );
        assert_eq!(ExecutorKind::parse("").to_string(), "");
        assert!(ExecutorKind::parse("docker+machine").uses_docker_config());
        assert!(!ExecutorKind::parse("shell").uses_docker_config());
    }
}
