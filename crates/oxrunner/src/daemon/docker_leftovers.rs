//! Removing the containers, networks and volumes a killed run of a Docker runner left behind.

use std::collections::HashSet;
use std::time::Duration;

use oxrunner_config::DockerConfig;
use tracing::{info, warn};

/// Bounds the sweep so an engine that hangs does not keep the runner from asking for jobs.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Removes every object labelled with this runner: at the time of the call it runs no job, so all are leftovers.
/// Failures are logged; the runner starts anyway (a job will report an unreachable engine itself).
pub async fn sweep(config: &DockerConfig, short_token: &str) {
    let work = async {
        let docker = oxrunner_docker::connect(config).await?;
        oxrunner_docker::remove_leftovers(&docker, short_token, &HashSet::new()).await
    };
    match tokio::time::timeout(SWEEP_TIMEOUT, work).await {
        Ok(Ok(removed)) if removed.is_empty() => {}
        Ok(Ok(removed)) => info!(
            runner = %short_token,
            containers = removed.containers.len(),
            networks = removed.networks.len(),
            volumes = removed.volumes.len(),
            "removed Docker objects left behind by an earlier run"
        ),
        Ok(Err(err)) => warn!(runner = %short_token, "could not remove leftover Docker objects: {err}"),
        Err(_) => warn!(
            runner = %short_token,
            "removing leftover Docker objects took longer than {} s; continuing",
            SWEEP_TIMEOUT.as_secs()
        ),
    }
}
