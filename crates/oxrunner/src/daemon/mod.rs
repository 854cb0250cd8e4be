//! `oxrunner run` and `run-single`: the job-processing service.
//!
//! One request loop per `[[runners]]` entry (times `request_concurrency`), one global semaphore for `concurrent`,
//! one per runner for `limit`; permits move into the job task. Signals keep gitlab-runner's meaning: SIGQUIT stops
//! asking for jobs and waits for the running ones; SIGTERM/SIGINT abort running jobs (reported failed) and exit
//! within `shutdown_timeout`; SIGHUP or a changed config.toml reloads the runners without touching running jobs.

mod docker_leftovers;
pub mod job;
mod job_secrets;
mod longpoll;
mod poller;
pub(crate) mod request_gate;
pub mod router;
mod session;
pub mod signals;
mod slots;
mod spool;
mod stale;
mod tokens;
mod unreadable;
pub(crate) mod unsupported;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use oxrunner_config::{Config, RunnerConfig};
use oxrunner_core::CancellationToken;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use self::job::JobEnv;
use self::poller::{Poller, RunnerState};
use self::signals::{Signal, Signals};
use self::slots::Slots;
use crate::metrics::{self, Metrics};

/// How often config.toml is checked for changes (gitlab-runner: 3 s).
const CONFIG_CHECK_INTERVAL: Duration = Duration::from_secs(3);

pub struct DaemonOptions {
    pub config_path: PathBuf,
    pub user: Option<String>,
    /// `--listen-address`: wins over config.toml's `listen_address`.
    pub listen_address: Option<String>,
    /// `run-single`: one runner from flags instead of the config's list.
    pub single: Option<SingleOptions>,
}

pub struct SingleOptions {
    pub runner: RunnerConfig,
    pub max_builds: u64,
    pub wait_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// A running request loop and what it was started from (to tell whether a reload changed it).
struct Running {
    runner: RunnerConfig,
    stop: CancellationToken,
    /// Its API client, shared by its pollers and jobs: a reload that keeps the runner updates its global settings.
    client: oxrunner_api::Client,
}

struct Daemon {
    opts: DaemonOptions,
    global: Arc<Semaphore>,
    concurrent: usize,
    tracker: TaskTracker,
    slots: Slots,
    abort_all: CancellationToken,
    stop_polling: CancellationToken,
    system_id: String,
    spool_dir: PathBuf,
    running: HashMap<String, Running>,
    received: Arc<AtomicU64>,
    activity: Arc<Notify>,
    /// Runners whose leftovers (Docker objects, jobs of a killed earlier run) this process already cleaned up: done
    /// once, before their first job.
    swept: HashSet<String>,
    /// The web terminal server (`[session_server]`), started with the service.
    session_server: Option<Arc<oxrunner_session::SessionServer>>,
    /// The `[session_server]` section the server was started from.
    session_section: Option<Option<oxrunner_config::SessionServer>>,
    metrics: Arc<Metrics>,
    /// The metrics server's address as configured when it was started (`None`: not serving).
    metrics_address: Option<String>,
    metrics_stop: CancellationToken,
}

/// Runs the service until `signals` (or run-single's limits) end it; see the module comment for their meaning.
pub async fn run(opts: DaemonOptions, mut signals: Signals) -> anyhow::Result<ExitCode> {
    let config_dir = config_dir(&opts.config_path);
    let system_id = oxrunner_config::system_id::load_or_create(&config_dir)
        .with_context(|| format!("cannot read or create the system id in {}", config_dir.display()))?;
    let temp = std::env::temp_dir();
    let spool = spool::create_in(&temp)
        .with_context(|| format!("cannot create a trace spool directory in {}", temp.display()))?;
    let spool_dir = spool.path().to_path_buf();
    let system_id_for_metrics = system_id.clone();

    let mut daemon = Daemon {
        opts,
        global: Arc::new(Semaphore::new(0)),
        concurrent: 0,
        tracker: TaskTracker::new(),
        slots: Slots::default(),
        abort_all: CancellationToken::new(),
        stop_polling: CancellationToken::new(),
        system_id,
        spool_dir,
        running: HashMap::new(),
        received: Arc::new(AtomicU64::new(0)),
        activity: Arc::new(Notify::new()),
        swept: HashSet::new(),
        session_server: None,
        session_section: None,
        metrics: Metrics::new(&system_id_for_metrics),
        metrics_address: None,
        metrics_stop: CancellationToken::new(),
    };
    let result = daemon.serve(&mut signals).await;
    daemon.metrics_stop.cancel();
    drop(daemon);
    // Removes the spool directory with whatever the jobs left in it.
    drop(spool);
    result
}

impl Daemon {
    async fn serve(&mut self, signals: &mut Signals) -> anyhow::Result<ExitCode> {
        let (mut config, mut mtime) = self.load()?;
        self.sessions(&config).await;
        self.apply(&config);
        self.start_metrics(&config).await?;
        self.metrics.set_ready();
        info!(
            concurrent = self.concurrent,
            runners = self.running.len(),
            version = crate::version::VERSION,
            // Where job logs wait until GitLab has them: a runner that is killed leaves it behind.
            trace_spool = %self.spool_dir.display(),
            "oxrunner started; listening for jobs"
        );
        let mut check = tokio::time::interval(CONFIG_CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let single = self.opts.single.as_ref().map(|s| (s.max_builds, s.wait_timeout));
        let mut idle_deadline = single
            .filter(|(_, w)| !w.is_zero())
            .map(|(_, w)| tokio::time::Instant::now() + w);

        let graceful = loop {
            let idle = async {
                match idle_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                sig = signals::next(signals) => match sig {
                    Signal::Quit => {
                        info!("SIGQUIT received: no new jobs will be requested; waiting for running jobs to finish");
                        break true;
                    }
                    Signal::Terminate => { warn!("SIGTERM received: aborting running jobs"); break false; }
                    Signal::Interrupt => { warn!("SIGINT received: aborting running jobs"); break false; }
                    Signal::Reload => {
                        info!("SIGHUP received: reloading the configuration");
                        self.reload(&mut config, &mut mtime, true).await;
                    }
                },
                _ = check.tick() => {
                    if self.opts.single.is_none() {
                        self.reload(&mut config, &mut mtime, false).await;
                    }
                    if let Some((max, _)) = single
                        && max > 0
                        && self.received.load(std::sync::atomic::Ordering::SeqCst) >= max
                    {
                        info!(max_builds = max, "reached --max-builds; finishing");
                        break true;
                    }
                }
                () = self.activity.notified() => {
                    if let Some((_, w)) = single.filter(|(_, w)| !w.is_zero()) {
                        idle_deadline = Some(tokio::time::Instant::now() + w);
                    }
                }
                () = idle => {
                    info!("no job within --wait-timeout; finishing");
                    break true;
                }
            }
        };

        self.stop_polling.cancel();
        self.tracker.close();
        if graceful {
            // A second SIGQUIT (or a SIGHUP) changes nothing; SIGTERM/SIGINT turn the wait into a forceful shutdown.
            loop {
                tokio::select! {
                    () = self.tracker.wait() => break,
                    sig = signals::next(signals) => {
                        if matches!(sig, Signal::Terminate | Signal::Interrupt) {
                            return Ok(self.force_or_exit(&config, signals).await);
                        }
                    }
                }
            }
            info!("all jobs finished; exiting");
            Ok(ExitCode::SUCCESS)
        } else {
            Ok(self.force_or_exit(&config, signals).await)
        }
    }

    /// [`Daemon::force`], cut short by a further SIGTERM/SIGINT, which exits at once.
    async fn force_or_exit(&self, config: &Config, signals: &mut Signals) -> ExitCode {
        let force = self.force(config);
        tokio::pin!(force);
        loop {
            tokio::select! {
                code = &mut force => return code,
                sig = signals::next(signals) => {
                    if matches!(sig, Signal::Terminate | Signal::Interrupt) {
                        error!("second signal: exiting now");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }

    /// Aborts running jobs (they report `failed`, reason runner_interrupted) and waits at most `shutdown_timeout`.
    async fn force(&self, config: &Config) -> ExitCode {
        self.abort_all.cancel();
        let timeout = self
            .opts
            .single
            .as_ref()
            .map(|s| s.shutdown_timeout)
            .filter(|t| !t.is_zero())
            .unwrap_or_else(|| config.shutdown_timeout());
        match tokio::time::timeout(timeout, self.tracker.wait()).await {
            Ok(()) => {
                info!("running jobs were aborted and reported; exiting");
                ExitCode::SUCCESS
            }
            Err(_) => {
                error!(
                    timeout_s = timeout.as_secs(),
                    "jobs did not finish within shutdown_timeout; exiting anyway"
                );
                ExitCode::FAILURE
            }
        }
    }

    fn load(&self) -> anyhow::Result<(Config, Option<SystemTime>)> {
        if let Some(single) = &self.opts.single {
            let config = Config {
                concurrent: 1,
                runners: vec![single.runner.clone()],
                ..Config::default()
            };
            return Ok((config, None));
        }
        let path = &self.opts.config_path;
        if !path.exists() {
            // The seed starts the runner container before `register` writes the file: wait for it.
            warn!(config = %path.display(), "config file does not exist yet; waiting for a runner to be registered");
            return Ok((
                Config {
                    concurrent: 1,
                    ..Config::default()
                },
                None,
            ));
        }
        let loaded = oxrunner_config::load(path)?;
        self.metrics.config_loaded(true);
        for w in &loaded.warnings {
            warn!("{w}");
        }
        Ok((loaded.config, mtime(path)))
    }

    async fn reload(&mut self, config: &mut Config, last: &mut Option<SystemTime>, forced: bool) {
        if self.opts.single.is_some() {
            return;
        }
        let now = mtime(&self.opts.config_path);
        if !forced && now == *last {
            return;
        }
        match self.load() {
            Ok((c, m)) => {
                *last = m;
                self.sessions(&c).await;
                self.apply(&c);
                let address = metrics::server::listen_address(self.opts.listen_address.as_deref(), &c);
                if address != self.metrics_address {
                    // gitlab-runner binds its metrics listener once, at start; so does oxrunner.
                    warn!(
                        listen_address = address.as_deref().unwrap_or(""),
                        serving = self.metrics_address.as_deref().unwrap_or(""),
                        "listen_address changed; the metrics server keeps its address until oxrunner is restarted"
                    );
                }
                *config = c;
                info!(
                    concurrent = self.concurrent,
                    runners = self.running.len(),
                    "configuration loaded"
                );
            }
            Err(err) => {
                // A broken edit must not stop the service: keep the previous configuration.
                *last = now;
                self.metrics.config_loaded(false);
                error!("configuration not reloaded, keeping the previous one: {err:#}");
            }
        }
    }

    /// Starts the web terminal server the first time a configuration asks for one (a config written after the
    /// start, by `register`, counts); a later change is named in a warning, as it needs a restart.
    async fn sessions(&mut self, config: &Config) {
        if self.opts.single.is_some() {
            return;
        }
        let wanted = config.session_server.clone();
        match &self.session_section {
            None => {
                self.session_server = session::start(config, &config_dir(&self.opts.config_path)).await;
                if self.session_server.is_some() {
                    self.session_section = Some(wanted);
                    // Request loops started without the server restart with it, so their requests offer sessions
                    // (running jobs are untouched).
                    for running in self.running.values() {
                        running.stop.cancel();
                    }
                    self.running.clear();
                }
            }
            Some(running) if *running != wanted => {
                warn!(
                    "[session_server] changed: the web terminal keeps its previous settings until oxrunner restarts"
                );
            }
            Some(_) => {}
        }
    }

    /// Brings the request loops and the global semaphore in line with `config`; running jobs are untouched.
    fn apply(&mut self, config: &Config) {
        crate::logging::apply_config(config.log_level.as_deref(), config.log_format.as_deref());
        for w in unsupported::global(config) {
            warn!("{w}");
        }
        if let Some(w) = longpoll::warning(config) {
            warn!("{w}");
        }
        let wanted = usize::try_from(config.concurrent.max(1)).unwrap_or(1);
        if wanted > self.concurrent {
            self.global.add_permits(wanted - self.concurrent);
        } else if wanted < self.concurrent {
            let excess = u32::try_from(self.concurrent - wanted).unwrap_or(u32::MAX);
            let sem = Arc::clone(&self.global);
            // Taking the excess permits as jobs finish shrinks capacity without touching running jobs.
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(excess).await {
                    p.forget();
                }
            });
        }
        self.concurrent = wanted;
        self.metrics.set_concurrent(wanted);

        let runners: Vec<&RunnerConfig> = config
            .runners
            .iter()
            .filter(|r| !r.token.expose().is_empty())
            .collect();
        let keep: HashMap<String, &RunnerConfig> = runners
            .iter()
            .map(|r| (r.token.expose().to_string(), *r))
            .collect();
        let max_age = config.connection_max_age();
        self.running.retain(|token, running| {
            let same = keep.get(token).is_some_and(|r| **r == running.runner);
            if same {
                // A global key: the runner's section is unchanged, so the runner is kept, with the new age.
                running.client.set_connection_max_age(max_age);
            } else {
                running.stop.cancel();
            }
            same
        });
        self.metrics.set_runners(&runners);
        let count = u32::try_from(runners.len().max(1)).unwrap_or(1);
        for (i, runner) in runners.iter().enumerate() {
            let token = runner.token.expose().to_string();
            if self.running.contains_key(&token) {
                continue;
            }
            if !crate::executors::supported(&runner.executor_kind()) {
                error!(
                    runner = %runner.short_token(),
                    executor = %runner.executor,
                    "executor is not supported by this oxrunner build; this runner will not request jobs (supported: {})",
                    crate::executors::supported_names()
                );
                continue;
            }
            for w in unsupported::runner(runner) {
                warn!("{w}");
            }
            let stop = self.stop_polling.child_token();
            match self.start_runner(runner, config, &stop, i, count) {
                Ok(client) => {
                    self.running.insert(
                        token,
                        Running {
                            runner: (*runner).clone(),
                            stop,
                            client,
                        },
                    );
                }
                Err(err) => error!(runner = %runner.short_token(), "runner not started: {err:#}"),
            }
        }
    }

    fn start_runner(
        &mut self,
        runner: &RunnerConfig,
        config: &Config,
        stop: &CancellationToken,
        index: usize,
        count: u32,
    ) -> anyhow::Result<oxrunner_api::Client> {
        let client = crate::runner::client_for_runner(runner, &self.opts.config_path)?;
        client.set_connection_max_age(config.connection_max_age());
        client.observe(Arc::new(self.metrics.api_observer(&runner.short_token())));
        let mut info = crate::runner::runner_info(&runner.executor_kind(), runner.shell.as_deref());
        let session_server = self
            .session_server
            .clone()
            .filter(|_| crate::executors::offers_terminal(&runner.executor_kind()));
        session::advertise(&mut info, session_server.is_some());
        info.labels = runner.computed_labels(&config.labels);
        let runner_arc = Arc::new(runner.clone());
        let env = JobEnv {
            client: client.clone(),
            runner: Arc::clone(&runner_arc),
            system_id: self.system_id.clone(),
            info,
            slots: self.slots.clone(),
            user: self.opts.user.clone().or_else(|| config.user.clone()),
            abort_all: self.abort_all.clone(),
            spool_dir: self.spool_dir.clone(),
            state_dir: config_dir(&self.opts.config_path),
            session_server,
            metrics: Arc::clone(&self.metrics),
        };
        let check_interval = config.check_interval();
        let state = Arc::new(RunnerState {
            env,
            limit: runner.limit().map(|l| Arc::new(Semaphore::new(l as usize))),
            check_interval,
            strict_check_interval: runner.strict_check_interval.unwrap_or(false),
            unhealthy: AtomicU32::new(0),
            unhealthy_limit: runner.unhealthy_requests_limit().max(1),
            unhealthy_interval: runner.unhealthy_interval(),
            received: Arc::clone(&self.received),
            max_builds: self.opts.single.as_ref().map_or(0, |s| s.max_builds),
        });
        // Spread the runners' first requests over the check interval, as gitlab-runner's feeder does.
        let initial_delay =
            check_interval.mul_f64(f64::from(u32::try_from(index).unwrap_or(0)) / f64::from(count));
        let pollers: Vec<Poller> = (0..runner.request_concurrency().max(1))
            .map(|_| Poller {
                state: Arc::clone(&state),
                global: Arc::clone(&self.global),
                tracker: self.tracker.clone(),
                stop: stop.clone(),
                initial_delay,
                activity: Arc::clone(&self.activity),
            })
            .collect();
        // A runner first finishes the jobs a killed run of it left (stale.rs) and, with Docker, removes the objects
        // it left. Only once per process and before its first request: later (on reload) its own jobs may run.
        let first = self.swept.insert(runner.token.expose().to_string());
        let sweep = first && runner.executor_kind() == oxrunner_config::ExecutorKind::Docker;
        let docker_config = runner.docker.clone().unwrap_or_default();
        let short = runner.short_token();
        let recover = first.then(|| (client.clone(), runner.clone(), config_dir(&self.opts.config_path)));
        let mut runner_info = crate::runner::runner_info(&runner.executor_kind(), runner.shell.as_deref());
        runner_info.labels = runner.computed_labels(&config.labels);
        tokio::spawn(async move {
            if let Some((client, runner, state_dir)) = recover {
                stale::recover(&state_dir, &client, &runner, &runner_info).await;
            }
            if sweep {
                docker_leftovers::sweep(&docker_config, &short).await;
            }
            for poller in pollers {
                tokio::spawn(poller.run());
            }
        });
        if self.opts.single.is_none() {
            tokio::spawn(tokens::rotate(
                client.clone(),
                self.opts.config_path.clone(),
                runner_arc,
                stop.clone(),
                Arc::clone(&self.metrics),
            ));
        }
        Ok(client)
    }
}

impl Daemon {
    /// Starts the metrics server when an address is configured (flag first); a bind failure stops the start.
    async fn start_metrics(&mut self, config: &Config) -> anyhow::Result<()> {
        let Some(address) = metrics::server::listen_address(self.opts.listen_address.as_deref(), config)
        else {
            info!("listen_address not defined, metrics & debug endpoints disabled");
            return Ok(());
        };
        metrics::server::start(&address, Arc::clone(&self.metrics), self.metrics_stop.clone()).await?;
        self.metrics_address = Some(address);
        Ok(())
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn config_dir(path: &Path) -> PathBuf {
    crate::runner::config_dir(path)
}
