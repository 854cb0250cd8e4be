//! Stages whose whole effect on a fresh job container the runner knows in advance: it prints their output itself
//! and spares one exec each (about 50 ms, a third of a trivial job's own time). Whenever anything could make the
//! stage do more (debug tracing, runner hooks, a build directory that outlives the job, feature flags that change
//! file modes), the stage runs in the container as rendered.

use std::path::{Path, PathBuf};

use oxrunner_core::{GitStrategy, JobPlan, RunnerContext, git_strategy};

/// gitlab-runner's green notice colour, as the rendered script prints it.
const NOTICE: &str = "\x1b[32;1m";
const RESET: &str = "\x1b[0;m";

/// `CI_DEBUG_TRACE` makes every script print its commands: only the real script gives that output.
pub(crate) fn traced(plan: &JobPlan, runner: &RunnerContext) -> bool {
    runner.debug_trace(&plan.variables)
}

/// The line prepare_script prints: `Running on <container hostname> via <runner host>...`.
pub(crate) fn running_on(container_hostname: &str) -> String {
    let via = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['"', '\\', '$', '`'], ""))
        .unwrap_or_default();
    if via.is_empty() {
        format!("Running on {container_hostname}...\n")
    } else {
        format!("Running on {container_hostname} via {via}...\n")
    }
}

/// The container's hostname as `$(hostname)` prints it inside: the configured one, else the engine's default (the
/// first 12 characters of the container id).
pub(crate) fn container_hostname(configured: Option<&str>, container_id: &str) -> String {
    match configured.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => container_id.chars().take(12).collect(),
    }
}

/// What `GIT_STRATEGY: none` prints.
pub(crate) fn skipping_sources() -> String {
    format!("{NOTICE}Skipping Git repository setup{RESET}\n")
}

/// True when get_sources with `GIT_STRATEGY: none` would only create the project directory: no runner hook
/// around it and no tracing.
pub(crate) fn sources_only_make_the_dir(plan: &JobPlan, runner: &RunnerContext) -> bool {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    git_strategy(plan) == GitStrategy::None
        && empty(&runner.pre_get_sources_script)
        && empty(&runner.post_get_sources_script)
        && !traced(plan, runner)
}

/// The directories from below `builds_dir` down to `project_dir`, outermost first (what `mkdir -p` would create).
pub(crate) fn dirs_down_to(builds_dir: &Path, project_dir: &Path) -> Vec<PathBuf> {
    let Ok(rel) = project_dir.strip_prefix(builds_dir) else {
        return Vec::new();
    };
    let mut dir = builds_dir.to_path_buf();
    rel.components()
        .map(|c| {
            dir.push(c);
            dir.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_the_engine() {
        assert_eq!(container_hostname(None, "0123456789abcdef"), "0123456789ab");
        assert_eq!(container_hostname(Some(" ci-box "), "0123456789abcdef"), "ci-box");
        assert_eq!(container_hostname(Some(""), "abc"), "abc");
    }

    #[test]
    fn the_project_dir_and_its_parents_are_listed_outermost_first() {
        assert_eq!(
            dirs_down_to(Path::new("/builds"), Path::new("/builds/group/sub/project")),
            vec![
                PathBuf::from("/builds/group"),
                PathBuf::from("/builds/group/sub"),
                PathBuf::from("/builds/group/sub/project"),
            ]
        );
        assert!(dirs_down_to(Path::new("/builds"), Path::new("/elsewhere/p")).is_empty());
    }

    #[test]
    fn only_a_plain_none_strategy_is_short_cut() {
        let mut plan = JobPlan::default();
        let runner = RunnerContext::default();
        plan.sources.strategy = GitStrategy::None;
        assert!(sources_only_make_the_dir(&plan, &runner));
        let hooked = RunnerContext {
            pre_get_sources_script: Some("echo hook".into()),
            ..RunnerContext::default()
        };
        assert!(!sources_only_make_the_dir(&plan, &hooked));
        plan.variables
            .push(oxrunner_core::Variable::new("CI_DEBUG_TRACE", "true"));
        assert!(!sources_only_make_the_dir(&plan, &runner));
        let mut fetch = JobPlan::default();
        fetch.sources.strategy = GitStrategy::Fetch;
        assert!(!sources_only_make_the_dir(&fetch, &runner));
        fetch
            .variables
            .push(oxrunner_core::Variable::new("GIT_STRATEGY", "none"));
        assert!(sources_only_make_the_dir(&fetch, &runner));
    }
}
