//! Where units live and how systemd is asked to act on them.
//!
//! systemd is "running" when `/run/systemd/system` exists (what `sd_booted()` checks). In a container or a CI
//! job it does not, and `systemctl` there only prints a pile of D-Bus errors, so every command says so once, with
//! what to do instead.
//!
//! `OXRUNNER_SYSTEMD_UNIT_DIR` (for packagers building an image or a package, and for tests) makes `install` and
//! `uninstall` act on the unit file in that directory only: systemd is neither asked nor required.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The environment variable that redirects unit files (packagers, tests).
pub const UNIT_DIR_ENV: &str = "OXRUNNER_SYSTEMD_UNIT_DIR";

/// Where a unit goes and whether systemd is to be told about it.
#[derive(Debug)]
pub struct Target {
    pub dir: PathBuf,
    /// False when the directory came from [`UNIT_DIR_ENV`]: only the file is written.
    pub manage: bool,
}

impl Target {
    pub fn unit_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.service"))
    }
}

/// The unit directory for `install`/`uninstall`.
pub fn unit_target(command: &str, user_service: bool) -> anyhow::Result<Target> {
    if let Some(dir) = std::env::var_os(UNIT_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(Target {
            dir: PathBuf::from(dir),
            manage: false,
        });
    }
    require_systemd(command)?;
    let dir = if user_service {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("HOME is not set\nhint: a user service lives in ~/.config/systemd/user; set HOME")?;
        PathBuf::from(home).join(".config/systemd/user")
    } else {
        PathBuf::from("/etc/systemd/system")
    };
    Ok(Target { dir, manage: true })
}

/// Fails with an explanation unless systemd is the init system.
pub fn require_systemd(command: &str) -> anyhow::Result<()> {
    if std::path::Path::new("/run/systemd/system").is_dir() {
        return Ok(());
    }
    let init = std::fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    bail!(
        "`oxrunner {command}` manages a systemd service, but systemd is not running here (PID 1 is `{init}`, \
         as in a container)\n\
         hint: run `oxrunner run` under whatever supervises processes here (the container's entrypoint, \
         supervisord, runit); to only write a unit file, set {UNIT_DIR_ENV}=DIR"
    );
}

/// The result of one `systemctl` call.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `systemctl [--user] ARGS`.
pub async fn systemctl(user_service: bool, args: &[&str]) -> anyhow::Result<Outcome> {
    let mut cmd = tokio::process::Command::new("systemctl");
    if user_service {
        cmd.arg("--user");
    }
    cmd.args(args).stdin(std::process::Stdio::null());
    let out = cmd.output().await.with_context(|| {
        "cannot run systemctl\nhint: systemd is running but systemctl is not on PATH; install the systemd package"
    })?;
    Ok(Outcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// The version of the systemd `systemctl` talks to (`None` when it cannot be told: the unit then gets every
/// key, which an older systemd ignores with a log line).
pub async fn version(user_service: bool) -> Option<u32> {
    let out = systemctl(user_service, &["--version"]).await.ok()?;
    if !out.success {
        return None;
    }
    super::version::parse(&out.stdout)
}

/// Runs `systemctl [--user] ARGS` and turns a failure into an error naming the call.
pub async fn systemctl_ok(user_service: bool, args: &[&str]) -> anyhow::Result<()> {
    let out = systemctl(user_service, args).await?;
    if !out.success {
        let user = if user_service { "--user " } else { "" };
        bail!(
            "systemctl {user}{} failed: {}\nhint: service commands usually need root (sudo oxrunner ...), or \
             --user-service for a service of your own",
            args.join(" "),
            if out.stderr.is_empty() {
                out.stdout
            } else {
                out.stderr
            }
        );
    }
    Ok(())
}
