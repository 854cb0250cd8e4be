//! Suspending and resuming a Docker job environment (`FF_SUSPENDABLE_ENVIRONMENTS`), as gitlab-runner's Docker
//! executor does: suspend stops the job and service containers and keeps them with the build volume and network;
//! a later job with the key starts them again instead of creating new ones.
//!
//! A suspended job container is renamed with [`SUSPENDED_SUFFIX`]: the mark lives on the engine, so the daemon's
//! sweep of leftovers at start keeps the environment (`cleanup::remove_leftovers`), and a resume renames it back,
//! which also claims it (two jobs with the same key cannot both resume it, and a key can never name a container
//! a running job uses). A key only resumes a job container of this runner and of the job's project.
//!
//! The key's fields: `build-container-id` and, with services, `service-ids` (comma-separated). oxrunner has no
//! helper container, so upstream's `helper-id` is not written.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::RenameContainerOptions;
use futures::future::try_join_all;
use oxrunner_core::{EnvironmentFacts, JobPlan, RuntimeEnvironmentKey, TraceWriter, feature_flags};

use super::DockerExecutor;
use crate::archive::Permissions;
use crate::connect::Endpoint;
use crate::error::DockerError;
use crate::health;
use crate::labels::{LABEL_PROJECT, LABEL_RUNNER, LABEL_TYPE};

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

/// Whether labels name this runner, the project and the object kind.
fn ours(labels: Option<&HashMap<String, String>>, runner: &str, project: i64, kind: &str) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(LABEL_RUNNER) == Some(runner)
        && label(LABEL_PROJECT) == Some(project.to_string().as_str())
        && label(LABEL_TYPE) == Some(kind)
}

impl DockerExecutor {
    /// Stops the job and service containers and marks the job container suspended; `cleanup` then keeps them.
    pub(super) async fn suspend_inner(&mut self) -> Result<Vec<(String, String)>, DockerError> {
        let (docker, id) = self.ready()?;
        let (docker, id) = (docker.clone(), id.to_owned());
        // All or nothing, as upstream: if a container cannot be stopped the job fails and cleanup removes all.
        let stops = std::iter::once(&id).chain(&self.services).map(|c| {
            let docker = docker.clone();
            async move {
                docker
                    .stop_container(c, None)
                    .await
                    .map_err(DockerError::api(format!("stopping container {c}")))
            }
        });
        try_join_all(stops).await?;
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
    /// machine, claims the suspended job container and starts it and its services again. Nothing is taken over
    /// for removal until everything succeeded: a failed resume leaves the environment suspended.
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
        let runner = self.runner.short_token.clone();
        let inspect = docker
            .inspect_container(&build, None)
            .await
            .map_err(|e| refused(format!("build container {build} not found: {e}")))?;
        let name = inspect.name.clone().unwrap_or_default();
        let name = name.trim_start_matches('/');
        let Some(base) = name.strip_suffix(SUSPENDED_SUFFIX) else {
            return Err(refused(format!("build container {build} is not suspended")));
        };
        if !ours(
            inspect.config.as_ref().and_then(|c| c.labels.as_ref()),
            &runner,
            plan.project_id,
            "build",
        ) {
            return Err(refused(format!(
                "build container {build} is not a job container of this runner and project"
            )));
        }
        let claim = RenameContainerOptions {
            name: base.to_owned(),
        };
        docker
            .rename_container(&build, claim)
            .await
            .map_err(|e| refused(format!("claiming build container {build}: {e}")))?;
        match self
            .restart(&docker, plan, &build, &services, &inspect, trace)
            .await
        {
            Ok(()) => Ok(()),
            Err(err) => {
                // Give the environment back: it stays suspended for another try.
                let mark = RenameContainerOptions {
                    name: name.to_owned(),
                };
                if let Err(e) = docker.rename_container(&build, mark).await {
                    tracing::warn!(error = %e, container = %build, "marking a container suspended again");
                }
                Err(err)
            }
        }
    }

    /// Starts the claimed environment and takes it over; on success `cleanup` removes it unless it is suspended
    /// again.
    async fn restart(
        &mut self,
        docker: &Docker,
        plan: &JobPlan,
        build: &str,
        services: &[String],
        inspect: &bollard::models::ContainerInspectResponse,
        trace: &TraceWriter,
    ) -> Result<(), DockerError> {
        let runner = self.runner.short_token.clone();
        let mut started = Vec::new();
        for id in services {
            let svc = docker
                .inspect_container(id, None)
                .await
                .map_err(|e| refused(format!("service container {id} not found: {e}")))?;
            if !ours(
                svc.config.as_ref().and_then(|c| c.labels.as_ref()),
                &runner,
                plan.project_id,
                "service",
            ) {
                return Err(refused(format!(
                    "service container {id} is not a service of this runner and project"
                )));
            }
            docker
                .start_container(id, None)
                .await
                .map_err(|e| refused(format!("service container {id} failed to start: {e}")))?;
            started.push(health::StartedService {
                id: id.clone(),
                name: svc.name.unwrap_or_default().trim_start_matches('/').to_owned(),
                image: svc.config.and_then(|c| c.image).unwrap_or_default(),
            });
        }
        let host = inspect.host_config.clone().unwrap_or_default();
        let network = host.network_mode.clone().unwrap_or_default();
        let networks = self.adopt_network(docker, &network, &runner).await?;
        let volumes = self.adopt_volumes(docker, inspect, &runner).await?;
        if let Some(secs) = self.config.wait_for_services_timeout() {
            let timeout = std::time::Duration::from_secs(secs);
            health::wait_for_services(docker, &started, &network, timeout, trace).await;
        }
        docker
            .start_container(build, None)
            .await
            .map_err(|e| refused(format!("build container {build} failed to start: {e}")))?;
        self.user = self.resolve_user(plan)?;
        self.nofile_soft = host
            .ulimits
            .iter()
            .flatten()
            .find(|u| u.name.as_deref() == Some("nofile"))
            .and_then(|u| u.soft);
        self.perms = Permissions::for_variables(&plan.variables);
        self.container = Some(build.to_owned());
        self.running = true;
        self.services = services.to_vec();
        self.networks = networks;
        self.volumes = volumes;
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
    async fn adopt_network(
        &self,
        docker: &Docker,
        mode: &str,
        runner: &str,
    ) -> Result<Vec<String>, DockerError> {
        if matches!(mode, "" | "default" | "bridge" | "host" | "none") || mode.contains(':') {
            return Ok(Vec::new());
        }
        let net = docker
            .inspect_network(mode, None)
            .await
            .map_err(|e| refused(format!("build network {mode} not found: {e}")))?;
        let mine = net
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_RUNNER))
            .map(String::as_str)
            == Some(runner);
        Ok(net.id.filter(|_| mine).into_iter().collect())
    }

    /// The job's named volumes this runner made (the build volume), to remove at the end; anonymous volumes go
    /// with the container.
    async fn adopt_volumes(
        &self,
        docker: &Docker,
        inspect: &bollard::models::ContainerInspectResponse,
        runner: &str,
    ) -> Result<Vec<String>, DockerError> {
        let mut out = Vec::new();
        for name in inspect.mounts.iter().flatten().filter_map(|m| m.name.as_deref()) {
            let vol = docker
                .inspect_volume(name)
                .await
                .map_err(|e| refused(format!("volume {name} not found: {e}")))?;
            if vol.labels.get(LABEL_RUNNER).map(String::as_str) == Some(runner) {
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
