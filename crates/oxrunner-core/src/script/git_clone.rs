//! `FF_USE_GIT_NATIVE_CLONE`: with `GIT_STRATEGY=clone`, gitlab-runner runs `git clone` instead of `git init` and
//! `git fetch` when the job's git is at least 2.49 (the release that added `clone --revision`), and keeps the
//! init-and-fetch path for an older git. The version is tested by the script, in the job's environment, because
//! that is where git runs.

use std::fmt::Write as _;

use super::bash::{notice, print_line, quote, quote_path};
use super::git::{SourcesScript, TEMPLATE_DIR, words};

/// The first git release whose `clone` takes `--revision`.
pub const MIN_GIT_VERSION: &str = "2.49";

impl SourcesScript<'_> {
    /// The version test, the clone for a new enough git, `fallback` (the init + fetch lines) otherwise.
    pub(super) fn native_clone(&self, out: &mut String, remote: &str, fallback: &str) {
        // The lowest of the two versions, compared numerically field by field, is the required one when the
        // installed git is at least that release.
        let _ = writeln!(
            out,
            "__oxr_git_ver=\"$(git version | cut -d ' ' -f 3)\"\n\
             __oxr_git_min=\"$(printf '%s\\n%s\\n' {min} \"$__oxr_git_ver\" | sort -t . -k 1,1n -k 2,2n -k 3,3n | sed -n 1p)\"\n\
             if [ \"$__oxr_git_min\" = {min} ]; then",
            min = quote(MIN_GIT_VERSION)
        );
        out.push_str(&print_line(&format!(
            "Git version at least \"{MIN_GIT_VERSION}\""
        )));
        self.clone_command(out, remote);
        out.push_str("else\n");
        out.push_str(fallback);
        out.push_str("fi\n");
    }

    fn clone_command(&self, out: &mut String, remote: &str) {
        let s = self.settings;
        let ref_name = &self.plan.sources.ref_name;
        let message = match (s.depth, ref_name.is_empty()) {
            (0, true) => "Cloning repository...".to_owned(),
            (0, false) => format!("Cloning repository for {ref_name}..."),
            (depth, _) => format!("Cloning repository for {ref_name} with git depth set to {depth}..."),
        };
        out.push_str(&notice(&message));
        let dir = quote_path(self.project_dir);
        let mut clone = format!(
            "git {}{} clone --no-checkout {} {dir} --template {}",
            self.user_agent(),
            self.proactive_auth(out, remote),
            quote(remote),
            quote_path(&self.tmp_dir.join(TEMPLATE_DIR))
        );
        if s.depth > 0 {
            let _ = write!(clone, " --depth {}", s.depth);
        }
        if ref_name.starts_with("refs/") {
            let _ = write!(clone, " --revision {}", quote(ref_name));
        } else if !ref_name.is_empty() {
            let _ = write!(clone, " --branch {}", quote(ref_name));
        }
        let extra = words(&s.clone_extra_flags);
        if !extra.is_empty() {
            clone.push(' ');
            clone.push_str(&extra);
        }
        self.remote_command(out, &clone);
        let _ = writeln!(out, "cd {dir}");
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{JobPlan, Sources};

    fn render(ref_name: &str, vars: &[(&str, &str)]) -> String {
        let plan = JobPlan {
            sources: Sources {
                repo_url: "https://127.0.0.1:1/g/p.git".into(),
                ref_name: ref_name.into(),
                ..Sources::default()
            },
            ..JobPlan::default()
        };
        crate::script::git::render_sources(&plan, vars)
    }

    #[test]
    fn the_clone_takes_a_full_ref_as_revision_and_the_extra_flags_only_with_the_flag() {
        let on = [
            ("GIT_STRATEGY", "clone"),
            ("FF_USE_GIT_NATIVE_CLONE", "true"),
            ("GIT_CLONE_EXTRA_FLAGS", "--filter=blob:none"),
        ];
        let text = render("refs/merge-requests/7/head", &on);
        assert!(
            text.contains(
                "clone --no-checkout 'https://127.0.0.1:1/g/p.git' '/b/p' --template '/b/p.tmp/git-template' \
                 --revision 'refs/merge-requests/7/head' '--filter=blob:none'\n"
            ),
            "{text}"
        );
        assert!(text.contains("else\n"), "{text}");
        assert!(render("main", &on).contains(" --branch 'main' "));
        // Fetch strategy, or the flag off: no clone at all.
        let fetch = render(
            "main",
            &[("GIT_STRATEGY", "fetch"), ("FF_USE_GIT_NATIVE_CLONE", "true")],
        );
        assert!(!fetch.contains(" clone "), "{fetch}");
        let off = render("main", &[("GIT_STRATEGY", "clone")]);
        assert!(
            !off.contains(" clone ") && !off.contains("__oxr_git_ver"),
            "{off}"
        );
    }
}
