//! `DockerExecutor`: one job container from the job image, started once, a per-job build volume, every stage
//! an exec in that container with its script fed on stdin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::CreateContainerOptions;
use futures::future::{BoxFuture, join_all};
use oxrunner_config::DockerConfig;
use oxrunner_core::feature_flags;
use oxrunner_core::{
    CancellationToken, EnvironmentFacts, ExecError, Executor, ExitStatus, JobFiles, JobPlan, RunnerContext,
    StageCommand, TraceWriter, build_dir,
};

use crate::archive::{self, Permissions};
use crate::auth;
use crate::cleanup;
use crate::connect::Endpoint;
use crate::error::DockerError;
use crate::health;
use crate::hostcfg;
use crate::image;
use crate::labels::{job_labels, with_owner};
use crate::run;
use crate::services;
use crate::settings::{VolumeSpec, image_allowed, parse_cpus, parse_size, parse_volume};
use crate::shortcuts;

pub(crate) mod suspend;

/// Container path of the build volume when the runner context names none.
pub const DEFAULT_BUILDS_DIR: &str = "/builds";

/// Runs stages in a container of the job's image. The shell reads each stage script on stdin, so the image only
/// needs `sh`; files move in and out of the build volume through the engine's archive API.
///
/// The container's main process is the image ENTRYPOINT (unless the job overrides it, as in gitlab-runner) given
/// a shell as its command; that shell keeps the container up by waiting on a terminal nobody writes to.
pub struct DockerExecutor {
    config: DockerConfig,
    runner: RunnerContext,
    docker: Option<Docker>,
    container: Option<String>,
    /// Whether the job container runs: it starts with the first stage, and again after a cancel killed it.
    running: bool,
    /// The user stages run as (`image:docker:user` or `user`); `None` keeps the image's.
    user: Option<String>,
    /// The configured soft `nofile` limit, which each stage's shell sets again (see `run::stage_command`).
    nofile_soft: Option<i64>,
    /// `FF_USE_NATIVE_CONTAINER_STOP`, read at prepare.
    stop: crate::stop::StopMode,
    services: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
    perms: Permissions,
    /// What prepare established, for the driver (see `shortcuts`).
    facts: EnvironmentFacts,
    background_cleanup: bool,
    removal: Option<tokio::task::JoinHandle<()>>,
    /// The job's variables as `KEY=value`, for the web terminal's exec (never logged: `Debug` leaves them out).
    terminal_env: Vec<String>,
    /// `CI_PROJECT_DIR`: where the web terminal starts.
    project_dir: String,
    /// The environment was suspended: `cleanup` keeps it (`executor/suspend.rs`).
    suspended: bool,
    /// A resume claimed a suspended environment and has not finished: `cleanup` gives it back under this name.
    claimed: Option<String>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("runner", &self.runner.short_token)
            .field("container", &self.container)
            .field("services", &self.services)
            .field("volumes", &self.volumes)
            .finish_non_exhaustive()
    }
}

fn not_prepared() -> DockerError {
    DockerError::Io {
        context: "docker executor".to_owned(),
        source: std::io::Error::other("the job container does not exist (prepare did not succeed)"),
    }
}

impl DockerExecutor {
    /// An executor for one job; it connects in `prepare`.
    pub fn new(config: DockerConfig, runner: RunnerContext) -> Self {
        Self {
            config,
            runner,
            docker: None,
            container: None,
            running: false,
            user: None,
            nofile_soft: None,
            stop: crate::stop::StopMode::default(),
            services: Vec::new(),
            volumes: Vec::new(),
            networks: Vec::new(),
            perms: Permissions::Open,
            facts: EnvironmentFacts::default(),
            background_cleanup: false,
            removal: None,
            terminal_env: Vec::new(),
            project_dir: String::new(),
            suspended: false,
            claimed: None,
        }
    }

    /// `cleanup` only starts removing the job's containers, volumes and networks; the caller reports the job, then
    /// awaits [`Executor::finish_cleanup`] before freeing the job's slot. Removal takes about 90 ms (kill, network
    /// detach, destroy), a quarter of a short job, and GitLab need not wait for it.
    pub fn with_background_cleanup(mut self) -> Self {
        self.background_cleanup = true;
        self
    }

    /// The engine client, once `prepare` connected.
    pub fn docker(&self) -> Option<&Docker> {
        self.docker.as_ref()
    }

    /// The job container id, once `prepare` created it.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_deref()
    }

    /// Builds root inside the container.
    pub fn builds_dir(&self) -> PathBuf {
        if self.runner.builds_dir.as_os_str().is_empty() {
            PathBuf::from(DEFAULT_BUILDS_DIR)
        } else {
            self.runner.builds_dir.clone()
        }
    }

    fn ready(&self) -> Result<(&Docker, &str), DockerError> {
        match (&self.docker, &self.container) {
            (Some(d), Some(c)) => Ok((d, c)),
            _ => Err(not_prepared()),
        }
    }

    /// Copies the tree under `host_dir` into the job container at `container_dir` (e.g. a checkout made on the
    /// runner side into the build volume).
    pub async fn copy_to_container(&self, host_dir: &Path, container_dir: &str) -> Result<(), DockerError> {
        let (docker, container) = self.ready()?;
        archive::copy_dir_to_container(docker, container, host_dir, container_dir, self.perms).await
    }

    /// Copies `container_path` out of the job container into `host_dir`.
    pub async fn copy_from_container(
        &self,
        container_path: &str,
        host_dir: &Path,
    ) -> Result<(), DockerError> {
        let (docker, container) = self.ready()?;
        archive::copy_from_container(docker, container, container_path, host_dir).await
    }

    /// The job image: the job's own (checked against `allowed_images`) or the config's default.
    fn resolve_image(&self, plan: &JobPlan) -> Result<String, DockerError> {
        let job_image = plan
            .image
            .as_ref()
            .map(|i| i.name.trim())
            .filter(|n| !n.is_empty());
        if let Some(name) = job_image {
            // The runner's own default image is trusted; only images a job asks for are checked.
            if !image_allowed(name, &self.config.allowed_images) {
                return Err(DockerError::ImageNotAllowed {
                    image: name.to_owned(),
                    allowed: self.config.allowed_images.join(", "),
                });
            }
            return Ok(name.to_owned());
        }
        self.config
            .image
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .ok_or(DockerError::NoImage)
    }

    /// `user`: the job's `image:docker:user` when `allowed_users` permits it, else the config's.
    fn resolve_user(&self, plan: &JobPlan) -> Result<Option<String>, DockerError> {
        let job_user = plan
            .image
            .as_ref()
            .and_then(|i| i.user.clone())
            .filter(|u| !u.is_empty());
        match job_user {
            Some(user) => {
                let allowed = &self.config.allowed_users;
                if !allowed.is_empty() && !allowed.contains(&user) {
                    return Err(DockerError::Config {
                        key: "allowed_users",
                        value: allowed.join(", "),
                        detail: format!("the job asks for user {user:?}, which is not allowed"),
                        hint: "use an allowed user in the job's image:docker:user, or add it to [runners.docker] allowed_users",
                    });
                }
                Ok(Some(user))
            }
            None => Ok(self.config.user.clone().filter(|u| !u.is_empty())),
        }
    }

    /// Whether removing the build volume at cleanup also removes the file variables and git credentials under
    /// `<project>.tmp`: no `volumes` bind or `volumes_from` container can hold them.
    fn tmp_dir_dies_with_the_volume(&self, plan: &JobPlan) -> bool {
        let tmp = oxrunner_core::tmp_dir(&build_dir(plan, &self.runner));
        if !tmp.starts_with(self.builds_dir()) || !self.config.volumes_from.is_empty() {
            return false;
        }
        self.config.volumes.iter().all(|spec| match parse_volume(spec) {
            // Anonymous volumes go with the container.
            Ok(VolumeSpec::Anonymous(_)) => true,
            Ok(VolumeSpec::Bind(bind)) => bind
                .split(':')
                .nth(1)
                .is_some_and(|dst| !tmp.starts_with(dst) && !Path::new(dst).starts_with(&tmp)),
            Err(_) => false,
        })
    }

    /// The build volume and the `volumes` host binds; services get the same (as in gitlab-runner).
    fn binds(&self, build_volume: &str) -> Result<Vec<String>, DockerError> {
        let mut binds = vec![format!("{build_volume}:{}", self.builds_dir().display())];
        for spec in &self.config.volumes {
            if let VolumeSpec::Bind(b) = parse_volume(spec)? {
                binds.push(b);
            }
        }
        Ok(binds)
    }

    fn host_config(&self, build_volume: &str, image: &str) -> Result<HostConfig, DockerError> {
        let cfg = &self.config;
        let binds = self.binds(build_volume)?;
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let mut hc = HostConfig {
            binds: Some(binds),
            privileged: cfg.privileged,
            shm_size: cfg.shm_size.filter(|s| *s > 0),
            memory: cfg
                .memory
                .as_deref()
                .map(|m| parse_size("memory", m))
                .transpose()?,
            memory_swap: cfg
                .memory_swap
                .as_deref()
                .map(|m| parse_size("memory_swap", m))
                .transpose()?,
            memory_reservation: cfg
                .memory_reservation
                .as_deref()
                .map(|m| parse_size("memory_reservation", m))
                .transpose()?,
            nano_cpus: cfg.cpus.as_deref().map(parse_cpus).transpose()?,
            cpuset_cpus: cfg.cpuset_cpus.clone(),
            cpu_shares: cfg.cpu_shares,
            extra_hosts: non_empty(&cfg.extra_hosts),
            dns: non_empty(&cfg.dns),
            dns_search: non_empty(&cfg.dns_search),
            network_mode: cfg.network_mode.clone().filter(|m| !m.is_empty()),
            cap_add: non_empty(&cfg.cap_add),
            cap_drop: non_empty(&cfg.cap_drop),
            security_opt: non_empty(&cfg.security_opt),
            volumes_from: non_empty(&cfg.volumes_from),
            runtime: cfg.runtime.clone(),
            ..Default::default()
        };
        hostcfg::extend_job(cfg, image, &mut hc)?;
        Ok(hc)
    }

    async fn prepare_inner(&mut self, plan: &JobPlan, trace: &TraceWriter) -> Result<(), DockerError> {
        if let Some(key) = plan.resume_key() {
            return self.resume(plan, key, trace).await;
        }
        let endpoint = Endpoint::resolve(&self.config);
        let image = self.resolve_image(plan)?;
        trace.info(&format!("Using Docker executor with image {image} ..."));
        let docker = endpoint.connect().await?;
        self.docker = Some(docker.clone());
        self.stop = crate::stop::StopMode::for_job(
            feature_flags::is_on(&plan.variables, "FF_USE_NATIVE_CONTAINER_STOP"),
            self.config.pid_mode.as_deref(),
        );

        let job_policies = plan
            .image
            .as_ref()
            .map(|i| i.pull_policy.as_slice())
            .unwrap_or_default();
        let platform = plan
            .image
            .as_ref()
            .and_then(|i| i.platform.clone())
            .unwrap_or_default();
        let runner = self.runner.short_token.clone();
        let (owner_id, owner_system) = (self.runner.runner_id, self.runner.system_id.clone());
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!(
            "runner-{runner}-project-{}-concurrent-{}-{}",
            plan.project_id,
            self.runner.concurrent_project_id,
            &unique[..8]
        );

        // The volume does not depend on the image: create it while the image is pulled.
        let volume_name = format!("{prefix}-builds");
        let (pulled, volume) = tokio::join!(
            self.pull(&docker, plan, &image, job_policies, &platform, trace),
            docker.create_volume(VolumeCreateRequest {
                name: Some(volume_name.clone()),
                labels: Some(with_owner(
                    job_labels(&runner, plan.job_id, plan.project_id, "builds"),
                    owner_id,
                    &owner_system
                )),
                ..Default::default()
            })
        );
        if volume.is_ok() {
            self.volumes.push(volume_name.clone());
        }
        let image_id = pulled?;
        volume.map_err(DockerError::api(format!("creating volume {volume_name}")))?;
        trace.info(&format!("Using docker image {image_id} for {image} ..."));

        self.perms = Permissions::for_variables(&plan.variables);

        let network = self
            .start_services(&docker, plan, &prefix, &volume_name, trace)
            .await?;

        let anonymous: Vec<String> = self
            .config
            .volumes
            .iter()
            .map(|s| parse_volume(s))
            .filter_map(|v| match v {
                // As gitlab-runner: disable_cache turns off the container-side cache volumes.
                Ok(VolumeSpec::Anonymous(_)) if self.config.disable_cache == Some(true) => None,
                Ok(VolumeSpec::Anonymous(p)) => Some(Ok(p)),
                Ok(VolumeSpec::Bind(_)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        let image_spec = plan.image.as_ref();
        let entrypoint = image_spec
            .map(|i| i.entrypoint.clone())
            .filter(|e| !e.is_empty() && !self.config.disable_entrypoint_overwrite.unwrap_or(false));
        let host_config = self.host_config(&volume_name, &image)?;
        self.nofile_soft = host_config
            .ulimits
            .iter()
            .flatten()
            .find(|u| u.name.as_deref() == Some("nofile"))
            .and_then(|u| u.soft);
        self.user = self.resolve_user(plan)?;
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                run::DETECT_SHELL.to_owned(),
            ]),
            entrypoint,
            env: Some(self.runner.environment.clone()),
            user: self.user.clone(),
            hostname: self.config.hostname.clone().filter(|h| !h.is_empty()),
            labels: Some(hostcfg::container_labels(
                &self.config,
                with_owner(
                    job_labels(&runner, plan.job_id, plan.project_id, "build"),
                    owner_id,
                    &owner_system,
                ),
                &plan.variables,
            )),
            volumes: (!anonymous.is_empty()).then_some(anonymous),
            // An interactive shell on a terminal blocks reading it for as long as the container lives, and its
            // prompt goes to the container's own output, which nothing puts into the job log.
            open_stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(true),
            host_config: Some(HostConfig {
                network_mode: network.or(host_config.network_mode),
                // FF_USE_INIT_WITH_DOCKER_EXECUTOR: docker's init reaps zombies and forwards signals.
                init: feature_flags::is_on(&plan.variables, "FF_USE_INIT_WITH_DOCKER_EXECUTOR")
                    .then_some(true),
                ..host_config
            }),
            ..Default::default()
        };
        let name = format!("{prefix}-build");
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: platform.clone(),
                }),
                body,
            )
            .await
            .map_err(DockerError::api(format!(
                "creating container {name} from {image}"
            )))?;
        self.container = Some(created.id.clone());
        self.open_and_start(&docker, &created.id, plan).await
    }

    /// Opens the build volume's directories and starts the job container; records what that establishes for the
    /// driver (`Executor::environment`).
    async fn open_and_start(&mut self, docker: &Docker, id: &str, plan: &JobPlan) -> Result<(), DockerError> {
        // The job's user (any, see `image:docker:user`) creates the project dir and its `.tmp` sibling (file
        // variables) under the builds dir in its first script, so only the builds dir needs opening. On a fresh
        // build volume prepare makes them too, so the driver may spare the scripts that would only do that.
        let builds_dir = self.builds_dir();
        let mut open = vec![builds_dir.display().to_string()];
        let project_dir = build_dir(plan, &self.runner);
        let tmp_dies = self.tmp_dir_dies_with_the_volume(plan);
        // A build volume that outlives the job could hold a previous job's files, which the real scripts handle.
        let fresh = self.perms == Permissions::Open && project_dir.starts_with(&builds_dir) && tmp_dies;
        if fresh {
            // What the scripts' `mkdir -p` would have made, open to any job user as upstream's umask 0000 leaves
            // it: the project dir with its parents, and its `.tmp`.
            let mut dirs = shortcuts::dirs_down_to(&builds_dir, &project_dir);
            dirs.push(oxrunner_core::tmp_dir(&project_dir));
            open.extend(dirs.iter().map(|d| d.display().to_string()));
        }
        // Started here, alongside the archive upload, rather than by the first stage: the start is the longest
        // step of a short job. A failed start is left to the first stage, which starts it again and reports.
        let (opened, started) = tokio::join!(
            archive::make_dirs_open(docker, id, &open),
            docker.start_container(id, None)
        );
        match started {
            Ok(()) => self.running = true,
            Err(e) => tracing::debug!(error = %e, "starting the job container in prepare"),
        }
        opened?;
        self.facts = EnvironmentFacts {
            fresh_build_dir: fresh,
            tmp_dir_dies_with_job: tmp_dies,
            // Only a running container has a host name the runner can vouch for.
            hostname: self
                .running
                .then(|| shortcuts::container_hostname(self.config.hostname.as_deref(), id)),
        };
        Ok(())
    }

    /// Pulls `image` per the pull policies, with the registry credentials that apply; returns its id.
    async fn pull(
        &self,
        docker: &Docker,
        plan: &JobPlan,
        image: &str,
        job_policies: &[String],
        platform: &str,
        trace: &TraceWriter,
    ) -> Result<String, DockerError> {
        let home_config = auth::home_docker_config();
        let credentials = auth::credentials_for(
            image,
            plan.variables.value("DOCKER_AUTH_CONFIG"),
            home_config.as_deref(),
            &plan.credentials,
        );
        if let Some(user) = credentials.as_ref().and_then(|c| c.username.as_deref()) {
            trace.info(&format!(
                "Authenticating with credentials of {user} for {}",
                auth::registry_of(image)
            ));
        }
        image::ensure_image(
            docker,
            &self.config,
            image,
            job_policies,
            credentials.as_ref(),
            platform,
            trace,
        )
        .await
    }

    /// Starts the job's services on a per-job network (or the configured `network_mode`); returns the network
    /// the job container must join, if any.
    async fn start_services(
        &mut self,
        docker: &Docker,
        plan: &JobPlan,
        prefix: &str,
        build_volume: &str,
        trace: &TraceWriter,
    ) -> Result<Option<String>, DockerError> {
        let cfg = &self.config;
        let shared = services::shared_env(&self.runner.environment, &plan.variables);
        let specs = services::collect(cfg, &plan.services, &shared, &plan.variables)?;
        // FF_NETWORK_PER_BUILD: the job gets its network (named as CI_BUILD_NETWORK_NAME says) even without
        // services. Without it, a network is made only for services (gitlab-runner's legacy links mode is not
        // implemented).
        let per_build = feature_flags::is_on(&plan.variables, "FF_NETWORK_PER_BUILD")
            && cfg.network_mode.as_deref().is_none_or(str::is_empty);
        if specs.is_empty() && !per_build {
            return Ok(None);
        }
        let runner = self.runner.short_token.clone();
        let (owner_id, owner_system) = (self.runner.runner_id, self.runner.system_id.clone());
        let labels = |kind: &str| {
            hostcfg::container_labels(
                cfg,
                with_owner(
                    job_labels(&runner, plan.job_id, plan.project_id, kind),
                    owner_id,
                    &owner_system,
                ),
                &plan.variables,
            )
        };
        let network = match cfg.network_mode.clone().filter(|m| !m.is_empty()) {
            Some(mode) => mode,
            None => {
                let name = if per_build {
                    feature_flags::build_network_name(
                        &runner,
                        plan.project_id,
                        self.runner.concurrent_project_id,
                        plan.job_id,
                    )
                } else {
                    format!("{prefix}-network")
                };
                let id = services::create_network(docker, &name, labels("network"), cfg).await?;
                self.networks.push(id);
                name
            }
        };
        let binds = self.binds(build_volume)?;
        let mut started = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            trace.info(&format!("Starting service {} ...", spec.image));
            self.pull(docker, plan, &spec.image, &spec.pull_policy, "", trace)
                .await?;
            let name = services::container_name(prefix, &spec.image, i);
            let host_config =
                hostcfg::service_host_config(&self.config, &spec.image, &network, binds.clone())?;
            let id = services::start(docker, spec, &name, &network, labels("service"), host_config).await?;
            self.services.push(id.clone());
            started.push(health::StartedService {
                id,
                name,
                image: spec.image.clone(),
            });
        }
        if let Some(secs) = self.config.wait_for_services_timeout() {
            health::wait_for_services(
                docker,
                &started,
                &network,
                std::time::Duration::from_secs(secs),
                trace,
            )
            .await;
        }
        Ok(Some(network))
    }

    /// With [`with_background_cleanup`](Self::with_background_cleanup), `cleanup` starts the removals and
    /// returns; [`Executor::finish_cleanup`] waits for them.
    async fn cleanup_inner(&mut self) {
        let Some(docker) = self.docker.clone() else {
            return;
        };
        if self.claimed.is_some() {
            // A resume that did not finish (cancelled or timed out): the environment stays resumable.
            self.give_back().await;
        }
        if self.suspended {
            // Kept for the job that resumes it; the daemon's sweep of leftovers keeps it too.
            self.container = None;
            self.services.clear();
            self.volumes.clear();
            self.networks.clear();
            return;
        }
        let objects = Objects {
            containers: self
                .container
                .take()
                .into_iter()
                .chain(std::mem::take(&mut self.services))
                .collect(),
            volumes: std::mem::take(&mut self.volumes),
            networks: std::mem::take(&mut self.networks),
        };
        if self.background_cleanup {
            self.removal = Some(tokio::spawn(async move { objects.remove(&docker).await }));
        } else {
            objects.remove(&docker).await;
        }
    }
}

/// What one job created, to remove when it ends.
struct Objects {
    containers: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Objects {
    async fn remove(self, docker: &Docker) {
        // Containers first: a volume or network in use cannot be removed. Within a group nothing depends on
        // anything else, so the removals run concurrently.
        join_all(self.containers.into_iter().map(|id| async move {
            if let Err(e) = cleanup::remove_container(docker, &id).await {
                tracing::warn!(error = %e, "removing a job or service container");
            }
        }))
        .await;
        let volumes = join_all(self.volumes.into_iter().map(|name| async move {
            if let Err(e) = cleanup::remove_volume(docker, &name).await {
                tracing::warn!(error = %e, "removing a job volume");
            }
        }));
        let networks = join_all(self.networks.into_iter().map(|id| async move {
            if let Err(e) = cleanup::remove_network(docker, &id).await {
                tracing::warn!(error = %e, "removing a job network");
            }
        }));
        futures::future::join(volumes, networks).await;
    }
}

impl Executor for DockerExecutor {
    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move { self.prepare_inner(plan, trace).await.map_err(ExecError::from) })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(async move {
            let (docker, container) = match (&self.docker, &self.container) {
                (Some(d), Some(c)) => (d, c.as_str()),
                _ => return Err(not_prepared().into()),
            };
            let how = run::StageExec {
                user: self.user.as_deref(),
                nofile_soft: self.nofile_soft,
                stop: self.stop,
            };
            run::run_stage(docker, container, how, &mut self.running, &cmd, trace, cancel)
                .await
                .map_err(ExecError::from)
        })
    }

    fn suspend(&mut self) -> BoxFuture<'_, Result<Vec<(String, String)>, ExecError>> {
        Box::pin(async move { self.suspend_inner().await.map_err(ExecError::from) })
    }

    fn suspendable(&self) -> bool {
        true
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.cleanup_inner())
    }

    fn finish_cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(removal) = self.removal.take()
                && let Err(e) = removal.await
            {
                tracing::warn!(error = %e, "removing the job's Docker objects stopped");
            }
        })
    }

    fn environment(&self) -> EnvironmentFacts {
        self.facts.clone()
    }

    fn job_variables(&mut self, vars: &oxrunner_core::Variables) {
        self.terminal_env = crate::terminal::job_env(vars);
        self.project_dir = vars.value("CI_PROJECT_DIR").unwrap_or_default().to_owned();
    }

    fn terminal(&self) -> Option<crate::terminal::Shared> {
        let (docker, container) = self.ready().ok()?;
        Some(Arc::new(crate::terminal::DockerTerminal {
            docker: docker.clone(),
            container: container.to_owned(),
            user: self.user.clone(),
            workdir: self.project_dir.clone(),
            env: self.terminal_env.clone(),
        }))
    }

    fn files(&self) -> Option<Arc<dyn JobFiles>> {
        let (docker, container) = self.ready().ok()?;
        Some(Arc::new(
            archive::ContainerFiles::new(docker.clone(), container.to_owned()).with_permissions(self.perms),
        ))
    }
}
