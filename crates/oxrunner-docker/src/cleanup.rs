//! Removal of job containers, volumes and networks: per job at the end, and leftovers when the daemon starts.

use std::collections::{HashMap, HashSet};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};

use crate::error::{DockerError, is_not_found};
use crate::labels::{LABEL_JOB, label_filter};

/// What a cleanup removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Container ids.
    pub containers: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
    /// Network ids.
    pub networks: Vec<String>,
}

impl Removed {
    /// Nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }
}

/// Force-removes a container and its anonymous volumes; an already removed one is fine.
pub async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Err(e) if !is_not_found(&e) => Err(DockerError::api(format!("removing container {id}"))(e)),
        _ => Ok(()),
    }
}

/// Removes a volume; an already removed one is fine.
pub async fn remove_volume(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker
        .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
        .await
    {
        Err(e) if !is_not_found(&e) => Err(DockerError::api(format!("removing volume {name}"))(e)),
        _ => Ok(()),
    }
}

/// Removes a network; an already removed one is fine.
pub async fn remove_network(docker: &Docker, id: &str) -> Result<(), DockerError> {
    match docker.remove_network(id).await {
        Err(e) if !is_not_found(&e) => Err(DockerError::api(format!("removing network {id}"))(e)),
        _ => Ok(()),
    }
}

fn job_of(labels: Option<&HashMap<String, String>>) -> Option<i64> {
    labels?.get(LABEL_JOB)?.parse().ok()
}

/// Removes the containers, volumes and networks labelled with `runner` whose job is not in `running_jobs`.
/// The daemon calls it at start (with no running jobs) so objects of a crashed run do not pile up.
/// Containers go first: a volume or network in use cannot be removed. The objects of a suspended environment (its
/// job container carries the suspended mark, `executor/suspend.rs`) are kept: a later job resumes them.
pub async fn remove_leftovers(
    docker: &Docker,
    runner: &str,
    running_jobs: &HashSet<i64>,
) -> Result<Removed, DockerError> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(runner, None)),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("listing containers"))?;
    let suspended: HashSet<i64> = containers
        .iter()
        .filter(|c| {
            c.names
                .iter()
                .flatten()
                .any(|n| n.ends_with(crate::executor::suspend::SUSPENDED_SUFFIX))
        })
        .filter_map(|c| job_of(c.labels.as_ref()))
        .collect();
    let stale = |labels: Option<&HashMap<String, String>>| {
        job_of(labels).is_none_or(|id| !running_jobs.contains(&id) && !suspended.contains(&id))
    };
    let mut removed = Removed::default();

    for c in containers {
        if let Some(id) = c.id.filter(|_| stale(c.labels.as_ref())) {
            remove_container(docker, &id).await?;
            removed.containers.push(id);
        }
    }

    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(runner, None)),
        }))
        .await
        .map_err(DockerError::api("listing volumes"))?;
    for v in volumes.volumes.unwrap_or_default() {
        if stale(Some(&v.labels)) {
            remove_volume(docker, &v.name).await?;
            removed.volumes.push(v.name);
        }
    }

    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(runner, None)),
        }))
        .await
        .map_err(DockerError::api("listing networks"))?;
    for n in networks {
        if let Some(id) = n.id.filter(|_| stale(n.labels.as_ref())) {
            remove_network(docker, &id).await?;
            removed.networks.push(id);
        }
    }
    Ok(removed)
}
