//! Command-line surface: the commands, flags and environment variables of gitlab-runner.
//!
//! gitlab-runner parses booleans with Go's `strconv.ParseBool` and only accepts `--flag` or `--flag=value`
//! (never `--flag value`), so boolean flags here use `require_equals` and [`parse_go_bool`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::flags::commands::{RegisterArgs, RunSingleArgs};

#[derive(Debug, Parser)]
#[command(
    name = "oxrunner",
    about = "a fast, drop-in GitLab Runner",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version (like `gitlab-runner -v`).
    #[arg(short = 'v', long = "version", global = false)]
    pub version: bool,

    /// Debug logging.
    #[arg(long, env = "RUNNER_DEBUG", global = true, value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub debug: Option<bool>,

    /// Log level: debug, info, warn, error, fatal, panic.
    #[arg(short = 'l', long = "log-level", env = "LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Log format: runner, text, json.
    #[arg(long = "log-format", env = "LOG_FORMAT", global = true)]
    pub log_format: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a new runner.
    Register(Box<RegisterArgs>),
    /// Verify the registered runners.
    Verify(VerifyArgs),
    /// List the runners of the config file.
    List(ConfigArg),
    /// Check the syntax, keys and values of a config file.
    Lint(ConfigArg),
    /// Unregister runners.
    Unregister(UnregisterArgs),
    /// Reset a runner's authentication token.
    #[command(name = "reset-token")]
    ResetToken(crate::commands::reset_token::ResetTokenArgs),
    /// Run the multi-runner service.
    Run(RunArgs),
    /// Run one runner from flags, without a config file.
    #[command(name = "run-single")]
    RunSingle(Box<RunSingleArgs>),
    /// Run a repository's .gitlab-ci.yml locally.
    Exec(ExecArgs),
    /// Install the runner as a systemd service.
    Install(Box<crate::commands::service::InstallArgs>),
    /// Uninstall the service.
    Uninstall(crate::commands::service::ServiceArgs),
    /// Start the service.
    Start(crate::commands::service::ServiceArgs),
    /// Stop the service (running jobs finish first).
    Stop(crate::commands::service::ServiceArgs),
    /// Restart the service.
    Restart(crate::commands::service::ServiceArgs),
    /// Show whether the service runs.
    Status(crate::commands::service::ServiceArgs),
    /// Check the configuration, GitLab connection and executor host before a job fails.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(crate::commands::completion::CompletionArgs),
    /// Print the manual page (roff), or write one page per command with --output-dir.
    Man(crate::commands::completion::ManArgs),
    /// Archive files and upload them as the job's artifact (internal: called by stage scripts).
    #[command(name = "artifacts-uploader")]
    ArtifactsUploader(Box<crate::commands::helpers::UploaderArgs>),
    /// Download and extract a job's artifacts (internal: called by stage scripts).
    #[command(name = "artifacts-downloader")]
    ArtifactsDownloader(Box<crate::commands::helpers::DownloaderArgs>),
    /// Create a cache archive (internal: called by stage scripts).
    #[command(name = "cache-archiver")]
    CacheArchiver(Box<crate::commands::helpers::ArchiverArgs>),
    /// Extract a cache archive (internal: called by stage scripts).
    #[command(name = "cache-extractor")]
    CacheExtractor(Box<crate::commands::helpers::ExtractorArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(short = 'c', long = "config", env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

/// gitlab-runner's `--custom-*` flags: `[runners.custom]` (timeouts in seconds; `*-args` repeat, without env).
#[derive(Debug, Clone, Args, Default)]
pub struct CustomFlags {
    #[arg(long = "custom-config-exec", env = "CUSTOM_CONFIG_EXEC")]
    pub config_exec: Option<String>,
    #[arg(long = "custom-config-args")]
    pub config_args: Vec<String>,
    #[arg(long = "custom-config-exec-timeout", env = "CUSTOM_CONFIG_EXEC_TIMEOUT")]
    pub config_exec_timeout: Option<i64>,
    #[arg(long = "custom-prepare-exec", env = "CUSTOM_PREPARE_EXEC")]
    pub prepare_exec: Option<String>,
    #[arg(long = "custom-prepare-args")]
    pub prepare_args: Vec<String>,
    #[arg(long = "custom-prepare-exec-timeout", env = "CUSTOM_PREPARE_EXEC_TIMEOUT")]
    pub prepare_exec_timeout: Option<i64>,
    #[arg(long = "custom-run-exec", env = "CUSTOM_RUN_EXEC")]
    pub run_exec: Option<String>,
    #[arg(long = "custom-run-args")]
    pub run_args: Vec<String>,
    #[arg(long = "custom-cleanup-exec", env = "CUSTOM_CLEANUP_EXEC")]
    pub cleanup_exec: Option<String>,
    #[arg(long = "custom-cleanup-args")]
    pub cleanup_args: Vec<String>,
    #[arg(long = "custom-cleanup-exec-timeout", env = "CUSTOM_CLEANUP_EXEC_TIMEOUT")]
    pub cleanup_exec_timeout: Option<i64>,
    #[arg(long = "custom-graceful-kill-timeout", env = "CUSTOM_GRACEFUL_KILL_TIMEOUT")]
    pub graceful_kill_timeout: Option<i64>,
    #[arg(long = "custom-force-kill-timeout", env = "CUSTOM_FORCE_KILL_TIMEOUT")]
    pub force_kill_timeout: Option<i64>,
}

impl CustomFlags {
    /// Overrides the keys of `c` that a flag sets.
    pub fn apply_to(&self, c: &mut oxrunner_config::CustomConfig) {
        fn opt<T: Clone>(flag: &Option<T>, key: &mut Option<T>) {
            if flag.is_some() {
                key.clone_from(flag);
            }
        }
        fn list(flag: &[String], key: &mut Vec<String>) {
            if !flag.is_empty() {
                *key = flag.to_vec();
            }
        }
        opt(&self.config_exec, &mut c.config_exec);
        list(&self.config_args, &mut c.config_args);
        opt(&self.config_exec_timeout, &mut c.config_exec_timeout);
        opt(&self.prepare_exec, &mut c.prepare_exec);
        list(&self.prepare_args, &mut c.prepare_args);
        opt(&self.prepare_exec_timeout, &mut c.prepare_exec_timeout);
        if let Some(run) = &self.run_exec {
            c.run_exec.clone_from(run);
        }
        list(&self.run_args, &mut c.run_args);
        opt(&self.cleanup_exec, &mut c.cleanup_exec);
        list(&self.cleanup_args, &mut c.cleanup_args);
        opt(&self.cleanup_exec_timeout, &mut c.cleanup_exec_timeout);
        opt(&self.graceful_kill_timeout, &mut c.graceful_kill_timeout);
        opt(&self.force_kill_timeout, &mut c.force_kill_timeout);
    }

    /// `[runners.custom]` as the flags describe it.
    pub fn to_config(&self) -> oxrunner_config::CustomConfig {
        oxrunner_config::CustomConfig {
            config_exec: self.config_exec.clone(),
            config_args: self.config_args.clone(),
            config_exec_timeout: self.config_exec_timeout,
            prepare_exec: self.prepare_exec.clone(),
            prepare_args: self.prepare_args.clone(),
            prepare_exec_timeout: self.prepare_exec_timeout,
            run_exec: self.run_exec.clone().unwrap_or_default(),
            run_args: self.run_args.clone(),
            cleanup_exec: self.cleanup_exec.clone(),
            cleanup_args: self.cleanup_args.clone(),
            cleanup_exec_timeout: self.cleanup_exec_timeout,
            graceful_kill_timeout: self.graceful_kill_timeout,
            force_kill_timeout: self.force_kill_timeout,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Verify only the runner of this name.
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
    /// Remove runners the server no longer knows from the config file.
    #[arg(long = "delete", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub delete: Option<bool>,
}

#[derive(Clone, Args)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Name of the runner to unregister.
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// GitLab URL, for a runner that is not in the config file (with --token).
    #[arg(short = 'u', long = "url", env = "CI_SERVER_URL")]
    pub url: Option<String>,
    /// Token of the runner to unregister.
    #[arg(short = 't', long = "token", env = "CI_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificates for a runner that is not in the config file (configured runners use their own settings).
    #[arg(long = "tls-ca-file", env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS client certificate, as --tls-ca-file.
    #[arg(long = "tls-cert-file", env = "CI_SERVER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS client key, as --tls-ca-file.
    #[arg(long = "tls-key-file", env = "CI_SERVER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Unregister every runner of the config file.
    #[arg(long = "all-runners", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub all_runners: Option<bool>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Working directory: relative builds_dir and cache_dir live here.
    #[arg(short = 'd', long = "working-directory")]
    pub working_directory: Option<PathBuf>,
    /// Run shell jobs as this user.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Service name (accepted for compatibility with service managers).
    #[arg(short = 'n', long = "service")]
    pub service: Option<String>,
    /// Log to the system log socket (/dev/log, served by journald or syslog) instead of stderr.
    #[arg(long = "syslog", env = "LOG_SYSLOG", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub syslog: Option<bool>,
    /// Metrics and health server address (host:port).
    #[arg(long = "listen-address", env = "LISTEN_ADDRESS")]
    pub listen_address: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Jobs to run (default: the whole pipeline).
    pub jobs: Vec<String>,
    /// Also run the jobs the named jobs need.
    #[arg(long = "needs")]
    pub needs: bool,
    /// The pipeline file.
    #[arg(long = "file", default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// The repository directory.
    #[arg(long = "cwd")]
    pub cwd: Option<PathBuf>,
    /// Pipeline variable KEY=VALUE, repeatable.
    #[arg(long = "variable")]
    pub variable: Vec<String>,
    /// A file of KEY=VALUE lines.
    #[arg(long = "variables-file")]
    pub variables_file: Option<PathBuf>,
    /// How many jobs run at once (default: number of cores).
    #[arg(long = "concurrency")]
    pub concurrency: Option<usize>,
    /// Run every job with this executor: shell, docker or custom. Default: jobs with `image:` in Docker when an
    /// engine answers, the others in the shell. With custom, each job runs in exec's prepared copy of the
    /// repository on this machine (its CI_PROJECT_DIR), so the driver must see this machine's file system (a
    /// driver that runs jobs in a VM or a container without that path fails at the first stage).
    #[arg(long = "executor")]
    pub executor: Option<String>,
    /// `--executor custom`: read the driver settings from the first custom runner of this config.toml (the
    /// `--custom-*` flags override single keys).
    #[arg(long = "config", short = 'c')]
    pub config: Option<PathBuf>,
    // Boxed: thirteen options would make `exec` the one large `Command` variant.
    #[command(flatten)]
    pub custom: Box<CustomFlags>,
    /// Manual jobs to run.
    #[arg(long = "manual")]
    pub manual: Vec<String>,
    /// List the jobs GitLab would create and exit.
    #[arg(long = "list")]
    pub list: bool,
    /// With --list: JSON output.
    #[arg(long = "json")]
    pub json: bool,
    /// Print the merged configuration (includes, extends, references, defaults) and exit.
    #[arg(long = "print-config")]
    pub print_config: bool,
    #[command(flatten)]
    pub source: Box<crate::exec::source::SourceFlags>,
    /// Give jobs the committed files only (default: the working tree, uncommitted changes included).
    #[arg(long = "committed-only", env = "OXRUNNER_EXEC_COMMITTED_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    pub committed_only: bool,
    /// Copy each successful job's artifacts back into the working tree.
    #[arg(long = "write-back", env = "OXRUNNER_EXEC_WRITE_BACK", value_parser = clap::builder::BoolishValueParser::new())]
    pub write_back: bool,
    /// Start `when: delayed` jobs without waiting for `start_in`.
    #[arg(long = "no-delay", env = "OXRUNNER_EXEC_NO_DELAY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_delay: bool,
    /// Share caches with CI: use the `[runners.cache]` (S3, GCS or Azure) of the runner in this config.toml.
    /// Requires `--variable CI_PROJECT_ID=<id>`: the object names are the project's.
    #[arg(long = "cache-config", env = "OXRUNNER_CACHE_CONFIG")]
    pub cache_config: Option<PathBuf>,
    /// With --cache-config: the runner (its `name`) whose cache to use when the file has several.
    #[arg(long = "cache-runner", requires = "cache_config")]
    pub cache_runner: Option<String>,
}

/// Go's `strconv.ParseBool`, which is what gitlab-runner accepts for boolean flags and variables.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!(
            "invalid boolean `{other}` (use true or false, as --flag=true)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("t"), Ok(true));
        assert_eq!(parse_go_bool("FALSE"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn seed_register_command_parses() {
        let cli = Cli::try_parse_from([
            "oxrunner",
            "register",
            "-n",
            "--url",
            "https://gitlab.example.com/",
            "--registration-token",
            "tok",
            "--executor",
            "docker",
            "--docker-image",
            "docker:latest",
            "--description",
            "Docker Runner",
            "--docker-volumes",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--docker-volumes",
            "/cache",
            "--docker-privileged",
        ]);
        let Ok(Cli {
            command: Some(Command::Register(args)),
            ..
        }) = cli
        else {
            panic!("register did not parse: {cli:?}");
        };
        assert_eq!(args.non_interactive, Some(true));
        assert_eq!(args.name.as_deref(), Some("Docker Runner"));
        let given = |long: &str| {
            args.upstream
                .0
                .get(long)
                .map(|g| g.values.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            given("docker-volumes"),
            ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]
        );
        assert_eq!(given("docker-privileged"), ["true"]);
        assert_eq!(args.docker_image.as_deref(), Some("docker:latest"));
    }
}
