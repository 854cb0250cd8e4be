//! `install`, `uninstall`, `start`, `stop`, `restart`, `status`: oxrunner as a systemd service, with
//! gitlab-runner's flags (`commands/service.go`). The default service name is `oxrunner`; `--service
//! gitlab-runner` replaces gitlab-runner's own unit in place. Only systemd is supported (see `systemd.rs` for what
//! happens without it); the unit's content is in `unit.rs`.

mod carry;
mod owner;
mod systemd;
mod unit;
mod version;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::parse_go_bool;
pub use systemd::UNIT_DIR_ENV;
pub use unit::GRACEFUL_STOP;

/// The service name when `--service` is not given.
pub const DEFAULT_SERVICE: &str = "oxrunner";

/// The flags every service command takes.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Service name.
    #[arg(short = 'n', long = "service", default_value = DEFAULT_SERVICE)]
    pub service: String,
    /// Manage the service in your own systemd instance (systemctl --user); not for root.
    #[arg(long = "user-service", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub user_service: Option<bool>,
}

/// `install`'s flags.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The runner's working directory (default: the current directory).
    #[arg(short = 'd', long = "working-directory")]
    pub working_directory: Option<PathBuf>,
    /// Config file the service runs with (default: this user's default config file).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Make the service log to syslog (`run --syslog`); systemd's journal collects the output anyway.
    #[arg(long = "syslog", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub syslog: Option<bool>,
    /// (root) Shell jobs run as this user; the runner itself runs as root (`run --user`).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// (root) The whole service runs as this user (`User=` in the unit); its config is `~USER/config.toml`.
    #[arg(short = 'i', long = "init-user")]
    pub init_user: Option<String>,
}

/// Which control command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Uninstall,
    Start,
    Stop,
    Restart,
    Status,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Uninstall => "uninstall",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Status => "status",
        }
    }
}

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// gitlab-runner offers `--user-service` to non-root users only.
fn user_service(args: &ServiceArgs) -> anyhow::Result<bool> {
    let wanted = args.user_service.unwrap_or(false);
    if wanted && is_root() {
        bail!(
            "--user-service is for non-root users\nhint: as root, leave it out: the service goes to the system \
             instance of systemd"
        );
    }
    Ok(wanted)
}

pub async fn install(mut args: InstallArgs) -> anyhow::Result<ExitCode> {
    let name = args.service.service.clone();
    unit::check_service_name(&name)?;
    let user_service = user_service(&args.service)?;
    let target = systemd::unit_target("install", user_service)?;
    let path = target.unit_path(&name);
    // Checked before anything is written: a refused install leaves no config file behind either.
    match std::fs::read_to_string(&path) {
        Ok(existing) if unit::runs_a_runner(&existing) => {
            errln!("Replacing the existing runner unit {}", path.display());
            carry::carry_over(&existing, &mut args);
        }
        Ok(_) => bail!(
            "{} already exists and does not start a GitLab runner\nhint: choose another name with \
             --service NAME, or remove that unit first",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    // After the carry-over: the old unit's `--user` counts as given.
    check_users(&args)?;
    // Only the systemd that will run the unit counts: with UNIT_DIR_ENV the unit is for another host.
    let systemd_version = if target.manage {
        systemd::version(user_service).await
    } else {
        None
    };
    let mut spec = unit_spec(&args, user_service)?;
    spec.abort_on_stop_timeout = version::has_abort_on_stop_timeout(systemd_version);
    if let Some(v) = systemd_version.filter(|_| !spec.abort_on_stop_timeout) {
        errln!(
            "{}",
            version::old_systemd_warning(v, &name, unit::GRACEFUL_STOP.as_secs())
        );
    }
    let text = unit::render(&spec)?;
    write_unit(&path, &text)?;
    errln!("Installed {}", path.display());
    let unit_name = format!("{name}.service");
    if target.manage {
        systemd::systemctl_ok(user_service, &["daemon-reload"]).await?;
        systemd::systemctl_ok(user_service, &["enable", &unit_name]).await?;
        errln!(
            "Enabled {unit_name}; start it with `oxrunner start -n {name}` (a running service picks up the \
             new unit at `oxrunner restart -n {name}`)"
        );
    } else {
        errln!(
            "systemd was not told ({UNIT_DIR_ENV} is set): run `systemctl daemon-reload && systemctl enable \
             {unit_name}` where the unit is used"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check_users(args: &InstallArgs) -> anyhow::Result<()> {
    if args.user.is_some() && args.init_user.is_some() {
        bail!(
            "give only one of --user and --init-user\nhint: --user USER runs jobs as USER, --init-user USER the whole service"
        );
    }
    for (flag, value) in [("--user", &args.user), ("--init-user", &args.init_user)] {
        if let Some(user) = value {
            unit::check_user_name(user)?;
            if !is_root() {
                bail!(
                    "{flag} is not supported for non-root users\nhint: leave it out (the service runs as you), or \
                     install the service as root"
                );
            }
        }
    }
    if is_root() && args.user.is_none() && args.init_user.is_none() {
        bail!(
            "say which user the service runs jobs as\nhint: --user gitlab-runner (the runner runs as root, jobs as \
             that user) or --init-user gitlab-runner (everything runs as that user)"
        );
    }
    Ok(())
}

/// The unit for `install`'s flags. The config file is created (empty) when missing, as gitlab-runner does, so
/// that the service starts; its `shutdown_timeout` bounds the stop.
fn unit_spec(args: &InstallArgs, user_service: bool) -> anyhow::Result<unit::UnitSpec> {
    let config = match (&args.config, &args.init_user) {
        (Some(c), _) => c.clone(),
        // gitlab-runner's choice: the init user's home directory itself, not ~/.gitlab-runner.
        (None, Some(user)) => home_of(user)?.join("config.toml"),
        (None, None) => oxrunner_config::default_config_path(),
    };
    // The service starts in `/`, so relative paths would change their meaning.
    let config = std::path::absolute(&config).context("cannot resolve the config path")?;
    let working_dir = match &args.working_directory {
        Some(d) => std::path::absolute(d).context("cannot resolve the working directory")?,
        None => std::env::current_dir().context("cannot determine the current directory")?,
    };
    let doc = oxrunner_config::ConfigDocument::open_or_new(&config)?;
    if !config.exists() {
        let created = owner::first_missing_dir(&config);
        doc.save()?;
        if let Some(user) = &args.init_user {
            owner::give_to(user, &config, created.as_deref())?;
        }
        errln!("Created {}", config.display());
    }
    let shutdown_timeout = doc.config()?.shutdown_timeout();
    let exec = std::env::current_exe().context("cannot find the path of the oxrunner binary")?;

    let mut run = vec!["run".to_string(), "--config".into(), path_arg(&config)?];
    run.push("--working-directory".into());
    run.push(path_arg(&working_dir)?);
    run.push("--service".into());
    run.push(args.service.service.clone());
    if args.syslog == Some(true) {
        run.push("--syslog".into());
    }
    if let Some(user) = &args.user {
        run.push("--user".into());
        run.push(user.clone());
    }
    Ok(unit::UnitSpec {
        name: args.service.service.clone(),
        exec,
        args: run,
        user: args.init_user.clone(),
        user_service,
        shutdown_timeout,
        abort_on_stop_timeout: true,
    })
}

fn path_arg(p: &Path) -> anyhow::Result<String> {
    p.to_str().map(str::to_string).with_context(|| {
        format!(
            "{} is not valid UTF-8\nhint: a systemd unit needs UTF-8 paths",
            p.display()
        )
    })
}

fn home_of(user: &str) -> anyhow::Result<PathBuf> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.dir),
        Ok(None) => {
            bail!("no user `{user}` on this machine\nhint: create it first (useradd --create-home {user})")
        }
        Err(e) => Err(e).with_context(|| format!("cannot look up user `{user}`")),
    }
}

/// Replaces the unit in one step (temporary file, fsync, rename), so systemd never reads half a unit.
fn write_unit(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".oxrunner-unit.")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot write into {}\nhint: system services need root (sudo oxrunner install ...); as another \
                 user, --user-service installs one for you alone",
                dir.display()
            )
        })?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub async fn control(action: Action, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let name = args.service.clone();
    unit::check_service_name(&name)?;
    let user_service = user_service(&args)?;
    let unit_name = format!("{name}.service");
    match action {
        Action::Uninstall => uninstall(&name, user_service).await,
        Action::Status => {
            systemd::require_systemd(action.name())?;
            status(&name, &unit_name, user_service).await
        }
        Action::Start | Action::Stop | Action::Restart => {
            systemd::require_systemd(action.name())?;
            systemd::systemctl_ok(user_service, &[action.name(), &unit_name]).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn uninstall(name: &str, user_service: bool) -> anyhow::Result<ExitCode> {
    let target = systemd::unit_target("uninstall", user_service)?;
    let path = target.unit_path(name);
    match std::fs::read_to_string(&path) {
        // The same guard as install: `uninstall -n ssh` must not disable and delete someone else's service.
        Ok(existing) if !unit::runs_a_runner(&existing) => bail!(
            "{} does not start a GitLab runner: left alone\nhint: pass the name the runner was installed under \
             with --service",
            path.display()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: nothing to uninstall\nhint: pass the name it was installed under with --service",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let unit_name = format!("{name}.service");
    if target.manage {
        systemd::systemctl_ok(user_service, &["disable", &unit_name]).await?;
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    if target.manage {
        systemd::systemctl_ok(user_service, &["daemon-reload"]).await?;
    }
    errln!("Removed {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// gitlab-runner's `status`: `NAME: Service is running` on stdout and status 0, anything else on stderr and 1.
async fn status(name: &str, unit_name: &str, user_service: bool) -> anyhow::Result<ExitCode> {
    let active = systemd::systemctl(user_service, &["is-active", unit_name]).await?;
    let state = active.stdout.lines().next().unwrap_or("").to_string();
    let description = match state.as_str() {
        "active" | "activating" | "reloading" => {
            outln!("{name}: Service is running")?;
            return Ok(ExitCode::SUCCESS);
        }
        "inactive" => {
            let files =
                systemd::systemctl(user_service, &["list-unit-files", "-t", "service", unit_name]).await?;
            if files.stdout.contains(unit_name) {
                "Service has stopped".to_string()
            } else {
                "the service is not installed".to_string()
            }
        }
        "failed" => "service in failed state".to_string(),
        _ => "the service is not installed".to_string(),
    };
    errln!("{name}: {description}");
    Ok(ExitCode::FAILURE)
}
