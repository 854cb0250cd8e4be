//! Version information, printed in the same layout as `gitlab-runner -v`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("OXRUNNER_REVISION");
pub const BRANCH: &str = env!("OXRUNNER_BRANCH");
pub const BUILT: &str = env!("OXRUNNER_BUILT");
pub const RUSTC: &str = env!("OXRUNNER_RUSTC");
pub const TARGET: &str = env!("OXRUNNER_TARGET");

/// `linux/amd64`-style platform string, as gitlab-runner reports it.
pub fn os_arch() -> String {
    format!("{}/{}", oxrunner_api::go_os(), oxrunner_api::go_arch())
}

pub fn long_version() -> String {
    format!(
        "Version:      {VERSION}\nGit revision: {REVISION}\nGit branch:   {BRANCH}\nRust version: {RUSTC}\nBuilt:        {BUILT}\nOS/Arch:      {}\nTarget:       {TARGET}\n",
        os_arch()
    )
}
