//! The custom executor: `config_exec` (may move the builds and cache dirs), `prepare_exec`, one
//! `run_exec <args> <script> <stage>` per stage script, `cleanup_exec`. It knows nothing of what a stage means: the
//! script comes from the driver and the stage name is only passed on.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use oxrunner_core::{
    ExecError, Executor, ExitStatus, FailureReason, ImageSpec, JobPlan, JobProcesses, JobSettings,
    RunnerContext, StageCommand, TraceWriter, Variables,
};
use tokio_util::sync::CancellationToken;

use crate::call::{
    BUILD_FAILURE_EXIT_CODE, BackgroundStops, Call, KillTimeouts, Out, SYSTEM_FAILURE_EXIT_CODE, Stopped,
    Verdict, verdict,
};
use crate::config_output::ConfigOutput;
use crate::settings::{CustomSettings, Program};

/// Runs each stage through the configured driver programs.
pub struct CustomExecutor {
    settings: CustomSettings,
    /// The job payload as GitLab sent it, written to `$JOB_RESPONSE_FILE` for the driver.
    job_response: Option<Vec<u8>>,
    procs: Option<JobProcesses>,
    /// Dropped driver calls (config_exec, prepare_exec) still being stopped; cleanup_exec waits for them.
    stops: BackgroundStops,
    /// Private directory of this job: scripts, the exit-code file, the payload; the drivers' `TMPDIR`.
    temp: Option<tempfile::TempDir>,
    /// `job_env` from config_exec.
    job_env: Vec<(String, String)>,
    /// `CUSTOM_ENV_*` and `CI_JOB_SERVICES` for the driver calls.
    custom_env: Vec<(String, String)>,
    /// The job's services, for `CUSTOM_ENV_CI_JOB_SERVICES`.
    services: Vec<ImageSpec>,
}

impl std::fmt::Debug for CustomExecutor {
    // The environment holds the job's secrets: only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomExecutor")
            .field("settings", &self.settings)
            .field("temp", &self.temp.as_ref().map(tempfile::TempDir::path))
            .field("custom_env", &self.custom_env.len())
            .finish_non_exhaustive()
    }
}

impl CustomExecutor {
    /// An executor for one job.
    pub fn new(settings: CustomSettings) -> Self {
        Self {
            settings,
            job_response: None,
            procs: None,
            stops: BackgroundStops::default(),
            temp: None,
            job_env: Vec::new(),
            custom_env: Vec::new(),
            services: Vec::new(),
        }
    }

    /// The job payload (JSON) to hand to the driver as `$JOB_RESPONSE_FILE`.
    pub fn with_job_response(mut self, json: Vec<u8>) -> Self {
        self.job_response = Some(json);
        self
    }

    /// Tracks the driver programs with `procs` (stopped with the job, found again after a runner crash).
    pub fn with_processes(mut self, procs: JobProcesses) -> Self {
        self.procs = Some(procs);
        self
    }

    fn temp_dir(&self) -> Result<&Path, ExecError> {
        self.temp
            .as_ref()
            .map(tempfile::TempDir::path)
            .ok_or_else(|| ExecError::Other("the custom executor was not configured".into()))
    }

    /// Creates the job's private directory (0700) and writes the payload file.
    fn make_temp(&mut self) -> Result<(), ExecError> {
        if self.temp.is_some() {
            return Ok(());
        }
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| ExecError::Io { context, source }
        };
        let temp = tempfile::Builder::new()
            .prefix("custom-executor")
            .permissions(private_dir())
            .tempdir()
            .map_err(io("creating the custom executor's temporary directory"))?;
        if let Some(json) = &self.job_response {
            write_private(&temp.path().join("response.json"), json, 0o600)
                .map_err(io("writing the job response file"))?;
        }
        self.temp = Some(temp);
        Ok(())
    }

    /// The variables every driver call gets on top of the runner's environment, in gitlab-runner's order.
    fn env(&self) -> Result<Vec<(String, String)>, ExecError> {
        let temp = self.temp_dir()?;
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut env = vec![
            ("TMPDIR".to_owned(), path(temp.to_path_buf())),
            (
                "BUILD_FAILURE_EXIT_CODE".to_owned(),
                BUILD_FAILURE_EXIT_CODE.to_string(),
            ),
            (
                "SYSTEM_FAILURE_EXIT_CODE".to_owned(),
                SYSTEM_FAILURE_EXIT_CODE.to_string(),
            ),
            (
                "BUILD_EXIT_CODE_FILE".to_owned(),
                path(temp.join("build_exit_code")),
            ),
        ];
        if self.job_response.is_some() {
            env.push(("JOB_RESPONSE_FILE".to_owned(), path(temp.join("response.json"))));
        }
        // job_env first, so CI/CD variables (CUSTOM_ENV_*) are not overwritten by it.
        env.extend(self.job_env.iter().cloned());
        env.extend(self.custom_env.iter().cloned());
        Ok(env)
    }

    fn kill(&self) -> KillTimeouts {
        KillTimeouts {
            graceful: self.settings.graceful_kill,
            force: self.settings.force_kill,
        }
    }

    /// Calls a driver program outside `run` (config, prepare, cleanup) and maps its end to an error.
    async fn call_program(
        &self,
        what: &str,
        program: &Program,
        timeout: std::time::Duration,
        stdout: Out<'_>,
        stderr: Out<'_>,
    ) -> Result<crate::call::Finished, ExecError> {
        let env = self.env()?;
        let dir = self.temp_dir()?;
        self.clear_exit_code_file()?;
        let done = Call {
            what,
            program: &program.exec,
            args: &program.args,
            env: &env,
            dir,
            stdout,
            stderr,
            timeout: Some(timeout),
            cancel: CancellationToken::new(),
            kill: self.kill(),
            procs: self.procs.as_ref(),
            stops: Some(&self.stops),
        }
        .run()
        .await?;
        if let Some(Stopped::TimedOut(t)) = done.stopped {
            return Err(ExecError::Other(format!(
                "{what} `{}` did not finish within {}s and was stopped\nhint: raise [runners.custom] {what}_timeout \
                 or find out why the driver hangs",
                program.exec,
                t.as_secs()
            )));
        }
        match verdict(done.status, self.exit_code_file().as_deref()) {
            Verdict::Success => Ok(done),
            Verdict::BuildFailure(code) => Err(ExecError::Build {
                reason: FailureReason::ScriptFailure,
                message: format!("{what} `{}` failed: exit status {code}", program.exec),
            }),
            Verdict::SystemFailure(why) => Err(ExecError::Other(format!(
                "{what} `{}` failed: {why}",
                program.exec
            ))),
        }
    }

    fn exit_code_path(&self) -> Option<PathBuf> {
        Some(self.temp.as_ref()?.path().join("build_exit_code"))
    }

    /// Removes the exit-code file before a driver call, so a code recorded by an earlier call can never stand for
    /// this one's failure.
    fn clear_exit_code_file(&self) -> Result<(), ExecError> {
        let Some(path) = self.exit_code_path() else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ExecError::Io {
                context: format!("removing the exit-code file {}", path.display()),
                source: err,
            }),
            _ => Ok(()),
        }
    }

    fn exit_code_file(&self) -> Option<String> {
        read_first_line(&self.exit_code_path()?)
    }

    async fn configure_job(
        &mut self,
        plan: &JobPlan,
        ctx: &RunnerContext,
        vars: &Variables,
        trace: &TraceWriter,
    ) -> Result<JobSettings, ExecError> {
        if self.settings.run.exec.is_empty() {
            return Err(ExecError::Build {
                reason: FailureReason::RunnerConfigurationError,
                message: "custom executor is missing RunExec\nhint: set run_exec in [runners.custom]".into(),
            });
        }
        self.make_temp()?;
        self.services.clone_from(&plan.services);
        self.custom_env = custom_env(&self.services, vars);
        let output = match self.settings.config.clone() {
            None => ConfigOutput::default(),
            Some(program) => {
                let timeout = self.settings.config_timeout;
                let done = self
                    .call_program("config_exec", &program, timeout, Out::Capture, Out::Trace(trace))
                    .await?;
                ConfigOutput::parse(&done.stdout).map_err(|message| ExecError::Build {
                    reason: FailureReason::RunnerSystemFailure,
                    message,
                })?
            }
        };
        trace.println(&output.usage_line());
        if let Some(shell) = output.shell.as_deref().filter(|s| !matches!(*s, "bash" | "sh")) {
            trace.warning(&format!(
                "config_exec asked for shell \"{shell}\": only bash scripts are generated"
            ));
        }
        if let Some(env) = &output.job_env {
            self.job_env = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        let builds_dir = output.builds_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        if builds_dir.is_none() && ctx.builds_dir.as_os_str().is_empty() {
            return Err(ExecError::Build {
                reason: FailureReason::RunnerConfigurationError,
                message: "the builds_dir is not configured\nhint: set builds_dir in [[runners]] or print \
                          {\"builds_dir\": \"...\"} from config_exec"
                    .into(),
            });
        }
        Ok(JobSettings {
            builds_dir,
            cache_dir: output.cache_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
            shared_builds_dir: output.builds_dir_is_shared,
            hostname: output.hostname,
        })
    }

    async fn run_stage(
        &mut self,
        cmd: StageCommand,
        trace: &TraceWriter,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, ExecError> {
        let temp = self.temp_dir()?;
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| ExecError::Io { context, source }
        };
        // One private directory per stage: the script holds the job's secrets.
        let script_dir = tempfile::Builder::new()
            .prefix("script")
            .permissions(private_dir())
            .tempdir_in(temp)
            .map_err(io("creating the stage script directory"))?;
        let script = script_dir.path().join("script");
        write_private(&script, cmd.script.as_bytes(), 0o700).map_err(io("writing the stage script"))?;
        let mut stage = cmd.stage.name().into_owned();
        if stage == "step_script" {
            // Drivers written for gitlab-runner know the user script's stage by its legacy name.
            trace.warning(
                "run_exec gets the stage name 'build_script' for 'step_script' (the legacy name drivers expect; \
                 see https://gitlab.com/groups/gitlab-org/-/epics/6112)",
            );
            "build_script".clone_into(&mut stage);
        }
        let mut args = self.settings.run.args.clone();
        args.push(script.to_string_lossy().into_owned());
        args.push(stage);
        let env = self.env()?;
        self.clear_exit_code_file()?;
        let done = Call {
            what: "run_exec",
            program: &self.settings.run.exec,
            args: &args,
            env: &env,
            dir: temp,
            stdout: Out::Trace(trace),
            stderr: Out::Trace(trace),
            timeout: None,
            cancel,
            kill: self.kill(),
            procs: self.procs.as_ref(),
            stops: Some(&self.stops),
        }
        .run()
        .await?;
        drop(script_dir);
        if done.stopped.is_some() {
            // The driver decides what a stopped stage means; the status only has to be a failure.
            return Ok(done.status);
        }
        match verdict(done.status, self.exit_code_file().as_deref()) {
            Verdict::Success => Ok(ExitStatus::Code(0)),
            // The driver said the stage failed; a code file saying 0 does not turn that into a success (upstream
            // reports a build error "exit status 0").
            Verdict::BuildFailure(0) => Err(ExecError::Build {
                reason: FailureReason::ScriptFailure,
                message: "run_exec failed: exit status 0 ($BUILD_EXIT_CODE_FILE says 0, but the driver exited with \
                          $BUILD_FAILURE_EXIT_CODE)"
                    .into(),
            }),
            Verdict::BuildFailure(code) => Ok(ExitStatus::Code(code)),
            Verdict::SystemFailure(why) => Err(ExecError::Other(format!("run_exec failed: {why}"))),
        }
    }

    async fn cleanup_job(&mut self) {
        // As upstream, cleanup_exec starts only once a stopped prepare_exec has ended.
        self.stops.wait().await;
        if let (Some(program), Some(_)) = (self.settings.cleanup.clone(), &self.temp) {
            let timeout = self.settings.cleanup_timeout;
            match self
                .call_program("cleanup_exec", &program, timeout, Out::Capture, Out::Capture)
                .await
            {
                Ok(done) => {
                    log_output("cleanup_exec stdout", &done.stdout, false);
                    log_output("cleanup_exec stderr", &done.stderr, true);
                }
                Err(err) => tracing::warn!(error = %err, "Cleanup script failed"),
            }
        }
        if let Some(procs) = &self.procs {
            procs.finish().await;
        }
        if let Some(temp) = self.temp.take()
            && let Err(err) = temp.close()
        {
            tracing::warn!(error = %err, "removing the custom executor's temporary directory failed");
        }
    }
}

/// Longest first line of `$BUILD_EXIT_CODE_FILE` that is read (upstream's line scanner also gives up on long
/// lines); a longer one counts as unreadable.
const EXIT_CODE_LINE_LIMIT: usize = 4096;

/// The first line of the exit-code file, read with a bound, without following a link and without blocking on a
/// FIFO. `Some("")` for a line too long; `None` when there is no file.
fn read_first_line(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        // Present but unreadable (a link, a directory): not a number.
        Err(_) => return Some(String::new()),
    };
    let mut buf = Vec::with_capacity(EXIT_CODE_LINE_LIMIT + 1);
    if file
        .take(EXIT_CODE_LINE_LIMIT as u64 + 1)
        .read_to_end(&mut buf)
        .is_err()
    {
        return Some(String::new());
    }
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => &buf[..end],
        None if buf.len() > EXIT_CODE_LINE_LIMIT => return Some(String::new()),
        None => &buf[..],
    };
    Some(String::from_utf8_lossy(line).into_owned())
}

fn log_output(what: &str, bytes: &[u8], warn: bool) {
    for line in String::from_utf8_lossy(bytes).lines().filter(|l| !l.is_empty()) {
        if warn {
            tracing::warn!("{what}: {line}");
        } else {
            tracing::debug!("{what}: {line}");
        }
    }
}

/// Mode 0700: the directories hold the job's scripts (with its secrets) and payload (with its token); tempfile
/// otherwise leaves the mode to the umask.
fn private_dir() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o700)
}

/// Writes a new file only the runner's user can read (never following a link at `path`).
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `CUSTOM_ENV_<key>` for every job variable, and `CUSTOM_ENV_CI_JOB_SERVICES` (JSON of the job's services).
/// Variables an environment cannot carry (a NUL byte, `=` in the name) are left out.
fn custom_env(services: &[ImageSpec], vars: &Variables) -> Vec<(String, String)> {
    let services: Vec<serde_json::Value> = services
        .iter()
        .map(|s| {
            let variables: serde_json::Map<String, serde_json::Value> = s
                .variables
                .iter()
                .map(|v| (v.key.clone(), vars.expand(&v.value).into()))
                .collect();
            let mut svc = serde_json::json!({
                "name": s.name,
                "alias": s.aliases.first().cloned().unwrap_or_default(),
                "entrypoint": s.entrypoint,
                "command": s.command,
            });
            if !variables.is_empty() {
                svc["variables"] = variables.into();
            }
            svc
        })
        .collect();
    let services = if services.is_empty() {
        String::new()
    } else {
        serde_json::Value::from(services).to_string()
    };
    vars.iter()
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .chain([("CI_JOB_SERVICES", services.as_str())])
        .filter(|(k, v)| !k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'))
        .map(|(k, v)| (format!("CUSTOM_ENV_{k}"), v.to_owned()))
        .collect()
}

impl Executor for CustomExecutor {
    fn configure<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        ctx: &'a RunnerContext,
        vars: &'a Variables,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<JobSettings, ExecError>> {
        Box::pin(self.configure_job(plan, ctx, vars, trace))
    }

    fn job_variables(&mut self, vars: &Variables) {
        // The values may have moved with the builds dir that `configure` reported (CI_PROJECT_DIR, ...).
        self.custom_env = custom_env(&self.services, vars);
    }

    fn prepare<'a>(
        &'a mut self,
        _plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let Some(program) = self.settings.prepare.clone() else {
                return Ok(());
            };
            let timeout = self.settings.prepare_timeout;
            self.call_program(
                "prepare_exec",
                &program,
                timeout,
                Out::Trace(trace),
                Out::Trace(trace),
            )
            .await
            .map(drop)
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(self.run_stage(cmd, trace, cancel))
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.cleanup_job())
    }

    /// A custom driver's environment (a VM, a remote host) is opaque to the runner: as upstream, the stage scripts
    /// move caches and artifacts themselves through the runner binary's helper commands.
    fn file_access(&self) -> oxrunner_core::FileAccess {
        oxrunner_core::FileAccess::InScript
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
