//! Stage scripts (bash flavour, also valid for POSIX `sh` where bash is missing).

pub(crate) mod bash;
pub(crate) mod escape;
pub(crate) mod host_fetch;

/// Shell quoting and gitlab-runner's coloured notices, for front ends that render stage scripts of their own (the
/// in-script cache and artifact stages).
pub mod words {
    pub use super::bash::{notice, print_line, quote, quote_path, warning};
}
pub mod git;
mod git_clone;
mod git_flags;
mod job_cleanup;

use std::fmt::Write as _;
use std::path::Path;

use crate::plan::{JobPlan, RunnerContext, Step};
use crate::variables::Variables;
use bash::{ENV_FILE, exports, file_var_path, load_env_file, notice, quote, quote_path, wrap};
use git::{EXT_CONFIG, GitSettings, SourcesScript, TEMPLATE_DIR};

/// Everything the stage scripts of one job are rendered from.
#[derive(Clone, Copy, Debug)]
pub struct ScriptContext<'a> {
    /// The job.
    pub plan: &'a JobPlan,
    /// Runner settings.
    pub ctx: &'a RunnerContext,
    /// Expanded variables, runner variables included.
    pub vars: &'a Variables,
    /// Project directory.
    pub project_dir: &'a Path,
    /// Temp directory.
    pub tmp_dir: &'a Path,
    /// `CI_DEBUG_TRACE` in effect.
    pub xtrace: bool,
}

impl ScriptContext<'_> {
    fn with_exports(&self, body: &str) -> String {
        let quoting = self.quoting();
        wrap(
            &format!("{}{body}", exports(self.vars, self.tmp_dir, quoting)),
            self.xtrace,
            self.flag("FF_USE_LEGACY_BASH_EVAL"),
            quoting,
        )
    }

    /// The quoting form `FF_POSIXLY_CORRECT_ESCAPES` selects.
    pub(crate) fn quoting(&self) -> escape::Quoting {
        escape::Quoting::from_flag(self.flag("FF_POSIXLY_CORRECT_ESCAPES"))
    }

    fn flag(&self, name: &str) -> bool {
        crate::feature_flags::is_on(self.vars, name)
    }

    /// `prefix` names the sections of multi-line commands (`script_step`, `after_script_step`, ...).
    fn user_commands(&self, lines: &[String], prefix: &str) -> String {
        let sections = self.plan.features.trace_sections && self.flag("FF_SCRIPT_SECTIONS");
        bash::commands_styled(
            lines,
            bash::CommandStyle {
                exit_code_check: self.flag("FF_ENABLE_BASH_EXIT_CODE_CHECK"),
                sections: sections.then_some(prefix),
            },
        )
    }

    /// `prepare_script`: says where the job runs and forgets the env file of a previous job.
    pub fn prepare_script(&self, via_host: Option<&str>) -> String {
        let mut body = String::new();
        let _ = writeln!(body, "rm -f {}", quote_path(&self.tmp_dir.join(ENV_FILE)));
        let via = via_host.map(|h| format!(" via {h}")).unwrap_or_default();
        let _ = writeln!(
            body,
            "echo \"Running on $(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null || echo unknown){}...\"",
            via.replace(['"', '\\', '$', '`'], "")
        );
        self.with_exports(&body)
    }

    /// `get_sources`.
    pub fn get_sources(&self, settings: &GitSettings) -> String {
        let file_of = |key: &str| -> Option<std::path::PathBuf> {
            self.vars
                .find(key)
                .filter(|v| v.file && !v.value.is_empty())
                .map(|v| file_var_path(self.tmp_dir, &v.key).into())
        };
        let client_cert_paths = file_of("CI_SERVER_TLS_CERT_FILE").zip(file_of("CI_SERVER_TLS_KEY_FILE"));
        let script = SourcesScript {
            plan: self.plan,
            ctx: self.ctx,
            settings,
            project_dir: self.project_dir,
            tmp_dir: self.tmp_dir,
            ca_file_path: file_of("CI_SERVER_TLS_CA_FILE"),
            client_cert_paths,
        };
        self.with_exports(&script.render())
    }

    /// `clear_worktree`.
    pub fn clear_worktree(&self) -> String {
        self.with_exports(&git::clear_worktree(self.project_dir))
    }

    /// `step_<name>`: `pre_build_script`, the step's commands, `post_build_script`.
    pub fn user_step(&self, step: &Step) -> String {
        let mut body = String::new();
        body.push_str(load_env_file());
        let _ = writeln!(body, "cd {}", quote_path(self.project_dir));
        let runner_script = |s: &Option<String>| -> Vec<String> {
            s.iter().filter(|s| !s.trim().is_empty()).cloned().collect()
        };
        body.push_str(&self.user_commands(&runner_script(&self.ctx.pre_build_script), "pre_build_script"));
        body.push_str(&self.user_commands(&step.script, "script_step"));
        body.push_str(&self.user_commands(&runner_script(&self.ctx.post_build_script), "post_build_script"));
        self.with_exports(&body)
    }

    /// `after_script` (the driver sets `CI_JOB_STATUS` in `vars`).
    pub fn after_script(&self, step: &Step) -> String {
        let mut body = String::new();
        body.push_str(load_env_file());
        let _ = writeln!(body, "cd {}", quote_path(self.project_dir));
        body.push_str(&notice("Running after script..."));
        body.push_str(&self.user_commands(&step.script, "after_script_step"));
        self.with_exports(&body)
    }

    /// A cache or artifact stage rendered by the job hooks (executors the runner cannot reach files in): the
    /// exports, then `body` in the project directory, as gitlab-runner's cache and artifact stages run, but
    /// without xtrace.
    pub fn transfer_stage(&self, body: &str) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "cd {}", quote_path(self.project_dir));
        text.push_str(body);
        // Never traced, even under CI_DEBUG_TRACE: the lines are the runner's own, and they hand pre-signed cache
        // URLs to the helpers, which xtrace would print into the job log (the eval'd body, then each command).
        let quoting = self.quoting();
        wrap(
            &format!("{}{text}", exports(self.vars, self.tmp_dir, quoting)),
            false,
            self.flag("FF_USE_LEGACY_BASH_EVAL"),
            quoting,
        )
    }

    /// `cleanup_file_variables`: removes file variables, the env file and the git credential files, then cleans
    /// the project directory under `FF_ENABLE_JOB_CLEANUP` (`job_cleanup.rs`).
    pub fn cleanup_file_variables(&self) -> String {
        // No exports here: re-creating the file variables only to delete them would be pointless.
        let mut body = String::new();
        for v in self.vars.iter().filter(|v| v.file) {
            let _ = writeln!(body, "rm -f {}", quote(&file_var_path(self.tmp_dir, &v.key)));
        }
        for name in [ENV_FILE, EXT_CONFIG] {
            let _ = writeln!(body, "rm -f {}", quote_path(&self.tmp_dir.join(name)));
        }
        let _ = writeln!(body, "rm -rf {}", quote_path(&self.tmp_dir.join(TEMPLATE_DIR)));
        body.push_str(&self.project_dir_cleanup());
        wrap(&body, false, self.flag("FF_USE_LEGACY_BASH_EVAL"), self.quoting())
    }

    /// A notice line in a script (exposed for executors that add their own stages).
    pub fn notice(text: &str) -> String {
        notice(text)
    }
}
