//! `FF_ENABLE_JOB_CLEANUP`: at the end of `cleanup_file_variables`, which runs after a successful and after a
//! failed job alike, gitlab-runner cleans the project directory by the job's git strategy: `clone` and `empty`
//! remove it, `fetch` returns the checkout to its commit (`git clean` with the job's clean flags, `git reset
//! --hard`, the same in submodules), `none` leaves it and says so.
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
        match settings.strategy {
            GitStrategy::Clone | GitStrategy::Empty => {
                // A read-only directory (a Go module cache) could not be emptied otherwise.
                let _ = writeln!(
                    out,
                    "if [ -d {dir} ] && [ ! -L {dir} ]; then chmod -R u+rwX {dir}; fi\nrm -r -f {dir}"
                );
            }
            GitStrategy::Fetch => {
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
            }
            GitStrategy::None => out.push_str(&notice("Skipping build directory cleanup step")),
        }
        out
    }
}
