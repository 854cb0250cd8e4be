//! Hooks for executors whose job files are not on the runner's file system (the Docker build volume).
//!
//! Cache and artifact code works on a local directory. For such executors the driver stages the files: before an
//! archive or upload, the paths the specs name are pulled out of the job into a scratch copy of the project; after
//! a restore or download, what the hook unpacked into an empty scratch project is pushed into the job. Only the
//! named paths travel, so a large checkout is not copied out for a small artifact.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::error::{ExecError, HookError};
use crate::executor::{JobFiles, JobHooks, Stage, StageCtx, call_hook};
use crate::outcome::FailureReason;
use crate::trace::TraceWriter;
use crate::variables::{Variable, Variables};

/// What to pull before a hook: nothing, some project-relative paths, or the whole project (untracked files need
/// git's view of the tree, globs at the top level could match anything).
#[derive(Debug, PartialEq, Eq)]
enum Pull {
    Nothing,
    Paths(BTreeSet<PathBuf>),
    Everything,
}

/// The literal leading directories of a pattern, relative to the project (`out/**/*.log` → `out`); `None` when
/// the pattern can match at the top level or leaves the project.
fn literal_prefix(project_dir: &Path, pattern: &str) -> Option<PathBuf> {
    let pattern = pattern.trim();
    let rel = match Path::new(pattern).strip_prefix(project_dir) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) if Path::new(pattern).is_absolute() => return Some(PathBuf::new()),
        Err(_) => PathBuf::from(pattern),
    };
    let mut prefix = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => {
                let s = part.to_string_lossy();
                if s.contains(['*', '?', '[', '{', '\\']) {
                    break;
                }
                prefix.push(part);
            }
            Component::CurDir => {}
            // `..` leaves the project: the hook warns about it, nothing needs pulling.
            _ => return Some(PathBuf::new()),
        }
    }
    if prefix.as_os_str().is_empty() {
        None
    } else {
        Some(prefix)
    }
}

fn plan_pull(ctx: &StageCtx<'_>, patterns: &[String], untracked: bool) -> Pull {
    if untracked {
        return Pull::Everything;
    }
    let mut set = BTreeSet::new();
    for raw in patterns {
        let pattern = ctx.variables.expand(raw);
        match literal_prefix(&ctx.project_dir, &pattern) {
            None => return Pull::Everything,
            Some(p) if p.as_os_str().is_empty() => {}
            Some(p) => {
                set.insert(p);
            }
        }
    }
    // A path inside another pulled path comes with it.
    let kept: BTreeSet<PathBuf> = set
        .iter()
        .filter(|p| !set.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect();
    if kept.is_empty() {
        Pull::Nothing
    } else {
        Pull::Paths(kept)
    }
}

fn pull_for(ctx: &StageCtx<'_>, on_failure: bool) -> Pull {
    let mut patterns = Vec::new();
    let mut untracked = false;
    match ctx.stage {
        Stage::ArchiveCache | Stage::ArchiveCacheOnFailure => {
            for c in ctx.plan.caches.iter().filter(|c| c.when.applies(on_failure)) {
                patterns.extend(c.paths.iter().cloned());
                untracked |= c.untracked;
            }
        }
        _ => {
            for a in ctx.plan.artifacts.iter().filter(|a| a.when.applies(on_failure)) {
                patterns.extend(a.paths.iter().cloned());
                untracked |= a.untracked;
            }
        }
    }
    plan_pull(ctx, &patterns, untracked)
}

fn system(message: String) -> HookError {
    HookError::with_reason(FailureReason::RunnerSystemFailure, message)
}

fn exec_err(what: &str, err: &ExecError) -> HookError {
    system(format!("{what}: {err}"))
}

/// Variables with the project and temporary directories pointing at the scratch copy, so `$CI_PROJECT_DIR/...`
/// paths in specs resolve inside it.
fn local_variables(vars: &Variables, project: &Path, tmp: &Path) -> Variables {
    let mut local = vars.clone();
    local.push(Variable::new("CI_PROJECT_DIR", project.display().to_string()));
    local.push(Variable::new(
        "RUNNER_TEMP_PROJECT_DIR",
        tmp.display().to_string(),
    ));
    local
}

/// Runs the hook of `ctx.stage` against a scratch copy of the project, moving files through `files`.
pub(super) async fn staged_hook(
    hooks: &dyn JobHooks,
    files: &dyn JobFiles,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
) -> Result<(), HookError> {
    let scratch = tempfile::Builder::new()
        .prefix("oxrunner-files-")
        .tempdir()
        .map_err(|e| {
            system(format!(
                "cannot create a scratch directory for the job's files: {e}"
            ))
        })?;
    let tmp = scratch.path().join("tmp");
    let mut project = scratch.path().join("project");
    let io = |what: &str, p: &Path, e: std::io::Error| system(format!("{what} {}: {e}", p.display()));
    std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;

    let pulls = match ctx.stage {
        Stage::ArchiveCache => Some(pull_for(ctx, false)),
        Stage::ArchiveCacheOnFailure => Some(pull_for(ctx, true)),
        Stage::UploadArtifactsOnSuccess => Some(pull_for(ctx, false)),
        Stage::UploadArtifactsOnFailure => Some(pull_for(ctx, true)),
        _ => None,
    };
    match &pulls {
        Some(Pull::Everything) => {
            let holder = scratch.path().join("whole");
            std::fs::create_dir_all(&holder).map_err(|e| io("cannot create", &holder, e))?;
            files
                .pull(&ctx.project_dir, &holder)
                .await
                .map_err(|e| exec_err("copying the project out of the job", &e))?;
            let name = ctx.project_dir.file_name().map(PathBuf::from).unwrap_or_default();
            let pulled = holder.join(name);
            // The job may have replaced its project directory with a link (`p -> /etc`), which the copy
            // brings out as a link: following it would make root archive host files. Only a real directory
            // is the project; `lstat` is enough because the scratch directory is private to the runner
            // (0700) and nothing changes it after the unpack, and the hooks reach everything below it through
            // handles that never follow a link out of it.
            match std::fs::symlink_metadata(&pulled) {
                Ok(m) if m.is_dir() => project = pulled,
                found => {
                    if found.is_ok() {
                        trace.warning(&format!(
                            "{} is not a directory in the job (a link?): nothing of it is collected",
                            ctx.project_dir.display()
                        ));
                    }
                    std::fs::create_dir_all(&project).map_err(|e| io("cannot create", &project, e))?;
                }
            }
        }
        Some(Pull::Paths(paths)) => {
            std::fs::create_dir_all(&project).map_err(|e| io("cannot create", &project, e))?;
            for rel in paths {
                let parent = rel
                    .parent()
                    .map(|p| project.join(p))
                    .unwrap_or_else(|| project.clone());
                std::fs::create_dir_all(&parent).map_err(|e| io("cannot create", &parent, e))?;
                files
                    .pull(&ctx.project_dir.join(rel), &parent)
                    .await
                    .map_err(|e| exec_err(&format!("copying {} out of the job", rel.display()), &e))?;
            }
        }
        Some(Pull::Nothing) | None => {
            std::fs::create_dir_all(&project).map_err(|e| io("cannot create", &project, e))?;
        }
    }

    let variables = local_variables(ctx.variables, &project, &tmp);
    let local = StageCtx {
        plan: ctx.plan,
        runner: ctx.runner,
        stage: ctx.stage.clone(),
        project_dir: project.clone(),
        tmp_dir: tmp,
        variables: &variables,
        status: ctx.status,
        cancel: ctx.cancel.clone(),
    };
    call_hook(hooks, &local, trace).await?;

    if pulls.is_none() {
        let unpacked = std::fs::read_dir(&project)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if unpacked {
            files
                .push(&project, &ctx.project_dir)
                .await
                .map_err(|e| exec_err("copying files into the job", &e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(patterns: &[&str]) -> Option<Vec<String>> {
        let dir = Path::new("/builds/g/p");
        let mut out = Vec::new();
        for p in patterns {
            out.push(literal_prefix(dir, p)?.display().to_string());
        }
        Some(out)
    }

    #[test]
    fn literal_prefixes_stop_at_the_first_glob() {
        assert_eq!(
            prefixes(&["out/**/*.log", "./bin/app", "/builds/g/p/dist/", "vendor/{a,b}"]),
            Some(vec![
                "out".into(),
                "bin/app".into(),
                "dist".into(),
                "vendor".into()
            ])
        );
    }

    #[test]
    fn top_level_globs_need_the_whole_project() {
        assert_eq!(prefixes(&["*.txt"]), None);
        assert_eq!(prefixes(&["**"]), None);
    }

    #[test]
    fn paths_outside_the_project_pull_nothing() {
        assert_eq!(
            prefixes(&["../elsewhere", "/etc/passwd"]),
            Some(vec![String::new(), String::new()])
        );
    }

    /// A job container whose project directory was replaced by a link to a directory of the host.
    struct LinkedProject {
        target: PathBuf,
    }

    impl JobFiles for LinkedProject {
        fn push<'a>(
            &'a self,
            _: &'a Path,
            _: &'a Path,
        ) -> futures::future::BoxFuture<'a, Result<(), ExecError>> {
            Box::pin(async { Ok(()) })
        }

        fn pull<'a>(
            &'a self,
            path: &'a Path,
            host_dir: &'a Path,
        ) -> futures::future::BoxFuture<'a, Result<(), ExecError>> {
            let link = host_dir.join(path.file_name().unwrap_or_default());
            let made = std::os::unix::fs::symlink(&self.target, link);
            Box::pin(async move {
                made.map_err(|e| ExecError::Io {
                    context: "test link".into(),
                    source: e,
                })
            })
        }
    }

    /// Records what the artifact hook was given as the project directory.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<(bool, Vec<std::ffi::OsString>)>>);

    impl JobHooks for Seen {
        fn restore_cache<'a>(
            &'a self,
            _: &'a StageCtx<'a>,
            _: &'a TraceWriter,
        ) -> futures::future::BoxFuture<'a, Result<(), HookError>> {
            Box::pin(async { Ok(()) })
        }
        fn download_artifacts<'a>(
            &'a self,
            _: &'a StageCtx<'a>,
            _: &'a TraceWriter,
        ) -> futures::future::BoxFuture<'a, Result<(), HookError>> {
            Box::pin(async { Ok(()) })
        }
        fn archive_cache<'a>(
            &'a self,
            _: &'a StageCtx<'a>,
            _: &'a TraceWriter,
            _: bool,
        ) -> futures::future::BoxFuture<'a, Result<(), HookError>> {
            Box::pin(async { Ok(()) })
        }
        fn upload_artifacts<'a>(
            &'a self,
            ctx: &'a StageCtx<'a>,
            _: &'a TraceWriter,
            _: bool,
        ) -> futures::future::BoxFuture<'a, Result<(), HookError>> {
            let real_dir = std::fs::symlink_metadata(&ctx.project_dir).is_ok_and(|m| m.is_dir());
            let names = std::fs::read_dir(&ctx.project_dir)
                .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            self.0.lock().unwrap().push((real_dir, names));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_project_directory_replaced_by_a_link_is_never_followed() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("host-secret"), b"s").unwrap();
        let plan = crate::plan::JobPlan {
            artifacts: vec![crate::plan::ArtifactSpec {
                paths: vec!["*".into()],
                when: crate::plan::When::Always,
                ..Default::default()
            }],
            ..Default::default()
        };
        let runner = crate::plan::RunnerContext::default();
        let variables = Variables::default();
        let ctx = StageCtx {
            plan: &plan,
            runner: &runner,
            stage: Stage::UploadArtifactsOnSuccess,
            project_dir: PathBuf::from("/builds/g/p"),
            tmp_dir: PathBuf::from("/builds/g/p.tmp"),
            variables: &variables,
            status: crate::executor::JobStatus::Success,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        let spool = tempfile::tempdir().unwrap();
        let (trace, handle) = TraceWriter::new(spool.path(), crate::trace::MaskSet::empty(), 0).unwrap();
        let files = LinkedProject {
            target: host.path().to_path_buf(),
        };
        let seen = Seen::default();
        staged_hook(&seen, &files, &ctx, &trace).await.unwrap();
        drop(trace);
        drop(handle);

        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (real_dir, names) = &seen[0];
        assert!(real_dir, "the hook was handed a link as the project directory");
        assert!(names.is_empty(), "host files reached the hook: {names:?}");
    }
}
