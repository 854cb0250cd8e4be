//! The get_sources hooks of a clone or fetch, run in the job container around the runner-side fetch.
//!
//! The runner's `pre/post_get_sources_script` (config.toml) and the job's `hooks:pre/post_get_sources_script`
//! belong to the job's environment: they see its variables, its image and its user, and the job's hooks come from
//! the repository, so they must never run on the runner's host. The fetch itself stays on the runner
//! (`sources`), so the hooks become two execs: the pre hooks before the fetch, the post hooks after the copy.
//! The order within and around them is the shell executor's (`SourcesScript::render` in the core).

use oxrunner_core::driver::env;
use oxrunner_core::script::bash::{exports, wrap};
use oxrunner_core::script::git::{GIT_PROMPTS_OFF, GitSettings, SourcesScript};
use oxrunner_core::{GitStrategy, JobPlan, RunnerContext, build_dir, tmp_dir};

/// The two container scripts of a clone or fetch; `None` where no hook is set (that exec is skipped).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceHooks {
    /// Runner pre hook, then the job's pre hooks; run in the builds dir before the fetch.
    pub(crate) pre: Option<String>,
    /// The job's post hooks, then the runner post hook, each after a `cd` into the project dir; run after the
    /// checkout is copied into the build volume.
    pub(crate) post: Option<String>,
}

fn set(hook: Option<&str>) -> bool {
    hook.is_some_and(|h| !h.trim().is_empty())
}

fn any(lines: &[String]) -> bool {
    lines.iter().any(|l| !l.trim().is_empty())
}

impl SourceHooks {
    /// The hook scripts for `plan` in the container described by `runner`, rendered with the job's variables
    /// exported as every stage script has them. Both are `None` unless the strategy is clone or fetch: for
    /// `none` and `empty` the get_sources stage itself runs in the container and carries the runner's hooks.
    pub(crate) fn render(plan: &JobPlan, runner: &RunnerContext) -> Self {
        let job = &plan.sources;
        let has_pre = set(runner.pre_get_sources_script.as_deref()) || any(&job.pre_get_sources_script);
        let has_post = set(runner.post_get_sources_script.as_deref()) || any(&job.post_get_sources_script);
        if !has_pre && !has_post {
            return Self::default();
        }
        let project_dir = build_dir(plan, runner);
        let tmp = tmp_dir(&project_dir);
        let vars = env::expand(&env::job_variables(plan, runner, &project_dir, &tmp), &tmp);
        let settings = GitSettings::resolve(plan, &vars);
        if !matches!(settings.strategy, GitStrategy::Clone | GitStrategy::Fetch) {
            return Self::default();
        }
        // The shell executor's get_sources script, of which only the hook parts run here.
        let sources = SourcesScript {
            plan,
            ctx: runner,
            settings: &settings,
            project_dir: &project_dir,
            tmp_dir: &tmp,
            ca_file_path: None,
        };
        let xtrace = runner.debug_trace(&vars);
        let script = |body: String| {
            wrap(
                &format!("{}{GIT_PROMPTS_OFF}{body}", exports(&vars, &tmp)),
                xtrace,
            )
        };
        Self {
            pre: has_pre.then(|| script(sources.pre_hooks())),
            post: has_post.then(|| script(sources.post_hooks())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxrunner_core::{Sources, Variable};
    use std::path::PathBuf;

    fn plan(strategy: GitStrategy) -> JobPlan {
        JobPlan {
            project_path: "group/project".into(),
            sources: Sources {
                strategy,
                ..Sources::default()
            },
            ..JobPlan::default()
        }
    }

    fn runner() -> RunnerContext {
        RunnerContext {
            builds_dir: PathBuf::from("/builds"),
            ..RunnerContext::default()
        }
    }

    fn before(script: &str, first: &str, second: &str) -> bool {
        matches!((script.find(first), script.find(second)), (Some(a), Some(b)) if a < b)
    }

    #[test]
    fn no_hook_means_no_exec() {
        assert_eq!(
            SourceHooks::render(&plan(GitStrategy::Fetch), &runner()),
            SourceHooks::default()
        );
        let blank = RunnerContext {
            pre_get_sources_script: Some("  ".into()),
            ..runner()
        };
        let mut p = plan(GitStrategy::Clone);
        p.sources.post_get_sources_script = vec![String::new()];
        assert_eq!(SourceHooks::render(&p, &blank), SourceHooks::default());
    }

    #[test]
    fn hooks_come_in_the_shell_executors_order() {
        let ctx = RunnerContext {
            pre_get_sources_script: Some("echo runner-pre".into()),
            post_get_sources_script: Some("echo runner-post".into()),
            ..runner()
        };
        let mut p = plan(GitStrategy::Fetch);
        p.sources.pre_get_sources_script = vec!["echo job-pre".into()];
        p.sources.post_get_sources_script = vec!["echo job-post".into()];
        p.variables.push(Variable::new("HOOK_VAR", "seen"));
        let hooks = SourceHooks::render(&p, &ctx);
        let (Some(pre), Some(post)) = (hooks.pre.clone(), hooks.post.clone()) else {
            panic!("both hooks expected: {hooks:?}")
        };
        assert!(before(&pre, "echo runner-pre", "echo job-pre"), "{pre}");
        assert!(!pre.contains("-post"), "{pre}");
        assert!(pre.contains("HOOK_VAR="), "{pre}");
        assert!(
            before(&post, "cd '\\''/builds/group/project'\\''", "echo job-post"),
            "{post}"
        );
        assert!(before(&post, "echo job-post", "echo runner-post"), "{post}");
        assert!(!post.contains("-pre"), "{post}");
    }

    #[test]
    fn only_git_strategies_get_hook_execs() {
        let ctx = RunnerContext {
            pre_get_sources_script: Some("echo runner-pre".into()),
            ..runner()
        };
        for strategy in [GitStrategy::None, GitStrategy::Empty] {
            assert_eq!(SourceHooks::render(&plan(strategy), &ctx), SourceHooks::default());
        }
        let mut p = plan(GitStrategy::Clone);
        p.variables.push(Variable::new("GIT_STRATEGY", "none"));
        assert_eq!(SourceHooks::render(&p, &ctx), SourceHooks::default());
        let only_pre = SourceHooks::render(&plan(GitStrategy::Clone), &ctx);
        assert!(only_pre.pre.is_some() && only_pre.post.is_none(), "{only_pre:?}");
    }
}
