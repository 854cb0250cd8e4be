//! The argument structs of `register` and `run-single`: typed fields for what the commands themselves act on
//! (URL, tokens, executor, the registration settings GitLab stores), and the generated table for every setting
//! that only goes into the runner's configuration.

use std::fmt;
use std::path::PathBuf;

use clap::Args;

use super::{RegisterFlags, RunSingleFlags};
use crate::cli::{ConfigArg, parse_go_bool};

#[derive(Clone, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// A config.toml whose single [[runners]] entry fills every setting the flags leave unset.
    #[arg(long = "template-config", env = "TEMPLATE_CONFIG_FILE")]
    pub template_config: Option<PathBuf>,

    /// Run registration unattended.
    #[arg(short = 'n', long = "non-interactive", env = "REGISTER_NON_INTERACTIVE", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub non_interactive: Option<bool>,

    /// Don't remove the runner if registration fails.
    #[arg(long = "leave-runner", env = "REGISTER_LEAVE_RUNNER", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub leave_runner: Option<bool>,

    /// Runner's registration token (deprecated by GitLab in favour of --token).
    #[arg(
        short = 'r',
        long = "registration-token",
        env = "REGISTRATION_TOKEN",
        hide_env_values = true
    )]
    pub registration_token: Option<String>,

    /// GitLab instance URL.
    #[arg(short = 'u', long = "url", env = "CI_SERVER_URL")]
    pub url: Option<String>,

    /// Runner authentication token (glrt-...) of a runner created in the GitLab UI.
    #[arg(short = 't', long = "token", env = "CI_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Runner name.
    #[arg(long = "name", visible_alias = "description", env = "RUNNER_NAME")]
    pub name: Option<String>,

    /// Comma-separated tags.
    #[arg(long = "tag-list", env = "RUNNER_TAG_LIST")]
    pub tag_list: Option<String>,

    /// Pick jobs without tags (default true when the tag list is empty).
    #[arg(long = "run-untagged", env = "REGISTER_RUN_UNTAGGED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub run_untagged: Option<bool>,

    /// Lock the runner to the current project (default true).
    #[arg(long = "locked", env = "REGISTER_LOCKED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub locked: Option<bool>,

    /// not_protected or ref_protected.
    #[arg(long = "access-level", env = "REGISTER_ACCESS_LEVEL")]
    pub access_level: Option<String>,

    /// Maximum job timeout in seconds.
    #[arg(long = "maximum-timeout", env = "REGISTER_MAXIMUM_TIMEOUT")]
    pub maximum_timeout: Option<i64>,

    /// Register the runner paused.
    #[arg(long = "paused", env = "REGISTER_PAUSED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub paused: Option<bool>,

    /// Maintenance note.
    #[arg(long = "maintenance-note", env = "REGISTER_MAINTENANCE_NOTE")]
    pub maintenance_note: Option<String>,

    /// CA certificate file for the GitLab server.
    #[arg(long = "tls-ca-file", env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Client certificate for the GitLab server.
    #[arg(long = "tls-cert-file", env = "CI_SERVER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// Client key for the GitLab server.
    #[arg(long = "tls-key-file", env = "CI_SERVER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Executor: shell, docker, custom.
    #[arg(long = "executor", env = "RUNNER_EXECUTOR")]
    pub executor: Option<String>,

    /// Shell: bash, sh.
    #[arg(long = "shell", env = "RUNNER_SHELL")]
    pub shell: Option<String>,

    /// Default Docker image for jobs without `image:` (asked for when missing and interactive).
    #[arg(long = "docker-image", env = "DOCKER_IMAGE")]
    pub docker_image: Option<String>,

    /// Every other gitlab-runner flag (data/upstream-flags.tsv). Last, so that it skips the flags above.
    #[command(flatten)]
    pub upstream: RegisterFlags,
}

#[derive(Clone, Args)]
pub struct RunSingleArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Use the runner of this name from the config file.
    #[arg(short = 'r', long = "runner")]
    pub runner: Option<String>,
    #[arg(short = 'u', long = "url", env = "CI_SERVER_URL")]
    pub url: Option<String>,
    #[arg(short = 't', long = "token", env = "CI_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long = "name", visible_alias = "description", env = "RUNNER_NAME")]
    pub name: Option<String>,
    #[arg(long = "executor", env = "RUNNER_EXECUTOR")]
    pub executor: Option<String>,
    /// Exit after this many jobs (0 = no limit).
    #[arg(long = "max-builds", env = "MAX_BUILDS", default_value_t = 0)]
    pub max_builds: u64,
    /// Exit after this many seconds without a job (0 = never).
    #[arg(long = "wait-timeout", env = "WAIT_TIMEOUT", default_value_t = 0)]
    pub wait_timeout: u64,
    #[arg(long = "shutdown-timeout", env = "SHUTDOWN_TIMEOUT", default_value_t = 0)]
    pub shutdown_timeout: u64,
    /// Every other gitlab-runner flag (data/upstream-flags.tsv). Last, so that it skips the flags above.
    #[command(flatten)]
    pub upstream: RunSingleFlags,
}

/// Tokens are shown as present or absent only.
fn secret(v: &Option<String>) -> &'static str {
    if v.is_some() { "Some(<redacted>)" } else { "None" }
}

impl fmt::Debug for RegisterArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterArgs")
            .field("config", &self.config)
            .field("template_config", &self.template_config)
            .field("non_interactive", &self.non_interactive)
            .field("registration_token", &secret(&self.registration_token))
            .field("url", &self.url)
            .field("token", &secret(&self.token))
            .field("name", &self.name)
            .field("executor", &self.executor)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RunSingleArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSingleArgs")
            .field("config", &self.config)
            .field("runner", &self.runner)
            .field("url", &self.url)
            .field("token", &secret(&self.token))
            .field("executor", &self.executor)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn debug_output_hides_tokens_and_flag_values() {
        let cli = Cli::try_parse_from([
            "oxrunner",
            "register",
            "--registration-token",
            "GR1348941-secret-registration",
            "--token",
            "glrt-secret-auth",
            "--cache-s3-secret-key",
            "s3-secret-value",
        ])
        .unwrap();
        let Some(Command::Register(args)) = cli.command else {
            panic!("not register");
        };
        let shown = format!("{args:?}");
        for secret in [
            "GR1348941-secret-registration",
            "glrt-secret-auth",
            "s3-secret-value",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("cache-s3-secret-key"), "{shown}");
    }
}
