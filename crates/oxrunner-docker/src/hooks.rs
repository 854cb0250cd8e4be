//! The get_sources hooks of a clone or fetch, run in the job container around the runner-side fetch.
//!
//! The runner's `pre/post_get_sources_script` (config.toml) and the job's `hooks:pre/post_get_sources_script`
//! belong to the job's environment: they see its variables, its image and its user, and the job's hooks come from
//! the repository, so they must never run on the runner's host. The fetch itself stays on the runner
//! (`sources`), so the hooks become two execs: the pre hooks before the fetch, the post hooks after the copy.
//! The order within and around them is the shell executor's (`SourcesScript::render` in the core).

use std::fmt::Write as _;
use std::path::Path;

use oxrunner_core::driver::env;
use oxrunner_core::script::bash::{commands, exports, quote_path, wrap};
use oxrunner_core::script::git::GitSettings;
use oxrunner_core::{GitStrategy, JobPlan, RunnerContext, build_dir, tmp_dir};

/// Set by the get_sources script before anything else runs, the hooks included.
const GIT_PROMPTS_OFF: &str = "export GIT_TERMINAL_PROMPT=0\nexport GCM_INTERACTIVE=Never\n";

/// The two container scripts of a clone or fetch; `None` where no hook is set (that exec is skipped).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceHooks {
    /// Runner pre hook, then the job's pre hooks; run in the builds dir before the fetch.
    pub(crate) pre: Option<String>,
    /// The job's post hooks, then the runner post hook, each after a `cd` into the project dir; run after the
    /// checkout is copied into the build volume.
    pub(crate) post: Option<String>,
}

fn set(hook: Option<&str>) -> Option<&str> {
    hook.filter(|h| !h.trim().is_empty())
}

fn any(lines: &[String]) -> bool {
    lines.iter().any(|l| !l.trim().is_empty())
}

impl SourceHooks {
    /// The hook scripts for `plan` in the container described by `runner`, rendered with the job's variables
    /// exported as every stage script has them. Both are `None` unless the strategy is clone or fetch: for
    /// `none` and `empty` the get_sources stage itself runs in the container and carries the runner's hooks.
    pub(crate) fn render(plan: &JobPlan, runner: &RunnerContext) -> Self {
        let runner_pre = set(runner.pre_get_sources_script.as_deref());
        let runner_post = set(runner.post_get_sources_script.as_deref());
        let job = &plan.sources;
        let has_pre = runner_pre.is_some() || any(&job.pre_get_sources_script);
        let has_post = runner_post.is_some() || any(&job.post_get_sources_script);
        if !has_pre && !has_post {
            return Self::default();
        }
        let project_dir = build_dir(plan, runner);
        let tmp = tmp_dir(&project_dir);
        let vars = env::expand(&env::job_variables(plan, runner, &project_dir, &tmp), &tmp);
        if !matches!(
            GitSettings::resolve(plan, &vars).strategy,
            GitStrategy::Clone | GitStrategy::Fetch
        ) {
            return Self::default();
        }
        let xtrace = !runner.debug_trace_disabled && vars.bool("CI_DEBUG_TRACE").unwrap_or(false);
        let script = |body: String| {
            wrap(
                &format!("{}{GIT_PROMPTS_OFF}{body}", exports(&vars, &tmp)),
                xtrace,
            )
        };

        let pre = has_pre.then(|| {
            let mut body = String::new();
            if let Some(hook) = runner_pre {
                let _ = writeln!(body, "{hook}");
            }
            body.push_str(&commands(&job.pre_get_sources_script));
            script(body)
        });
        let post = has_post.then(|| {
            let mut body = String::new();
            if any(&job.post_get_sources_script) {
                body.push_str(&cd(&project_dir));
                body.push_str(&commands(&job.post_get_sources_script));
            }
            if let Some(hook) = runner_post {
                body.push_str(&cd(&project_dir));
                let _ = writeln!(body, "{hook}");
            }
            script(body)
        });
        Self { pre, post }
    }
}

fn cd(dir: &Path) -> String {
    format!("cd {}\n", quote_path(dir))
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
