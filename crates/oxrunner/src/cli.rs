//! Command-line surface: the commands, flags and environment variables of gitlab-runner.
//!
//! gitlab-runner parses booleans with Go's `strconv.ParseBool` and only accepts `--flag` or `--flag=value`
//! (never `--flag value`), so boolean flags here use `require_equals` and [`parse_go_bool`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Unregister runners.
    Unregister(UnregisterArgs),
    /// Run the multi-runner service.
    Run(RunArgs),
    /// Run one runner from flags, without a config file.
    #[command(name = "run-single")]
    RunSingle(Box<RunSingleArgs>),
    /// Run a repository's .gitlab-ci.yml locally.
    Exec(ExecArgs),
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

#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,

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
    #[arg(long = "name", alias = "description", env = "RUNNER_NAME")]
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

    /// Executor: shell, docker, ...
    #[arg(long = "executor", env = "RUNNER_EXECUTOR")]
    pub executor: Option<String>,

    /// Shell: bash, sh.
    #[arg(long = "shell", env = "RUNNER_SHELL")]
    pub shell: Option<String>,

    #[arg(long = "builds-dir", env = "RUNNER_BUILDS_DIR")]
    pub builds_dir: Option<String>,

    #[arg(long = "cache-dir", env = "RUNNER_CACHE_DIR")]
    pub cache_dir: Option<String>,

    #[arg(long = "clone-url", env = "CLONE_URL")]
    pub clone_url: Option<String>,

    /// Extra environment variable for jobs (KEY=VALUE), repeatable.
    #[arg(long = "env", env = "RUNNER_ENV", value_delimiter = ',')]
    pub env: Vec<String>,

    /// Maximum number of jobs this runner handles at once (0 = unlimited).
    #[arg(long = "limit", env = "RUNNER_LIMIT")]
    pub limit: Option<i64>,

    /// Maximum job log size in KiB.
    #[arg(long = "output-limit", env = "RUNNER_OUTPUT_LIMIT")]
    pub output_limit: Option<i64>,

    #[arg(long = "request-concurrency", env = "RUNNER_REQUEST_CONCURRENCY")]
    pub request_concurrency: Option<i64>,

    #[arg(long = "pre-get-sources-script", env = "RUNNER_PRE_GET_SOURCES_SCRIPT")]
    pub pre_get_sources_script: Option<String>,

    #[arg(long = "post-get-sources-script", env = "RUNNER_POST_GET_SOURCES_SCRIPT")]
    pub post_get_sources_script: Option<String>,

    #[arg(long = "pre-build-script", env = "RUNNER_PRE_BUILD_SCRIPT")]
    pub pre_build_script: Option<String>,

    #[arg(long = "post-build-script", env = "RUNNER_POST_BUILD_SCRIPT")]
    pub post_build_script: Option<String>,

    /// Feature flags, NAME=true|false, repeatable.
    #[arg(long = "feature-flags", env = "FEATURE_FLAGS", value_delimiter = ',')]
    pub feature_flags: Vec<String>,

    #[arg(long = "custom_build_dir-enabled", env = "CUSTOM_BUILD_DIR_ENABLED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub custom_build_dir_enabled: Option<bool>,

    #[command(flatten)]
    pub docker: DockerFlags,

    #[command(flatten)]
    pub cache: CacheFlags,

    #[command(flatten)]
    pub custom: CustomFlags,
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

#[derive(Debug, Clone, Args, Default)]
pub struct DockerFlags {
    /// Default Docker image for jobs without `image:`.
    #[arg(long = "docker-image", env = "DOCKER_IMAGE")]
    pub image: Option<String>,

    #[arg(long = "docker-host", env = "DOCKER_HOST")]
    pub host: Option<String>,

    #[arg(long = "docker-tlsverify", env = "DOCKER_TLS_VERIFY", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,

    #[arg(long = "docker-cert-path", env = "DOCKER_CERT_PATH")]
    pub tls_cert_path: Option<String>,

    #[arg(long = "docker-privileged", env = "DOCKER_PRIVILEGED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub privileged: Option<bool>,

    /// Volumes (host:container or container path), repeatable.
    #[arg(long = "docker-volumes", env = "DOCKER_VOLUMES", value_delimiter = ',')]
    pub volumes: Vec<String>,

    #[arg(long = "docker-disable-cache", env = "DOCKER_DISABLE_CACHE", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_cache: Option<bool>,

    #[arg(id = "docker_cache_dir", long = "docker-cache-dir", env = "DOCKER_CACHE_DIR")]
    pub cache_dir: Option<String>,

    /// always, if-not-present, never; repeatable.
    #[arg(
        long = "docker-pull-policy",
        env = "DOCKER_PULL_POLICY",
        value_delimiter = ','
    )]
    pub pull_policy: Vec<String>,

    #[arg(
        long = "docker-allowed-images",
        env = "DOCKER_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_images: Vec<String>,

    #[arg(
        long = "docker-allowed-services",
        env = "DOCKER_ALLOWED_SERVICES",
        value_delimiter = ','
    )]
    pub allowed_services: Vec<String>,

    #[arg(long = "docker-network-mode", env = "DOCKER_NETWORK_MODE")]
    pub network_mode: Option<String>,

    #[arg(long = "docker-shm-size", env = "DOCKER_SHM_SIZE")]
    pub shm_size: Option<i64>,

    #[arg(long = "docker-memory", env = "DOCKER_MEMORY")]
    pub memory: Option<String>,

    #[arg(long = "docker-cpus", env = "DOCKER_CPUS")]
    pub cpus: Option<String>,

    #[arg(long = "docker-user", env = "DOCKER_USER")]
    pub user: Option<String>,

    #[arg(
        long = "docker-extra-hosts",
        env = "DOCKER_EXTRA_HOSTS",
        value_delimiter = ','
    )]
    pub extra_hosts: Vec<String>,

    #[arg(long = "docker-dns", env = "DOCKER_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,

    #[arg(long = "docker-cap-add", env = "DOCKER_CAP_ADD", value_delimiter = ',')]
    pub cap_add: Vec<String>,

    #[arg(long = "docker-cap-drop", env = "DOCKER_CAP_DROP", value_delimiter = ',')]
    pub cap_drop: Vec<String>,

    #[arg(long = "docker-devices", env = "DOCKER_DEVICES", value_delimiter = ',')]
    pub devices: Vec<String>,

    #[arg(
        long = "docker-security-opt",
        env = "DOCKER_SECURITY_OPT",
        value_delimiter = ','
    )]
    pub security_opt: Vec<String>,

    #[arg(
        long = "docker-wait-for-services-timeout",
        env = "DOCKER_WAIT_FOR_SERVICES_TIMEOUT"
    )]
    pub wait_for_services_timeout: Option<i64>,

    /// Accepted for compatibility; oxrunner needs no helper image (see ARCHITECTURE.md).
    #[arg(long = "docker-helper-image", env = "DOCKER_HELPER_IMAGE")]
    pub helper_image: Option<String>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct CacheFlags {
    /// s3, gcs or azure.
    #[arg(long = "cache-type", env = "CACHE_TYPE")]
    pub cache_type: Option<String>,

    #[arg(long = "cache-path", env = "CACHE_PATH")]
    pub path: Option<String>,

    #[arg(long = "cache-shared", env = "CACHE_SHARED", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub shared: Option<bool>,
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

#[derive(Debug, Clone, Args)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
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
    #[arg(long = "name", alias = "description", env = "RUNNER_NAME")]
    pub name: Option<String>,
    #[arg(long = "executor", env = "RUNNER_EXECUTOR")]
    pub executor: Option<String>,
    #[arg(long = "builds-dir", env = "RUNNER_BUILDS_DIR")]
    pub builds_dir: Option<String>,
    #[arg(long = "cache-dir", env = "RUNNER_CACHE_DIR")]
    pub cache_dir: Option<String>,
    #[arg(long = "tls-ca-file", env = "CI_SERVER_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Exit after this many jobs (0 = no limit).
    #[arg(long = "max-builds", env = "MAX_BUILDS", default_value_t = 0)]
    pub max_builds: u64,
    /// Exit after this many seconds without a job (0 = never).
    #[arg(long = "wait-timeout", env = "WAIT_TIMEOUT", default_value_t = 0)]
    pub wait_timeout: u64,
    #[arg(long = "shutdown-timeout", env = "SHUTDOWN_TIMEOUT", default_value_t = 0)]
    pub shutdown_timeout: u64,
    #[arg(long = "output-limit", env = "RUNNER_OUTPUT_LIMIT")]
    pub output_limit: Option<i64>,
    #[command(flatten)]
    pub docker: DockerFlags,
    /// `--executor custom` without a config file: the driver programs.
    #[command(flatten)]
    pub custom: Box<CustomFlags>,
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
    /// Give jobs the committed files only (default: the working tree, uncommitted changes included).
    #[arg(long = "committed-only", env = "OXRUNNER_EXEC_COMMITTED_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    pub committed_only: bool,
    /// Copy each successful job's artifacts back into the working tree.
    #[arg(long = "write-back", env = "OXRUNNER_EXEC_WRITE_BACK", value_parser = clap::builder::BoolishValueParser::new())]
    pub write_back: bool,
    /// Start `when: delayed` jobs without waiting for `start_in`.
    #[arg(long = "no-delay", env = "OXRUNNER_EXEC_NO_DELAY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_delay: bool,
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
        assert_eq!(
            args.docker.volumes,
            ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]
        );
        assert_eq!(args.docker.privileged, Some(true));
    }
}
