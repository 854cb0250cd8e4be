//! Shell runners: the shell and git the jobs need, and the account they run as (`--user`) with its groups.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};
use oxrunner_config::RunnerConfig;

use super::report::Check;

/// The account jobs (or the runner itself) run as.
pub struct Account {
    /// The name as given or looked up.
    pub name: String,
    /// `None` when the account does not exist.
    pub ids: Option<(Uid, Vec<Gid>)>,
    /// Doctor's own process: the kernel judges access with its real credentials (supplementary groups from
    /// systemd or newgrp, ACLs), which the group database does not show.
    pub own_process: bool,
}

impl Account {
    /// `--user NAME`, or the user running doctor.
    pub fn resolve(user: Option<&str>) -> Account {
        let found = match user {
            Some(name) => User::from_name(name).ok().flatten(),
            None => User::from_uid(Uid::effective()).ok().flatten(),
        };
        let name = user
            .map(str::to_string)
            .or_else(|| found.as_ref().map(|u| u.name.clone()))
            .unwrap_or_else(|| Uid::effective().to_string());
        let ids = match (&found, user) {
            (Some(u), _) => {
                let groups = CString::new(u.name.clone())
                    .ok()
                    .and_then(|c| nix::unistd::getgrouplist(&c, u.gid).ok())
                    .unwrap_or_else(|| vec![u.gid]);
                Some((u.uid, groups))
            }
            // An account missing from the user database still has the process's ids.
            (None, None) => Some((Uid::effective(), vec![Gid::effective()])),
            (None, Some(_)) => None,
        };
        Account {
            name,
            ids,
            own_process: user.is_none(),
        }
    }

    /// Whether this account may do `want` (bits of rwx: 4, 2, 1) on `path`, whose metadata is `meta`.
    pub fn may_path(&self, path: &Path, meta: &std::fs::Metadata, want: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.own_process {
            use nix::unistd::AccessFlags;
            let mut mode = AccessFlags::empty();
            for (bit, flag) in [
                (4, AccessFlags::R_OK),
                (2, AccessFlags::W_OK),
                (1, AccessFlags::X_OK),
            ] {
                if want & bit != 0 {
                    mode |= flag;
                }
            }
            return nix::unistd::faccessat(nix::fcntl::AT_FDCWD, path, mode, nix::fcntl::AtFlags::AT_EACCESS)
                .is_ok();
        }
        self.may(meta.uid(), meta.gid(), meta.mode(), want)
    }

    /// Whether this account may do `want` (bits of rwx: 4, 2, 1) on a file with this owner, group and mode.
    pub fn may(&self, uid: u32, gid: u32, mode: u32, want: u32) -> bool {
        let Some((me, groups)) = &self.ids else {
            return false;
        };
        if me.is_root() {
            return true;
        }
        let bits = if me.as_raw() == uid {
            (mode >> 6) & 7
        } else if groups.iter().any(|g| g.as_raw() == gid) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }
}

pub fn checks(r: &RunnerConfig, account: &Account) -> Vec<Check> {
    let mut out = Vec::new();
    let shell = r
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bash".into());
    out.push(match find_in_path(&shell) {
        Some(p) => Check::ok(format!("shell: {shell} at {}", p.display())),
        None => Check::fail(
            format!("shell: {shell} not found in PATH"),
            format!("jobs run their scripts with {shell}"),
            format!(
                "install {shell} (apt-get install {shell}), or set `shell` in [[runners]] to one that exists"
            ),
        ),
    });
    out.push(git_version());
    out.extend(account_checks(account));
    out
}

fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn git_version() -> Check {
    match std::process::Command::new("git").arg("--version").output() {
        Ok(out) if out.status.success() => {
            Check::ok(format!("git: {}", String::from_utf8_lossy(&out.stdout).trim()))
        }
        Ok(out) => Check::fail(
            "git: `git --version` failed",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
            "reinstall git (apt-get install --reinstall git)",
        ),
        Err(e) => Check::fail(
            "git: not found",
            format!("jobs fetch the repository with git: {e}"),
            "install git (apt-get install git / dnf install git)",
        ),
    }
}

fn account_checks(account: &Account) -> Vec<Check> {
    let Some((uid, groups)) = &account.ids else {
        return vec![Check::fail(
            format!("account: user \"{}\" does not exist", account.name),
            "shell jobs run as the --user account; without it every job fails to start",
            format!(
                "create it (useradd --create-home --shell /bin/bash {}) or fix --user in the service definition",
                account.name
            ),
        )];
    };
    let names: Vec<String> = groups
        .iter()
        .map(|g| {
            Group::from_gid(*g)
                .ok()
                .flatten()
                .map_or_else(|| g.to_string(), |grp| grp.name)
        })
        .collect();
    let mut out = vec![Check::ok(format!(
        "account: jobs run as {} (uid {uid}), groups: {}",
        account.name,
        names.join(", ")
    ))];
    out.extend(docker_socket_access(account, Path::new("/var/run/docker.sock")));
    out
}

/// When this host has a Docker engine, whether jobs that call `docker` can use it.
fn docker_socket_access(account: &Account, socket: &Path) -> Option<Check> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(socket).ok()?;
    if account.may_path(socket, &meta, 6) {
        return Some(Check::ok(format!(
            "docker: jobs can use {} (as {})",
            socket.display(),
            account.name
        )));
    }
    let group = Group::from_gid(Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    // Informational: most shell jobs never call docker, so a healthy runner must not get a `!` for this.
    Some(Check::ok(format!(
        "docker: {user} cannot use {socket} (group {group}, mode {mode:04o}); jobs that call docker need: \
         usermod -aG {group} {user} (this gives the jobs root on this host), then restart oxrunner",
        user = account.name,
        socket = socket.display(),
        mode = meta.mode() & 0o7777,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: u32, gids: &[u32]) -> Account {
        Account {
            name: "someone".into(),
            ids: Some((
                Uid::from_raw(uid),
                gids.iter().map(|g| Gid::from_raw(*g)).collect(),
            )),
            own_process: false,
        }
    }

    #[test]
    fn permission_bits_follow_owner_then_group_then_others() {
        let user = account(1000, &[1000, 999]);
        // Owner bits decide for the owner, even when the group would allow more.
        assert!(!user.may(1000, 999, 0o060, 6));
        assert!(user.may(1000, 0, 0o600, 6));
        // The docker socket: root:docker 0660.
        assert!(user.may(0, 999, 0o660, 6));
        assert!(!account(1001, &[1001]).may(0, 999, 0o660, 6));
        assert!(account(1001, &[1001]).may(0, 999, 0o666, 6));
        // Search permission only.
        assert!(user.may(0, 0, 0o711, 1));
        assert!(!user.may(0, 0, 0o700, 1));
        // Root passes permission bits; an account that does not exist may nothing.
        assert!(account(0, &[0]).may(5, 5, 0o000, 6));
        let missing = Account {
            name: "gone".into(),
            ids: None,
            own_process: false,
        };
        assert!(!missing.may(0, 0, 0o777, 1));
    }
}
