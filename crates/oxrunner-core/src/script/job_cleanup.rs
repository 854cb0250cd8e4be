//! `FF_ENABLE_JOB_CLEANUP`: at the end of `cleanup_file_variables`, which runs after a successful and after a
//! failed job alike, gitlab-runner cleans the project directory by the job's git strategy: `clone` and `empty`
//! remove it, `fetch` returns the checkout to its commit (`git clean` with the job's clean flags, `git reset
//! --hard`, the same in submodules), `none` leaves it and says so. Where no git is found (a Docker job's image:
//! its sources were fetched on the runner) a `fetch` checkout is removed instead of reset, with a notice.
//!
//! It runs in the job's own script context, with the job's rights, as everything else the job did there: `rm`
//! removes a link a job planted, never what it points to, and `chmod` is skipped for a link.

use std::fmt::Write as _;

use super::ScriptContext;
use super::bash::{notice, quote_path};
use super::git::{GitSettings, words};
use crate::plan::{GitStrategy, SubmoduleStrategy};

impl ScriptContext<'_> {
    /// Whether the job asks for a project directory cleanup that changes files (flag on, strategy not `none`).
    pub fn cleans_project_dir(&self) -> bool {
        self.flag("FF_ENABLE_JOB_CLEANUP")
            && GitSettings::resolve(self.plan, self.vars).strategy != GitStrategy::None
    }

    /// The lines of the cleanup (empty without the flag).
    pub(super) fn project_dir_cleanup(&self) -> String {
        if !self.flag("FF_ENABLE_JOB_CLEANUP") {
            return String::new();
        }
        let settings = GitSettings::resolve(self.plan, self.vars);
        let dir = quote_path(self.project_dir);
        let mut out = String::new();
        // A read-only directory (a Go module cache) could not be emptied otherwise.
        let remove =
            format!("if [ -d {dir} ] && [ ! -L {dir} ]; then chmod -R u+rwX {dir}; fi\nrm -r -f {dir}\n");
        match settings.strategy {
            GitStrategy::Clone | GitStrategy::Empty => out.push_str(&remove),
            GitStrategy::Fetch => {
                // An executor that fetches on the runner (Docker) runs this in the job's image, which usually has
                // no git (upstream runs it in its helper image). Removing the directory leaves the next job what a
                // reset would: its sources are copied in whole from the runner-side checkout.
                out.push_str("if command -v git >/dev/null 2>&1; then\n");
                let _ = writeln!(out, "cd {dir}");
                let clean = settings.clean_flags.as_deref().map(words);
                if let Some(clean) = &clean {
                    let _ = writeln!(out, "git clean {clean}");
                }
                out.push_str("git reset --hard\n");
                let foreach = match settings.submodule_strategy {
                    SubmoduleStrategy::None => None,
                    SubmoduleStrategy::Normal => Some("git submodule foreach"),
                    SubmoduleStrategy::Recursive => Some("git submodule foreach --recursive"),
                };
                if let Some(foreach) = foreach {
                    if let Some(clean) = &clean {
                        let _ = writeln!(out, "{foreach} git clean {clean}");
                    }
                    let _ = writeln!(out, "{foreach} git reset --hard");
                }
                out.push_str("else\n");
                out.push_str(&notice(
                    "git is not available here: removing the project directory instead of resetting it",
                ));
                out.push_str(&remove);
                out.push_str("fi\n");
            }
            GitStrategy::None => out.push_str(&notice("Skipping build directory cleanup step")),
        }
        out
    }
}
