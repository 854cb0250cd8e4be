//! The feature flags that change how the get_sources script talks to the git server, as gitlab-runner applies
//! them:
//! - `FF_USE_GITALY_CORRELATION_ID` (on by default): every git HTTP request carries `X-Gitaly-Correlation-ID` with
//!   the correlation id of the job request, so GitLab's logs tie the fetch to the job; the id is printed as a
//!   notice, as upstream does (it is a request id, not a secret).
//! - `FF_USE_GIT_BUNDLE_URIS` (on by default): `transfer.bundleURI = true`, which lets `git clone` download the
//!   bundles the server advertises before it fetches the rest (a fetch into an existing repository ignores it).
//! - `FF_USE_GIT_PROACTIVE_AUTH` (off by default): `-c http.<scheme://host>.proactiveAuth=basic` on `git fetch`,
//!   `git clone` and `git checkout` (which fetches missing objects in a partial clone), so git sends the credentials with its first request instead of after a 401 (GitLab then knows
//!   the user for a public project too). Scoped to the server so bundle downloads from other hosts do not get it.
//!   git before 2.46 does not know the setting and ignores it, as it ignores every unknown key (as git before 2.40
//!   ignores `transfer.bundleURI`); where git runs on the runner's host the job log names such a flag in a warning
//!   (`driver/git_version.rs`), a git in a job's image cannot be asked in advance.
//!
//! The first two are git configuration in the external config file that the repository includes (also for
//! submodules and for git commands of the job's own script, until `cleanup_file_variables` removes the file).

use std::fmt::Write as _;

use super::bash::{notice, quote, warning};
use super::git::{SourcesScript, git_config_string};

impl SourcesScript<'_> {
    /// The flags' lines of the external git config.
    pub(super) fn flag_config(&self) -> String {
        let mut conf = String::new();
        if let Some(id) = self.correlation_id() {
            let _ = writeln!(
                conf,
                "[http]\n\textraHeader = {}",
                git_config_string(&format!("X-Gitaly-Correlation-ID: {id}"))
            );
        }
        if self.settings.bundle_uris {
            conf.push_str("[transfer]\n\tbundleURI = true\n");
        }
        conf
    }

    /// The notice naming the correlation id sent to the server, when one is.
    pub(super) fn correlation_notice(&self) -> String {
        self.correlation_id()
            .map(|id| notice(&format!("Gitaly correlation ID: {id}")))
            .unwrap_or_default()
    }

    /// The id, when the flag is on and the job came with one. Only printable ASCII is taken: the id lands in a
    /// header line and in the job log.
    fn correlation_id(&self) -> Option<&str> {
        let id = self.plan.sources.correlation_id.as_str();
        (self.settings.gitaly_correlation_id && !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()))
            .then_some(id)
    }

    /// ` -c http.<scheme://host>.proactiveAuth=basic` for a command that talks to `remote` (empty without the flag).
    /// A remote that is not a URL gets the unscoped setting and a warning, as upstream.
    pub(super) fn proactive_auth(&self, out: &mut String, remote: &str) -> String {
        if !self.settings.proactive_auth {
            return String::new();
        }
        let setting = match scheme_and_host(remote) {
            Some(base) => format!("http.{base}.proactiveAuth=basic"),
            None => {
                out.push_str(&warning(
                    "proactive auth: can't get repository host, using unscoped config.",
                ));
                "http.proactiveAuth=basic".to_owned()
            }
        };
        format!(" -c {}", quote(&setting))
    }
}

/// `scheme://host[:port]` of a URL, without credentials or path; `None` when `url` is not `scheme://host...`.
fn scheme_and_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!scheme.is_empty() && !host.is_empty()).then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::scheme_and_host;
    use crate::plan::{JobPlan, Sources};

    fn render(repo_url: &str, vars: &[(&str, &str)]) -> String {
        let plan = JobPlan {
            sources: Sources {
                repo_url: repo_url.into(),
                correlation_id: "0123abcd".into(),
                ..Sources::default()
            },
            ..JobPlan::default()
        };
        crate::script::git::render_sources(&plan, vars)
    }

    #[test]
    fn the_host_keeps_scheme_and_port_and_drops_credentials_and_path() {
        assert_eq!(
            scheme_and_host("https://gitlab-ci-token:t@gitlab.example.com:8443/g/p.git").as_deref(),
            Some("https://gitlab.example.com:8443")
        );
        assert_eq!(scheme_and_host("git@gitlab.example.com:g/p.git"), None);
    }

    #[test]
    fn proactive_auth_is_scoped_to_the_server_or_warned_about() {
        let on = [("FF_USE_GIT_PROACTIVE_AUTH", "true")];
        let text = render("https://gitlab-ci-token:t@h.example:1/g/p.git", &on);
        assert!(
            text.contains(" -c 'http.https://h.example:1.proactiveAuth=basic' fetch origin"),
            "{text}"
        );
        assert!(
            text.contains(
                "git -c submodule.recurse=false -c 'http.https://h.example:1.proactiveAuth=basic' checkout"
            ),
            "{text}"
        );
        let scp = render("git@h.example:g/p.git", &on);
        assert!(
            scp.contains(" -c 'http.proactiveAuth=basic' fetch origin"),
            "{scp}"
        );
        assert!(scp.contains("proactive auth: can"), "{scp}");
        assert!(
            scp.contains("get repository host, using unscoped config."),
            "{scp}"
        );
        assert!(!render("https://h.example/g/p.git", &[]).contains("proactiveAuth"));
    }

    #[test]
    fn the_defaults_send_the_correlation_id_and_allow_bundle_uris() {
        let text = render("https://h.example/g/p.git", &[]);
        assert!(
            text.contains("extraHeader = \"X-Gitaly-Correlation-ID: 0123abcd\""),
            "{text}"
        );
        let named = text.find("Gitaly correlation ID: 0123abcd").expect(&text);
        assert!(named < text.find("Fetching changes").expect(&text), "{text}");
        assert!(text.contains("bundleURI = true"), "{text}");
        let off = render(
            "https://h.example/g/p.git",
            &[
                ("FF_USE_GITALY_CORRELATION_ID", "false"),
                ("FF_USE_GIT_BUNDLE_URIS", "false"),
            ],
        );
        assert!(
            !off.contains("Correlation") && !off.contains("bundleURI"),
            "{off}"
        );
    }
}
