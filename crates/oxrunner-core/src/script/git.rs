//! The `get_sources` and `clear_worktree` scripts (runner-api.md §2.3), using the real git CLI.
//!
//! The job token never lands in `.git/config`: the remote URL is stored without credentials and an
//! `insteadOf` rule carrying them lives in `<tmp>/.gitlab-runner.ext.conf`, which the repository includes and
//! `cleanup_file_variables` deletes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::bash::{notice, quote, quote_path, warning};
use crate::plan::{GitStrategy, JobPlan, RunnerContext, SourceOrigin, SubmoduleStrategy};
use crate::secret::Secret;
use crate::variables::{Variables, parse_bool};

/// Name of the git config file holding credentials (inside the temp dir).
pub const EXT_CONFIG: &str = ".gitlab-runner.ext.conf";
/// Name of the git template directory (inside the temp dir).
pub const TEMPLATE_DIR: &str = "git-template";

/// Effective source settings: the plan's values overridden by the `GIT_*` job variables.
#[derive(Clone, Debug)]
pub struct GitSettings {
    /// Strategy.
    pub strategy: GitStrategy,
    /// Fetch depth (0 = full).
    pub depth: u32,
    /// Check out after fetching.
    pub checkout: bool,
    /// `git clean` flags (`None` = don't clean).
    pub clean_flags: Option<String>,
    /// Extra `git fetch` flags.
    pub fetch_extra_flags: String,
    /// `FF_USE_GIT_NATIVE_CLONE`: `GIT_STRATEGY=clone` runs `git clone` where git is new enough.
    pub native_clone: bool,
    /// Extra `git clone` flags (`GIT_CLONE_EXTRA_FLAGS`, used by the native clone only, as upstream).
    pub clone_extra_flags: String,
    /// `FF_USE_GIT_BUNDLE_URIS`, `FF_USE_GIT_PROACTIVE_AUTH`, `FF_USE_GITALY_CORRELATION_ID` (`script/git_flags.rs`).
    pub bundle_uris: bool,
    pub proactive_auth: bool,
    pub gitaly_correlation_id: bool,
    /// Submodule strategy.
    pub submodule_strategy: SubmoduleStrategy,
    /// Submodule depth.
    pub submodule_depth: u32,
    /// Submodule paths.
    pub submodule_paths: Vec<String>,
    /// Extra `git submodule update` flags.
    pub submodule_update_flags: String,
    /// Attempts (1..=10).
    pub attempts: u32,
    /// Messages about invalid variable values, printed as warnings.
    pub warnings: Vec<String>,
}

impl GitSettings {
    /// Resolves settings from the plan and the expanded variables; invalid values fall back with a warning.
    pub fn resolve(plan: &JobPlan, vars: &Variables) -> Self {
        let src = &plan.sources;
        let mut warnings = Vec::new();
        let mut strategy = src.strategy;
        if let Some(v) = vars.value("GIT_STRATEGY").filter(|v| !v.is_empty()) {
            match GitStrategy::parse(v) {
                Some(s) => strategy = s,
                None => warnings.push(format!("Invalid GIT_STRATEGY value {v:?}, using the default")),
            }
        }
        if src.origin != SourceOrigin::Git {
            // The files are already there: no git work, whatever the job asks for.
            strategy = GitStrategy::None;
        }
        let mut depth = src.depth;
        if let Some(v) = vars.value("GIT_DEPTH").filter(|v| !v.is_empty()) {
            match v.trim().parse::<i64>() {
                Ok(d) => depth = u32::try_from(d.max(0)).unwrap_or(u32::MAX),
                Err(_) => warnings.push(format!("Invalid GIT_DEPTH value {v:?}, using the default")),
            }
        }
        let checkout = match vars.value("GIT_CHECKOUT").filter(|v| !v.is_empty()) {
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                warnings.push(format!("Invalid GIT_CHECKOUT value {v:?}, using the default"));
                src.checkout
            }),
            None => src.checkout,
        };
        let clean = vars
            .value("GIT_CLEAN_FLAGS")
            .filter(|v| !v.is_empty())
            .unwrap_or(&src.clean_flags)
            .trim()
            .to_owned();
        let clean_flags = (!clean.is_empty() && clean != "none").then_some(clean);
        let fetch_extra_flags = vars
            .value("GIT_FETCH_EXTRA_FLAGS")
            .filter(|v| !v.is_empty())
            .unwrap_or(&src.fetch_extra_flags)
            .to_owned();
        let native_clone = crate::feature_flags::is_on(vars, "FF_USE_GIT_NATIVE_CLONE");
        let clone_extra_flags = vars.value("GIT_CLONE_EXTRA_FLAGS").unwrap_or_default().to_owned();
        let flag = |name| crate::feature_flags::is_on(vars, name);
        let mut submodule_strategy = src.submodule_strategy;
        if let Some(v) = vars.value("GIT_SUBMODULE_STRATEGY").filter(|v| !v.is_empty()) {
            match SubmoduleStrategy::parse(v) {
                Some(s) => submodule_strategy = s,
                None => warnings.push(format!(
                    "Invalid GIT_SUBMODULE_STRATEGY value {v:?}, using the default"
                )),
            }
        }
        let submodule_depth = vars
            .value("GIT_SUBMODULE_DEPTH")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .or(src.submodule_depth)
            .unwrap_or(depth);
        let submodule_paths = match vars.value("GIT_SUBMODULE_PATHS") {
            Some(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_owned).collect(),
            _ => src.submodule_paths.clone(),
        };
        let submodule_update_flags = vars
            .value("GIT_SUBMODULE_UPDATE_FLAGS")
            .filter(|v| !v.is_empty())
            .unwrap_or(&src.submodule_update_flags)
            .to_owned();
        let mut attempts = src.get_sources_attempts.max(1);
        if let Some(v) = vars.value("GET_SOURCES_ATTEMPTS").filter(|v| !v.is_empty()) {
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=10).contains(&n) => attempts = n,
                _ => warnings.push(format!(
                    "Invalid GET_SOURCES_ATTEMPTS value {v:?} (expected 1..10), using {attempts}"
                )),
            }
        }
        Self {
            strategy,
            depth,
            checkout,
            clean_flags,
            fetch_extra_flags,
            native_clone,
            clone_extra_flags,
            bundle_uris: flag("FF_USE_GIT_BUNDLE_URIS"),
            proactive_auth: flag("FF_USE_GIT_PROACTIVE_AUTH"),
            gitaly_correlation_id: flag("FF_USE_GITALY_CORRELATION_ID"),
            submodule_strategy,
            submodule_depth,
            submodule_paths,
            submodule_update_flags,
            attempts: attempts.min(10),
            warnings,
        }
    }
}

/// The remote URL to fetch from, with credentials (`clone_url` applied).
fn authenticated_url(plan: &JobPlan, ctx: &RunnerContext) -> String {
    let url = plan.sources.repo_url.expose();
    let Some(clone_url) = ctx.clone_url.as_deref().filter(|c| !c.is_empty()) else {
        return url.to_owned();
    };
    let (_, userinfo, _) = split_url(url);
    let (scheme, _, host_and_path) = split_url(clone_url.trim_end_matches('/'));
    let creds = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!(
        "{scheme}://{creds}{host_and_path}/{}.git",
        plan.project_path.trim_matches('/')
    )
}

/// When the repository URL GitLab sent names another host than the runner's `url` and no `clone_url` is set, the
/// hint printed if the fetch fails: GitLab's external name is often not reachable from an internal runner.
fn unreachable_host_hint(plan: &JobPlan, ctx: &RunnerContext) -> Option<String> {
    if ctx.clone_url.as_deref().is_some_and(|c| !c.is_empty()) || ctx.gitlab_url.is_empty() {
        return None;
    }
    let host = |url: &str| {
        let (_, _, rest) = split_url(url);
        rest[..rest.find('/').unwrap_or(rest.len())].to_ascii_lowercase()
    };
    let (repo_host, runner_host) = (host(plan.sources.repo_url.expose()), host(&ctx.gitlab_url));
    if repo_host.is_empty() || repo_host == runner_host {
        return None;
    }
    let base = ctx.gitlab_url.trim_end_matches('/');
    Some(format!(
        "hint: GitLab put {repo_host} into the repository URL, but this runner reaches GitLab at {runner_host}; if {repo_host} cannot be reached from here, set clone_url = \"{base}\" in this runner's [[runners]] entry of config.toml"
    ))
}

/// Splits `scheme://[userinfo@]rest` into its parts (`scheme` empty for non-URL remotes).
fn split_url(url: &str) -> (&str, Option<&str>, &str) {
    let Some(idx) = url.find("://") else {
        return ("", None, url);
    };
    let (scheme, rest) = (&url[..idx], &url[idx + 3..]);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (scheme, Some(&rest[..at]), &rest[at + 1..]),
        None => (scheme, None, rest),
    }
}

/// `(url without credentials, insteadOf base with credentials, base without credentials)`.
fn credential_rewrite(url: &str) -> (String, Option<(Secret, String)>) {
    let (scheme, userinfo, rest) = split_url(url);
    match userinfo {
        Some(userinfo) if scheme.starts_with("http") => {
            let host = &rest[..rest.find('/').unwrap_or(rest.len())];
            let plain = format!("{scheme}://{rest}");
            let base = format!("{scheme}://{host}");
            let with_creds = Secret::new(format!("{scheme}://{userinfo}@{host}"));
            (plain, Some((with_creds, base)))
        }
        _ => (url.to_owned(), None),
    }
}

/// Git configuration that authenticates requests to `base` without the credentials ever being part of a URL.
///
/// An `insteadOf` rewrite would put the token into the URL that git hands to `git-remote-http` on its command
/// line, readable by every local user in /proc. When the password is the job token, a credential helper reads it
/// from `CI_JOB_TOKEN` in the environment of the git process instead (the helper's own command line holds only the
/// variable's name); any other credentials keep the rewrite. The empty `helper` first drops helpers from the
/// user's global configuration, so a stored password cannot shadow the job token.
fn credential_config(with_creds: &Secret, base: &str, job_token: &str) -> String {
    let (_, userinfo, _) = split_url(with_creds.expose());
    let (user, password) = userinfo
        .map(|u| u.split_once(':').unwrap_or((u, "")))
        .unwrap_or(("", ""));
    if !job_token.is_empty() && password == job_token && !user.is_empty() {
        format!(
            "[credential {}]\n\thelper =\n\thelper = {}\n\tusername = {}\n",
            git_config_string(base),
            git_config_string("!f() { test \"$1\" = get && echo \"password=${CI_JOB_TOKEN}\"; }; f"),
            git_config_string(user)
        )
    } else {
        format!(
            "[url {}]\n\tinsteadOf = {}\n",
            git_config_string(with_creds.expose()),
            git_config_string(base)
        )
    }
}

pub(super) fn git_config_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Escapes a literal for use as a git config value-pattern (an extended regex).
fn regex_literal(s: &str) -> String {
    let mut out = String::from("^");
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

pub(super) fn words(flags: &str) -> String {
    flags.split_whitespace().map(quote).collect::<Vec<_>>().join(" ")
}

/// Inputs of the get_sources script.
pub struct SourcesScript<'a> {
    /// The job.
    pub plan: &'a JobPlan,
    /// Runner settings.
    pub ctx: &'a RunnerContext,
    /// Effective settings.
    pub settings: &'a GitSettings,
    /// Project directory.
    pub project_dir: &'a Path,
    /// Temp directory.
    pub tmp_dir: &'a Path,
    /// Value of `CI_SERVER_TLS_CA_FILE` when a CA is configured.
    pub ca_file_path: Option<PathBuf>,
    /// Values of `CI_SERVER_TLS_CERT_FILE` and `CI_SERVER_TLS_KEY_FILE` when the runner has a client
    /// certificate for GitLab.
    pub client_cert_paths: Option<(PathBuf, PathBuf)>,
}

/// Set by the get_sources script before anything else runs, the hooks included: git must never wait for a
/// password on a terminal.
pub const GIT_PROMPTS_OFF: &str = "export GIT_TERMINAL_PROMPT=0\nexport GCM_INTERACTIVE=Never\n";

impl SourcesScript<'_> {
    /// Renders the body (exports are added by the caller).
    pub fn render(&self) -> String {
        let s = self.settings;
        let dir = quote_path(self.project_dir);
        let mut out = String::new();
        for w in &s.warnings {
            out.push_str(&warning(w));
        }
        out.push_str(GIT_PROMPTS_OFF);
        out.push_str(&self.pre_hooks());
        match s.strategy {
            GitStrategy::None => {
                out.push_str(&notice("Skipping Git repository setup"));
                let _ = writeln!(out, "mkdir -p {dir}");
            }
            GitStrategy::Empty => {
                out.push_str(&notice(
                    "Skipping Git repository setup and creating an empty build directory",
                ));
                let _ = writeln!(out, "rm -rf {dir}\nmkdir -p {dir}");
            }
            GitStrategy::Clone | GitStrategy::Fetch => {
                self.fetch(&mut out);
                self.checkout(&mut out);
                self.submodules(&mut out);
            }
        }
        out.push_str(&self.post_hooks());
        out
    }

    fn uses_git(&self) -> bool {
        matches!(self.settings.strategy, GitStrategy::Clone | GitStrategy::Fetch)
    }

    /// What runs before the sources are touched: the runner's `pre_get_sources_script`, then (for clone and fetch)
    /// the job's `hooks:pre_get_sources_script`. Executors that fetch elsewhere run this in the job's environment.
    pub fn pre_hooks(&self) -> String {
        let mut out = String::new();
        if let Some(hook) = self.ctx.pre_get_sources_script.as_deref() {
            out.push_str(hook);
            out.push('\n');
        }
        if self.uses_git() {
            out.push_str(&super::bash::commands(&self.plan.sources.pre_get_sources_script));
        }
        out
    }

    /// What runs once the sources are in place, each part from the project directory: (for clone and fetch) the
    /// job's `hooks:post_get_sources_script`, then the runner's `post_get_sources_script`.
    pub fn post_hooks(&self) -> String {
        let dir = quote_path(self.project_dir);
        let mut out = String::new();
        if self.uses_git() {
            let _ = writeln!(out, "cd {dir}");
            out.push_str(&super::bash::commands(&self.plan.sources.post_get_sources_script));
        }
        if let Some(hook) = self.ctx.post_get_sources_script.as_deref() {
            let _ = writeln!(out, "cd {dir}");
            out.push_str(hook);
            out.push('\n');
        }
        out
    }

    fn fetch(&self, out: &mut String) {
        let s = self.settings;
        let dir = quote_path(self.project_dir);
        let url = authenticated_url(self.plan, self.ctx);
        let (remote, rewrite) = credential_rewrite(&url);
        // Upstream names the id while it writes the git config, before any "Fetching"/"Cloning" line.
        out.push_str(&self.correlation_notice());
        if s.strategy == GitStrategy::Clone && s.native_clone {
            // As upstream: the set-up first, then `git clone` or, with an older git, the init + fetch path.
            self.git_setup(out, &remote, rewrite.as_ref());
            let _ = writeln!(out, "rm -rf {dir}");
            let mut fallback = self.fetch_notice();
            self.init_and_fetch(&mut fallback, &remote);
            self.native_clone(out, &remote, &fallback);
            return;
        }
        out.push_str(&self.fetch_notice());
        self.git_setup(out, &remote, rewrite.as_ref());
        if s.strategy == GitStrategy::Clone {
            let _ = writeln!(out, "rm -rf {dir}");
        }
        self.init_and_fetch(out, &remote);
    }

    fn fetch_notice(&self) -> String {
        match self.settings.depth {
            0 => notice("Fetching changes..."),
            depth => notice(&format!("Fetching changes with git depth set to {depth}...")),
        }
    }

    /// The git template and the external config (credentials, TLS), stale locks and an old `.git/config` gone.
    fn git_setup(&self, out: &mut String, remote: &str, rewrite: Option<&(Secret, String)>) {
        let dir = quote_path(self.project_dir);
        let template = self.tmp_dir.join(TEMPLATE_DIR);
        let ext = self.tmp_dir.join(EXT_CONFIG);
        let ext_conf = self.ext_config(remote, rewrite);
        let template_conf = format!(
            "[init]\n\tdefaultBranch = none\n[fetch]\n\trecurseSubmodules = false\n[credential]\n\tinteractive = never\n[gc]\n\tautoDetach = false\n[include]\n\tpath = {}\n",
            git_config_string(&ext.to_string_lossy())
        );
        // LFS objects are fetched by `git lfs pull` after checkout, not by the smudge filter during it.
        out.push_str("if [ -z \"${GIT_LFS_SKIP_SMUDGE+x}\" ]; then export GIT_LFS_SKIP_SMUDGE=1; fi\n");
        if self.ctx.safe_directory_checkout {
            // As gitlab-runner: lets git work in a directory another user (an earlier job's image user) owns.
            let _ = writeln!(out, "git config --global --add safe.directory {dir}");
        }
        let _ = writeln!(out, "mkdir -p {}", quote_path(&template));
        // printf is a shell builtin: the credentials never appear in a process argv.
        let _ = writeln!(
            out,
            "(umask 077 && printf '%s' {} > {})",
            quote(&ext_conf),
            quote_path(&ext)
        );
        let _ = writeln!(
            out,
            "printf '%s' {} > {}",
            quote(&template_conf),
            quote_path(&template.join("config"))
        );

        self.remove_stale_locks(out);
        if self.ctx.clean_git_config.unwrap_or(self.ctx.executor != "shell") {
            // An earlier job could have left config or hooks that would run programs in this fetch.
            let git = self.project_dir.join(".git");
            let _ = writeln!(
                out,
                "rm -f {}\nrm -rf {}\nif [ -d {m} ]; then find {m} \\( -name config -type f -o -name hooks -type d \\) -prune -exec rm -rf {{}} +; fi",
                quote_path(&git.join("config")),
                quote_path(&git.join("hooks")),
                m = quote_path(&git.join("modules"))
            );
        }
    }

    /// `git init` (or reuse) of the project directory, the remote, and the fetch.
    fn init_and_fetch(&self, out: &mut String, remote: &str) {
        let s = self.settings;
        let dir = quote_path(self.project_dir);
        let template = self.tmp_dir.join(TEMPLATE_DIR);
        let ext = self.tmp_dir.join(EXT_CONFIG);
        let _ = writeln!(
            out,
            "if [ -d {git} ]; then __oxr_fresh=0; else __oxr_fresh=1; fi",
            git = quote_path(&self.project_dir.join(".git"))
        );
        let _ = writeln!(out, "git init {dir} --template {}", quote_path(&template));
        let _ = writeln!(out, "cd {dir}");
        let ext_str = ext.to_string_lossy();
        let _ = writeln!(
            out,
            "git config --replace-all include.path {} {}",
            quote(&ext_str),
            quote(&regex_literal(&ext_str))
        );
        let _ = writeln!(
            out,
            "if [ \"$__oxr_fresh\" = 1 ]; then\n{}fi",
            notice("Created fresh repository.")
        );
        let _ = writeln!(
            out,
            "if git remote get-url origin >/dev/null 2>&1; then git remote set-url origin {r}; else git remote add origin {r}; fi",
            r = quote(remote)
        );
        let fetch = self.fetch_command(out, remote);
        let line = if s.depth == 0 {
            format!("if [ -f .git/shallow ]; then {fetch} --unshallow; else {fetch}; fi")
        } else {
            fetch
        };
        self.remote_command(out, &line);
    }

    /// Writes `line`, a git command that talks to the remote, followed by the `clone_url` hint if it fails.
    pub(super) fn remote_command(&self, out: &mut String, line: &str) {
        match unreachable_host_hint(self.plan, self.ctx) {
            Some(hint) => {
                let _ = writeln!(
                    out,
                    "{line} || {{
__oxr_rc=$?
{}exit $__oxr_rc
}}",
                    warning(&hint)
                );
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }

    /// git's `-c http.userAgent=…` option, as gitlab-runner sends it.
    pub(super) fn user_agent(&self) -> String {
        format!(
            "-c http.userAgent={}",
            quote(&format!(
                "gitlab-runner {} {}/{}",
                self.ctx.version,
                std::env::consts::OS,
                go_arch()
            ))
        )
    }

    /// The git config included from the template: credentials (kept out of the remote URL) and the CA file for
    /// the server's host.
    fn ext_config(&self, remote: &str, rewrite: Option<&(Secret, String)>) -> String {
        let mut ext_conf = self.flag_config();
        if let Some((with_creds, base)) = rewrite {
            ext_conf.push_str(&credential_config(with_creds, base, self.plan.job_token.expose()));
        }
        let (scheme, _, rest) = split_url(remote);
        if scheme.starts_with("http") && (self.ca_file_path.is_some() || self.client_cert_paths.is_some()) {
            let host = &rest[..rest.find('/').unwrap_or(rest.len())];
            let _ = writeln!(
                ext_conf,
                "[http {}]",
                git_config_string(&format!("{scheme}://{host}"))
            );
            let mut setting = |name: &str, path: &Path| {
                let _ = writeln!(
                    ext_conf,
                    "\t{name} = {}",
                    git_config_string(&path.to_string_lossy())
                );
            };
            if let Some(ca) = &self.ca_file_path {
                setting("sslCAInfo", ca);
            }
            // As gitlab-runner: git presents the runner's client certificate to the GitLab host.
            if let Some((cert, key)) = &self.client_cert_paths {
                setting("sslCert", cert);
                setting("sslKey", key);
            }
        }
        ext_conf
    }

    /// A git process killed by an earlier job (timeout, cancel) leaves lock files that would fail this fetch.
    fn remove_stale_locks(&self, out: &mut String) {
        for lock in [
            "index.lock",
            "shallow.lock",
            "HEAD.lock",
            "hooks/post-checkout",
            "config.lock",
        ] {
            let _ = writeln!(
                out,
                "rm -f {}",
                quote_path(&self.project_dir.join(".git").join(lock))
            );
        }
        let refs = self.project_dir.join(".git").join("refs");
        let _ = writeln!(
            out,
            "if [ -d {r} ]; then find {r} -type f -name '*.lock' -exec rm -f {{}} + 2>/dev/null || true; fi",
            r = quote_path(&refs)
        );
    }

    /// `git fetch` with the refspecs, depth and extra flags, but without `--unshallow` (the caller decides).
    fn fetch_command(&self, out: &mut String, remote: &str) -> String {
        let s = self.settings;
        let mut fetch = format!(
            "git {}{} fetch origin --no-recurse-submodules",
            self.user_agent(),
            self.proactive_auth(out, remote)
        );
        for refspec in &self.plan.sources.refspecs {
            fetch.push(' ');
            fetch.push_str(&quote(refspec));
        }
        if s.depth > 0 {
            let _ = write!(fetch, " --depth {}", s.depth);
        }
        let extra = words(&s.fetch_extra_flags);
        if !extra.is_empty() {
            fetch.push(' ');
            fetch.push_str(&extra);
        }
        fetch
    }

    fn checkout(&self, out: &mut String) {
        let s = self.settings;
        let sources = &self.plan.sources;
        if !s.checkout {
            out.push_str(&notice("Skipping Git checkout"));
            return;
        }
        let short: String = sources.sha.chars().take(8).collect();
        out.push_str(&notice(&format!(
            "Checking out {short} as detached HEAD (ref is {})...",
            sources.ref_name
        )));
        // A checkout in a partial clone fetches missing objects from the remote: it authenticates like the fetch.
        let (remote, _) = credential_rewrite(&authenticated_url(self.plan, self.ctx));
        let proactive = self.proactive_auth(out, &remote);
        let _ = writeln!(
            out,
            "git -c submodule.recurse=false{proactive} checkout -f -q {}",
            quote(&sources.sha)
        );
        if let Some(flags) = &s.clean_flags {
            let _ = writeln!(out, "git clean {}", words(flags));
        }
        out.push_str("if git lfs version >/dev/null 2>&1; then git lfs pull; fi\n");
    }

    fn submodules(&self, out: &mut String) {
        let s = self.settings;
        let recursive = match s.submodule_strategy {
            SubmoduleStrategy::None => {
                out.push_str(&notice("Skipping Git submodules setup"));
                return;
            }
            SubmoduleStrategy::Normal => "",
            SubmoduleStrategy::Recursive => " --recursive",
        };
        let paths = if s.submodule_paths.is_empty() {
            String::new()
        } else {
            format!(" -- {}", words(&s.submodule_paths.join(" ")))
        };
        let what = if recursive.is_empty() {
            "Updating/initializing submodules"
        } else {
            "Updating/initializing submodules recursively"
        };
        if s.submodule_depth > 0 {
            out.push_str(&notice(&format!(
                "{what} with git depth set to {}...",
                s.submodule_depth
            )));
        } else {
            out.push_str(&notice(&format!("{what}...")));
        }
        let ext = quote(&self.tmp_dir.join(EXT_CONFIG).to_string_lossy());
        let depth = if s.submodule_depth > 0 {
            format!(" --depth {}", s.submodule_depth)
        } else {
            String::new()
        };
        let flags = words(&s.submodule_update_flags);
        let flags = if flags.is_empty() {
            flags
        } else {
            format!(" {flags}")
        };
        let clean = s.clean_flags.as_deref().map(words);
        let update =
            format!("git -c include.path={ext} submodule update --init{recursive}{depth}{flags}{paths}");
        let sync = format!("git submodule sync{recursive}{paths}");
        let _ = writeln!(out, "git submodule init{paths}");
        let _ = writeln!(out, "{sync}");
        if let Some(clean) = &clean {
            let _ = writeln!(out, "git submodule foreach{recursive} git clean {clean}");
        }
        let _ = writeln!(out, "git submodule foreach{recursive} git reset --hard");
        // A moved submodule URL makes the first update fail; gitlab-runner syncs and retries once.
        let _ = writeln!(out, "if ! {update}; then {sync}; {update}; fi");
        if let Some(clean) = &clean {
            let _ = writeln!(out, "git submodule foreach{recursive} git clean {clean}");
        }
        let _ = writeln!(
            out,
            "git submodule foreach{recursive} git config include.path {ext}"
        );
        let _ = writeln!(
            out,
            "if git lfs version >/dev/null 2>&1; then git submodule foreach{recursive} git lfs pull; fi"
        );
    }
}

/// `clear_worktree` body: delete tracked and untracked files before another get_sources attempt.
pub fn clear_worktree(project_dir: &Path) -> String {
    format!(
        "if [ -d {dir} ]; then\n  cd {dir}\n  git rm -rf --ignore-unmatch --quiet . || true\n  git clean -ffdx -q || true\nfi\n",
        dir = quote_path(project_dir)
    )
}

/// Go's name for the CPU architecture (`CI_RUNNER_EXECUTABLE_ARCH`, user agent).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The get_sources script of `plan` with the job variables `vars` on a default runner (`/b/p`), for the script
/// modules' unit tests.
#[cfg(test)]
pub(crate) fn render_sources(plan: &crate::plan::JobPlan, vars: &[(&str, &str)]) -> String {
    use crate::variables::{Variable, Variables};
    let vars: Variables = vars.iter().map(|(k, v)| Variable::new(*k, *v)).collect();
    let settings = GitSettings::resolve(plan, &vars);
    SourcesScript {
        plan,
        ctx: &crate::plan::RunnerContext::default(),
        settings: &settings,
        project_dir: std::path::Path::new("/b/p"),
        tmp_dir: std::path::Path::new("/b/p.tmp"),
        ca_file_path: None,
        client_cert_paths: None,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_moves_credentials_out() {
        let (remote, rewrite) = credential_rewrite("https://gitlab-ci-token:tok@gitlab.example.com/g/p.git");
        assert_eq!(remote, "https://gitlab.example.com/g/p.git");
        let Some((with, base)) = rewrite else {
            panic!("no rewrite")
        };
        assert_eq!(with.expose(), "https://gitlab-ci-token:tok@gitlab.example.com");
        assert_eq!(base, "https://gitlab.example.com");
        assert!(credential_rewrite("file:///tmp/repo").1.is_none());
    }

    #[test]
    fn clone_url_override() {
        let plan = JobPlan {
            project_path: "g/p".into(),
            sources: crate::plan::Sources {
                repo_url: "https://gitlab-ci-token:tok@gitlab.example.com/g/p.git".into(),
                ..Default::default()
            },
            ..JobPlan::default()
        };
        let ctx = RunnerContext {
            clone_url: Some("http://10.0.0.1:8080/".into()),
            ..RunnerContext::default()
        };
        assert_eq!(
            authenticated_url(&plan, &ctx),
            "http://gitlab-ci-token:tok@10.0.0.1:8080/g/p.git"
        );
    }
}
