//! Version information, printed in the same layout as `gitlab-runner -v`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("OXRUNNER_REVISION");
pub const BRANCH: &str = env!("OXRUNNER_BRANCH");
pub const BUILT: &str = env!("OXRUNNER_BUILT");
pub const RUSTC: &str = env!("OXRUNNER_RUSTC");
pub const TARGET: &str = env!("OXRUNNER_TARGET");

/// The gitlab-runner release whose contract (commands, flags, config.toml, Runner API, job variables) this build
/// follows: the release the flag table was generated from.
pub const GITLAB_RUNNER_COMPAT: &str = crate::flags::UPSTREAM_VERSION;

/// The version oxrunner reports to GitLab (`info.version` on register, verify, job requests and updates) and to
/// jobs (`CI_RUNNER_VERSION`): the plain gitlab-runner release we follow, e.g. `19.4.0`.
///
/// GitLab reads `info.version` to decide a runner's upgrade status against gitlab-runner's releases, and scripts
/// gate on `CI_RUNNER_VERSION` the same way. Our own version there (`0.1.0`) would make every oxrunner look years
/// out of date; any suffix would too, because GitLab's `VersionInfo` ranks `19.4.0<suffix>` below `19.4.0` (a
/// pre-release) and would recommend an upgrade forever. The product shows in `info.name`, the revision
/// ([`reported_revision`]) and the User-Agent instead.
pub fn reported_version() -> String {
    GITLAB_RUNNER_COMPAT.to_string()
}

/// `info.revision` and `CI_RUNNER_REVISION`: `oxrunner-<own version>-<git revision>`, so the runner list and job
/// logs still say which oxrunner build ran.
pub fn reported_revision() -> String {
    format!("oxrunner-{VERSION}-{REVISION}")
}

/// `linux/amd64`-style platform string, as gitlab-runner reports it.
pub fn os_arch() -> String {
    format!("{}/{}", oxrunner_api::go_os(), oxrunner_api::go_arch())
}

pub fn long_version() -> String {
    format!(
        "Version:      {VERSION}\nGit revision: {REVISION}\nGit branch:   {BRANCH}\nRust version: {RUSTC}\nBuilt:        {BUILT}\nOS/Arch:      {}\nTarget:       {TARGET}\nCompatible:   gitlab-runner {GITLAB_RUNNER_COMPAT} (reported as {})\n",
        os_arch(),
        reported_version()
    )
}
