//! Suspending and resuming a Docker job environment (`FF_SUSPENDABLE_ENVIRONMENTS`), as gitlab-runner's Docker
//! executor does: suspend stops the job and service containers and keeps them with the build volume and network;
//! a later job with the key starts them again instead of creating new ones.
//!
//! A suspended job container is renamed with [`SUSPENDED_SUFFIX`]: the mark lives on the engine, so the daemon's
//! sweep of leftovers at start keeps the environment (`cleanup::remove_leftovers`), and a resume renames it back,
//! which also claims it (two jobs with the same key cannot both resume it, and a key can never name a container
//! a running job uses). A key only resumes a job container of this runner and of the job's project, and only
//! stopped services of that same job.
//!
//! The key's fields: `build-container-id` and, with services, `service-ids` (comma-separated). oxrunner has no
//! helper container, so upstream's `helper-id` is not written.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{RenameContainerOptions, StopContainerOptions};
use futures::future::try_join_all;
use oxrunner_core::{EnvironmentFacts, JobPlan, RuntimeEnvironmentKey, TraceWriter, feature_flags};

use super::DockerExecutor;
use crate::archive::Permissions;
use crate::connect::Endpoint;
use crate::error::DockerError;
use crate::health;
use crate::labels::{LABEL_JOB, LABEL_PROJECT, LABEL_TYPE, owned_by};

/// The name suffix of a suspended job container.
pub const SUSPENDED_SUFFIX: &str = "-suspended";

const BUILD_FIELD: &str = "build-container-id";
const SERVICES_FIELD: &str = "service-ids";

fn refused(message: impl Into<String>) -> DockerError {
    DockerError::Resume(message.into())
}

/// The executor's fields of a key: the job container and the service containers.
fn parse_fields(key: &RuntimeEnvironmentKey) -> Result<(String, Vec<String>), DockerError> {
    let build = key
        .field(BUILD_FIELD)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refused(format!("{BUILD_FIELD} is required")))?;
    let services = match key.field(SERVICES_FIELD).filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some(raw) => {
            let ids: Vec<String> = raw.split(',').map(str::to_owned).collect();
            if ids.iter().any(String::is_empty) {
                return Err(refused(format!("{SERVICES_FIELD} contains an empty ID")));
            }
            ids
        }
    };
    Ok((build.to_owned(), services))
}

impl DockerExecutor {
    /// Whether labels name this runner (by id and system id, see [`owned_by`]).
    fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        owned_by(
            labels,
            &self.runner.short_token,
            self.runner.runner_id,
            &self.runner.system_id,
        )
    }

    /// Whether labels name this runner, the project and the object kind.
    fn ours(&self, labels: Option<&HashMap<String, String>>, project: i64, kind: &str) -> bool {
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        self.owns(labels)
            && label(LABEL_PROJECT) == Some(project.to_string().as_str())
            && label(LABEL_TYPE) == Some(kind)
    }
}

/// Stops the build container at once (its PID 1 is an idle shell that does not act on SIGTERM) and the services
/// with the engine's grace (they may have state to write); all or nothing.
async fn stop_environment(docker: &Docker, build: &str, services: &[String]) -> Result<(), DockerError> {
    let stop = |c: String, t: Option<i32>| {
        let docker = docker.clone();
        async move {
            docker
                .stop_container(&c, Some(StopContainerOptions { signal: None, t }))
                .await
                .map_err(DockerError::api(format!("stopping container {c}")))
        }
    };
    let stops = std::iter::once(stop(build.to_owned(), Some(0)))
        .chain(services.iter().map(|c| stop(c.clone(), None)));
    try_join_all(stops).await.map(drop)
}

/// What a resume checked before starting anything.
struct Checked {
    base: String,
    services: Vec<health::StartedService>,
    network: String,
    networks: Vec<String>,
    volumes: Vec<String>,
    user: Option<String>,
}

impl DockerExecutor {
    /// Stops the job and service containers and marks the job container suspended; `cleanup` then keeps them.
    pub(super) async fn suspend_inner(&mut self) -> Result<Vec<(String, String)>, DockerError> {
        let (docker, id) = self.ready()?;
        let (docker, id) = (docker.clone(), id.to_owned());
        // All or nothing, as upstream: if a container cannot be stopped the job fails and cleanup removes all.
        stop_environment(&docker, &id, &self.services).await?;
        let name = docker
            .inspect_container(&id, None)
            .await
            .map_err(DockerError::api(format!("inspecting container {id}")))?
            .name
            .unwrap_or_default();
        let name = name.trim_start_matches('/');
        docker
            .rename_container(
                &id,
                RenameContainerOptions {
                    name: format!("{name}{SUSPENDED_SUFFIX}"),
                },
            )
            .await
            .map_err(DockerError::api(format!("marking container {id} as suspended")))?;
        self.suspended = true;
        self.running = false;
        let mut fields = vec![(BUILD_FIELD.to_owned(), id)];
        if !self.services.is_empty() {
            fields.push((SERVICES_FIELD.to_owned(), self.services.join(",")));
        }
        Ok(fields)
    }

    /// `prepare` for a job with a runtime environment key: checks the key was issued by this runner on this
    /// machine and everything a resume needs, then claims the suspended job container and starts it and its
    /// services again. A resume that fails or is cancelled after the claim gives the environment back: its
    /// containers are stopped and it is marked suspended again ([`Self::give_back`]).
    pub(super) async fn resume(
        &mut self,
        plan: &JobPlan,
        key: &str,
        trace: &TraceWriter,
    ) -> Result<(), DockerError> {
        trace.info("Resuming Docker executor...");
        let key = RuntimeEnvironmentKey::parse_for(key, self.runner.runner_id, &self.runner.system_id)
            .map_err(|e| refused(e.to_string()))?;
        let (build, services) = parse_fields(&key)?;
        let docker = Endpoint::resolve(&self.config).connect().await?;
        self.docker = Some(docker.clone());
        self.stop = crate::stop::StopMode::for_job(
            feature_flags::is_on(&plan.variables, "FF_USE_NATIVE_CONTAINER_STOP"),
            self.config.pid_mode.as_deref(),
        );
        let inspect = docker
            .inspect_container(&build, None)
            .await
            .map_err(|e| refused(format!("build container {build} not found: {e}")))?;
        let checked = self.check(&docker, plan, &build, &services, &inspect).await?;
        // The key's text may be a name or an id prefix: from here on only the engine's ids are used.
        let build = inspect.id.clone().unwrap_or_default();
        let claim = RenameContainerOptions {
            name: checked.base.clone(),
        };
        docker
            .rename_container(&build, claim)
            .await
            .map_err(|e| refused(format!("claiming build container {build}: {e}")))?;
        // Recorded before anything starts, so that `cleanup` gives the environment back even when the driver
        // drops this future (a cancel or timeout during the resume).
        self.claimed = Some(format!("{}{SUSPENDED_SUFFIX}", checked.base));
        self.container = Some(build.clone());
        self.services = checked.services.iter().map(|s| s.id.clone()).collect();
        match self
            .restart(&docker, plan, &build, checked, &inspect, trace)
            .await
        {
            Ok(()) => {
                self.claimed = None;
                Ok(())
            }
            Err(err) => {
                self.give_back().await;
                Err(err)
            }
        }
    }

    /// Undoes a claim that did not end in a resumed environment: stops what was started and marks the job
    /// container suspended again, so the key still resumes it.
    pub(super) async fn give_back(&mut self) {
        let (Some(name), Some(docker)) = (self.claimed.take(), self.docker.clone()) else {
            return;
        };
        let Some(build) = self.container.take() else {
            return;
        };
        let services = std::mem::take(&mut self.services);
        self.running = false;
        // Each stop on its own: one that fails must not leave the others running.
        let all: Vec<(String, Option<i32>)> = std::iter::once((build.clone(), Some(0)))
            .chain(services.into_iter().map(|c| (c, None)))
            .collect();
        let stops = all.into_iter().map(|(c, t)| {
            let docker = docker.clone();
            async move {
                let opts = StopContainerOptions { signal: None, t };
                if let Err(e) = docker.stop_container(&c, Some(opts)).await {
                    tracing::warn!(error = %e, container = %c, "stopping a container given back");
                }
            }
        });
        futures::future::join_all(stops).await;
        if let Err(e) = docker
            .rename_container(&build, RenameContainerOptions { name })
            .await
        {
            tracing::warn!(error = %e, container = %build, "marking a container suspended again");
        }
    }

    /// Everything that can refuse a resume, checked before anything is claimed or started: the job container is
    /// suspended and this runner's, of the job's project; each service is a stopped service of the same job;
    /// the network and volumes exist; the job's user is allowed.
    async fn check(
        &self,
        docker: &Docker,
        plan: &JobPlan,
        build: &str,
        services: &[String],
        inspect: &bollard::models::ContainerInspectResponse,
    ) -> Result<Checked, DockerError> {
        let name = inspect.name.clone().unwrap_or_default();
        let name = name.trim_start_matches('/');
        let Some(base) = name.strip_suffix(SUSPENDED_SUFFIX) else {
            return Err(refused(format!("build container {build} is not suspended")));
        };
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        if !self.ours(labels, plan.project_id, "build") {
            return Err(refused(format!(
                "build container {build} is not a job container of this runner and project"
            )));
        }
        let job = labels.and_then(|l| l.get(LABEL_JOB)).cloned();
        let mut started = Vec::new();
        for id in services {
            let svc = docker
                .inspect_container(id, None)
                .await
                .map_err(|e| refused(format!("service container {id} not found: {e}")))?;
            let labels = svc.config.as_ref().and_then(|c| c.labels.as_ref());
            if !self.ours(labels, plan.project_id, "service")
                || labels.and_then(|l| l.get(LABEL_JOB)) != job.as_ref()
            {
                return Err(refused(format!(
                    "service container {id} is not a service of the suspended job"
                )));
            }
            if svc.state.as_ref().and_then(|s| s.running) != Some(false) {
                return Err(refused(format!("service container {id} is not stopped")));
            }
            started.push(health::StartedService {
                id: svc.id.clone().unwrap_or_default(),
                name: svc.name.unwrap_or_default().trim_start_matches('/').to_owned(),
                image: svc.config.and_then(|c| c.image).unwrap_or_default(),
            });
        }
        let network = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        Ok(Checked {
            base: base.to_owned(),
            services: started,
            networks: self.adopt_network(docker, &network).await?,
            network,
            volumes: self.adopt_volumes(docker, inspect).await?,
            user: self.resolve_user(plan)?,
        })
    }

    /// Starts the claimed environment and takes it over; on success `cleanup` removes it unless it is suspended
    /// again.
    async fn restart(
        &mut self,
        docker: &Docker,
        plan: &JobPlan,
        build: &str,
        checked: Checked,
        inspect: &bollard::models::ContainerInspectResponse,
        trace: &TraceWriter,
    ) -> Result<(), DockerError> {
        for svc in &checked.services {
            let id = &svc.id;
            docker
                .start_container(id, None)
                .await
                .map_err(|e| refused(format!("service container {id} failed to start: {e}")))?;
        }
        if let Some(secs) = self.config.wait_for_services_timeout() {
            let timeout = std::time::Duration::from_secs(secs);
            health::wait_for_services(docker, &checked.services, &checked.network, timeout, trace).await;
        }
        docker
            .start_container(build, None)
            .await
            .map_err(|e| refused(format!("build container {build} failed to start: {e}")))?;
        self.running = true;
        self.user = checked.user;
        self.nofile_soft = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.ulimits.as_ref())
            .into_iter()
            .flatten()
            .find(|u| u.name.as_deref() == Some("nofile"))
            .and_then(|u| u.soft);
        self.perms = Permissions::for_variables(&plan.variables);
        self.networks = checked.networks;
        self.volumes = checked.volumes;
        self.facts = EnvironmentFacts {
            // The previous job's files are there: that is the point.
            fresh_build_dir: false,
            tmp_dir_dies_with_job: self.tmp_dir_dies_with_the_volume(plan),
            hostname: Some(crate::shortcuts::container_hostname(
                self.config.hostname.as_deref(),
                build,
            )),
        };
        Ok(())
    }

    /// The job's own network (one this runner made), to remove at the end; a configured `network_mode` is not.
    async fn adopt_network(&self, docker: &Docker, mode: &str) -> Result<Vec<String>, DockerError> {
        if matches!(mode, "" | "default" | "bridge" | "host" | "none") || mode.contains(':') {
            return Ok(Vec::new());
        }
        let net = docker
            .inspect_network(mode, None)
            .await
            .map_err(|e| refused(format!("build network {mode} not found: {e}")))?;
        let mine = self.owns(net.labels.as_ref());
        Ok(net.id.filter(|_| mine).into_iter().collect())
    }

    /// The job's named volumes this runner made (the build volume), to remove at the end; anonymous volumes go
    /// with the container.
    async fn adopt_volumes(
        &self,
        docker: &Docker,
        inspect: &bollard::models::ContainerInspectResponse,
    ) -> Result<Vec<String>, DockerError> {
        let mut out = Vec::new();
        for name in inspect.mounts.iter().flatten().filter_map(|m| m.name.as_deref()) {
            let vol = docker
                .inspect_volume(name)
                .await
                .map_err(|e| refused(format!("volume {name} not found: {e}")))?;
            if self.owns(Some(&vol.labels)) {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_need_the_build_container_and_no_empty_service() {
        let key = |fields: &[(&str, &str)]| {
            RuntimeEnvironmentKey::new(
                1,
                "s",
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert_eq!(
            parse_fields(&key(&[(BUILD_FIELD, "b"), (SERVICES_FIELD, "s1,s2")])).unwrap(),
            ("b".to_owned(), vec!["s1".to_owned(), "s2".to_owned()])
        );
        assert_eq!(
            parse_fields(&key(&[(BUILD_FIELD, "b")])).unwrap().1,
            Vec::<String>::new()
        );
        assert!(
            parse_fields(&key(&[(SERVICES_FIELD, "s")]))
                .unwrap_err()
                .to_string()
                .contains("build-container-id is required")
        );
        assert!(
            parse_fields(&key(&[(BUILD_FIELD, "b"), (SERVICES_FIELD, "s,,t")]))
                .unwrap_err()
                .to_string()
                .contains("contains an empty ID")
        );
    }
}
