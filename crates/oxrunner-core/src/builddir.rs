//! Build directory layout (runner-api.md §2.5).

use std::path::{Component, Path, PathBuf};

use crate::plan::{GitStrategy, JobPlan, RunnerContext, SourceOrigin};

/// `<namespace>/<project>` of the job, or `project-<id>` when the plan has no usable path.
pub fn project_slug(plan: &JobPlan) -> String {
    let slug = plan.project_path.trim_matches('/');
    let slug = slug.strip_suffix(".git").unwrap_or(slug);
    let safe = !slug.is_empty()
        && Path::new(slug)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if safe {
        slug.to_owned()
    } else {
        format!("project-{}", plan.project_id)
    }
}

/// The project directory: `<builds_dir>/<short-token>/<concurrent_project_id>/<slug>` for shared builds dirs,
/// `<builds_dir>/<slug>` otherwise; `-empty` appended for `GIT_STRATEGY=empty`; `GIT_CLONE_PATH` used when
/// `custom_build_dir` is enabled and the path lies inside the builds dir.
pub fn build_dir(plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    if let Some(custom) = clone_path(plan, ctx).filter(|_| ctx.custom_build_dir) {
        let path = cleaned(&custom);
        let inside = path.is_absolute()
            && path.starts_with(&ctx.builds_dir)
            && path.components().all(|c| !matches!(c, Component::ParentDir));
        if inside && path != ctx.builds_dir {
            return path;
        }
    }
    let mut dir = ctx.builds_dir.clone();
    if ctx.shared_builds_dir {
        dir.push(&ctx.short_token);
        dir.push(ctx.concurrent_project_id.to_string());
    }
    dir.push(project_slug(plan));
    if git_strategy(plan) == GitStrategy::Empty {
        let mut s = dir.into_os_string();
        s.push("-empty");
        dir = PathBuf::from(s);
    }
    dir
}

/// The job's `GIT_CLONE_PATH`, expanded as gitlab-runner expands it: against the runner's variables as well as the
/// job's, so the documented `$CI_BUILDS_DIR/<dir>` works (upstream sets the builds dir and refreshes its variable
/// list before reading the setting). The project dir is not known yet, so `$CI_PROJECT_DIR` is empty there too.
/// `None` when unset or empty.
fn clone_path(plan: &JobPlan, ctx: &RunnerContext) -> Option<String> {
    let var = plan
        .variables
        .find("GIT_CLONE_PATH")
        .filter(|v| !v.value.is_empty())?;
    if var.raw {
        return Some(var.value.clone());
    }
    let none = Path::new("");
    Some(crate::driver::env::job_variables(plan, ctx, none, none).expand(&var.value))
}

/// `path` rebuilt from its components, as upstream's `path.Clean` leaves it for a path without `..`: no trailing
/// `/` (with one, `[ -L "$d" ]` tests what a link points to and `"$d".tmp` lands inside the directory), no `.`, no
/// doubled separators. A `..` stays, and is refused by the callers.
fn cleaned(path: &str) -> PathBuf {
    Path::new(path).components().collect()
}

/// gitlab-runner's rule for `GIT_CLONE_PATH`: allowed only with `[runners.custom_build_dir]` enabled, and only
/// inside the builds dir. The message of a refused path names it and the fix; the job then fails as a
/// configuration error before anything runs.
pub fn check_clone_path(plan: &JobPlan, ctx: &RunnerContext) -> Result<(), String> {
    // Sources from a local directory (`oxrunner exec`) are not cloned anywhere.
    if plan.sources.origin != SourceOrigin::Git {
        return Ok(());
    }
    let Some(custom) = clone_path(plan, ctx) else {
        return Ok(());
    };
    if !ctx.custom_build_dir {
        return Err(
            "setting GIT_CLONE_PATH is not allowed, enable `custom_build_dir` feature\nhint: set \
             [runners.custom_build_dir] enabled = true in config.toml, or remove GIT_CLONE_PATH from the job"
                .to_owned(),
        );
    }
    let path = cleaned(&custom);
    let inside = path.is_absolute()
        && path.starts_with(&ctx.builds_dir)
        && path.components().all(|c| !matches!(c, Component::ParentDir));
    if inside && path == ctx.builds_dir {
        // Upstream clones into the builds dir itself; here the project dir and its `.tmp` sibling would then be the
        // builds dir and a directory beside it, shared by every job. Refused rather than quietly replaced.
        Err(format!(
            "the GIT_CLONE_PATH={custom:?} is the builds dir itself\nhint: name a directory below it, e.g. \
             $CI_BUILDS_DIR/$CI_PROJECT_NAME"
        ))
    } else if inside {
        Ok(())
    } else {
        Err(format!(
            "the GIT_CLONE_PATH={custom:?} has to be within {:?}\nhint: use a path under $CI_BUILDS_DIR",
            ctx.builds_dir.display().to_string()
        ))
    }
}

/// The job's `GIT_STRATEGY` variable, else the strategy GitLab sent; `none` for sources from a local directory.
pub fn git_strategy(plan: &JobPlan) -> GitStrategy {
    if plan.sources.origin != SourceOrigin::Git {
        return GitStrategy::None;
    }
    plan.variables
        .value("GIT_STRATEGY")
        .and_then(GitStrategy::parse)
        .unwrap_or(plan.sources.strategy)
}

/// `<project dir>.tmp`: file variables, env file, git template and credentials config.
pub fn tmp_dir(project_dir: &Path) -> PathBuf {
    let mut s = project_dir.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Where the runner checks the project out for an executor whose files are remote:
/// `<runner builds dir>/<short token>/<concurrent project id>/<slug>`, one per project slot so a `fetch` finds the
/// previous job's clone.
pub fn runner_checkout_dir(plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    runner_builds_root(ctx)
        .join(&ctx.short_token)
        .join(ctx.concurrent_project_id.to_string())
        .join(project_slug(plan))
}

/// `RunnerContext::runner_builds_dir`, or its default.
pub fn runner_builds_root(ctx: &RunnerContext) -> PathBuf {
    if ctx.runner_builds_dir.as_os_str().is_empty() {
        std::env::temp_dir().join("oxrunner-builds")
    } else {
        ctx.runner_builds_dir.clone()
    }
}

/// `<cache_dir>/<slug>`.
pub fn cache_dir(plan: &JobPlan, ctx: &RunnerContext) -> PathBuf {
    ctx.cache_dir.join(project_slug(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::Variable;

    #[test]
    fn a_custom_clone_path_is_cleaned() {
        let mut plan = JobPlan::default();
        plan.variables
            .push(Variable::new("GIT_CLONE_PATH", "/builds/./g//x/"));
        let ctx = RunnerContext {
            builds_dir: "/builds".into(),
            custom_build_dir: true,
            ..RunnerContext::default()
        };
        // `Path` equality ignores a trailing `/`; the scripts see the bytes.
        assert_eq!(build_dir(&plan, &ctx).as_os_str(), "/builds/g/x");
        assert_eq!(tmp_dir(&build_dir(&plan, &ctx)).as_os_str(), "/builds/g/x.tmp");
        assert_eq!(check_clone_path(&plan, &ctx), Ok(()));
    }

    #[test]
    fn layouts() {
        let mut plan = JobPlan {
            project_path: "user/playground".into(),
            project_id: 7,
            ..JobPlan::default()
        };
        let mut ctx = RunnerContext {
            builds_dir: "/builds".into(),
            short_token: "2mn-ncv-".into(),
            ..RunnerContext::default()
        };
        assert_eq!(build_dir(&plan, &ctx), Path::new("/builds/user/playground"));
        ctx.shared_builds_dir = true;
        assert_eq!(
            build_dir(&plan, &ctx),
            Path::new("/builds/2mn-ncv-/0/user/playground")
        );
        plan.variables.push(Variable::new("GIT_STRATEGY", "empty"));
        assert_eq!(
            build_dir(&plan, &ctx),
            Path::new("/builds/2mn-ncv-/0/user/playground-empty")
        );
        plan.project_path = "../evil".into();
        ctx.shared_builds_dir = false;
        assert_eq!(build_dir(&plan, &ctx), Path::new("/builds/project-7-empty"));
        assert_eq!(tmp_dir(Path::new("/builds/a/b")), Path::new("/builds/a/b.tmp"));
    }
}
