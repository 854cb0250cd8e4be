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

/// How long the start-up sweep keeps a suspended environment after it was suspended (its job container stopped).
/// gitlab-runner relies on its autoscaler's instance lifetime; a runner on one engine needs its own bound, or an
/// environment whose key was never used (or was lost) stays forever.
pub const SUSPENDED_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Removes the containers, volumes and networks labelled with `runner` whose job is not in `running_jobs`.
/// The daemon calls it at start (with no running jobs) so objects of a crashed run do not pile up.
/// Containers go first: a volume or network in use cannot be removed. The objects of a suspended environment (its
/// job container carries the suspended mark, `executor/suspend.rs`) are kept for [`SUSPENDED_MAX_AGE`]: a later
/// job resumes them.
pub async fn remove_leftovers(
    docker: &Docker,
    runner: &str,
    running_jobs: &HashSet<i64>,
) -> Result<Removed, DockerError> {
    remove_leftovers_keeping(docker, runner, running_jobs, SUSPENDED_MAX_AGE).await
}

/// [`remove_leftovers`] with the suspended environments' age limit given.
pub async fn remove_leftovers_keeping(
    docker: &Docker,
    runner: &str,
    running_jobs: &HashSet<i64>,
    max_age: std::time::Duration,
) -> Result<Removed, DockerError> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(runner, None)),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("listing containers"))?;
    let mut suspended = HashSet::new();
    for c in &containers {
        let marked = c
            .names
            .iter()
            .flatten()
            .any(|n| n.ends_with(crate::executor::suspend::SUSPENDED_SUFFIX));
        let (Some(job), Some(id), true) = (job_of(c.labels.as_ref()), c.id.as_deref(), marked) else {
            continue;
        };
        if suspended_recently(docker, id, max_age).await {
            tracing::info!(job, container = id, "keeping a suspended environment");
            suspended.insert(job);
        } else {
            tracing::info!(
                job,
                container = id,
                max_age_s = max_age.as_secs(),
                "removing a suspended environment older than its age limit"
            );
        }
    }
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

/// Whether a suspended job container stopped less than `max_age` ago; one whose stop time cannot be read counts
/// as recent (it is kept rather than a user's environment lost on a guess).
async fn suspended_recently(docker: &Docker, id: &str, max_age: std::time::Duration) -> bool {
    let Ok(inspect) = docker.inspect_container(id, None).await else {
        return true;
    };
    let Some(stopped) = inspect
        .state
        .and_then(|s| s.finished_at)
        .and_then(|t| unix_seconds(&t))
    else {
        return true;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    now.saturating_sub(stopped) < i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds since the epoch of the engine's UTC time `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
fn unix_seconds(t: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::unix_seconds;

    #[test]
    fn engine_times_become_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T00:00:01.5Z"), Some(951_868_801));
        assert_eq!(
            unix_seconds("2026-12-07T11:35:30.123456789Z"),
            Some(1_796_643_330)
        );
        assert_eq!(unix_seconds("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
        assert_eq!(unix_seconds("garbage"), None);
    }
}
