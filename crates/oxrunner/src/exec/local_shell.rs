//! The shell executor as `oxrunner exec` uses it: exec hands every job attempt a freshly made copy of the
//! repository, so the executor can promise the driver a fresh build directory (`EnvironmentFacts`), as the Docker
//! executor does for a new volume. The driver then prints `Running on …` and `Skipping Git repository setup`
//! itself and leaves out the predefined scripts that would only do that (and the clean-up of a temporary directory
//! this wrapper removes itself): three fewer bash processes and their `mkdir`, `rm` and `hostname` per job.
//! Everything else is the daemon's shell executor, unchanged; scripts still run wherever they could do more
//! (hooks, tracing, another git strategy).

use std::path::PathBuf;
use std::sync::Arc;

use oxrunner_core::{
    CancellationToken, EnvironmentFacts, ExecError, Executor, ExitStatus, FileAccess, JobFiles, JobPlan,
    JobSettings, RunnerContext, SourceOrigin, StageCommand, TraceWriter, Variables,
};

use crate::hooks::BoxFuture;

pub struct LocalShell {
    inner: Box<dyn Executor>,
    facts: EnvironmentFacts,
    tmp: Option<PathBuf>,
}

impl LocalShell {
    pub fn new(inner: Box<dyn Executor>) -> LocalShell {
        LocalShell {
            inner,
            facts: EnvironmentFacts::default(),
            tmp: None,
        }
    }
}

/// The name `$(hostname)` prints (the kernel's node name); `None` leaves the line to the script.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Makes `<project>.tmp` empty and private. Only a directory exec itself made the project copy for qualifies.
async fn fresh_tmp(plan: &JobPlan) -> Option<PathBuf> {
    let SourceOrigin::LocalDir(dir) = &plan.sources.origin else {
        return None;
    };
    if !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let tmp = oxrunner_core::tmp_dir(dir);
    // `remove_dir_all` removes a link planted at this path, never what it points to.
    match tokio::fs::remove_dir_all(&tmp).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let mut builder = tokio::fs::DirBuilder::new();
    builder.mode(0o700);
    builder.create(&tmp).await.ok()?;
    Some(tmp)
}

impl Executor for LocalShell {
    fn configure<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        ctx: &'a RunnerContext,
        vars: &'a Variables,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<JobSettings, ExecError>> {
        self.inner.configure(plan, ctx, vars, trace)
    }

    fn job_variables(&mut self, vars: &Variables) {
        self.inner.job_variables(vars);
    }

    fn prepare<'a>(
        &'a mut self,
        plan: &'a JobPlan,
        trace: &'a TraceWriter,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.inner.prepare(plan, trace).await?;
            self.tmp = fresh_tmp(plan).await;
            if self.tmp.is_some() {
                self.facts = EnvironmentFacts {
                    fresh_build_dir: true,
                    tmp_dir_dies_with_job: true,
                    hostname: hostname(),
                };
            }
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        cmd: StageCommand,
        trace: &'a TraceWriter,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        self.inner.run(cmd, trace, cancel)
    }

    fn cleanup(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.cleanup().await;
            // The promise of `tmp_dir_dies_with_job`: file variables and credentials go with the job.
            if let Some(tmp) = self.tmp.take() {
                let _ = tokio::fs::remove_dir_all(&tmp).await;
            }
        })
    }

    fn stop_job_processes(&mut self) -> BoxFuture<'_, ()> {
        self.inner.stop_job_processes()
    }

    fn finish_cleanup(&mut self) -> BoxFuture<'_, ()> {
        self.inner.finish_cleanup()
    }

    fn files(&self) -> Option<Arc<dyn JobFiles>> {
        self.inner.files()
    }

    fn file_access(&self) -> FileAccess {
        self.inner.file_access()
    }

    fn environment(&self) -> EnvironmentFacts {
        self.facts.clone()
    }
}
