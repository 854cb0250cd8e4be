//! The systemd unit `oxrunner install` writes, as text.
//!
//! It carries gitlab-runner's unit (kardianos/service's systemd template as gitlab-runner fills it: `run` with
//! `--config`, `--working-directory`, `--service`, `--syslog` and `--user`, `Restart=always`, `RestartSec=120`,
//! the start limits, `After=network.target`, `EnvironmentFile=-/etc/sysconfig/<name>`) plus how oxrunner wants
//! to be stopped, which gitlab-runner leaves to a hand-written drop-in:
//!
//! - `KillSignal=SIGQUIT` with `KillMode=mixed`: `systemctl stop` asks the runner alone to stop taking jobs and
//!   let the running ones finish. The signal must not reach the job processes in the unit's cgroup: a SIGQUIT to
//!   a job's shell would kill it on the spot.
//! - `TimeoutStopSec` bounds that drain (gitlab-runner's documentation suggests two hours). When it runs out,
//!   `TimeoutStopFailureMode=abort` sends the `WatchdogSignal`, here SIGTERM: the runner aborts its jobs, reports
//!   them and exits within `shutdown_timeout`; `TimeoutAbortSec` is that timeout plus a margin, after which
//!   systemd kills what is left. So a stop never loses a job's log to a bare SIGKILL while the runner keeps its
//!   promise to exit.
//!   systemd before 246 has no `TimeoutStopFailureMode=`: there the three abort keys are left out (`version.rs`).
//! - `Delegate=yes`, so that the shell executor's per-job cgroups under the unit's cgroup are the runner's own.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;

/// How long `systemctl stop` lets running jobs finish before they are aborted.
pub const GRACEFUL_STOP: Duration = Duration::from_secs(2 * 60 * 60);

/// Time the runner gets beyond `shutdown_timeout` to send its last job updates and exit.
const ABORT_MARGIN: Duration = Duration::from_secs(15);

/// Everything the unit depends on.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    /// The service name (`<name>.service`).
    pub name: String,
    /// The runner binary.
    pub exec: std::path::PathBuf,
    /// Arguments after the binary, starting with `run`.
    pub args: Vec<String>,
    /// `User=` (gitlab-runner's `--init-user`): the whole service runs as this user.
    pub user: Option<String>,
    /// A unit of the user's own systemd instance (`--user-service`).
    pub user_service: bool,
    /// `shutdown_timeout` of the config file.
    pub shutdown_timeout: Duration,
    /// The abort path after the graceful stop (systemd ≥ 246, see `version.rs`).
    pub abort_on_stop_timeout: bool,
}

/// A service name systemd accepts as a unit name prefix and that cannot reach outside the unit directory.
pub fn check_service_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        bail!(
            "invalid service name `{}`\nhint: use letters, digits and - _ . : only (e.g. --service oxrunner)",
            name.escape_debug()
        );
    }
    Ok(())
}

/// A user name as `useradd` allows it; anything else could break the unit's syntax.
pub fn check_user_name(user: &str) -> anyhow::Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "invalid user name `{}`\nhint: give an existing account's name, e.g. --user gitlab-runner",
            user.escape_debug()
        );
    }
    Ok(())
}

/// One `ExecStart=` word: quoted, with systemd's own expansions (`$VAR`, `%` specifiers) disabled.
fn exec_word(s: &str) -> anyhow::Result<String> {
    if s.chars().any(char::is_control) {
        bail!(
            "`{}` contains a control character and cannot be written into a systemd unit",
            s.escape_debug()
        );
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// A path setting's value: taken verbatim up to the end of the line, with `%` specifiers disabled.
fn path_value(p: &Path) -> anyhow::Result<String> {
    let Some(s) = p.to_str() else {
        bail!(
            "{} is not valid UTF-8 and cannot be written into a systemd unit",
            p.display()
        );
    };
    if s.chars().any(char::is_control) || s.ends_with(char::is_whitespace) {
        bail!(
            "`{}` cannot be written into a systemd unit (control characters or trailing white space)",
            s.escape_debug()
        );
    }
    Ok(s.replace('%', "%%"))
}

/// The unit file's text.
pub fn render(spec: &UnitSpec) -> anyhow::Result<String> {
    check_service_name(&spec.name)?;
    let exec = path_value(&spec.exec)?;
    let mut exec_start = exec_word(&spec.exec.to_string_lossy())?;
    for arg in &spec.args {
        exec_start.push(' ');
        exec_start.push_str(&exec_word(arg)?);
    }
    let abort = spec.shutdown_timeout.as_secs() + ABORT_MARGIN.as_secs();
    let mut u = String::new();
    // Writing to a String cannot fail; `let _` keeps that visible without an unwrap.
    let _ = writeln!(
        u,
        "# Written by `oxrunner install`; `oxrunner uninstall` removes it. Put local changes into a drop-in\n\
         # (systemctl edit {name}.service): a new `install` replaces this file.",
        name = spec.name
    );
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(u, "Description=GitLab Runner (oxrunner)");
    let _ = writeln!(u, "ConditionFileIsExecutable={exec}");
    let _ = writeln!(u, "After=network.target");
    let _ = writeln!(u, "StartLimitIntervalSec=5");
    let _ = writeln!(u, "StartLimitBurst=10");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    let _ = writeln!(u, "ExecStart={exec_start}");
    // `systemctl reload` re-reads config.toml without touching running jobs (the daemon's SIGHUP handler).
    let _ = writeln!(u, "ExecReload=/bin/kill -HUP $MAINPID");
    if let Some(user) = &spec.user {
        check_user_name(user)?;
        let _ = writeln!(u, "User={user}");
    }
    let _ = writeln!(u, "Restart=always");
    let _ = writeln!(u, "RestartSec=120");
    let _ = writeln!(u, "EnvironmentFile=-/etc/sysconfig/{}", spec.name);
    let _ = writeln!(u, "KillSignal=SIGQUIT");
    let _ = writeln!(u, "KillMode=mixed");
    let _ = writeln!(u, "TimeoutStopSec={}", GRACEFUL_STOP.as_secs());
    if spec.abort_on_stop_timeout {
        let _ = writeln!(u, "TimeoutStopFailureMode=abort");
        let _ = writeln!(u, "WatchdogSignal=SIGTERM");
        let _ = writeln!(u, "TimeoutAbortSec={abort}");
    }
    let _ = writeln!(u, "Delegate=yes");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let target = if spec.user_service {
        "default.target"
    } else {
        "multi-user.target"
    };
    let _ = writeln!(u, "WantedBy={target}");
    Ok(u)
}

/// Whether an existing unit starts a GitLab runner (gitlab-runner's own or ours): only such a unit may be
/// replaced in place, so that `--service gitlab-runner` takes over without clobbering an unrelated service.
pub fn runs_a_runner(text: &str) -> bool {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .any(|cmd| {
            let words: Vec<String> = cmd
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_string())
                .collect();
            let program = words
                .first()
                .map(|w| w.trim_start_matches(['-', '@', '+', '!', ':']))
                .and_then(|w| Path::new(w).file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("");
            matches!(program, "gitlab-runner" | "oxrunner") && words.iter().any(|w| w == "run")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_disable_systemd_expansion() {
        assert_eq!(exec_word("a b").unwrap(), "\"a b\"");
        assert_eq!(exec_word("$HOME%i\"\\").unwrap(), "\"$$HOME%%i\\\"\\\\\"");
        assert!(exec_word("a\nb").is_err());
    }

    #[test]
    fn names_that_could_escape_the_unit_are_refused() {
        for bad in ["", "../x", "a/b", "a b", ".hidden", "x\ny"] {
            assert!(check_service_name(bad).is_err(), "{bad:?} accepted");
        }
        check_service_name("gitlab-runner").unwrap();
        assert!(check_user_name("root\nExecStartPre=/bin/evil").is_err());
    }

    /// `packaging/oxrunner.service` is exactly what `sudo oxrunner install --user gitlab-runner` writes for the
    /// package layout (binary in /usr/bin, gitlab-runner's paths, the default shutdown_timeout).
    #[test]
    fn shipped_unit_is_the_generated_one() {
        let spec = UnitSpec {
            name: "oxrunner".into(),
            exec: "/usr/bin/oxrunner".into(),
            args: [
                "run",
                "--config",
                "/etc/gitlab-runner/config.toml",
                "--working-directory",
                "/home/gitlab-runner",
                "--service",
                "oxrunner",
                "--user",
                "gitlab-runner",
            ]
            .map(String::from)
            .to_vec(),
            user: None,
            user_service: false,
            shutdown_timeout: Duration::from_secs(30),
            abort_on_stop_timeout: true,
        };
        assert_eq!(
            render(&spec).unwrap(),
            include_str!("../../../../../packaging/oxrunner.service")
        );
    }

    #[test]
    fn a_user_service_is_wanted_by_the_user_instance() {
        let spec = UnitSpec {
            name: "oxrunner".into(),
            exec: "/home/me/bin/oxrunner".into(),
            args: vec!["run".into()],
            user: None,
            user_service: true,
            shutdown_timeout: Duration::from_secs(30),
            abort_on_stop_timeout: true,
        };
        let text = render(&spec).unwrap();
        // multi-user.target does not exist in a user's systemd instance: enabling there would never start it.
        assert!(text.ends_with("[Install]\nWantedBy=default.target\n"), "{text}");
        assert!(!text.contains("\nUser="), "{text}");
    }

    /// For systemd < 246 the abort keys are left out and nothing else changes.
    #[test]
    fn without_the_abort_path_only_its_three_keys_go() {
        let mut spec = UnitSpec {
            name: "oxrunner".into(),
            exec: "/usr/bin/oxrunner".into(),
            args: vec!["run".into()],
            user: None,
            user_service: false,
            shutdown_timeout: Duration::from_secs(30),
            abort_on_stop_timeout: true,
        };
        let full = render(&spec).unwrap();
        spec.abort_on_stop_timeout = false;
        let old = render(&spec).unwrap();
        let dropped: Vec<&str> = full.lines().filter(|l| !old.lines().any(|o| o == *l)).collect();
        assert_eq!(
            dropped,
            [
                "TimeoutStopFailureMode=abort",
                "WatchdogSignal=SIGTERM",
                "TimeoutAbortSec=45"
            ]
        );
        assert!(
            old.contains("\nKillSignal=SIGQUIT\nKillMode=mixed\nTimeoutStopSec=7200\n"),
            "{old}"
        );
    }

    #[test]
    fn recognises_runner_units_only() {
        assert!(runs_a_runner(
            "[Service]\nExecStart=/usr/bin/gitlab-runner \"run\" \"--config\" \"/etc/gitlab-runner/config.toml\"\n"
        ));
        assert!(runs_a_runner("ExecStart=\"/usr/local/bin/oxrunner\" \"run\"\n"));
        assert!(!runs_a_runner("ExecStart=/usr/sbin/nginx -g 'daemon off;'\n"));
        assert!(!runs_a_runner("ExecStart=/usr/bin/gitlab-runner list\n"));
    }
}
